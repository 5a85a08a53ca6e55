"""Detection annotations (YOLO txt, COCO json, IDRiD/CODRAS jsonl) -> one sample list -> COCO json.

Every reader returns a :class:`DetectionSet`: image paths relative to one ``image_root`` plus boxes
in ``box_px`` space (xyxy original-image pixels, x2 exclusive; :mod:`fundusexpert_plugin.core.geometry`)
with labels mapped to vocabulary finding ids (``haemorrhage`` -> ``haemorrhages``;
:func:`fundusexpert_plugin.core.vocab.resolve_finding`). :func:`to_coco` converts at the edge, once:
COCO ``bbox`` is ``[x, y, w, h]`` in pixels, category ids start at 1 (torchvision issue #1530),
category names are finding ids, so mmdet's ``metainfo=dict(classes=...)`` uses the same strings.

Formats:
    * ``yolo``: a labels folder with ``classes.names`` (or ``classes.txt``), one class name per line,
      and ``<stem>.txt`` files of ``class cx cy w h`` normalised to the image size; images (any of
      .jpg .jpeg .png .tif .tiff .bmp) in the images folder, matched by stem. An image without a
      label file has no objects. Image sizes are read from the file headers (Pillow).
    * ``coco``: a COCO detection json; ``file_name`` relative to the images folder.
    * ``codras``: the ``annotations.jsonl`` of the bundled sample (CODRAS boxes of IDRiD photographs): per line ``image``
      (relative to the images root, default the jsonl's folder), ``width``, ``height`` and
      ``annotations: [{label, bbox_xyxy}]`` in absolute pixels.
    * ``records``: a FundusGen records jsonl written by ``fundusexpert convert`` (any reader: DDR
      lesion masks or boxes, IDRiD segmentation, ...): ``image`` relative to the jsonl's folder (or
      absolute), ``width``, ``height`` and ``findings[].box_px``; only ``source='annotation'`` boxes
      are used (never engine output).
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fundusexpert_plugin.core.geometry import check_box_px
from fundusexpert_plugin.core.vocab import FINDINGS, resolve_finding

logger = logging.getLogger(__name__)

FORMATS = ('yolo', 'coco', 'codras', 'records')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp')


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
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise ValueError(f'{source}: labels {unknown} are not in the requested classes {classes}')
    if not samples:
        raise ValueError(f'{source}: no images found')
    n_boxes = len(present)
    logger.info('%s: %d images, %d boxes, classes %s%s', source, len(samples), n_boxes, classes,
                f'; dropped {dict(dropped)}' if dropped else '')
    return DetectionSet(root, samples, tuple(classes), source, dropped)


def _find_image(folder: Path, stem: str) -> Optional[Path]:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / (stem + suffix), folder / (stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def read_yolo(labels_dir, images_dir, classes: Optional[Sequence[str]] = None) -> DetectionSet:
    """YOLO labels folder + images folder -> :class:`DetectionSet` (boxes clipped to the image).

    Raises:
        FileNotFoundError: a folder or ``classes.names`` is missing.
        ValueError: a malformed line (file and line named), a class index outside ``classes.names``,
            an unknown class name.
    """
    from PIL import Image

    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    for folder in (labels_dir, images_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f'YOLO folder not found: {folder}')
    names_file = next((labels_dir / n for n in ('classes.names', 'classes.txt')
                       if (labels_dir / n).is_file()), None)
    if names_file is None:
        raise FileNotFoundError(f'{labels_dir}: no classes.names or classes.txt (one class per line)')
    names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    ids = [resolve_finding(n, where=f'{names_file}:{i + 1}') for i, n in enumerate(names)]
    dropped: Counter = Counter()
    samples = []
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for image in images:
        with Image.open(image) as im:
            width, height = im.size
        label_file = labels_dir / (image.stem + '.txt')
        labels, boxes = [], []
        lines = label_file.read_text().splitlines() if label_file.is_file() else []
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f'{label_file}:{line_no}'
            parts = line.split()
            try:
                cls, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
            except (ValueError, IndexError):
                raise ValueError(f'{where}: {line!r}: expected "class cx cy w h" (normalised 0-1)')
            if len(parts) != 5 or not 0 <= cls < len(ids):
                raise ValueError(f'{where}: {line!r}: expected 5 fields with class in 0..{len(ids) - 1} '
                                 f'({names_file.name}: {names})')
            x1, y1 = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
            x2, y2 = min(float(width), (cx + w / 2) * width), min(float(height), (cy + h / 2) * height)
            if x2 <= x1 or y2 <= y1:
                dropped['empty box after clipping'] += 1
                logger.warning('%s: box %s is empty after clipping to %dx%d; dropped', where,
                               parts[1:], width, height)
                continue
            labels.append(ids[cls])
            boxes.append((x1, y1, x2, y2))
        samples.append(DetectionSample(image.name, width, height, tuple(labels), tuple(boxes)))
    return _finish(images_dir, samples, str(labels_dir), dropped, classes)


def read_codras(jsonl_path, images_root=None, classes: Optional[Sequence[str]] = None
                ) -> DetectionSet:
    """IDRiD/CODRAS ``annotations.jsonl`` -> :class:`DetectionSet`.

    Args:
        jsonl_path: the jsonl file.
        images_root: folder the ``image`` field is relative to; default the jsonl's folder. When
            ``image`` is not found there, ``images_root / basename(image)`` is tried (so the images
            folder itself may be given).
        classes: optional fixed class order.

    Raises:
        FileNotFoundError: the jsonl or an image (paths tried are listed).
        ValueError: bad json, a missing field, a bad box (file, line and field path named).
    """
    path = Path(jsonl_path)
    if not path.is_file():
        raise FileNotFoundError(f'annotations file not found: {path}')
    root = Path(images_root) if images_root is not None else path.parent
    samples = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f'{path}:{line_no}'
        try:
            rec = json.loads(line)
            image, width, height = rec['image'], int(rec['width']), int(rec['height'])
            anns = rec.get('annotations', [])
        except json.JSONDecodeError as exc:
            raise ValueError(f'{where}: not valid json ({exc})')
        except KeyError as exc:
            raise ValueError(f'{where}: missing field {exc.args[0]!r}; expected image, width, height, '
                             'annotations')
        where = f"{where}: record {rec.get('codras_id', image)!r}"
        tried = [root / image, root / os.path.basename(image)]
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f'{where}: image not found; tried {[str(p) for p in tried]}')
        labels, boxes = [], []
        for k, ann in enumerate(anns):
            if 'label' not in ann or 'bbox_xyxy' not in ann:
                raise ValueError(f'{where}: annotations[{k}]: expected fields label and bbox_xyxy')
            labels.append(resolve_finding(ann['label'], where=f'{where}: annotations[{k}].label'))
            boxes.append(check_box_px(ann['bbox_xyxy'], width, height,
                                      where=f'{where}: annotations[{k}].bbox_xyxy'))
        name = found.relative_to(root).as_posix() if found.is_relative_to(root) else str(found)
        samples.append(DetectionSample(name, width, height,
                                       tuple(labels), tuple(boxes)))
    return _finish(root, samples, str(path), Counter(), classes)


def read_coco(json_path, images_root, classes: Optional[Sequence[str]] = None) -> DetectionSet:
    """COCO detection json -> :class:`DetectionSet` (``bbox`` xywh -> xyxy).

    Raises:
        FileNotFoundError: the json or an image.
        ValueError: a missing key, an unknown category name, a bad box.
    """
    path, root = Path(json_path), Path(images_root)
    if not path.is_file():
        raise FileNotFoundError(f'COCO json not found: {path}')
    data = json.loads(path.read_text())
    try:
        cats = {c['id']: resolve_finding(c['name'], where=f"{path}: categories[id={c['id']}].name")
                for c in data['categories']}
        by_image: Dict[int, list] = {img['id']: [] for img in data['images']}
        for k, ann in enumerate(data.get('annotations', [])):
            by_image[ann['image_id']].append((k, ann))
        samples = []
        for img in data['images']:
            if not (root / img['file_name']).is_file():
                raise FileNotFoundError(f"{path}: images[id={img['id']}]: {root / img['file_name']} "
                                        'not found')
            labels, boxes = [], []
            for k, ann in by_image[img['id']]:
                x, y, w, h = ann['bbox']
                labels.append(cats[ann['category_id']])
                boxes.append(check_box_px((x, y, x + w, y + h), img['width'], img['height'],
                                          where=f'{path}: annotations[{k}].bbox (as xyxy)'))
            samples.append(DetectionSample(img['file_name'], int(img['width']), int(img['height']),
                                           tuple(labels), tuple(boxes)))
    except KeyError as exc:
        raise ValueError(f'{path}: missing key {exc.args[0]!r} (COCO detection format expected)')
    return _finish(root, samples, str(path), Counter(), classes)


def read_records_jsonl(jsonl_path, images_root=None, classes: Optional[Sequence[str]] = None) -> DetectionSet:
    """FundusGen records jsonl (``fundusexpert convert ... --out``) -> :class:`DetectionSet`.

    Args:
        jsonl_path: the records file.
        images_root: folder relative ``image`` paths are resolved against; default the jsonl's folder.
        classes: optional fixed class order; boxes of other classes are dropped and counted.

    Raises:
        FileNotFoundError: the jsonl or an image is missing.
        FundusDataError: an invalid record (file:line, record and field named).
    """
    from fundusexpert_plugin.core.record import read_records
    path = Path(jsonl_path)
    root = Path(images_root) if images_root is not None else path.parent
    wanted = None if classes is None else {resolve_finding(c, where=f'{path}: classes') for c in classes}
    samples, dropped = [], Counter()
    for rec in read_records(path):
        image = rec.image_path(root)
        if not image.is_file():
            raise FileNotFoundError(f'{path}: record {rec.record_id!r}: image not found: {image}')
        labels, boxes = [], []
        for f in rec.findings:
            if f.source != 'annotation':
                dropped['not an annotation'] += 1
            elif wanted is not None and f.label not in wanted:
                dropped[f'class {f.label} not requested'] += 1
            else:
                labels.append(f.label)
                boxes.append(tuple(f.box_px))
        samples.append(DetectionSample(os.path.relpath(image, root).replace(os.sep, '/'), rec.width, rec.height,
                                       tuple(labels), tuple(boxes)))
    return _finish(root, samples, str(path), dropped, classes)


def read_annotations(annotations, fmt: str, images=None,
                     classes: Optional[Sequence[str]] = None) -> DetectionSet:
    """Dispatch on ``fmt`` (one of :data:`FORMATS`).

    Raises:
        ValueError: unknown ``fmt``, or ``images`` missing where the format needs it.
    """
    if fmt not in FORMATS:
        raise ValueError(f'unknown annotation format {fmt!r}; expected one of {FORMATS}')
    if fmt == 'codras':
        return read_codras(annotations, images, classes)
    if fmt == 'records':
        return read_records_jsonl(annotations, images, classes)
    if images is None:
        raise ValueError(f"format {fmt!r} needs the images folder (--images)")
    return read_yolo(annotations, images, classes) if fmt == 'yolo' else \
        read_coco(annotations, images, classes)


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
    """Write :func:`to_coco` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_coco(samples, classes)))
    return path
