"""FundusGen records -> detection samples -> COCO json, and the seeded train/val split.

The annotation files themselves (YOLO txt, COCO json, CODRAS jsonl, box CSV, masks) are read by
:mod:`fundusexpert_plugin.sources` (one reader stack, one box rule); the caller passes the records
here. :func:`samples_from_records` keeps image paths relative to one ``image_root`` and boxes in
``box_px`` space (xyxy original-image pixels, x2 exclusive; :mod:`fundusexpert_plugin.core.geometry`)
with finding ids as labels. :func:`to_coco` converts at the edge, once: COCO ``bbox`` is
``[x, y, w, h]`` in pixels, category ids start at 1 (torchvision issue #1530), category names are
finding ids, so mmdet's ``metainfo=dict(classes=...)`` uses the same strings.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from fundusexpert_plugin.core.record import FundusGenRecord
from fundusexpert_plugin.core.vocab import FINDINGS, resolve_finding

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class DetectionSample:
    """One image and its boxes.

    Attributes:
        file_name: image path relative to :attr:`DetectionSet.image_root` (posix separators).
        width, height: image size in pixels.
        labels: finding id of each box.
        boxes_px: xyxy original-image pixels, ``0 <= x1 < x2 <= width``.
    """

    file_name: str
    width: int
    height: int
    labels: Tuple[str, ...] = ()
    boxes_px: Tuple[Tuple[float, float, float, float], ...] = ()


@dataclass
class DetectionSet:
    """Samples of one annotation source.

    Attributes:
        image_root: folder the ``file_name`` of every sample is relative to.
        samples: the images.
        classes: finding ids in training order (vocabulary order of the classes that occur, or the
            order the caller asked for).
        source: the annotation path, for messages.
        dropped: boxes a reader removed, by reason (also logged).
    """

    image_root: Path
    samples: List[DetectionSample]
    classes: Tuple[str, ...]
    source: str = ''
    dropped: Counter = field(default_factory=Counter)


def _vocab_order(labels) -> Tuple[str, ...]:
    order = list(FINDINGS)
    return tuple(sorted(set(labels), key=order.index))


def _finish(root: Path, samples: List[DetectionSample], source: str, dropped: Counter,
            classes: Optional[Sequence[str]]) -> DetectionSet:
    present = [lab for s in samples for lab in s.labels]
    if classes is None:
        classes = _vocab_order(present)
    else:
        classes = tuple(resolve_finding(c, where=f'{source}: classes') for c in classes)
    if not samples:
        raise ValueError(f'{source}: no images found')
    n_boxes = len(present)
    logger.info('%s: %d images, %d boxes, classes %s%s', source, len(samples), n_boxes, classes,
                f'; dropped {dict(dropped)}' if dropped else '')
    return DetectionSet(root, samples, tuple(classes), source, dropped)


def samples_from_records(records: Sequence[FundusGenRecord], classes: Optional[Sequence[str]] = None, *,
                         image_dir: Path | str = '.', source: str = 'records') -> DetectionSet:
    """Records (from any :mod:`fundusexpert_plugin.sources` reader) -> :class:`DetectionSet`.

    Only annotated boxes train a detector: findings with another ``source`` (engine output: detector,
    locator) are left out, and so are boxes of classes outside ``classes`` (as mmdet's
    ``metainfo=dict(classes=...)`` filters categories); both are counted in ``DetectionSet.dropped``.

    Args:
        records: records with ``image`` absolute or relative to ``image_dir``.
        classes: fixed class order (finding ids or aliases); default vocabulary order of those present.
        source: name for messages.

    Returns:
        The set; ``image_root`` is the deepest folder holding every image, ``file_name`` relative to it.

    Raises:
        ValueError: no record, or an unknown class name in ``classes``.
    """
    wanted = None if classes is None else {resolve_finding(c, where=f'{source}: classes') for c in classes}
    dropped: Counter = Counter()
    paths = [Path(os.path.abspath(r.image_path(image_dir))) for r in records]
    root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path(image_dir)
    samples = []
    for p, r in zip(paths, records):
        kept = []
        for f in r.findings:
            if f.source != 'annotation':
                dropped['not an annotation'] += 1
            elif wanted is not None and f.label not in wanted:
                dropped[f'class {f.label} not requested'] += 1
            else:
                kept.append(f)
        samples.append(DetectionSample(p.relative_to(root).as_posix(), r.width, r.height,
                                       tuple(f.label for f in kept), tuple(tuple(f.box_px) for f in kept)))
    return _finish(root, samples, source, dropped, classes)


def split_samples(samples: Sequence[DetectionSample], val_fraction: float, seed: int
                  ) -> Tuple[List[DetectionSample], List[DetectionSample]]:
    """Seeded random train/val split; at least one image on each side.

    Raises:
        ValueError: ``val_fraction`` not in (0, 1) or fewer than 2 samples.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f'`val_split` must be in (0, 1), got {val_fraction}')
    if len(samples) < 2:
        raise ValueError(f'need at least 2 images to split off a validation set, got {len(samples)}')
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = min(len(samples) - 1, max(1, round(len(samples) * val_fraction)))
    val = sorted(order[:n_val].tolist())
    train = sorted(order[n_val:].tolist())
    return [samples[i] for i in train], [samples[i] for i in val]


def to_coco(samples: Sequence[DetectionSample], classes: Sequence[str]) -> dict:
    """Samples -> COCO detection dict (image and annotation ids from 1, ``bbox`` xywh pixels)."""
    cat_id = {name: i + 1 for i, name in enumerate(classes)}
    images, annotations = [], []
    for img_id, s in enumerate(samples, 1):
        images.append(dict(id=img_id, file_name=s.file_name, width=s.width, height=s.height))
        for label, (x1, y1, x2, y2) in zip(s.labels, s.boxes_px):
            annotations.append(dict(id=len(annotations) + 1, image_id=img_id,
                                    category_id=cat_id[label], bbox=[x1, y1, x2 - x1, y2 - y1],
                                    area=(x2 - x1) * (y2 - y1), iscrowd=0))
    return dict(images=images, annotations=annotations,
                categories=[dict(id=i, name=n, supercategory='fundus') for n, i in cat_id.items()])


def write_coco(path, samples: Sequence[DetectionSample], classes: Sequence[str]) -> Path:
    """Write :func:`to_coco` to ``path`` (parents created, UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_coco(samples, classes)), encoding='utf-8')
    return path
