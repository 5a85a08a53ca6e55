"""The one image intake: every photograph the builder, the converters and the engine read comes
through :func:`load_image`, and every image the library writes goes out through :func:`save_image`.

| input | behaviour |
|---|---|
| 8-bit RGB | used as is |
| greyscale (L), 1-bit, CMYK, YCbCr | converted to 8-bit RGB; ``conversion`` names it |
| palette (P), palette with transparency, LA, RGBA | alpha composited on **black** (the fundus background), then RGB |
| 16-bit integer (I;16) | scaled to 8 bit (value / 256 when any value is above 255) |
| 32-bit integer (I) | scaled by the bit depth of its largest value (:func:`int_divisor`: 8-bit values as is, 16-bit values / 256, ``n``-bit values / 2^(n-8)); ``conversion`` names the divisor (``'I 32-bit->8-bit RGB (value / 65536)'``) |
| EXIF orientation 2-8 | turned upright first (``ImageOps.exif_transpose``); sizes and boxes refer to the upright image, ``conversion`` says ``exif-rotated (orientation N)`` |
| multi-page TIFF / animated file | page 0 is used; a warning names the file and the page count |
| more pixels than the limit (:data:`MAX_PIXELS`, Pillow's decompression-bomb guard) | :class:`ImageSkip` naming the file, its size and the limit |
| a ``sha256`` that does not match the file | :class:`ImageSkip` naming both digests |
| DICOM (``DICM`` at byte 128, any suffix) | :mod:`.dicom`: RGB/YBR/MONOCHROME -> RGB, frame 0; burned-in refused |
| missing, folder, 0 bytes, not an image (HTML, random bytes), truncated | :class:`ImageSkip` with the reason; the file is fully decoded, so a cut file never gives half a picture |

Files are opened by content, not by extension (a PNG called ``.jpg`` is read as a PNG): a DICOM file
(``DICM`` at byte 128) goes to :mod:`.dicom`, everything else to Pillow.

Written images carry no metadata: :func:`save_image` builds a fresh image from the pixel array, so
no EXIF, XMP, GPS, ICC, JPEG COM comment or PNG text chunk of the source can reach the output; and
they appear whole or not at all (written to a temporary name and renamed, :mod:`.atomic`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from fundusexpert_plugin.core.atomic import replacing
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.jsonl import read_text

logger = logging.getLogger(__name__)

#: The one list of image file suffixes (folder listings; content decides how a file is read).
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp', '.webp', '.gif')
#: DICOM suffixes of folder listings; files without a suffix are listed when they are DICOM by content.
DICOM_SUFFIXES = ('.dcm', '.dicom')
#: Pillow's decompression-bomb limit, 89,478,485 pixels (about 89 megapixels, e.g. 11000x8000; a
#: 4288x2848 IDRiD photograph has 12.2): the default of :data:`MAX_PIXELS`.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
#: Pixel limit above which a file is refused as a possible decompression bomb (default
#: :data:`DEFAULT_MAX_PIXELS`). Change it with :func:`set_max_pixels`.
MAX_PIXELS = DEFAULT_MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut file is an error, never half a picture


def set_max_pixels(limit: Optional[int]) -> None:
    """Set the decompression-bomb limit in pixels (``None``: no limit) for this process: the one door of
    every ``--max-image-pixels``. Pillow's own guard (``Image.MAX_IMAGE_PIXELS``, which refuses twice its
    value at ``Image.open``) is raised with a limit above its default (and lifted with ``None``), so a
    raised limit really admits larger files; below the default ours refuses first, naming the limit.

    Raises:
        ValueError: ``limit`` below 1.
    """
    global MAX_PIXELS
    if limit is not None and limit < 1:
        raise ValueError(f'max_pixels {limit}: expected at least 1 pixel (or None: no limit)')
    MAX_PIXELS = limit
    Image.MAX_IMAGE_PIXELS = None if limit is None else max(limit, DEFAULT_MAX_PIXELS)


class ImageSkip(FundusDataError):
    """An image that cannot be used; ``str(exc)`` names the file and the reason, ``reason`` is the
    counted key (``image_missing``, ``image_unreadable``, ``image_too_large``, ``sha256_mismatch``)."""


@dataclass
class LoadedImage:
    """An upright 8-bit RGB photograph.

    Attributes:
        path: the file.
        rgb: np.ndarray[h, w, 3] uint8, RGB order; smaller than the file when ``max_side`` was asked.
        conversion: ``''`` for plain upright RGB, else what was done (``'L->RGB'``, ``'exif-rotated
            (orientation 6)'``); a converted photograph needs an upright copy for training.
        original_size: ``(width, height)`` of the upright full-resolution image, pixels.
        warnings: notes that do not stop the intake (multi-page files).
    """

    path: Path
    rgb: np.ndarray
    conversion: str
    original_size: Tuple[int, int] = (0, 0)
    warnings: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.original_size == (0, 0):
            self.original_size = (self.width, self.height)

    @property
    def width(self) -> int:
        """Width of ``rgb`` in pixels."""
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        """Height of ``rgb`` in pixels."""
        return int(self.rgb.shape[0])

    @property
    def scale(self) -> Tuple[float, float]:
        """``(sx, sy)``: ``rgb`` pixels per original pixel (1.0 at full resolution)."""
        return self.width / self.original_size[0], self.height / self.original_size[1]

    def bgr(self) -> np.ndarray:
        """np.ndarray[H, W, 3] uint8 in BGR order (OpenCV / MMDetection)."""
        return np.ascontiguousarray(self.rgb[:, :, ::-1])


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _open(path: Path) -> Image.Image:
    with open(path, 'rb') as fh:
        head = fh.read(512)
    if not head:
        raise ImageSkip(f'{path}: empty file (0 bytes)', reason='image_unreadable')
    return Image.open(path)


def int_divisor(max_value: int) -> int:
    """The divisor that brings a 32-bit integer (Pillow mode ``I``) photograph to 8 bit, from its own
    largest value: such files (32-bit TIFFs) hold data of any depth, so the container's 32 bits say
    nothing about the scale.

    With ``n`` the number of bits of ``max_value`` (``max_value.bit_length()``): ``n <= 8`` (8-bit data)
    -> 1; ``n <= 16`` (16-bit data) -> 256, as for a 16-bit file; above -> ``2 ** (n - 8)``, so the
    largest value lands in 128-255 (values ``0 .. 255 * 65536`` -> ``/ 65536``). Negative values are
    clipped to 0 after the division.
    """
    bits = max(0, max_value).bit_length()
    return 1 if bits <= 8 else 256 if bits <= 16 else 2 ** (bits - 8)


def _to_rgb(im: Image.Image, notes: List[str]) -> Image.Image:
    mode = im.mode
    if mode == 'RGB':
        return im
    if mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):
        arr = np.asarray(im).astype(np.float64 if mode == 'F' else np.int64)
        if mode == 'I':
            scale = int_divisor(int(arr.max(initial=0)))
            notes.append(f'I 32-bit->8-bit RGB (value / {scale})')
        else:
            scale = 256 if arr.max() > 255 else 1
            notes.append(f'{mode} 16-bit->8-bit RGB' if mode != 'F' else 'F float->8-bit RGB')
        return Image.fromarray((arr // scale).clip(0, 255).astype(np.uint8)).convert('RGB')
    if mode == 'P':
        im = im.convert('RGBA' if 'transparency' in im.info else 'RGB')
        mode = 'P (transparent)' if im.mode == 'RGBA' else 'P'
    if im.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        rgba = im.convert('RGBA')
        black = Image.new('RGBA', rgba.size, (0, 0, 0, 255))
        notes.append(f'{mode}->RGB (alpha on black)')
        return Image.alpha_composite(black, rgba).convert('RGB')
    notes.append(f'{mode}->RGB')
    return im.convert('RGB')


#: Single-channel source modes: Pillow's greyscale modes as :func:`load_image` names them in
#: ``conversion`` (``'L->RGB'``, ``'LA->RGB (alpha on black)'``, ``'I;16 16-bit->8-bit RGB'``,
#: ``'I 32-bit->8-bit RGB (value / 65536)'``, ``'F float->8-bit RGB'``) and the DICOM grey photometric
#: interpretations (``'DICOM MONOCHROME2->RGB'``, :func:`fundusexpert_plugin.core.dicom.read_dicom`). A
#: palette (``P``) image is not counted: its palette may hold colours.
GREYSCALE_MODES = frozenset({'1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F',
                             'MONOCHROME1', 'MONOCHROME2'})


def was_greyscale(conversion: str) -> bool:
    """Whether an intake note (``LoadedImage.conversion``, kept in records as
    ``provenance.stages['image']``) says the photograph was single-channel (greyscale) before it was
    converted to RGB, e.g. ``'exif-rotated (orientation 6); L->RGB'`` or ``'DICOM MONOCHROME2->RGB'``
    -> ``True``; ``''``, ``'CMYK->RGB'``, ``'DICOM RGB'`` -> ``False``. Notes are ``'; '``-separated;
    the mode is the text before ``'->'`` or the first space (after a ``'DICOM '`` prefix)."""
    for note in (conversion or '').split('; '):
        note = note.strip()
        note = note[len('DICOM '):] if note.startswith('DICOM ') else note
        if note.split('->')[0].split(' ')[0] in GREYSCALE_MODES:
            return True
    return False


def load_image(path: Path | str, *, max_side: Optional[int] = None, sha256: Optional[str] = None,
               max_pixels: Optional[int] = -1, accept_burned_in: bool = False) -> LoadedImage:
    """Read one photograph as upright 8-bit RGB (see the module table); ``accept_burned_in``: DICOM only.

    Args:
        path: the file.
        max_side: when given, the returned ``rgb`` is scaled so that its longest side is at most
            this many pixels (JPEGs are decoded in Pillow's draft mode, 1/2..1/8 of the DCT);
            ``original_size`` stays the full upright size. The whole file is still decoded.
        sha256: expected hex digest of the file bytes (checked first).
        max_pixels: decompression-bomb limit; default :data:`MAX_PIXELS`, ``None`` no limit.

    Raises:
        ImageSkip: missing, empty, unreadable or truncated file, too many pixels, wrong digest.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageSkip(f'{path}: is a folder, not an image file', reason='image_unreadable')
    if not path.is_file():
        raise ImageSkip(f'{path}: file not found', reason='image_missing')
    if sha256:
        actual = file_sha256(path)
        if actual.lower() != sha256.lower():
            raise ImageSkip(f'{path}: sha256 {actual} does not match the recorded {sha256}', reason='sha256_mismatch')
    limit = MAX_PIXELS if max_pixels == -1 else max_pixels
    from fundusexpert_plugin.core import dicom
    if dicom.is_dicom(path):
        loaded = dicom.load_dicom_image(path, accept_burned_in=accept_burned_in, max_pixels=limit)
        if max_side and max(loaded.width, loaded.height) > max_side:  # the same downscaling as any photograph
            factor = max_side / max(loaded.width, loaded.height)
            size = (max(1, round(loaded.width * factor)), max(1, round(loaded.height * factor)))
            loaded = LoadedImage(path, _rgb_array(Image.fromarray(loaded.rgb), size), loaded.conversion,
                                 loaded.original_size, loaded.warnings)
        return loaded
    notes: List[str] = []
    found_warnings: List[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            im = _open(path)
        with im:
            w0, h0 = im.size
            if limit is not None and w0 * h0 > limit:
                raise ImageSkip(f'{path}: {w0}x{h0} = {w0 * h0} pixels is above the limit of {limit} pixels '
                                '(decompression-bomb guard); raise the limit (--max-image-pixels) only for a '
                                'trusted file', reason='image_too_large')
            pages = getattr(im, 'n_frames', 1) or 1
            if pages > 1:
                msg = f'{path}: has {pages} pages/frames; only page 0 is used'
                found_warnings.append(msg)
                logger.warning('%s', msg)
            orientation = im.getexif().get(0x0112, 1) or 1
            swap = orientation in (5, 6, 7, 8)
            upright = (h0, w0) if swap else (w0, h0)
            factor = 1.0
            if max_side and max(w0, h0) > max_side:
                factor = max_side / max(w0, h0)
                if im.format == 'JPEG':
                    im.draft(im.mode, (max(1, int(w0 * factor)), max(1, int(h0 * factor))))
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', Image.DecompressionBombWarning)
                im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
                notes.append(f'exif-rotated (orientation {orientation})')
            im = _to_rgb(im, notes)
            target = None
            if factor < 1.0:
                target = (max(1, round(upright[0] * factor)), max(1, round(upright[1] * factor)))
            rgb = _rgb_array(im, target)
    except ImageSkip:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageSkip(f'{path}: {exc}', reason='image_too_large') from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageSkip(f'{path}: unreadable or truncated image ({exc})', reason='image_unreadable') from None
    return LoadedImage(path, rgb, '; '.join(notes), upright, found_warnings)


def _rgb_array(im: Image.Image, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 pixels of an RGB image, downscaled to ``size = (width, height)`` when given.

    The pixels are read through Pillow's Arrow export (a zero-copy view of its 4-byte-per-pixel
    buffer, via pyarrow) and converted by OpenCV, which is several times faster than ``np.array(im)``
    for a multi-megapixel photo. Downscaling uses OpenCV's bilinear filter within a factor of 2 (after
    JPEG draft decoding the factor is always in (0.5, 1]) and pixel-area averaging for stronger
    reductions (it does not alias).
    """
    import cv2
    try:
        import pyarrow as pa
        view = pa.array(im).values.to_numpy(zero_copy_only=True).reshape(im.size[1], im.size[0], 4)
        code = cv2.COLOR_RGBA2RGB
    except (ImportError, TypeError, ValueError, NotImplementedError, AttributeError):
        view, code = np.asarray(im, dtype=np.uint8), None
    if size is not None and size != im.size:
        method = cv2.INTER_LINEAR if size[0] / im.size[0] >= 0.5 else cv2.INTER_AREA
        view = cv2.resize(view, size, interpolation=method)
    if code is not None:
        return cv2.cvtColor(view, code)
    return view if view.flags.writeable else view.copy()


def save_figure(fig, path: Path | str, *, dpi: int = 100) -> Path:
    """Write a matplotlib figure as a PNG with no text chunk (matplotlib adds ``Software`` by default;
    it is removed), atomically (:func:`.atomic.replacing`). The one door for the library's plots.

    Args:
        fig: a ``matplotlib.figure.Figure``.
        path: the ``.png`` file.
        dpi: dots per inch (pixels = inches x dpi).

    Returns:
        ``path``.
    """
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format='png', metadata={'Software': None})
    return Path(path)


def save_image(pixels: np.ndarray | Image.Image, path: Path | str, *, quality: int = 92) -> Path:
    """Write pixels as a fresh metadata-free image (format from the suffix; JPEG at ``quality``).

    The image is rebuilt from the array, so no EXIF, XMP, GPS, ICC profile, JPEG COM comment or
    PNG text chunk of any source image is carried over (an RGB PIL image that carries no ``info`` at
    all, i.e. one made from pixels, is written as is). The file is written under a temporary name
    and renamed into place (:func:`.atomic.replacing`), so a kill never leaves a truncated image under
    ``path``. Returns the path.

    Raises:
        ValueError: a suffix that names no image format Pillow writes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if (suffix in ('.jpg', '.jpeg') and isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
            and pixels.ndim == 3 and pixels.shape[2] == 3):
        with replacing(path) as tmp:
            _write_jpeg(pixels, tmp, quality)
        return path
    image_format = Image.registered_extensions().get(suffix)
    if image_format is None:
        raise ValueError(f'{path}: unknown image suffix {path.suffix!r}; expected e.g. .png or .jpg')
    if isinstance(pixels, Image.Image) and pixels.mode == 'RGB' and not pixels.info:
        fresh = pixels
    else:
        fresh = Image.fromarray(np.ascontiguousarray(np.asarray(pixels).astype(np.uint8)))
    with replacing(path) as tmp:
        if image_format == 'JPEG':
            fresh.save(tmp, format='JPEG', quality=quality)
        else:
            fresh.save(tmp, format=image_format)
    return path


def _write_jpeg(rgb: np.ndarray, path: Path, quality: int) -> None:
    """Encode ``(H, W, 3)`` RGB pixels with OpenCV (the same libjpeg-turbo as Pillow, no array copy into
    a PIL image). The file holds only the JFIF header and the pixels: no EXIF, XMP, ICC or comment."""
    import cv2
    ok, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f'{path}: JPEG encoding failed')
    path.write_bytes(data.tobytes())


def encode_jpeg(pixels: np.ndarray | Image.Image, *, quality: int = 85) -> bytes:
    """JPEG bytes of a fresh metadata-free image built from ``pixels`` (thumbnails, data URIs)."""
    import io
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.asarray(pixels).astype(np.uint8))).save(buf, format='JPEG', quality=quality)
    return buf.getvalue()


def _listed(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES:
        return path.is_file()
    if suffix:
        return False
    from fundusexpert_plugin.core.dicom import is_dicom
    return path.is_file() and is_dicom(path)


def is_image_file(path: Path | str) -> bool:
    """Whether a file is an image by content (any suffix): DICOM (``DICM`` at byte 128) or a format
    Pillow identifies from its header (nothing is decoded). A text file (a list of paths) is not."""
    path = Path(path)
    if not path.is_file():
        return False
    from fundusexpert_plugin.core.dicom import is_dicom
    if is_dicom(path):
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(path):
                return True
    except Image.DecompressionBombError:
        return True  # an image, refused later by load_image with the reason
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return False


def list_images(source: Path | str, *, exclude: Optional[Path | str] = None) -> List[Path]:
    """Images of a folder, of one image file, or of a list file.

    * a folder: recursive, sorted by relative path; suffixes :data:`IMAGE_SUFFIXES` and
      :data:`DICOM_SUFFIXES`, plus files without a suffix that are DICOM by content, as exported by
      many PACS (files with another suffix are not opened); nothing under ``exclude`` (e.g. an
      output folder inside the image folder) is listed;
    * a file that is an image by content (:func:`is_image_file`): that one image;
    * any other file: a list, one path per line, relative to the list's folder; blank lines and
      ``#`` comments ignored; read by :func:`.jsonl.read_text` (UTF-8 or UTF-16 with a BOM).

    Raises:
        FileNotFoundError: the source does not exist, or a folder holds no image.
        FundusDataError: a list file that is not valid text (``file:line: byte offset N is not UTF-8``).
    """
    source = Path(source)
    if source.is_dir():
        skip = _parts_inside(Path(exclude), source) if exclude is not None else None
        found = sorted((p for p in source.rglob('*') if _listed(p)
                        and not (skip and p.relative_to(source).parts[:len(skip)] == skip)),
                       key=lambda p: p.relative_to(source).as_posix())
        if not found:
            raise FileNotFoundError(f'{source}: no image files ({", ".join(IMAGE_SUFFIXES + DICOM_SUFFIXES)}, '
                                    'or DICOM without a suffix)')
        return found
    if source.is_file():
        if is_image_file(source):
            return [source]
        lines = [ln.strip() for ln in read_text(source).splitlines()]
        return [Path(ln) if os.path.isabs(ln) else source.parent / ln for ln in lines if ln and not ln.startswith('#')]
    raise FileNotFoundError(f'image folder or list not found: {source}')


def _parts_inside(inner: Path, folder: Path) -> Optional[Tuple[str, ...]]:
    """Path parts of ``inner`` relative to ``folder`` when it lies inside it (both resolved), else ``None``."""
    inner, outer = inner.resolve(), folder.resolve()
    return inner.relative_to(outer).parts if inner != outer and inner.is_relative_to(outer) else None


def shard_of(key: str, count: int) -> int:
    """Shard (``0 .. count-1``) of an item with this key: the first 8 bytes of the SHA-256 of its
    UTF-8 bytes as a big-endian integer, modulo ``count``.

    The same key lands in the same shard in every process and run (unlike Python's salted
    ``hash``), whatever else is added to or removed from the job; shards are roughly, not exactly,
    balanced (binomial spread around ``len / count``).

    Raises:
        ValueError: ``count < 1``.
    """
    if count < 1:
        raise ValueError(f'{count} shards: need at least 1')
    return int.from_bytes(hashlib.sha256(key.encode('utf-8')).digest()[:8], 'big') % count


def shard(items: Sequence, index: int, count: int, *, key: Callable[[object], str] = str) -> List:
    """The items of shard ``index`` of ``count``: those whose ``key(item)`` falls there by
    :func:`shard_of` (in their order). Stable per item, roughly balanced.

    Raises:
        ValueError: not ``0 <= index < count``.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f'shard {index}/{count}: need 0 <= index < count')
    return [item for item in items if shard_of(key(item), count) == index]
