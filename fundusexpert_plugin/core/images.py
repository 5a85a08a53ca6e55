"""Reading photographs for the engine: one defined behaviour for every kind of odd file.

| input | behaviour |
|---|---|
| 8-bit RGB | used as is |
| greyscale (L), palette (P), RGBA / LA, CMYK, 16-bit (I;16, I) | converted to 8-bit RGB (alpha dropped; 16-bit scaled by 1/256); ``conversion`` names it |
| EXIF orientation tag 2-8 | rotated/flipped upright first (``ImageOps.exif_transpose``); sizes and boxes refer to the upright image |
| DICOM (``DICM`` at byte 128, any suffix) | :mod:`.dicom`: RGB/YBR/MONOCHROME -> RGB, frame 0; burned-in refused |
| missing, unreadable, truncated | :class:`ImageSkip` with the reason |
| a folder with no image | :class:`FileNotFoundError` |

EXIF and other metadata are never copied: the engine writes records only, and the builder's drawn
copies are re-encoded from pixels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp', '.webp')


class ImageSkip(Exception):
    """An image the engine cannot use; ``str(exc)`` is the reason recorded in the run summary."""


@dataclass
class LoadedImage:
    """An upright 8-bit RGB photograph.

    Attributes:
        path: the file.
        rgb: np.ndarray[H, W, 3] uint8, RGB order.
        conversion: ``''`` for plain RGB, else what was done (``'greyscale->RGB'``, ``'exif-rotated'``).
    """

    path: Path
    rgb: np.ndarray
    conversion: str

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.rgb.shape[0])

    def bgr(self) -> np.ndarray:
        """np.ndarray[H, W, 3] uint8 in BGR order (OpenCV / MMDetection)."""
        return np.ascontiguousarray(self.rgb[:, :, ::-1])


def load_image(path: Path | str, *, accept_burned_in: bool = False) -> LoadedImage:
    """Read one photograph as upright 8-bit RGB (see the module table); ``accept_burned_in``: DICOM only.

    Raises:
        ImageSkip: missing, unreadable or truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageSkip(f'{path}: file not found')
    from fundusexpert_plugin.core import dicom
    if dicom.is_dicom(path):
        return dicom.load_dicom_image(path, accept_burned_in=accept_burned_in)
    notes: List[str] = []
    try:
        with Image.open(path) as im:
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            if orientation not in (1, None):
                im = ImageOps.exif_transpose(im)
                notes.append(f'exif-rotated (orientation {orientation})')
            mode = im.mode
            if mode in ('I;16', 'I;16B', 'I;16L', 'I'):
                arr = np.asarray(im, dtype=np.uint32)
                scale = 256 if arr.max() > 255 else 1
                im = Image.fromarray((arr // scale).clip(0, 255).astype(np.uint8)).convert('RGB')
                notes.append(f'{mode} 16-bit->8-bit RGB')
            elif mode != 'RGB':
                im = im.convert('RGB')
                notes.append(f'{mode}->RGB')
            rgb = np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageSkip(f'{path}: unreadable or truncated image ({exc})') from None
    return LoadedImage(path, rgb, '; '.join(notes))


def list_images(source: Path | str) -> List[Path]:
    """Images of a folder (recursive, sorted by relative path) or of a list file (one path per line,
    relative to the list's folder; blank lines and ``#`` comments ignored).

    Raises:
        FileNotFoundError: the source does not exist, or a folder holds no image.
    """
    source = Path(source)
    if source.is_dir():
        found = sorted((p for p in source.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=lambda p: p.relative_to(source).as_posix())
        if not found:
            raise FileNotFoundError(f'{source}: no image files ({", ".join(IMAGE_SUFFIXES)})')
        return found
    if source.is_file():
        lines = [ln.strip() for ln in source.read_text(encoding='utf-8').splitlines()]
        return [Path(ln) if os.path.isabs(ln) else source.parent / ln for ln in lines if ln and not ln.startswith('#')]
    raise FileNotFoundError(f'image folder or list not found: {source}')


def shard(items: Sequence, index: int, count: int) -> List:
    """Every ``count``-th item starting at ``index`` (round-robin: shards differ by at most one item).

    Raises:
        ValueError: not ``0 <= index < count``.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f'shard {index}/{count}: need 0 <= index < count')
    return list(items[index::count])
