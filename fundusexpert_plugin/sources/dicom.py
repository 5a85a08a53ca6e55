"""A folder of DICOM photographs -> FundusGen records, de-identified.

Every file under the folder whose bytes 128-131 are ``DICM`` (any suffix, searched recursively,
sorted by relative path) becomes one record:

* ``image``: a fresh PNG of the pixels, ``<images_dir>/<record_id>.png`` (Pillow writes no
  metadata); the DICOM file itself is never referenced by the record;
* ``record_id``: :func:`~fundusexpert_plugin.core.dicom.record_id_from_uid` of the SOP Instance
  UID with the dataset's salt: the same salt gives the same ids on every run;
* ``laterality`` with ``laterality_source = 'dicom'`` from ImageLaterality / Laterality;
* ``pixel_spacing_mm`` from PixelSpacing (or the ophthalmic PixelMeasuresSequence).

No other header value is read into the record (names, IDs, dates, institution, device and
free-text descriptions are dropped). A file refused by :func:`~fundusexpert_plugin.core.dicom.read_dicom`
(burned-in annotation, multi-frame with ``multi_frame='refuse'``, unsupported photometric
interpretation) or unreadable is an error, or with ``lenient`` a skipped item in the log.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterator, List, Literal, Optional

from fundusexpert_plugin.core.atomic import removed_on_error
from fundusexpert_plugin.core.dicom import is_dicom, read_dicom, record_id_from_uid
from fundusexpert_plugin.core.images import ImageSkip, save_image
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord, parse_record
from fundusexpert_plugin.sources.base import SEE_TERMS, ConvertLog, SourceInfo

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = SourceInfo('clinical DICOM photographs', SEE_TERMS, '')


def list_dicom_files(folder: Path | str, *, exclude: Optional[Path | str] = None) -> List[Path]:
    """DICOM Part 10 files under ``folder`` (recursive, by content, sorted by relative path), or
    ``[folder]`` when it is one DICOM file.

    Args:
        exclude: a folder whose files are not listed (an output folder inside ``folder``: the
            command's own earlier copies).

    Raises:
        FileNotFoundError: the folder does not exist or holds no DICOM file, or a file that is not
            DICOM.
    """
    folder = Path(folder)
    if folder.is_file():
        if not is_dicom(folder):
            raise FileNotFoundError(f'{folder}: not a DICOM file (no b"DICM" at byte 128)')
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(f'DICOM folder not found: {folder}')
    skip = Path(exclude).resolve() if exclude is not None else None
    found = sorted((p for p in folder.rglob('*') if p.is_file() and is_dicom(p)
                    and not (skip is not None and p.resolve().is_relative_to(skip))),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not found:
        raise FileNotFoundError(f'{folder}: no DICOM file (b"DICM" at byte 128)')
    return found


def read_dicom_folder(folder: Path | str, images_dir: Path | str, *, salt: str, source: SourceInfo = DEFAULT_SOURCE,
                      accept_burned_in: bool = False, multi_frame: Literal['first', 'refuse'] = 'first',
                      lenient: bool = False, log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """Records for the DICOM files of ``folder`` (see the module docstring).

    Args:
        folder: searched recursively for DICOM files.
        images_dir: where the de-identified PNGs are written (created).
        salt: secret of :func:`record_id_from_uid`; keep it to keep ids stable.
        source: provenance written into every record.
        accept_burned_in, multi_frame: passed to :func:`read_dicom`.
        lenient: skip refused/unreadable files (listed in ``log.skipped``) instead of raising.

    Raises:
        FundusDataError: a refused or unreadable file (named), or two files with one SOP Instance
            UID, when not ``lenient``.
        FileNotFoundError: no DICOM file in ``folder``.

    A call that stops on an error removes the PNGs it wrote where there was none before (images of
    an earlier run's records are kept).
    """
    log = log if log is not None else ConvertLog()
    images_dir = Path(images_dir).resolve()
    images_dir.mkdir(parents=True, exist_ok=True)
    seen: Dict[str, Path] = {}
    with removed_on_error((FundusDataError,)) as new_images:
        for path in list_dicom_files(folder):
            try:
                photo = read_dicom(path, accept_burned_in=accept_burned_in, multi_frame=multi_frame)
                record_id = record_id_from_uid(photo.sop_instance_uid, salt)
                if record_id in seen:
                    raise FundusDataError(f'{path}: SOPInstanceUID (0008,0018) repeats that of {seen[record_id]}',
                                          reason='duplicate_id')
            except (ImageSkip, FundusDataError) as exc:
                if not lenient:
                    raise FundusDataError(str(exc), reason=exc.reason) from None
                log.skip(str(exc), exc.reason)
                continue
            seen[record_id] = path
            out_png = images_dir / f'{record_id}.png'
            new_images.add(out_png)
            save_image(photo.image.rgb, out_png)  # pixels only: no DICOM header, no metadata chunks
            fields = photo.fields
            yield parse_record({
                'record_id': record_id, 'image': str(out_png),
                'width': photo.image.width, 'height': photo.image.height,
                'laterality': fields.laterality, 'laterality_source': 'dicom' if fields.laterality else None,
                'pixel_spacing_mm': fields.pixel_spacing_mm,
                'provenance': {'source_dataset': source.source_dataset, 'licence': source.licence,
                               'attribution': source.attribution, 'stages': {'image': photo.image.conversion}},
            }, where=f'{path}')
