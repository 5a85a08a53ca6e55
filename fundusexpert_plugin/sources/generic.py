"""Readers for generic annotation layouts: YOLO txt, COCO json, one binary mask folder per class, label CSV.

Layouts read:

* YOLO (Ultralytics/darknet): ``labels/<image stem>.txt``, one object per line
  ``<class index> <cx> <cy> <w> <h>``, all four normalised to the image size (0-1); class names one
  per line in ``classes.names`` (or ``classes.txt``, or ``--classes``). An image without a label
  file has no objects (YOLO convention). ``box_px = ((cx - w/2) W, (cy - h/2) H, (cx + w/2) W,
  (cy + h/2) H)``, rounded to 1e-6 px (so ``0.5 * 958`` is ``479.0``, not ``478.99999999999994``).
* COCO (cocodataset.org/#format-data): ``images`` (``id``, ``file_name``, ``width``, ``height``),
  ``annotations`` (``image_id``, ``category_id``, ``bbox = [x, y, w, h]`` in pixels, x/y the top-left
  corner), ``categories`` (``id``, ``name``). ``box_px = (x, y, x + w, y + h)``.
* Masks: ``<masks>/<class name>/<image stem>[_<letters>].<png|tif|bmp>``, one folder per class,
  foreground non-zero (or zero / one value), boxes by :func:`..masks.cluster_mask`.
* Label CSV: ``image`` (path relative to the CSV's folder or ``images_dir``, the rules of
  :func:`~fundusexpert_plugin.core.paths.resolve_image_path`) and any of ``dr_grade`` (ICDR 0-4),
  ``dme_grade`` (IDRiD 0-2), ``image_quality`` (0-2), ``diagnosis`` (an id of ``vocab.DIAGNOSES`` or
  its English or Chinese name, :func:`vocab.resolve_diagnosis`), ``laterality`` (``left``/``right``,
  also ``L``/``R``/``OS``/``OD``), ``record_id`` (default: the image path,
  :func:`.base.path_record_id`), ``sha256`` (expected digest of the image file, checked by the image
  intake); an empty cell is unknown; other columns are ignored (counted). The table is read by
  :func:`~fundusexpert_plugin.core.tables.read_label_table` (CSV, xlsx or xls) and each label cell
  checked by :func:`~fundusexpert_plugin.core.tables.parse_label`, as ``engine run --image-labels`` does.

Class names resolve through the vocabulary aliases (``haemorrhage``, ``EX``, ``soft_exudates``) or a
class map (``{'lesion_x': 'drusen', 'vessel': None}``; ``None`` leaves the class out, counted). Which
classes a source annotates exhaustively is not in these formats: pass ``annotated`` (finding ids,
or ``'classes'`` for every mapped class of the file); the default claims nothing. Boxes follow the one rule of
:meth:`.base.RecordDraft.add_box` (up to 1 px outside: clipped; further: refused, one skipped box in
lenient mode). Record ids are image paths relative to the images folder, extension kept, so
``a.tif`` and ``a.webp`` never collide.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.record import SHA256_PATTERN, FundusDataError, FundusGenRecord
from fundusexpert_plugin.core.jsonl import read_text
from fundusexpert_plugin.core.paths import resolve_image_path
from fundusexpert_plugin.sources.base import (SEE_TERMS, ConvertLog, FileIndex, check_annotations_matched, MaskBoxParams, RecordDraft, SourceInfo, attempt,
                   check_numbers, check_unique_id, path_record_id, read_mask, require_records)
from fundusexpert_plugin.sources.registry import head_has, register
from fundusexpert_plugin.core.tables import (IMAGE_COLUMNS, LABEL_COLUMNS, header_keys, normalise, parse_grade,
                                             parse_label, parse_number, read_label_table)

GENERIC = SourceInfo('unnamed source', SEE_TERMS, '')


def parse_class_map(items: Iterable[str]) -> Dict[str, Optional[str]]:
    """``['exudate=hard_exudates', 'scar=-']`` -> ``{'exudate': 'hard_exudates', 'scar': None}``.

    Keys are lower-cased source class names; ``-`` means "leave this class out" (counted).

    Raises:
        ValueError: an item without ``=`` or an unknown finding id.
    """
    mapping: Dict[str, Optional[str]] = {}
    for item in items:
        if '=' not in item:
            raise ValueError(f'class map item {item!r}: expected NAME=FINDING_ID or NAME=-')
        name, target = (s.strip() for s in item.split('=', 1))
        mapping[name.lower()] = None if target == '-' else vocab.resolve_finding(target)
    return mapping


def resolve_class(name: str, class_map: Dict[str, Optional[str]], *, where: str) -> Optional[str]:
    """Source class name -> finding id (``None``: left out by the class map).

    Raises:
        FundusDataError: neither in the class map nor a vocabulary id/alias.
    """
    key = str(name).strip().lower()
    if key in class_map:
        return class_map[key]
    found = vocab.canonical_finding(key)
    if found is None:
        try:
            vocab.resolve_finding(key, where=where)
        except ValueError as exc:
            raise FundusDataError(f'{exc}. Map it with --class-map {name}=<finding id>, or leave it '
                                  f'out with --class-map {name}=-') from None
    return found


def _annotated(annotated: Sequence[str] | str, classes: Sequence[Optional[str]]) -> List[str]:
    if annotated == 'classes' or list(annotated) == ['classes']:
        return [c for c in dict.fromkeys(classes) if c]
    return [vocab.resolve_finding(a) for a in annotated]


def _finish(draft: RecordDraft, annotated: List[str], infer_laterality: bool, source: SourceInfo) -> FundusGenRecord:
    for label in annotated:
        draft.annotate(label)
    if infer_laterality:
        draft.infer_laterality()
    return draft.build(source)


def _yolo_sniff(path: Path) -> bool:
    if not path.is_dir():
        return False
    if any((path / n).is_file() for n in ('classes.names', 'classes.txt')):
        return True
    return (any(p.suffix == '.txt' for p in path.iterdir())   # Ultralytics: labels/<split>/*.txt, data.yaml above
            and any((d / n).is_file() for d in (path, path.parent, path.parent.parent)
                    for n in ('data.yaml', 'dataset.yaml')))


def _coco_sniff(path: Path) -> bool:
    return head_has(path, ('.json',), b'"images"', b'"categories"', every=True, size=1 << 20)


def _rel_id(image: Path, root: Path) -> str:
    try:
        return image.relative_to(root).as_posix()
    except ValueError:
        return image.name


def _label_csv_sniff(path: Path) -> bool:
    keys = header_keys(path)
    return bool(keys & {normalise(c) for c in IMAGE_COLUMNS}) and bool(keys & {normalise(c) for c in
                                                                                LABEL_COLUMNS})


#: class-name files :func:`read_yolo` looks for (darknet name lists, then the Ultralytics dataset YAML)
YOLO_CLASS_FILES = ('classes.names', 'classes.txt', 'data.yaml', 'dataset.yaml')


def yolo_class_names(path: Path | str) -> List[str]:
    """Class names by class index from a darknet name list (one per line, blank lines skipped) or an
    Ultralytics dataset YAML (``names: [a, b]`` or ``names: {0: a, 1: b}``, indices 0..n-1).

    Raises:
        FundusDataError: a YAML that does not parse, has no ``names`` list/mapping, or whose indices
            are not 0..n-1 (file and field named).
    """
    path = Path(path)
    if path.suffix.lower() not in ('.yaml', '.yml'):
        return [line.strip() for line in read_text(path).splitlines() if line.strip()]
    import yaml
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise FundusDataError(f'{path}: not valid YAML ({str(exc).splitlines()[0]})') from None
    names = data.get('names') if isinstance(data, dict) else None
    if isinstance(names, dict) and names:
        if sorted(k for k in names if isinstance(k, int)) != list(range(len(names))):
            raise FundusDataError(f'{path}: names = {names!r}: expected class indices 0..{len(names) - 1} as keys')
        return [str(names[k]).strip() for k in range(len(names))]
    if not isinstance(names, list) or not names:
        raise FundusDataError(f'{path}: names = {names!r}: expected the list (or index mapping) of class names '
                              '(Ultralytics data.yaml)')
    return [str(n).strip() for n in names]


@register('yolo', help='YOLO txt labels folder (classes.names or Ultralytics data.yaml) + --images folder', sniff=_yolo_sniff,
          adapter=lambda fn: lambda path, images, **kw: fn(images if images is not None else Path(path).parent / 'images',
                                                          path, **kw))
def read_yolo(images_dir: Path | str, labels_dir: Path | str, *, classes: Optional[Path | str] = None,
              class_map: Optional[Dict[str, Optional[str]]] = None, annotated: Sequence[str] | str = (),
              source: SourceInfo = GENERIC, infer_laterality: bool = False, lenient: bool = False,
              log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per image of ``images_dir`` with the boxes of its YOLO label file.

    Args:
        images_dir, labels_dir: folders (searched recursively, matched by stem).
        classes: class-name file (:func:`yolo_class_names`: one name per line, or an Ultralytics
            ``data.yaml``); default the first of :data:`YOLO_CLASS_FILES` in ``labels_dir`` or the
            two folders above it (Ultralytics: ``<root>/data.yaml`` beside ``<root>/labels/train``).
        class_map, annotated, source: see the module docstring.
        infer_laterality: laterality from a single optic-disc box (macula-centred photos only).

    Raises:
        FileNotFoundError: a folder or the class file is missing.
        FundusDataError: an unknown class name (always); a bad line (not 5 numbers, class index out
            of range, box outside the image) or an unreadable image, naming ``<file>:<line>``, unless
            ``lenient``.
    """
    log = log if log is not None else ConvertLog()
    labels_dir = Path(labels_dir)
    if classes is None:
        candidates = [d / n for d in (labels_dir, labels_dir.parent, labels_dir.parent.parent)
                      for n in YOLO_CLASS_FILES]
        classes = next((c for c in candidates if c.is_file()), labels_dir / 'classes.names')
    classes = Path(classes)
    if not classes.is_file():
        raise FileNotFoundError(f'YOLO class-name file not found: {classes} (looked for '
                                f'{", ".join(YOLO_CLASS_FILES)} in the labels folder and the two above it)')
    names = yolo_class_names(classes)
    ids = [resolve_class(n, class_map or {}, where=f'{classes}:{i + 1}' if classes.suffix.lower() not in ('.yaml', '.yml')
                         else f'{classes}: names[{i}]') for i, n in enumerate(names)]
    wanted = _annotated(annotated, ids)
    labels = FileIndex(labels_dir, exts=('.txt',))
    kept = 0
    photos = FileIndex(images_dir).paths()
    for image in photos:
        log.lines_read += 1

        def convert(image=image):
            draft = RecordDraft(_rel_id(image, Path(images_dir)), image, where=str(image), lenient=lenient, log=log)
            path = labels.find(image.stem, where=str(image), field_name='label file', required=False)
            if path is not None and path.resolve() != classes.resolve():
                for n, line in enumerate(read_text(path).splitlines(), 1):
                    if line.strip():
                        draft.item(lambda n=n, line=line: _yolo_line(draft, f'{path}:{n}', line, names, ids, log),
                                   label=_yolo_class(line, ids))
            return _finish(draft, wanted, infer_laterality, source)
        record = attempt(convert, lenient=lenient, log=log, where=str(image))
        if record is not None:
            kept += 1
            yield record
    check_annotations_matched(labels, photos, 'YOLO label file', lenient=lenient, log=log, exclude=[classes])
    require_records(kept, labels_dir, log)


def _coco_class(ann: object, cats: Dict) -> Optional[str]:
    """The finding id a COCO annotation's ``category_id`` names (``None``: unknown or not an object)."""
    cid = ann.get('category_id') if isinstance(ann, dict) else None
    return cats.get(cid) if isinstance(cid, (int, str)) else None


def _yolo_class(line: str, ids: List[Optional[str]]) -> Optional[str]:
    """The finding id a YOLO line names (``None``: not a valid class index)."""
    head = line.split()[0] if line.split() else ''
    return ids[int(head)] if head.isdigit() and int(head) < len(ids) else None


def _yolo_line(draft: RecordDraft, where: str, line: str, names: List[str], ids: List[Optional[str]],
               log: ConvertLog) -> None:
    fields = line.split()
    if len(fields) != 5:
        raise FundusDataError(f'{where}: {line.strip()!r}: expected "<class> <cx> <cy> <w> <h>" (5 fields)',
                              reason='yolo_not_5_fields')
    try:
        k = parse_grade(fields[0], range(len(names)), where=where, column='class index', what='class')
    except FundusDataError as exc:
        raise FundusDataError(str(exc), reason='unknown_class_index') from None
    try:
        cx, cy, w, h = (parse_number(v, where=where, column=c) for v, c in zip(fields[1:], ('cx', 'cy', 'w', 'h')))
    except FundusDataError as exc:
        raise FundusDataError(str(exc), reason='box_not_numbers') from None
    outside = [f'{c} = {v:g}' for c, v in zip(('cx', 'cy', 'w', 'h'), (cx, cy, w, h)) if not 0.0 <= v <= 1.0]
    if outside:
        raise FundusDataError(f'{where}: {", ".join(outside)}: must be normalised to 0-1 (YOLO "<class> <cx> <cy> '
                              '<w> <h>", fractions of the image width/height)', reason='yolo_not_normalised')
    if ids[k] is None:
        log.note(f'class {names[k]!r} left out by the class map', where)
        return
    W, H = draft.width, draft.height
    box = ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H)
    draft.add_box(ids[k], tuple(round(v, 6) for v in box), field_name=f'{where}: box')


@register('coco', help='COCO detection json (images, annotations, categories)', sniff=_coco_sniff)
def read_coco(json_path: Path | str, images_dir: Optional[Path | str] = None, *,
              class_map: Optional[Dict[str, Optional[str]]] = None, annotated: Sequence[str] | str = (),
              source: SourceInfo = GENERIC, infer_laterality: bool = False, lenient: bool = False,
              log: Optional[ConvertLog] = None, allow_outside_root: bool = False) -> Iterator[FundusGenRecord]:
    """One record per entry of ``images``, with the boxes of its annotations.

    Args:
        json_path: the COCO json.
        images_dir: folder that ``file_name`` is relative to (default: the json's folder).

    Raises:
        FileNotFoundError: ``json_path`` is missing.
        FundusDataError: invalid JSON, a missing top-level key or unknown category name (always);
            a bad annotation (not an object, no bbox, unknown image or category id, box outside the
            image) or a size different from the image file (``annotations[i]`` named), unless
            ``lenient``. Lenient: a bad annotation is one skipped box (the image keeps its other
            boxes); a bad or missing image entry skips that image.

    A crowd annotation (``iscrowd: 1``) is no box: pycocotools and MMDetection's ``CocoDataset``
    treat it as an ignore region, not an instance. It is counted in ``log.notes`` and its class is
    left out of ``annotated_labels`` for that image (lesions of the class are there, not boxed).
    """
    log = log if log is not None else ConvertLog()
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f'COCO json not found: {json_path}')
    try:
        data = json.loads(read_text(json_path))
    except json.JSONDecodeError as exc:
        raise FundusDataError(f'{json_path}: not valid JSON ({exc.msg}, line {exc.lineno})') from None
    if not isinstance(data, dict):
        raise FundusDataError(f'{json_path}: expected a COCO detection json object, got {type(data).__name__}')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            raise FundusDataError(f'{json_path}: missing list {key!r}; expected a COCO detection json')
    base = Path(images_dir) if images_dir else json_path.parent
    cats = {}
    for i, c in enumerate(data['categories']):
        try:
            if not isinstance(c, dict):
                raise FundusDataError(f'{json_path}: categories[{i}] = {c!r}: expected an object {{id, name}}')
            cats[c.get('id')] = resolve_class(c.get('name', ''), class_map or {}, where=f'{json_path}: categories[{i}]')
        except FundusDataError as exc:
            if not lenient:
                raise
            log.warn(f'{exc}; its annotations are skipped')
    wanted = _annotated(annotated, list(cats.values()))
    by_image: Dict[object, List[tuple]] = {}  # image id -> [(index in annotations, annotation)]
    image_ids = {img.get('id') for img in data['images'] if isinstance(img, dict)}
    for i, ann in enumerate(data['annotations']):
        where = f'{json_path}: annotations[{i}]'
        if not isinstance(ann, dict):  # no image to attach it to: one skipped box
            err = FundusDataError(f'{where} = {ann!r}: expected an object {{image_id, category_id, bbox}}')
            if not lenient:
                raise err
            log.skip(str(err), 'annotation_not_an_object', kind='box')
            continue
        if ann.get('image_id') not in image_ids:
            err = FundusDataError(f'{where}: image_id = {ann.get("image_id")!r}: no such image in "images"')
            if not lenient:
                raise err
            log.skip(str(err), 'unknown_image_id', kind='box')
            continue
        by_image.setdefault(ann.get('image_id'), []).append((i, ann))
    seen: Dict[str, str] = {}
    kept = 0
    for j, img in enumerate(data['images']):
        where = f'{json_path}: images[{j}]'
        log.lines_read += 1

        def convert(img=img, where=where):
            if not isinstance(img, dict):
                raise FundusDataError(f'{where} = {img!r}: expected an object {{id, file_name, width, height}}',
                                      reason='image_not_an_object')
            name = img.get('file_name')
            image = resolve_image_path(name, base, where=where, field_name='file_name',
                                       allow_outside_root=allow_outside_root)
            rid = path_record_id(name, base) if isinstance(name, str) else name
            check_unique_id(seen, rid, where)
            draft = RecordDraft(rid, image, where=where, lenient=lenient, log=log)
            if (img.get('width'), img.get('height')) != (draft.width, draft.height):
                raise FundusDataError(f'{where}: width/height = {img.get("width")}x{img.get("height")} but '
                                      f'{draft.image} is {draft.width}x{draft.height} px (upright)',
                                      reason='size_mismatch')
            for i, ann in by_image.get(img.get('id'), []):
                draft.item(lambda i=i, ann=ann: _coco_annotation(draft, i, f'{json_path}: annotations[{i}]', ann, cats, log),
                           label=_coco_class(ann, cats))
            return _finish(draft, wanted, infer_laterality, source)
        record = attempt(convert, lenient=lenient, log=log, where=where)
        if record is not None:
            kept += 1
            yield record
    require_records(kept, json_path, log)


def _coco_annotation(draft: RecordDraft, i: int, where: str, ann: dict, cats: Dict, log: ConvertLog) -> None:
    if ann.get('category_id') not in cats:
        raise FundusDataError(f'{where}: category_id = {ann.get("category_id")!r}: not in "categories"',
                              reason='unknown_category')
    label = cats[ann['category_id']]
    if label is None:
        log.note(f'category {ann["category_id"]} left out by the class map', where)
        return
    if ann.get('iscrowd') in (1, True):
        # a crowd region (pycocotools and MMDetection: an ignore region, not an instance) holds lesions
        # of the class that are not boxed one by one: no box, and no absence claimed for the class
        draft.incomplete.add(vocab.canonical_finding(label) or label)
        log.note(f'{label}: crowd region (iscrowd = 1) not read as a box; class left unannotated', where)
        return
    x, y, w, h = check_numbers(ann.get('bbox'), 4, where=where, field_name='bbox ([x, y, w, h] pixels)')
    if w <= 0 or h <= 0:
        raise FundusDataError(f'{where}: bbox = {ann.get("bbox")!r}: width and height must be > 0 (COCO [x, y, w, h])',
                              reason='box_empty_or_inverted')
    draft.add_box(label, (x, y, x + w, y + h), field_name=f'annotations[{i}]: bbox')


@register('masks', help='images folder + --masks folder with one sub-folder of masks per class',
          adapter=lambda fn: lambda path, images, **kw: fn(images, path, **kw))
def read_class_masks(images_dir: Path | str, masks_dir: Path | str, *,
                     class_map: Optional[Dict[str, Optional[str]]] = None, foreground: str = 'nonzero',
                     missing: str = 'unknown', params: MaskBoxParams = MaskBoxParams(),
                     source: SourceInfo = GENERIC, infer_laterality: bool = False, lenient: bool = False,
                     log: Optional[ConvertLog] = None) -> Iterator[FundusGenRecord]:
    """One record per image, boxes from one binary mask per class folder.

    Args:
        foreground: ``'nonzero'``, ``'zero'`` or an integer grey value.
        missing: a class with no mask for an image is ``'unknown'``, ``'absent'`` (known absent)
            or an ``'error'``. A class with a mask is annotated exhaustively for that image;
            ``optic_disc``/``optic_cup`` keep only their largest box.

    Raises:
        ValueError: bad ``foreground`` or ``missing``.
        FileNotFoundError: a folder is missing.
        FundusDataError: an unknown class folder (always); an unreadable/missized mask or a missing
            one with ``missing='error'`` (image and mask named), or an unreadable image, unless
            ``lenient``. Lenient: the bad mask is one skipped item (its class left unannotated) and
            the image keeps the boxes of its other masks; an unusable image skips the record.
    """
    if missing not in ('unknown', 'absent', 'error'):
        raise ValueError(f"missing must be 'unknown', 'absent' or 'error', got {missing!r}")
    if foreground not in ('nonzero', 'zero') and not str(foreground).isdigit():
        raise ValueError(f"foreground must be 'nonzero', 'zero' or a grey value, got {foreground!r}")
    log = log if log is not None else ConvertLog()
    folders = sorted(d for d in Path(masks_dir).iterdir() if d.is_dir()) if Path(masks_dir).is_dir() else None
    if folders is None:
        raise FileNotFoundError(f'folder not found: {masks_dir}')
    classes = [(resolve_class(d.name, class_map or {}, where=str(d)), FileIndex(d, exts=('.png', '.tif', '.tiff', '.bmp', '.gif'), suffixed=True))
               for d in folders]
    for label, index in classes:
        if label is None:
            log.note(f'mask folder {index.folder.name!r} left out by the class map')
    photos = FileIndex(images_dir).paths()
    for image in photos:
        def convert(image=image):
            draft = RecordDraft(_rel_id(image, Path(images_dir)), image, where=str(image), lenient=lenient, log=log)

            def add(label, index):
                path = index.find(image.stem, where=str(image), field_name=f'{index.folder.name} mask',
                                  required=missing == 'error')
                if path is None:
                    if missing == 'absent':
                        draft.annotate(label)
                    return
                values = read_mask(path, (draft.height, draft.width), where=str(image),
                                   field_name=f'{index.folder.name} mask')
                fg = values != 0 if foreground == 'nonzero' else values == 0 if foreground == 'zero' \
                    else values == int(foreground)
                draft.add_mask(label, fg, params, log, largest_only=label in ('optic_disc', 'optic_cup'))
            for label, index in classes:
                if label is not None:
                    draft.item(lambda label=label, index=index: add(label, index))
            if infer_laterality:
                draft.infer_laterality()
            return draft.build(source)
        record = attempt(convert, lenient=lenient, log=log, where=str(image))
        if record is not None:
            yield record
    for label, index in classes:
        if label is not None:
            check_annotations_matched(index, photos, f'{index.folder.name} mask', lenient=lenient, log=log)


@register('csv', help='CSV, xlsx or xls table of image-level labels: image + dr_grade, dme_grade, diagnosis, '
                      'laterality',
          sniff=_label_csv_sniff)
def read_label_csv(csv_path: Path | str, images_dir: Optional[Path | str] = None, *,
                   source: SourceInfo = GENERIC, lenient: bool = False, log: Optional[ConvertLog] = None,
                   allow_outside_root: bool = False) -> Iterator[FundusGenRecord]:
    """One record per CSV row with image-level labels (module docstring for the columns).

    Raises:
        FileNotFoundError: the CSV is missing.
        FundusDataError: no image column or no record kept (always); an unknown grade, diagnosis or
            laterality, a malformed ``sha256``, a missing image or one whose digest differs, or a
            record id given twice (file:line and column named; a repeat names both lines), unless
            ``lenient``. Lenient: a bad label cell is one skipped item and the row keeps its other
            labels; a bad image, ``sha256`` or repeated id (the first row kept), or no usable label,
            skips the row.
    """
    log = log if log is not None else ConvertLog()
    labels = read_label_table(csv_path, ('record_id', 'sha256', *LABEL_COLUMNS))
    table, img = labels.table, labels.image
    base = Path(images_dir) if images_dir else table.path.parent
    for name in labels.ignored():
        log.note(f'{table.path}: column {name!r} is not a record field; ignored')
    seen: Dict[str, str] = {}

    def convert(where, image_cell, value):
        image = resolve_image_path(image_cell, base, where=where, field_name=f'column {table.header[img]!r}',
                                   allow_outside_root=allow_outside_root)
        sha256 = value.get('sha256', '')
        if sha256 and not re.fullmatch(SHA256_PATTERN, sha256):
            raise FundusDataError(f"{where}: column 'sha256' = {sha256!r}: expected 64 hexadecimal digits "
                                  '(SHA-256 of the image file)', reason='invalid_sha256')
        record_id = value.get('record_id') or path_record_id(image_cell, base)
        check_unique_id(seen, record_id, where)
        draft = RecordDraft(record_id, image, where=where, lenient=lenient, log=log, sha256=sha256 or None)
        for column in LABEL_COLUMNS:
            if column in value:
                parsed = draft.item(lambda column=column: parse_label(column, value[column], where=where,
                                                                      header=labels.header(column)))
                if parsed is not None and column == 'laterality':
                    draft.laterality, draft.laterality_source = parsed, 'label'
                elif parsed is not None:
                    draft.image_labels[column] = parsed
        return draft.build(source)
    kept = 0
    for where, image_cell, value in labels.rows():
        log.lines_read += 1
        record = attempt(lambda: convert(where, image_cell, value), lenient=lenient, log=log, where=where)
        if record is not None:
            kept += 1
            yield record
    require_records(kept, table.path, log)
