"""Shared pieces of the dataset readers: images, masks -> box findings, fovea points, the skip log.

Every reader in this package builds its records with :class:`RecordDraft` and runs each item
through :func:`attempt`, so all of them share one behaviour:

* Coordinates are those of :mod:`fundusexpert_plugin.core.geometry`: ``box_px`` is xyxy in
  original-image pixels, x right, y down, x2/y2 exclusive.
* Masks become boxes only through :func:`fundusexpert_plugin.sources.masks.cluster_mask` (DBSCAN,
  official pixel2bbox rule, defaults of the official CLI). A class whose mask has foreground
  pixels but no box after the area/top-k filters is *not* listed in ``annotated_labels`` for that
  image (it would otherwise read as known absent); the case is counted in the log.
* A point annotation (the fovea centre) becomes a box of side ``2 * FOVEA_HALF_SIDE_PX`` centred on
  the point, clipped to the image (ours: the record holds only boxes; downstream code takes the
  fovea as the box centre, see :func:`fundusexpert_plugin.render.chain`).
* Bad input raises :class:`~fundusexpert_plugin.core.record.FundusDataError` naming file, line/row and
  field; with ``lenient=True`` the item is skipped and the message kept in :class:`ConvertLog`.
  Labels that the record schema cannot hold raise :class:`NotRepresentable`: never an error, always
  counted by reason.
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord, parse_record
from fundusexpert_plugin.sources.masks import (PAPER_AREA_THRESHOLD_PX2, PAPER_EPS_PX, PAPER_MAX_BOXES, PAPER_MIN_SAMPLES,
                     cluster_mask)
from fundusexpert_plugin.core.geometry import laterality_from_disc

logger = logging.getLogger(__name__)
T = TypeVar('T')

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp', '.gif')
#: Half side of the box that stands for a point annotation (fovea centre), pixels (ours).
FOVEA_HALF_SIDE_PX = 1.0
#: A box may stick out of the image by this much (label rounding) and is clipped; more is an error.
CLIP_TOLERANCE_PX = 1.0
SEE_TERMS = "see the dataset's terms"


@dataclass(frozen=True)
class SourceInfo:
    """Provenance written into every record of one dataset (``Provenance`` minus the labels)."""

    source_dataset: str
    licence: str
    attribution: str


class NotRepresentable(Exception):
    """The item holds nothing the record schema can represent; the message is the counted reason."""


@dataclass
class ConvertLog:
    """What a conversion left out.

    Attributes:
        skipped: one message per bad item skipped in lenient mode (file, line/row and field named).
        notes: reason -> count of labels or items left out by design (not representable).
    """

    skipped: List[str] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)

    def skip(self, message: str) -> None:
        logger.warning('skipped: %s', message)
        self.skipped.append(message)

    def note(self, reason: str, where: str = '') -> None:
        logger.debug('left out: %s%s', f'{where}: ' if where else '', reason)
        self.notes[reason] += 1

    def summary(self, n_written: int) -> str:
        """Multi-line summary: records written, bad items skipped, labels left out by reason."""
        lines = [f'{n_written} records written; {len(self.skipped)} bad items skipped'
                 + (' (--lenient)' if self.skipped else '')]
        lines += [f'  skipped: {m}' for m in self.skipped]
        lines += [f'  left out ({n}x): {r}' for r, n in sorted(self.notes.items(), key=lambda kv: -kv[1])]
        return '\n'.join(lines)


def attempt(fn: Callable[[], T], *, lenient: bool, log: ConvertLog, where: str = '') -> Optional[T]:
    """Run one item's conversion.

    Returns:
        ``fn()``; ``None`` when the item is not representable (counted in ``log.notes``) or, with
        ``lenient``, when it is bad (message in ``log.skipped``).

    Raises:
        FundusDataError: a bad item when not ``lenient``.
    """
    try:
        return fn()
    except NotRepresentable as exc:
        log.note(str(exc), where)
    except FundusDataError as exc:
        if not lenient:
            raise
        log.skip(str(exc))
    return None


def image_size(path: Path, *, where: str, field_name: str = 'image') -> Tuple[int, int]:
    """``(width, height)`` in pixels from the image header.

    Raises:
        FundusDataError: the file is missing or not a readable image.
    """
    if not path.is_file():
        raise FundusDataError(f'{where}: {field_name}: image not found: {path}')
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise FundusDataError(f'{where}: {field_name}: unreadable image {path} ({exc})') from None


class FileIndex:
    """Files under a folder (recursive), found by name, by stem, or by stem + ``_SUFFIX``.

    Args:
        folder: the folder.
        exts: accepted extensions, lower case with the dot (matched case-insensitively).
        suffixed: also accept ``<stem>_<letters>`` (``IDRiD_01_MA.tif``, ``C0001_EX.png``) for
            ``<stem>`` when no exact stem exists.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """

    def __init__(self, folder: Path | str, exts: Sequence[str] = IMAGE_EXTS, suffixed: bool = False):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f'folder not found: {self.folder}')
        self.suffixed = suffixed
        self._paths = sorted(p for p in self.folder.rglob('*')
                             if p.is_file() and p.suffix.lower() in exts and not p.name.startswith('.'))
        self._by_name: Dict[str, List[Path]] = {}
        self._by_stem: Dict[str, List[Path]] = {}
        self._by_base: Dict[str, List[Path]] = {}  # stem without its '_<letters>' suffix
        for p in self._paths:
            self._by_name.setdefault(p.name, []).append(p)
            self._by_stem.setdefault(p.stem, []).append(p)
            base = re.sub(r'_[A-Za-z]+$', '', p.stem)
            if base != p.stem:
                self._by_base.setdefault(base, []).append(p)

    def paths(self) -> List[Path]:
        """All files, sorted."""
        return list(self._paths)

    def find(self, name: str, *, where: str, field_name: str, required: bool = True) -> Optional[Path]:
        """The file called ``name`` (with or without extension).

        Raises:
            FundusDataError: not found (when ``required``) or ambiguous (several candidates).
        """
        name = str(name).strip()
        hits = self._by_name.get(name) or self._by_stem.get(name) or self._by_stem.get(Path(name).stem)
        if not hits and self.suffixed:
            hits = self._by_base.get(name) or self._by_base.get(Path(name).stem)
        if hits and len(hits) > 1:
            raise FundusDataError(f'{where}: {field_name} = {name!r}: ambiguous, several files match: '
                                  f'{[str(h) for h in hits]}')
        if not hits:
            if required:
                raise FundusDataError(f'{where}: {field_name} = {name!r}: no file of that name under '
                                      f'{self.folder} (extensions {sorted({p.suffix for p in self._paths})})')
            return None
        return hits[0]


def read_mask(path: Path, shape_hw: Tuple[int, int], *, where: str, field_name: str) -> np.ndarray:
    """A mask file as a 2-D array of its values, in original-image pixels.

    Colour masks collapse to the per-pixel maximum over the colour channels (IDRiD draws lesions
    in red ``(255, 0, 0)``); an alpha channel is dropped; palette images keep their indices.

    Returns:
        np.ndarray[H, W], the file's dtype (``uint8`` for ``'1'`` masks, 0/1).

    Raises:
        FundusDataError: missing or unreadable file, or a size other than the image's ``shape_hw``.
    """
    if not path.is_file():
        raise FundusDataError(f'{where}: {field_name}: mask not found: {path}')
    try:
        with Image.open(path) as img:
            img.seek(0)
            if img.mode in ('RGBA', 'LA', 'PA'):
                img = img.convert('RGB' if img.mode == 'RGBA' else 'L')
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FundusDataError(f'{where}: {field_name}: unreadable mask {path} ({exc})') from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.shape != tuple(shape_hw):
        raise FundusDataError(f'{where}: {field_name}: mask {path} is {arr.shape[1]}x{arr.shape[0]} px but '
                              f'the image is {shape_hw[1]}x{shape_hw[0]} px; masks must be in '
                              'original-image pixels')
    return arr


@dataclass(frozen=True)
class MaskBoxParams:
    """Parameters of :func:`~fundusexpert_plugin.sources.masks.cluster_mask` (official CLI defaults).

    Attributes:
        eps_px: DBSCAN radius, original-image pixels (official default 50).
        min_samples: pixels within ``eps_px`` that make a core pixel (official default 10).
        area_threshold_px2: keep a cluster if its official area is above this, px^2 (default 100).
        max_boxes: keep the largest this many per class and image (official default 10).
        mode: ``'fast'`` (linear memory) or ``'paper'`` (scikit-learn DBSCAN).
    """

    eps_px: float = PAPER_EPS_PX
    min_samples: int = PAPER_MIN_SAMPLES
    area_threshold_px2: float = PAPER_AREA_THRESHOLD_PX2
    max_boxes: Optional[int] = PAPER_MAX_BOXES
    mode: str = 'fast'


class RecordDraft:
    """Findings, labels and laterality of one image, validated into a record by :meth:`build`.

    Args:
        record_id: unique id within the dataset.
        image: image path (made absolute; :mod:`fundusexpert_plugin.cli.convert` relativises it).
        where: ``'<file>:<line>'`` or image path, prefixed to every message.

    Raises:
        FundusDataError: the image is missing or unreadable.
    """

    def __init__(self, record_id: str, image: Path, *, where: str):
        self.record_id, self.where = str(record_id), where
        self.image = Path(os.path.abspath(image))
        self.width, self.height = image_size(self.image, where=where)
        self.findings: List[dict] = []
        self.annotated: List[str] = []
        self.image_labels: Dict[str, str] = {}
        self.laterality: Optional[str] = None
        self.laterality_source: Optional[str] = None

    def annotate(self, label: str) -> None:
        """Mark ``label`` as annotated exhaustively in this image (no box = known absent)."""
        label = vocab.resolve_finding(label)
        if label not in self.annotated:
            self.annotated.append(label)

    def add_box(self, label: str, box_px: Sequence[float], *, field_name: str = 'box') -> None:
        """Add one box (xyxy pixels); clipped if it sticks out by at most ``CLIP_TOLERANCE_PX``.

        Raises:
            FundusDataError: the box lies further outside the image.
        """
        x1, y1, x2, y2 = (float(v) for v in box_px)
        tol = CLIP_TOLERANCE_PX
        if x1 < -tol or y1 < -tol or x2 > self.width + tol or y2 > self.height + tol:
            raise FundusDataError(f'{self.where}: {field_name} = {[x1, y1, x2, y2]}: outside the '
                                  f'{self.width}x{self.height} px image by more than {tol} px (xyxy pixels)')
        box = [max(0.0, x1), max(0.0, y1), min(float(self.width), x2), min(float(self.height), y2)]
        self.findings.append({'label': label, 'box_px': box, 'source': 'annotation'})

    def add_point(self, label: str, x: float, y: float, *, field_name: str,
                  half_side_px: float = FOVEA_HALF_SIDE_PX) -> None:
        """Add a point annotation as a ``2 * half_side_px`` box centred on ``(x, y)``, clipped.

        Raises:
            FundusDataError: the point lies outside the image.
        """
        if not (0 <= x <= self.width and 0 <= y <= self.height):
            raise FundusDataError(f'{self.where}: {field_name} = ({x}, {y}): outside the '
                                  f'{self.width}x{self.height} px image (pixels, origin top-left)')
        self.findings.append({'label': label, 'source': 'annotation', 'box_px': [
            max(0.0, x - half_side_px), max(0.0, y - half_side_px),
            min(float(self.width), x + half_side_px), min(float(self.height), y + half_side_px)]})

    def add_mask(self, label: str, foreground: np.ndarray, params: MaskBoxParams, log: ConvertLog, *,
                 exhaustive: bool = True, largest_only: bool = False) -> int:
        """Boxes of one class mask via ``cluster_mask``.

        Args:
            label: finding id or alias.
            foreground: np.ndarray[H, W] bool, original-image pixels.
            params: clustering parameters.
            log: receives a note when foreground pixels yield no box.
            exhaustive: the mask marks every instance of the class (adds it to ``annotated``
                unless all of its clusters were filtered out).
            largest_only: keep only the largest box (one optic disc / cup per eye; ours).

        Returns:
            The number of boxes added.
        """
        result = cluster_mask(foreground, mode=params.mode, eps_px=params.eps_px,
                              min_samples=params.min_samples, area_threshold_px2=params.area_threshold_px2,
                              max_boxes=1 if largest_only else params.max_boxes)
        for box in result.boxes_px.tolist():
            self.findings.append({'label': label, 'box_px': box, 'source': 'annotation'})
        if result.n_foreground_px and not len(result.boxes_px):
            log.note(f'{vocab.resolve_finding(label)}: mask has foreground but no cluster passed the '
                     'area/size filters; class left unannotated for that image', self.where)
        elif exhaustive:
            self.annotate(label)
        return len(result.boxes_px)

    def infer_laterality(self, *, disc_x: Optional[float] = None, fovea_x: Optional[float] = None) -> None:
        """Laterality of a macula-centred photo from the disc (``optic_disc_position``).

        Uses the disc centre ``disc_x`` (or the single optic-disc box) against the fovea ``x``
        when known (disc nasal to the fovea: right of it in a right eye), else against the image
        centre (:func:`~fundusexpert_plugin.core.geometry.laterality_from_disc`). Does nothing
        without exactly one disc.
        """
        if disc_x is None:
            discs = [f['box_px'] for f in self.findings if vocab.canonical_finding(f['label']) == 'optic_disc']
            if len(discs) != 1:
                return
            disc_x = (discs[0][0] + discs[0][2]) / 2.0
        if fovea_x is not None and fovea_x != disc_x:
            self.laterality = 'right' if disc_x > fovea_x else 'left'
        else:
            self.laterality = laterality_from_disc((disc_x, 0.0, disc_x, 0.0), self.width)
        self.laterality_source = 'optic_disc_position'

    def build(self, source: SourceInfo) -> FundusGenRecord:
        """Validate into a record.

        Raises:
            NotRepresentable: no finding, no label and no annotated class.
            FundusDataError: a field fails validation (``where`` and field named).
        """
        if not (self.findings or self.image_labels or self.annotated):
            raise NotRepresentable('image with no representable label or finding: record skipped')
        return parse_record({
            'record_id': self.record_id, 'image': str(self.image),
            'width': self.width, 'height': self.height,
            'laterality': self.laterality, 'laterality_source': self.laterality_source,
            'findings': self.findings, 'image_labels': self.image_labels,
            'provenance': {'source_dataset': source.source_dataset, 'licence': source.licence,
                           'attribution': source.attribution, 'annotated_labels': self.annotated},
        }, where=self.where)
