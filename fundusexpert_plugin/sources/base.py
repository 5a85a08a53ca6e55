"""Shared pieces of the dataset readers: images, masks -> box findings, fovea points, the skip log.

Every reader in this package builds its records with :class:`RecordDraft` and runs each item
through :func:`attempt`, so all of them share one behaviour:

* Coordinates are those of :mod:`fundusexpert_plugin.core.geometry`: ``box_px`` is xyxy in
  original-image pixels, x right, y down, x2/y2 exclusive.
* Masks become boxes only through :func:`fundusexpert_plugin.sources.masks.cluster_mask` (DBSCAN,
  official pixel2bbox rule, defaults of the official CLI). ``annotated_labels`` lists a class only
  where its boxes are the complete set for that image: a class whose mask has foreground pixels but
  no box after the area filter (it would otherwise read as known absent), or more clusters than the
  top ``max_boxes`` (paper rule; the boxes kept are not all of them), is *not* listed for that image;
  both cases are counted in the log, the capped one per cluster left out.
* Boxes of annotation files (VOC, COCO, YOLO, box CSV, CODRAS) pass :meth:`RecordDraft.add_box`: an
  exact duplicate (same class, same xyxy box after clipping) of a box already in the record is
  dropped and counted, so no region is counted twice.
* A point annotation (the fovea centre) becomes a box of side 1 disc diameter centred on the point,
  clipped to the image (ours, :data:`~fundusexpert_plugin.core.geometry.FOVEA_BOX_DD`: the fovea is
  about one disc diameter across; the record holds only boxes, and downstream code takes the fovea
  as the box centre, see :func:`fundusexpert_plugin.render.chain`).
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
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from fundusexpert_plugin.core.images import IMAGE_SUFFIXES, LoadedImage
from fundusexpert_plugin.core.record_image import load_checked

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.boxes import CLIP_TOLERANCE_PX, annotation_box, check_numbers  # noqa: F401 (readers)
from fundusexpert_plugin.core.record import FundusDataError, FundusGenRecord, parse_record
from fundusexpert_plugin.sources.masks import (PAPER_AREA_THRESHOLD_PX2, PAPER_EPS_PX, PAPER_MAX_BOXES, PAPER_MIN_SAMPLES,
                     cluster_mask)
from fundusexpert_plugin.core.geometry import fovea_box, fovea_dd_px, laterality_from_disc

logger = logging.getLogger(__name__)
T = TypeVar('T')

#: In :attr:`RecordDraft.incomplete`: a box of unknown class was skipped, so no class is exhaustive.
ALL_CLASSES = '*'

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
    """What a conversion left out, counted by reason.

    Attributes:
        skipped: one message per bad item skipped in lenient mode (file, line/row or JSON path and
            field named), records, boxes and other items alike.
        skipped_records: reason -> number of records skipped (their image or record line unusable).
        skipped_items: reason -> number of boxes, points or labels skipped inside kept records.
        warnings: accepted with a warning (a class id that contradicts its label, a multi-page TIFF).
        notes: reason -> count of labels or items left out by design (not representable).
        lines_read: record lines (or images) the reader looked at, for the empty-input message.
        echo: log every skip and warning as it happens (``False`` for a caller that prints the
            whole log itself, such as ``data validate``, so that each is reported once).
    """

    skipped: List[str] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    skipped_records: Counter = field(default_factory=Counter)
    skipped_items: Counter = field(default_factory=Counter)
    warnings: List[str] = field(default_factory=list)
    lines_read: int = 0
    echo: bool = True

    def skip(self, message: str, reason: Optional[str] = None, kind: str = 'record') -> None:
        """Count one skipped ``kind`` under ``reason``: ``'record'``, or an item inside a kept record
        (``'box'`` for a finding box, ``'item'`` for a label cell, point or laterality)."""
        if self.echo:
            logger.warning('skipped %s: %s', kind, message)
        self.skipped.append(message)
        (self.skipped_records if kind == 'record' else self.skipped_items)[reason or f'invalid_{kind}'] += 1

    def warn(self, message: str) -> None:
        if self.echo:
            logger.warning('%s', message)
        self.warnings.append(message)

    def note(self, reason: str, where: str = '', n: int = 1) -> None:
        """Count ``n`` labels or items left out by design under ``reason`` (``where`` only logged)."""
        logger.debug('left out%s: %s%s', f' ({n}x)' if n != 1 else '', f'{where}: ' if where else '', reason)
        self.notes[reason] += n

    def counts(self) -> Dict[str, Dict[str, int]]:
        """``{'records': {reason: n}, 'boxes/items': {reason: n}}`` of the skips (for run summaries)."""
        return {'records': dict(self.skipped_records), 'boxes/items': dict(self.skipped_items)}

    def summary(self, n_written: int) -> str:
        """Multi-line summary: records written, skips counted by reason, every message, labels left out."""
        n_rec, n_box = sum(self.skipped_records.values()), sum(self.skipped_items.values())
        lines = [f'{n_written} records written; {len(self.skipped)} bad items skipped'
                 + (' (--lenient)' if self.skipped else '')
                 + (f': {n_rec} records, {n_box} boxes/items' if self.skipped else '')]
        lines += [f'  skipped records ({n}x): {r}' for r, n in sorted(self.skipped_records.items())]
        lines += [f'  skipped boxes/items ({n}x): {r}' for r, n in sorted(self.skipped_items.items())]
        lines += [f'  skipped: {m}' for m in self.skipped]
        lines += [f'  warning: {m}' for m in self.warnings]
        lines += [f'  left out ({n}x): {r}' for r, n in sorted(self.notes.items(), key=lambda kv: -kv[1])]
        return '\n'.join(lines)


def attempt(fn: Callable[[], T], *, lenient: bool, log: ConvertLog, where: str = '',
            kind: str = 'record') -> Optional[T]:
    """Run one item's conversion (a record; with ``kind='box'`` or ``'item'``, an item inside a record).

    Returns:
        ``fn()``; ``None`` when the item is not representable (counted in ``log.notes``) or, with
        ``lenient``, when it is bad (message in ``log.skipped``, counted under the error's reason).

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
        log.skip(str(exc), getattr(exc, 'reason', None), kind)
    return None


def image_size(path: Path, *, where: str, field_name: str = 'image', sha256: Optional[str] = None,
               log: Optional[ConvertLog] = None) -> Tuple[int, int]:
    """``(width, height)`` of the upright image, in pixels, through the one image intake
    (:func:`fundusexpert_plugin.core.images.load_image`: opened by content and fully decoded,
    JPEGs in draft mode; EXIF orientation applied, so an EXIF-rotated photo has its upright size).

    Raises:
        FundusDataError: missing, unreadable, truncated or too large file, or a wrong ``sha256``
            (reason ``image_missing`` / ``image_unreadable`` / ...).
    """
    return intake(path, where=where, field_name=field_name, sha256=sha256, log=log).original_size


def intake(path: Path, *, where: str, field_name: str = 'image', sha256: Optional[str] = None,
           log: Optional[ConvertLog] = None) -> LoadedImage:
    """:func:`~fundusexpert_plugin.core.images.load_image` at thumbnail size with the message
    prefixed by ``where``; the intake's warnings go to ``log``."""
    loaded = load_checked(path, where=where, field_name=field_name, sha256=sha256)
    for message in loaded.warnings:
        if log is not None:
            log.warn(f'{where}: {message}')
    return loaded


class FileIndex:
    """Files under a folder (recursive), found by name, by stem, or by stem + ``_SUFFIX``.

    Args:
        folder: the folder.
        exts: accepted extensions, lower case with the dot (matched case-insensitively).
        suffixed: also accept ``<stem>_<letters>`` (``IDRiD_01_MA.tif``, ``C0001_EX.png``) for
            ``<stem>`` when no exact stem exists.
        missing_reason: the counted reason of a required file not found (:meth:`find`); default
            ``image_missing`` for image files, ``file_missing`` for other ``exts``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """

    def __init__(self, folder: Path | str, exts: Sequence[str] = IMAGE_SUFFIXES, suffixed: bool = False,
                 missing_reason: Optional[str] = None):
        self.folder = Path(folder)
        self.missing_reason = missing_reason or ('image_missing' if tuple(exts) == IMAGE_SUFFIXES else 'file_missing')
        if not self.folder.is_dir():
            raise FileNotFoundError(f'folder not found: {self.folder}')
        self.suffixed = suffixed
        self._exts = tuple(exts)
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

    def unmatched(self, stems: Iterable[str], *, exclude: Iterable[Path] = ()) -> List[Path]:
        """Files that no name of ``stems`` (photo file stems) finds: their stem, and when ``suffixed``
        their stem without the ``_<letters>`` suffix, is none of them; ``exclude`` (e.g. a class
        file) is left out. Sorted."""
        stems = set(stems)
        skip = {Path(p).resolve() for p in exclude}
        return [p for p in self._paths if p.stem not in stems and p.resolve() not in skip
                and not (self.suffixed and re.sub(r'_[A-Za-z]+$', '', p.stem) in stems)]

    def find(self, name: str, *, where: str, field_name: str, required: bool = True) -> Optional[Path]:
        """The file called ``name`` (with or without extension).

        Raises:
            FundusDataError: not found (when ``required``; reason :attr:`missing_reason`) or ambiguous
                (several candidates).
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
                held = (f'extensions {sorted({p.suffix for p in self._paths})}' if self._paths else
                        f'it holds no file ending in {", ".join(sorted(self._exts))}')
                raise FundusDataError(f'{where}: {field_name} = {name!r}: no file of that name under '
                                      f'{self.folder} ({held})', reason=self.missing_reason)
            return None
        return hits[0]


#: Pillow modes whose pixel values are read as they are (grey, 16/32-bit, float, colour);
#: ``'LA'`` drops its alpha, any other mode (palette ``'P'``/``'PA'``, ``'RGBA'``, ``'CMYK'``,
#: ``'YCbCr'`` ...) is converted to ``'RGB'`` first.
MASK_MODES_AS_READ = ('1', 'L', 'I', 'I;16', 'I;16L', 'I;16B', 'I;16N', 'F', 'RGB')


def read_mask(path: Path, shape_hw: Tuple[int, int], *, where: str, field_name: str) -> np.ndarray:
    """A mask file as a 2-D array of its values, in original-image pixels.

    Values are what the pixels show, not how the file codes them: a palette (``'P'``, ``'PA'``)
    mask is read through its palette colours (Pillow ``convert('RGB')``), as are ``'RGBA'``,
    ``'CMYK'`` and the other colour modes (:data:`MASK_MODES_AS_READ`), so a REFUGE mask saved with
    palette index 0 = white reads 255 (background), not 0 (the Idiap bob.ip.binseg REFUGE loader
    likewise converts masks to grey through RGB before thresholding). Colour masks then collapse to
    the per-pixel maximum over the colour channels (IDRiD draws lesions in red ``(255, 0, 0)``); an
    alpha channel is dropped (``'LA'`` -> ``'L'``).

    Returns:
        np.ndarray[H, W], the file's dtype (``uint8`` for ``'1'`` masks, 0/1).

    Raises:
        FundusDataError: missing or unreadable file, or a size other than the image's ``shape_hw``
            (reasons ``mask_missing``, ``mask_unreadable``, ``mask_size_mismatch``).
    """
    if not path.is_file():
        raise FundusDataError(f'{where}: {field_name}: mask not found: {path}', reason='mask_missing')
    try:
        with Image.open(path) as img:
            img.seek(0)
            if img.mode not in MASK_MODES_AS_READ:
                img = img.convert('L' if img.mode == 'LA' else 'RGB')
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FundusDataError(f'{where}: {field_name}: unreadable mask {path} ({exc})',
                              reason='mask_unreadable') from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.shape != tuple(shape_hw):
        raise FundusDataError(f'{where}: {field_name}: mask {path} is {arr.shape[1]}x{arr.shape[0]} px but '
                              f'the image is {shape_hw[1]}x{shape_hw[0]} px; masks must be in '
                              'original-image pixels', reason='mask_size_mismatch')
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
        lenient, log: with ``lenient``, a bad box, point, label cell or mask run through
            :meth:`item` is skipped and counted in ``log`` (kind ``'box'`` for a finding box,
            ``'item'`` otherwise) and the record keeps its good items; without, it raises. The image
            intake's warnings go to ``log`` too.
        sha256: expected digest of the image file (checked by the intake).

    Raises:
        FundusDataError: the image is missing, unreadable or has the wrong digest.
    """

    def __init__(self, record_id: str, image: Path, *, where: str, lenient: bool = False,
                 log: Optional[ConvertLog] = None, sha256: Optional[str] = None):
        self.record_id, self.where = str(record_id), where
        self.lenient, self.log = lenient, log if log is not None else ConvertLog()
        self.image = Path(os.path.abspath(image))
        self.sha256 = sha256
        loaded = intake(self.image, where=where, sha256=sha256, log=self.log)
        self.width, self.height = loaded.original_size
        self.conversion = loaded.conversion
        self.findings: List[dict] = []
        self.annotated: List[str] = []
        self.image_labels: Dict[str, str] = {}
        self.laterality: Optional[str] = None
        self.laterality_source: Optional[str] = None
        self.incomplete: set = set()
        #: optic-disc centre ``(x, y)`` pixels when the source gives it as a point (IDRiD): sizes fovea boxes
        self.disc_centre_px: Optional[Tuple[float, float]] = None
        self._points: List[Tuple[dict, float, float]] = []
        self._boxes_added: set = set()  # (finding id, xyxy) of add_box, for the duplicate rule
        #: mask clusters left out beyond ``--max-boxes``, per finding id: ``provenance.region_counts``
        self.regions_left_out: Counter = Counter()

    def item(self, fn: Callable[[], T], where: str = '', *, label: object = False) -> Optional[T]:
        """Run one box/point/label of this record: a lenient skip counts as kind ``'box'`` (when
        ``label`` is given) or ``'item'`` (a label cell, laterality, point), in ``log.skipped_items``.

        ``label`` names the finding class of a box item (id, alias or the raw value read). When the
        item is skipped, that class is no longer annotated exhaustively for this image: :meth:`build`
        leaves it out of ``annotated_labels``, so its absence is never claimed. A skipped box whose
        class cannot be told (``label`` ``None`` or unknown) leaves *no* class exhaustive. The default
        ``False`` marks an item that is not a finding box (a grade, a laterality, a point).
        """
        done = attempt(lambda: (fn(),), lenient=self.lenient, log=self.log, where=where or self.where,
                       kind='item' if label is False else 'box')
        if done is None:
            if label is not False:
                self.incomplete.add(vocab.canonical_finding(label) or ALL_CLASSES if isinstance(label, str)
                                    else ALL_CLASSES)
            return None
        return done[0]

    def annotate(self, label: str) -> None:
        """Mark ``label`` as annotated exhaustively in this image (no box = known absent)."""
        label = vocab.resolve_finding(label)
        if label not in self.annotated:
            self.annotated.append(label)

    def add_box(self, label: str, box_px: Sequence[float], *, field_name: str = 'box',
                label_field: Optional[str] = None, where: Optional[str] = None) -> None:
        """Add one box (xyxy pixels, JSON numbers) of finding ``label`` (id or alias).

        ``where`` names the box's own line or row in messages (default: the record's ``where``).

        Duplicate rule (the same for every reader, ours): a box of the same finding class (aliases
        resolved) with the same xyxy coordinates after clipping as a box already added is the same
        region annotated twice; it is not added (it would be counted twice, "2 regions") and is
        counted in ``log.notes``. The class keeps its annotated state.

        Out-of-image rule (the same for every reader): a box that sticks out of the image by at most
        ``CLIP_TOLERANCE_PX`` (label rounding) is clipped; further out, inverted, zero-area, NaN or
        infinite boxes are refused: an error in strict mode, one counted skip in lenient mode.

        Raises:
            FundusDataError: reasons ``unknown_label``, ``box_not_numbers``, ``box_not_finite``,
                ``box_outside_image``, ``box_empty_or_inverted``.
        """
        label_field = label_field or f'{field_name}: label'
        where = where or self.where
        if not isinstance(label, str) or not label.strip():
            raise FundusDataError(f'{where}: {label_field} = {label!r}: missing label', reason='missing_label')
        if vocab.canonical_finding(label) is None:
            try:
                vocab.resolve_finding(label, where=f'{where}: {label_field}')
            except ValueError as exc:
                raise FundusDataError(str(exc), reason='unknown_label') from None
        box = annotation_box(box_px, self.width, self.height, where=where, field_name=field_name)
        key = (vocab.resolve_finding(label), tuple(box))
        if key in self._boxes_added:
            self.log.note(f'{key[0]}: exact duplicate box (same class, same xyxy)', where)
            return
        self._boxes_added.add(key)
        self.findings.append({'label': label, 'box_px': box, 'source': 'annotation'})

    def add_point(self, label: str, x: float, y: float, *, field_name: str, where: Optional[str] = None) -> None:
        """Add a fovea centre point ``(x, y)`` (pixels, origin top-left) as a fovea box.

        The box (:func:`~fundusexpert_plugin.core.geometry.fovea_box`, side 1 DD centred on the point,
        clipped) is sized in :meth:`build`, once the record's disc is known
        (:func:`~fundusexpert_plugin.core.geometry.fovea_dd_px`: the disc box, else the disc-centre point
        :attr:`disc_centre_px` and the prior's distance, else a fraction of the image width).
        ``where`` names the point's own line or row in messages (default: the record's ``where``).

        Raises:
            FundusDataError: the point lies outside the image (reason ``point_outside_image``).
        """
        if not (0 <= x <= self.width and 0 <= y <= self.height):
            raise FundusDataError(f'{where or self.where}: {field_name} = ({x}, {y}): outside the '
                                  f'{self.width}x{self.height} px image (pixels, origin top-left)',
                                  reason='point_outside_image')
        finding = {'label': label, 'source': 'annotation', 'box_px': None}
        self.findings.append(finding)
        self._points.append((finding, float(x), float(y)))

    def _size_points(self) -> None:
        """Give every point finding its fovea box (:meth:`add_point`)."""
        discs = [f['box_px'] for f in self.findings
                 if f['box_px'] is not None and vocab.canonical_finding(f['label']) == 'optic_disc']
        disc = max(discs, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if discs else None
        for finding, x, y in self._points:
            dd = fovea_dd_px(self.width, disc_box_px=disc, disc_centre_px=self.disc_centre_px, fovea_px=(x, y))
            finding['box_px'] = list(fovea_box(x, y, self.width, self.height, dd))
        self._points.clear()

    def add_mask(self, label: str, foreground: np.ndarray, params: MaskBoxParams, log: ConvertLog, *,
                 exhaustive: bool = True, largest_only: bool = False) -> int:
        """Boxes of one class mask via ``cluster_mask`` (xyxy original-image pixels, largest first).

        Args:
            label: finding id or alias.
            foreground: np.ndarray[H, W] bool, original-image pixels.
            params: clustering parameters.
            log: receives a note when foreground pixels yield no box, and one per cluster left out
                beyond ``params.max_boxes`` or, with ``largest_only``, beyond the largest.
            exhaustive: the mask marks every instance of the class: adds it to ``annotated``
                when the boxes kept are the complete set, i.e. not when all of its clusters were
                filtered out (absence would be claimed) nor when clusters beyond the top
                ``params.max_boxes`` (paper rule, ``sources/GRADES.md``) were left out.
            largest_only: keep only the largest box (one optic disc / cup per eye; ours). The
                smaller clusters are fragments of that one structure: counted, and the class stays
                annotated.

        Returns:
            The number of boxes added.
        """
        result = cluster_mask(foreground, mode=params.mode, eps_px=params.eps_px,
                              min_samples=params.min_samples, area_threshold_px2=params.area_threshold_px2,
                              max_boxes=1 if largest_only else params.max_boxes)
        for box in result.boxes_px.tolist():
            self.findings.append({'label': label, 'box_px': box, 'source': 'annotation'})
        name = vocab.resolve_finding(label)
        if result.n_dropped_topk and not largest_only:
            self.regions_left_out[name] += int(result.n_dropped_topk)
        if result.n_dropped_topk:
            log.note(f'{name}: smaller mask cluster left out (one per eye, the largest kept)' if largest_only else
                     f'{name}: mask cluster beyond the largest {params.max_boxes} (--max-boxes); '
                     'class not listed as annotated for that image', self.where, n=result.n_dropped_topk)
        if result.n_foreground_px and not len(result.boxes_px):
            log.note(f'{name}: mask has foreground but no cluster passed the '
                     'area/size filters; class left unannotated for that image', self.where)
        elif exhaustive and (largest_only or not result.n_dropped_topk):
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

    def _region_counts(self) -> Dict[str, int]:
        """Boxes kept plus mask clusters left out, per finding id that lost some (``region_counts``)."""
        kept = Counter(vocab.canonical_finding(f['label']) for f in self.findings)
        return {label: kept[label] + n for label, n in self.regions_left_out.items()}

    def build(self, source: SourceInfo) -> FundusGenRecord:
        """Validate into a record.

        Raises:
            NotRepresentable: no finding, no label, no annotated class and no laterality.
            FundusDataError: a field fails validation (``where`` and field named).
        """
        self._size_points()
        annotated = [] if ALL_CLASSES in self.incomplete else [a for a in self.annotated if a not in self.incomplete]
        for label in self.annotated:
            if label not in annotated:
                self.log.note(f'{label} left unannotated: a box of the image was skipped (absence not claimed)',
                              self.where)
        if not (self.findings or self.image_labels or annotated or self.laterality):
            raise NotRepresentable('image with no representable label or finding: record skipped')
        return parse_record({
            'record_id': self.record_id, 'image': str(self.image),
            'width': self.width, 'height': self.height,
            'laterality': self.laterality, 'laterality_source': self.laterality_source,
            'findings': self.findings, 'image_labels': self.image_labels,
            **({'sha256': self.sha256} if self.sha256 else {}),
            'provenance': {'source_dataset': source.source_dataset, 'licence': source.licence,
                           'attribution': source.attribution, 'annotated_labels': annotated,
                           'stages': {'image': self.conversion} if self.conversion else {},
                           **({'region_counts': self._region_counts()} if self.regions_left_out else {})},
        }, where=self.where)


def path_record_id(name: str, base: Path | str) -> str:
    """Record id of an image named by path in an annotation file (box CSV, label CSV, CODRAS jsonl,
    COCO ``file_name``) when the file gives none: the path relative to ``base`` (the folder relative
    names are resolved against), ``/``-separated, extension kept, so ``a.tif`` and ``a.webp`` never
    collide (``images\\a.jpg`` -> ``'images/a.jpg'``). An absolute name inside ``base`` gives the same
    id as its relative spelling (``/data/set/a.jpg`` with base ``/data/set`` -> ``'a.jpg'``), so no
    local folder ends up in the id; a file outside ``base`` (``--allow-outside-root``) gets its
    ``../`` path from ``base``. Purely lexical: nothing is read."""
    text = name.strip().replace('\\', '/')
    base = Path(os.path.abspath(base))
    path = Path(os.path.normpath(text if os.path.isabs(text) else base / text))
    if path == base or base in path.parents:
        return path.relative_to(base).as_posix()
    return Path(os.path.relpath(path, base)).as_posix()


def check_unique_id(seen: Dict[str, str], record_id: str, where: str) -> None:
    """Refuse a record id given before; ``seen`` maps id -> ``'<file>:<line>'`` of its first use.

    Raises:
        FundusDataError: naming both places (reason ``duplicate_id``).
    """
    if record_id in seen:
        raise FundusDataError(f'{where}: record_id {record_id!r} already given at {seen[record_id]}; ids must be '
                              'unique within a dataset', reason='duplicate_id')
    seen[record_id] = where


def check_annotations_matched(annotations: FileIndex, photos: Iterable[Path], what: str, *, lenient: bool,
                              log: ConvertLog, exclude: Iterable[Path] = ()) -> None:
    """Every annotation file of a folder layout names a photo (ours; the rule a COCO ``image_id`` and a
    table row follow): a mask or label file whose stem is no photo's (a renamed or missing photo, a
    ``.png``/``.jpg`` stem mismatch) would lose its labels without a word.

    Args:
        annotations: the index of the annotation files (:meth:`FileIndex.unmatched`).
        photos: the photo files converted (their stems are matched).
        what: the files' kind for the message (``'YOLO label file'``, ``'EX mask'``).
        exclude: files of the folder that are no annotation (a YOLO class-name file).

    Raises:
        FundusDataError: ``'<file>: <what> for no photo: no image named <stem> ...'`` for the first
            such file (reason ``'annotation_without_image'``), unless ``lenient``; lenient: each is
            one skipped record (``log.skipped_records``).
    """
    for path in annotations.unmatched((p.stem for p in photos), exclude=exclude):
        err = FundusDataError(f'{path}: {what} for no photo: no image named {path.stem!r} among the photos '
                              f'converted (its labels would be lost; --lenient skips and counts it)',
                              reason='annotation_without_image')
        if not lenient:
            raise err
        log.skip(str(err), err.reason)


def require_records(n_kept: int, source: Path | str, log: ConvertLog) -> None:
    """An input that yields no record is an error, also in lenient mode.

    Raises:
        FundusDataError: ``'<source>: read N lines/items, kept no record (reasons)'``.
    """
    if n_kept:
        return
    reasons = {**log.skipped_records, **{f'box/item: {k}': v for k, v in log.skipped_items.items()}}
    why = f'; skipped: {dict(sorted(reasons.items()))}; first: {log.skipped[0]}' if log.skipped else \
        ('; the input is empty' if not log.lines_read else
         f'; left out: {dict(sorted(log.notes.items()))}' if log.notes else '')
    raise FundusDataError(f'{source}: read {log.lines_read} lines/items, kept no record{why}', reason='empty_input')
