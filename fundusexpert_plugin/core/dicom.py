"""DICOM photographs (``.dcm``) as 8-bit RGB, with an allow-list of header fields.

Hospital fundus cameras export the Ophthalmic Photography 8-bit Image Storage SOP class
(1.2.840.10008.5.1.4.1.1.77.1.5.1), often with JPEG baseline frames. Reading uses pydicom 3
(pixel data decoded by its Pillow plugin for JPEG baseline/extended; uncompressed data natively).

| input | behaviour |
|---|---|
| ``RGB`` | used as is |
| ``YBR_FULL`` / ``YBR_FULL_422`` (native or JPEG) | converted to RGB by pydicom (ITU-R BT.601 full range) |
| ``MONOCHROME2`` / ``MONOCHROME1`` | grey -> RGB (MONOCHROME1 inverted first) |
| more than 8 bits stored | scaled to 8 bits by ``2 ** (BitsStored - 8)`` |
| multi-frame | ``multi_frame='first'``: frame 0 and a warning; ``'refuse'``: :class:`DicomRefused` |
| ``BurnedInAnnotation = YES`` | :class:`DicomRefused` unless ``accept_burned_in`` |
| other photometric interpretations (PALETTE COLOR, ...) | :class:`DicomRefused` naming it |

De-identification: nothing of the header leaves this module except :class:`DicomFields`
(laterality, pixel spacing, frame count) and the SOP Instance UID, which callers use only
through :func:`record_id_from_uid` (a salted HMAC-SHA256, so ids never carry names or patient
IDs). The pixels are returned as an array; writing them with Pillow gives a metadata-free file.
The allow-list is stricter than the DICOM PS3.15 Basic Application Level Confidentiality Profile:
every attribute not listed above is dropped, rather than each identifying one being cleaned.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np

from fundusexpert_plugin.core.images import ImageSkip, LoadedImage
from fundusexpert_plugin.core.record import LATERALITY_FLAG_SOURCES, laterality_flag

logger = logging.getLogger(__name__)

#: SOP Class UID of Ophthalmic Photography 8 Bit Image Storage (PS3.4 B.5).
OPHTHALMIC_PHOTOGRAPHY_8BIT = '1.2.840.10008.5.1.4.1.1.77.1.5.1'
#: Value of (0020,0062) ImageLaterality / (0020,0060) Laterality -> record laterality (PS3.3 C.7.3.1).
LATERALITY_CODES = {'L': 'left', 'R': 'right'}
#: the intake note of an accepted burned-in file (``LoadedImage.conversion``, so ``stages['image']``)
BURNED_IN_ACCEPTED = 'BurnedInAnnotation = YES accepted: the pixels may show identifying text'
#: the words that mark a :func:`check_laterality` flag in ``provenance.flags`` (the chain states it)
LATERALITY_FLAG = LATERALITY_FLAG_SOURCES['dicom']
_PHOTOMETRICS = ('RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT', 'MONOCHROME1', 'MONOCHROME2')


class DicomRefused(ImageSkip):
    """A DICOM file the library will not use as it is; ``str(exc)`` names the file and attribute,
    ``reason`` is the counted key (``dicom_burned_in``, ``dicom_multi_frame``, ``dicom_no_uid`` ...)."""


@dataclass(frozen=True)
class DicomFields:
    """The header fields that may reach a record.

    Attributes:
        laterality: ``'left'``/``'right'`` from ImageLaterality (0020,0062), else Laterality
            (0020,0060); ``None`` for ``B``/``U``/absent.
        pixel_spacing_mm: ``(row spacing, column spacing)`` in mm per pixel (DICOM order: vertical
            then horizontal) from PixelSpacing (0028,0030), else from the PixelMeasuresSequence of
            the SharedFunctionalGroupsSequence (enhanced/ophthalmic multi-frame IODs); ``None`` absent.
        n_frames: NumberOfFrames (1 when absent).
        burned_in: BurnedInAnnotation (0028,0301) is ``YES``.
    """

    laterality: Optional[Literal['left', 'right']]
    pixel_spacing_mm: Optional[Tuple[float, float]]
    n_frames: int
    burned_in: bool


@dataclass
class DicomPhoto:
    """One decoded DICOM photograph.

    Attributes:
        image: the pixels as :class:`~fundusexpert_plugin.core.images.LoadedImage` (8-bit RGB,
            ``conversion`` names what was done, e.g. ``'DICOM YBR_FULL_422->RGB'``).
        fields: the allowed header fields.
        sop_instance_uid: (0008,0018); for :func:`record_id_from_uid` only, never to be written.
    """

    image: LoadedImage
    fields: DicomFields
    sop_instance_uid: str


def is_dicom(path: Path | str) -> bool:
    """True when the file has the DICOM Part 10 preamble: ``b'DICM'`` at byte 128 (PS3.10 7.1)."""
    try:
        with open(path, 'rb') as fh:
            fh.seek(128)
            return fh.read(4) == b'DICM'
    except OSError:
        return False


def _laterality(ds) -> Optional[str]:
    for keyword in ('ImageLaterality', 'Laterality'):
        value = str(getattr(ds, keyword, '') or '').strip().upper()
        if value in LATERALITY_CODES:
            return LATERALITY_CODES[value]
    return None


def _pixel_spacing(ds) -> Optional[Tuple[float, float]]:
    spacing = getattr(ds, 'PixelSpacing', None)
    if spacing is None:
        try:
            spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        except (AttributeError, IndexError, KeyError):
            return None
    values = [float(v) for v in spacing]
    if len(values) != 2 or min(values) <= 0:
        return None
    return values[0], values[1]


def read_fields(ds) -> DicomFields:
    """The allowed fields of a pydicom ``Dataset`` (see :class:`DicomFields`)."""
    return DicomFields(laterality=_laterality(ds), pixel_spacing_mm=_pixel_spacing(ds),
                       n_frames=int(getattr(ds, 'NumberOfFrames', 1) or 1),
                       burned_in=str(getattr(ds, 'BurnedInAnnotation', '')).strip().upper() == 'YES')


def _to_rgb8(arr: np.ndarray, photometric: str, bits_stored: int) -> np.ndarray:
    if arr.dtype != np.uint8:
        shift = max(0, int(bits_stored) - 8)
        arr = (arr.astype(np.int64) >> shift).clip(0, 255).astype(np.uint8)
    if arr.ndim == 2:
        if photometric == 'MONOCHROME1':
            arr = 255 - arr
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr)


def open_dataset(path: Path | str):
    """The pydicom ``Dataset`` of a DICOM Part 10 file (pixel data read, not decoded).

    A file cut short inside its header is told apart from a DICOM object that holds no image: pydicom
    reads a cut file up to its end without complaint, so a dataset without PixelData that also lacks
    its SOP Instance UID or still declares an image (Rows, Columns) is taken to be cut short.

    Raises:
        ImageSkip: not a readable DICOM file, or cut short before its pixel data (``image_unreadable``).
        DicomRefused: a complete DICOM object without PixelData (``dicom_no_pixels``).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise ImageSkip(f'{path}: unreadable DICOM file ({exc})', reason='image_unreadable') from None
    if 'PixelData' not in ds:
        if 'SOPInstanceUID' not in ds or 'Rows' in ds or 'Columns' in ds:
            raise ImageSkip(f'{path}: DICOM file ends before its PixelData (7FE0,0010): cut short or damaged',
                            reason='image_unreadable')
        raise DicomRefused(f'{path}: no PixelData (7FE0,0010): not an image', reason='dicom_no_pixels')
    return ds


def check_pixel_count(ds, path: Path | str, max_pixels: Optional[int] = -1) -> None:
    """Refuse a dataset whose Rows x Columns exceed the decompression-bomb limit, before decoding.

    Args:
        max_pixels: the limit in pixels; ``-1`` (default) the intake's current limit
            (:data:`fundusexpert_plugin.core.images.MAX_PIXELS`, set by ``--max-image-pixels``), ``None``
            no limit. A JPEG frame larger than its header says is still stopped by Pillow's own guard.

    Raises:
        ImageSkip: ``image_too_large``, naming the file, Rows (0028,0010) and Columns (0028,0011).
    """
    from fundusexpert_plugin.core import images
    limit = images.MAX_PIXELS if max_pixels == -1 else max_pixels
    rows, columns = int(getattr(ds, 'Rows', 0) or 0), int(getattr(ds, 'Columns', 0) or 0)
    if limit is not None and rows * columns > limit:
        raise ImageSkip(f'{path}: Rows (0028,0010) x Columns (0028,0011) = {columns}x{rows} = {rows * columns} pixels '
                        f'is above the limit of {limit} pixels (decompression-bomb guard); raise the limit '
                        '(--max-image-pixels) only for a trusted file', reason='image_too_large')


def decode_first_frame(ds, path: Path | str) -> np.ndarray:
    """The pixels of frame 0 (the only frame of a single-frame file) as pydicom decodes them, RGB for
    colour data (``as_rgb``): ``np.ndarray[rows, columns(, 3)]``, dtype as stored.

    Raises:
        ImageSkip: the pixel data cannot be decoded (cut short, corrupt JPEG, unsupported transfer
            syntax: ``image_unreadable``) or its JPEG frame is above Pillow's pixel guard
            (``image_too_large``); the message names the file and the TransferSyntaxUID.
    """
    from PIL import Image
    from pydicom.pixels import pixel_array
    n_frames = int(getattr(ds, 'NumberOfFrames', 1) or 1)
    syntax = ds.file_meta.get('TransferSyntaxUID', '?') if hasattr(ds, 'file_meta') else '?'
    try:
        return pixel_array(ds, index=0 if n_frames > 1 else None, as_rgb=True)
    except Image.DecompressionBombError as exc:
        raise ImageSkip(f'{path}: PixelData (7FE0,0010) JPEG frame: {exc}', reason='image_too_large') from None
    except (NotImplementedError, RuntimeError, ValueError, AttributeError, OSError, EOFError,
            KeyError, TypeError, IndexError) as exc:
        detail = ('not a decodable image' if 'cannot identify image file' in str(exc) else  # one line: pydicom
                  ' | '.join(line.strip() for line in str(exc).splitlines() if line.strip()))  # lists each plugin
        raise ImageSkip(f'{path}: PixelData (7FE0,0010) not decodable (TransferSyntaxUID {syntax}: {detail})',
                        reason='image_unreadable') from None


def read_dicom(path: Path | str, *, accept_burned_in: bool = False,
               multi_frame: Literal['first', 'refuse'] = 'first', max_pixels: Optional[int] = -1) -> DicomPhoto:
    """Read a DICOM photograph as 8-bit RGB plus its allowed fields (see the module table).

    Args:
        path: a DICOM Part 10 file.
        accept_burned_in: use files with ``BurnedInAnnotation = YES`` (text burned into the pixels
            may identify the patient; check them by eye first). Such an image's ``conversion`` ends
            with :data:`BURNED_IN_ACCEPTED`, which records keep in ``provenance.stages['image']``.
        multi_frame: ``'first'`` keeps frame 0 with a warning; ``'refuse'`` raises.
        max_pixels: decompression-bomb limit (:func:`check_pixel_count`; default the intake's
            ``--max-image-pixels``).

    Raises:
        DicomRefused: burned-in annotation, refused multi-frame file, no pixel data, or an
            unsupported photometric interpretation (the message names the file and the attribute).
        ImageSkip: not a readable DICOM file, cut short, too many pixels (``image_too_large``) or
            undecodable pixel data.
    """
    path = Path(path)
    ds = open_dataset(path)
    fields = read_fields(ds)
    if fields.burned_in and not accept_burned_in:
        raise DicomRefused(f'{path}: BurnedInAnnotation (0028,0301) = YES: burned-in text may identify the '
                           'patient; refused (pass --accept-burned-in after checking the pixels)',
                           reason='dicom_burned_in')
    photometric = str(getattr(ds, 'PhotometricInterpretation', '')).strip()
    if photometric not in _PHOTOMETRICS:
        raise DicomRefused(f'{path}: PhotometricInterpretation (0028,0004) = {photometric!r} is not supported '
                           f'(supported: {", ".join(_PHOTOMETRICS)})', reason='dicom_photometric')
    notes = [f'DICOM {photometric}->RGB' if photometric != 'RGB' else 'DICOM RGB']
    if fields.burned_in:  # accepted: say so wherever the conversion is recorded (provenance.stages['image'])
        notes.append(BURNED_IN_ACCEPTED)
    if fields.n_frames > 1:
        if multi_frame == 'refuse':
            raise DicomRefused(f'{path}: NumberOfFrames (0028,0008) = {fields.n_frames}: multi-frame file refused',
                               reason='dicom_multi_frame')
        logger.warning('%s: NumberOfFrames = %d: using frame 0 only', path, fields.n_frames)
        notes.append(f'frame 0 of {fields.n_frames}')
    check_pixel_count(ds, path, max_pixels)
    rgb = _to_rgb8(decode_first_frame(ds, path), photometric, int(getattr(ds, 'BitsStored', 8) or 8))
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DicomRefused(f'{path}: SamplesPerPixel (0028,0002) gives pixel shape {rgb.shape}; expected 1 or 3',
                           reason='dicom_samples_per_pixel')
    uid = str(getattr(ds, 'SOPInstanceUID', '') or '')
    if not uid:
        raise DicomRefused(f'{path}: no SOPInstanceUID (0008,0018): cannot derive a record id', reason='dicom_no_uid')
    return DicomPhoto(LoadedImage(path, rgb, '; '.join(notes)), fields, uid)


def load_dicom_image(path: Path | str, *, accept_burned_in: bool = False,
                     max_pixels: Optional[int] = -1) -> LoadedImage:
    """Pixels only, for :func:`fundusexpert_plugin.core.images.load_image` (frame 0 of multi-frame files).

    Raises:
        ImageSkip: as :func:`read_dicom`.
    """
    return read_dicom(path, accept_burned_in=accept_burned_in, max_pixels=max_pixels).image


def new_salt() -> str:
    """A random salt for :func:`record_id_from_uid`: 32 hex digits from :mod:`secrets`."""
    return secrets.token_hex(16)


def record_id_from_uid(sop_instance_uid: str, salt: str) -> str:
    """Record id ``'dcm-'`` + the first 16 hex digits of HMAC-SHA256(salt, SOP Instance UID).

    The same salt gives the same ids on every run; without the salt the id cannot be linked to
    the UID by hashing candidate UIDs.

    Raises:
        ValueError: empty salt.
    """
    if not salt:
        raise ValueError('record ids from DICOM need a non-empty salt')
    digest = hmac.new(salt.encode('utf-8'), sop_instance_uid.encode('ascii'), hashlib.sha256).hexdigest()
    return f'dcm-{digest[:16]}'


def check_laterality(laterality: Optional[str], disc_box_px, width: int, *, where: str) -> Optional[str]:
    """Compare a header laterality with the optic-disc position (macula-centred photo rule of
    :func:`fundusexpert_plugin.core.geometry.laterality_from_disc`): the one laterality check of
    :func:`fundusexpert_plugin.core.record.laterality_flag`, with the DICOM header as the source.

    Args:
        laterality: ``'left'``/``'right'`` from the header, or ``None``.
        disc_box_px: the optic-disc box (xyxy pixels), or ``None``.
        width: image width, pixels.
        where: prefix of the warning (file or record id).

    Returns:
        The warning text when both are known and disagree (also logged), else ``None``. The header
        value is kept either way: a disc-centred or peripheral photo breaks the position rule.
    """
    flag = laterality_flag(laterality, 'dicom', disc_box_px, width)
    if flag is None:
        return None
    message = f'{where}: {flag}'
    logger.warning(message)
    return message



def resolve_salt(salt: Optional[str], salt_file: Path | str) -> str:
    """The dataset's salt for :func:`record_id_from_uid`, recorded in ``salt_file``.

    * ``salt`` given: used; written to ``salt_file`` when that does not exist yet;
    * else ``salt_file`` exists: its content (stripped) is used, so ids repeat across runs;
    * else a random salt (:func:`new_salt`) is written there.

    The file is published atomically (a hard link of a finished draft), so of several shards
    starting at once one salt wins and every shard uses it; it is readable by its owner only (mode
    0600). Keep ``salt_file`` (privately: with the original SOP Instance UIDs it links ids to files,
    so move it out of a dataset folder before sharing that) to get the same ids on later runs.

    Raises:
        FundusDataError: ``salt`` differs from the one already recorded in ``salt_file``, or the
            file or ``salt`` is empty.
    """
    import os

    from fundusexpert_plugin.core.errors import FundusDataError
    salt_file = Path(salt_file)
    if not salt_file.exists():
        if salt is not None and not salt:
            raise FundusDataError('--salt: empty salt')
        salt_file.parent.mkdir(parents=True, exist_ok=True)
        draft = salt_file.with_name(f'.{salt_file.name}.{secrets.token_hex(4)}')
        draft.write_text((salt if salt is not None else new_salt()) + '\n', encoding='utf-8')
        draft.chmod(0o600)  # owner-only: with the original UIDs the salt links ids back to files
        try:
            os.link(draft, salt_file)
        except FileExistsError:  # another shard was first: its salt is read below
            pass
        finally:
            draft.unlink()
    recorded = salt_file.read_text(encoding='utf-8').strip()
    if not recorded:
        raise FundusDataError(f'{salt_file}: empty salt file')
    if salt is not None and salt != recorded:
        raise FundusDataError(f'--salt differs from the salt recorded in {salt_file}; ids would change '
                              '(pass the recorded one, or another --salt-file)')
    return recorded


def dicom_record_id(path: Path | str, salt: str) -> str:
    """:func:`record_id_from_uid` of a file's SOP Instance UID (the header is read, not the pixels).

    Raises:
        ImageSkip: not a readable DICOM file, or no SOP Instance UID.
        ValueError: empty salt.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    try:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=['SOPInstanceUID'])
                  .get('SOPInstanceUID', '') or '')
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ImageSkip(f'{path}: unreadable DICOM file ({exc})', reason='image_unreadable') from None
    if not uid:
        raise DicomRefused(f'{path}: no SOPInstanceUID (0008,0018): cannot derive a record id', reason='dicom_no_uid')
    return record_id_from_uid(uid, salt)
