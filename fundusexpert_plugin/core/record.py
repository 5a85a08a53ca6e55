"""The FundusGen record: one fundus photograph with its located findings and image-level labels.

A record is what both the annotation readers and the Fundus-Engine produce and what the task
builder consumes. Records are stored one per line in jsonl; ``image`` is a path relative to the
jsonl file's folder (or absolute).

Coordinates: ``Finding.box_px`` is xyxy in original-image pixels (see :mod:`.geometry`).
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Dict, Iterator, List, Literal, Optional, Tuple

from pydantic import (BaseModel, ConfigDict, Field, PositiveFloat, Strict, ValidationError, field_validator,
                      model_validator)

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.boxes import annotation_box, is_number
from fundusexpert_plugin.core.errors import FundusDataError  # noqa: F401 (the package-wide name)
from fundusexpert_plugin.core.geometry import box_center, check_box_px, laterality_disagreement
from fundusexpert_plugin.core.jsonl import read_jsonl, write_jsonl

logger = logging.getLogger(__name__)



#: a JSON number (int or float); strings such as ``"100"`` and booleans are refused, never coerced
#: (the rule of every annotation reader, :func:`fundusexpert_plugin.core.boxes.check_numbers`)
Number = Annotated[float, Strict()]


class Finding(BaseModel):
    """One located finding.

    Attributes:
        label: finding id from :data:`vocab.FINDINGS` (aliases are accepted and canonicalised).
        box_px: ``(x1, y1, x2, y2)`` in original-image pixels, ``0 <= x1 < x2 <= width``; JSON numbers
            (a string coordinate is refused, not coerced).
        source: ``'annotation'`` (human label), ``'detector'`` (Fundus-Engine detector) or
            ``'locator'`` (the engine's training-free optic-disc / fovea locator).
        score: detector confidence in ``[0, 1]``; ``None`` for annotations and the locator.
    """

    model_config = ConfigDict(extra='forbid')
    label: str
    box_px: Tuple[Number, Number, Number, Number]
    source: Literal['annotation', 'detector', 'locator'] = 'annotation'
    score: Optional[Number] = Field(default=None, ge=0.0, le=1.0)

    @field_validator('label')
    @classmethod
    def _known_label(cls, value: str) -> str:
        return vocab.resolve_finding(value)


class Provenance(BaseModel):
    """Where a record comes from.

    Attributes:
        source_dataset: e.g. ``'IDRiD (via CODRAS boxes)'``.
        licence: licence of the image and of the labels.
        attribution: citation text that must travel with derived files.
        annotated_labels: finding ids the source annotates exhaustively. A finding id listed here
            with no box in the record is *known absent*; any other id is *unknown*, and nothing
            is ever said about it.
        stages: engine stages that ran (stage -> method).
        detector_labels: finding ids the engine's detector was trained on (it looks for these;
            a class with no box is "not detected", never absent). Empty for annotations.
        score_threshold: the detector's score threshold, when ``detector_labels`` is set.
        landmarks: where each landmark of the record comes from, e.g. ``{'optic_disc':
            'detector', 'fovea': 'locator'}`` (engine records; empty for annotations).
        flags: flagged disagreements between sources, one sentence each (e.g. the detector's and
            the locator's disc more than 1 DD apart); kept, never silently resolved.
        region_counts: ``{finding_id: regions in the source}`` for classes whose source has more
            regions than the record keeps boxes for, the boxes being its largest: mask clusters
            beyond ``--max-boxes`` (the official pixel2bbox top-k rule). The chain counts these
            regions and says how many are located; region detection asks for "the N largest".
            Each count exceeds the record's boxes of that class (ours; the paper is silent).
    """

    model_config = ConfigDict(extra='forbid')
    source_dataset: str
    licence: str
    attribution: str = ''
    annotated_labels: List[str] = Field(default_factory=list)
    stages: Dict[str, str] = Field(default_factory=dict)
    detector_labels: List[str] = Field(default_factory=list)
    score_threshold: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    landmarks: Dict[str, Literal['annotation', 'detector', 'locator']] = Field(default_factory=dict)
    flags: List[str] = Field(default_factory=list)
    region_counts: Dict[str, Annotated[int, Strict(), Field(ge=1)]] = Field(default_factory=dict)

    @field_validator('annotated_labels', 'detector_labels')
    @classmethod
    def _known_labels(cls, values: List[str]) -> List[str]:
        return [vocab.resolve_finding(v) for v in values]

    @field_validator('region_counts')
    @classmethod
    def _known_count_labels(cls, counts: Dict[str, int]) -> Dict[str, int]:
        return {vocab.resolve_finding(k): v for k, v in counts.items()}


#: A SHA-256 digest as records and annotation files give it: 64 hexadecimal digits.
SHA256_PATTERN = r'^[0-9a-fA-F]{64}$'


class FundusGenRecord(BaseModel):
    """One image with its findings.

    Attributes:
        record_id: unique id within a dataset.
        image: image path, relative to the record file's folder or absolute.
        width, height: original image size in pixels.
        laterality: ``'left'``/``'right'`` eye, or ``None`` when unknown.
        laterality_source: how laterality is known: ``'label'``, ``'optic_disc_position'``
            (macula-centred photo: disc on the image's right means a right eye) or ``'dicom'``
            (ImageLaterality / Laterality of a DICOM header).
        pixel_spacing_mm: ``(row, column)`` spacing in mm per pixel (DICOM PixelSpacing order:
            vertical, then horizontal), when the source gives it; ``None`` otherwise.
        findings: located findings, in any order.
        image_labels: image-level labels, e.g. ``{'dr_grade': '2', 'diagnosis': 'glaucoma'}``.
            Keys must be ``'diagnosis'`` or a scale of :data:`vocab.GRADE_SCALES`; a grade given as a
            JSON integer (``2``) is read as its string.
        feature_text: fine-grained feature text per language from the engine's MLLM expansion
            (checked against the findings); empty: the chain writes its rule-based text.
        sha256: hex digest of the image file; when given, the builder checks the file against it.
        provenance: source dataset and licence (and, for engine records, the stages that ran);
            ``stages['image']`` says what the intake did to the photo (``'exif-rotated (orientation 6)'``):
            ``width``/``height`` and every box are then in the upright frame.
    """

    model_config = ConfigDict(extra='forbid')
    record_id: str
    image: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    laterality: Optional[Literal['left', 'right']] = None
    laterality_source: Optional[Literal['label', 'optic_disc_position', 'dicom']] = None
    pixel_spacing_mm: Optional[Tuple[PositiveFloat, PositiveFloat]] = None
    findings: List[Finding] = Field(default_factory=list)
    image_labels: Dict[str, str] = Field(default_factory=dict)
    feature_text: Dict[Literal['en', 'zh'], str] = Field(default_factory=dict)
    sha256: Optional[str] = Field(default=None, pattern=SHA256_PATTERN)
    provenance: Provenance

    @field_validator('image_labels', mode='before')
    @classmethod
    def _integer_grades(cls, labels):
        """A grade written as a JSON integer (``"dr_grade": 2``) is the grade ``'2'``; booleans and
        fractions are left to be refused."""
        if isinstance(labels, dict):
            return {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in labels.items()}
        return labels

    @field_validator('image_labels')
    @classmethod
    def _known_image_labels(cls, labels: Dict[str, str]) -> Dict[str, str]:
        for key, value in labels.items():
            if key in ('diagnosis', *vocab.GRADE_SCALES):
                try:
                    vocab.diagnosis_name(value) if key == 'diagnosis' else vocab.grade_name(key, value)
                except KeyError as exc:
                    raise ValueError(exc.args[0]) from None
            else:
                raise ValueError(f'unknown image label {key!r}; expected "diagnosis" or one of '
                                 f'{sorted(vocab.GRADE_SCALES)}')
        return labels

    @model_validator(mode='after')
    def _boxes_inside_image(self) -> 'FundusGenRecord':
        for i, finding in enumerate(self.findings):
            check_box_px(finding.box_px, self.width, self.height, where=f'findings[{i}].box_px')
        for label, n in self.provenance.region_counts.items():
            kept = len(self.boxes(label))
            if n <= kept:
                raise ValueError(f'provenance.region_counts.{label}: {n} regions, but the record has {kept} '
                                 f'{label} boxes; a count is given only when the source has more regions than boxes')
        return self

    def boxes(self, label: str) -> List[Tuple[float, float, float, float]]:
        """Pixel boxes of one finding id, largest area first (the FundusExpert ordering)."""
        boxes = [f.box_px for f in self.findings if f.label == label]
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def region_count(self, label: str) -> int:
        """Regions of one finding id in the source: ``provenance.region_counts`` when the record keeps
        only the largest of them, else the number of its boxes."""
        return self.provenance.region_counts.get(label, len(self.boxes(label)))

    def present_labels(self) -> List[str]:
        """Finding ids with at least one box, in vocabulary order."""
        present = {f.label for f in self.findings}
        return [fid for fid in vocab.FINDINGS if fid in present]

    def absent_labels(self) -> List[str]:
        """Finding ids known absent: annotated exhaustively by the source, with no box here."""
        present = set(self.present_labels())
        return [fid for fid in vocab.FINDINGS
                if fid in self.provenance.annotated_labels and fid not in present]

    def not_detected_labels(self) -> List[str]:
        """Finding ids the engine's detector looks for (``provenance.detector_labels``) with no box
        here: "not detected" at ``provenance.score_threshold``, never "absent"."""
        present = set(self.present_labels())
        return [fid for fid in vocab.FINDINGS if fid in self.provenance.detector_labels and fid not in present]

    def image_path(self, base_dir: os.PathLike | str) -> Path:
        """Absolute image path, resolving a relative ``image`` against ``base_dir``."""
        path = Path(self.image)
        return path if path.is_absolute() else Path(base_dir) / path


#: How a laterality review flag names where the laterality comes from (``laterality_source``); the chain
#: (:func:`fundusexpert_plugin.render.chain.cognitive_chain`) states each kind in its own sentence.
LATERALITY_FLAG_SOURCES = {'dicom': 'DICOM laterality', 'label': 'laterality label'}
#: The words of every flag that a laterality disagrees with the optic disc (:func:`laterality_flag`).
LATERALITY_DISAGREES = 'disagrees with the optic-disc position'


def laterality_flag(laterality: Optional[str], laterality_source: Optional[str], disc_box_px, width: int, *,
                    fovea_x: Optional[float] = None) -> Optional[str]:
    """The review flag of a laterality (from a label or a DICOM header) that disagrees with the optic
    disc (:func:`~fundusexpert_plugin.core.geometry.laterality_disagreement`), e.g. ``"laterality label
    'right' disagrees with the optic-disc position ('left' by the macula-centred rule); keeping the
    label"``. The given laterality is kept (a disc-centred or peripheral photo breaks the position
    rule): the flag asks for a review, it resolves nothing.

    Args:
        laterality, laterality_source: as in :class:`FundusGenRecord` (a source other than ``'dicom'``
            is named as a label).
        disc_box_px: the optic-disc box (xyxy pixels), or ``None``.
        width: image width, pixels.
        fovea_x: x of the marked fovea centre, pixels (the disc is then compared with it, not with the
            image centre).

    Returns:
        The flag text, or ``None`` when they agree or either is unknown.
    """
    from_disc = laterality_disagreement(laterality, disc_box_px, width, fovea_x=fovea_x)
    if from_disc is None:
        return None
    source = 'dicom' if laterality_source == 'dicom' else 'label'
    rule = 'by the side of the fovea it lies on' if fovea_x is not None else 'by the macula-centred rule'
    return (f'{LATERALITY_FLAG_SOURCES[source]} {laterality!r} {LATERALITY_DISAGREES} ({from_disc!r} {rule}); '
            f'keeping the {"DICOM value" if source == "dicom" else "label"}')


def record_laterality_flag(record: 'FundusGenRecord') -> Optional[str]:
    """:func:`laterality_flag` of a record: its laterality against its largest optic-disc box and, when
    marked, its largest fovea box's centre. ``None`` for a laterality judged from the disc itself
    (``laterality_source = 'optic_disc_position'``), without a disc, or when they agree."""
    discs = record.boxes('optic_disc')
    if record.laterality_source == 'optic_disc_position' or not discs:
        return None
    foveas = record.boxes('fovea')
    return laterality_flag(record.laterality, record.laterality_source, discs[0], record.width,
                           fovea_x=box_center(foveas[0])[0] if foveas else None)


def flag_laterality(record: 'FundusGenRecord') -> Tuple['FundusGenRecord', Optional[str]]:
    """``record`` with :func:`record_laterality_flag` added to ``provenance.flags`` (unless a flag of that
    disagreement is already there, as the engine writes it for DICOM photographs).

    Returns:
        ``(record, flag)``: a copy with the flag added and the flag, or the record unchanged and ``None``.
    """
    flag = record_laterality_flag(record)
    if flag is None or any(LATERALITY_DISAGREES in f for f in record.provenance.flags):
        return record, None
    provenance = record.provenance.model_copy(update={'flags': [*record.provenance.flags, flag]})
    return record.model_copy(update={'provenance': provenance}), flag


def _error_location(exc: ValidationError) -> str:
    """pydantic errors as ``field = value: rule`` (``findings[0].label = 'unicorn': unknown finding label
    ...``), the field path in Python notation, pydantic's ``Value error, `` prefix dropped. A record-level
    check (empty location) names its field itself (``findings[1].box_px = ...``) and is kept as written."""
    parts = []
    for err in exc.errors():
        loc = ''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in err['loc']).lstrip('.')
        msg = str(err['msg']).removeprefix('Value error, ')
        value = err.get('input')
        if not loc:
            parts.append(msg)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            parts.append(f'{loc} = {value!r}: {msg}' if 'input' in err else f'{loc}: {msg}')
        else:
            parts.append(f'{loc}: {msg}')
    return '; '.join(parts)


def check_pixel_size(value: object, *, where: str, field_name: str) -> int:
    """An image ``width`` or ``height`` as a record or annotation line gives it: a JSON integer.

    The one size rule of every reader (records, CODRAS jsonl): ``1072`` is accepted; ``1072.0``,
    ``"712"``, ``true`` or ``null`` are refused, never coerced. Whether the number is the image's size
    is checked later, against the decoded image (``size_mismatch``).

    Returns:
        ``value`` (pixels).

    Raises:
        FundusDataError: ``'<where>: <field_name> = <value>: expected an integer number of pixels'``,
            reason ``'size_not_integer'``.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise FundusDataError(f'{where}: {field_name} = {value!r}: expected an integer number of pixels',
                              reason='size_not_integer')
    return value


def parse_record(data: dict, *, where: str) -> FundusGenRecord:
    """Validate one record dict (``width``/``height`` by :func:`check_pixel_size` first).

    A finding box that sticks out of the image by at most 1 px is clipped first, as every annotation
    reader does (:mod:`.boxes`).

    Raises:
        FundusDataError: naming ``where`` (file:line), the record id and the failing field (reason
            ``size_not_integer`` for a size that is not a JSON integer).
    """
    rid = data.get('record_id', '?') if isinstance(data, dict) else '?'
    if isinstance(data, dict):
        for key in ('width', 'height'):
            if key in data:
                check_pixel_size(data[key], where=f'{where}: record {rid!r}', field_name=key)
        data = _clip_edge_boxes(data)
    try:
        return FundusGenRecord.model_validate(data)
    except ValidationError as exc:
        raise FundusDataError(f'{where}: record {rid!r}: {_error_location(exc)}') from None


def _clip_edge_boxes(data: dict) -> dict:
    """``data`` with each finding box that lies at most :data:`~.boxes.CLIP_TOLERANCE_PX` outside the
    image clipped to it (other boxes untouched; a bad one is left for validation to name)."""
    findings, width, height = data.get('findings'), data.get('width'), data.get('height')
    if not isinstance(findings, list) or not isinstance(width, int) or not isinstance(height, int):
        return data
    out, changed = [], False
    for finding in findings:
        box = finding.get('box_px') if isinstance(finding, dict) else None
        if isinstance(box, (list, tuple)) and len(box) == 4 and all(is_number(v) for v in box) and (
                min(box[0], box[1]) < 0 or box[2] > width or box[3] > height):
            try:
                finding = {**finding, 'box_px': annotation_box(box, width, height, where='', field_name='box_px')}
                changed = True
            except FundusDataError:
                pass
        out.append(finding)
    return {**data, 'findings': out} if changed else data


def _item_reason(finding, data: dict) -> str:
    """The skip reason of a finding that fails validation, by the annotation readers' names
    (:mod:`.boxes`; ``unknown_label``/``missing_label``), else ``invalid_box``."""
    if not isinstance(finding, dict):
        return 'invalid_box'
    label = finding.get('label')
    if not isinstance(label, str) or not label.strip():
        return 'missing_label'
    if vocab.canonical_finding(label) is None:
        return 'unknown_label'
    width, height = data.get('width'), data.get('height')
    if isinstance(width, int) and isinstance(height, int):
        try:
            annotation_box(finding.get('box_px'), width, height, where='', field_name='box_px')
        except FundusDataError as exc:
            return exc.reason or 'invalid_box'
    return 'invalid_box'


def _without_bad_items(data: dict, where: str, on_item_skip) -> Optional[dict]:
    """``data`` without the items that fail validation on their own (lenient per-item reading): bad
    findings (reason by :func:`_item_reason`: ``box_outside_image``, ``box_not_numbers`` ... as the
    annotation readers name them, else ``invalid_box``) and bad ``image_labels`` entries (``invalid_label``, e.g. a
    ``dr_grade`` of ``'5'``), each reported as ``on_item_skip(message, reason)``; ``None`` when the
    record is bad for another reason. A dropped finding's class (alias resolved) leaves
    ``provenance.annotated_labels`` (its absence is no longer known); a dropped finding of unknown
    class leaves none there."""
    findings = data.get('findings')
    findings = findings if isinstance(findings, list) else None
    labels = data.get('image_labels')
    labels = labels if isinstance(labels, dict) else None
    if not findings and not labels:
        return None
    bare = {**data, 'findings': [], **({'image_labels': {}} if labels else {})}
    try:
        parse_record(bare, where=where)
    except FundusDataError:
        return None
    good_labels = {}
    for key, value in (labels or {}).items():
        try:
            parse_record({**bare, 'image_labels': {key: value}}, where=where)
            good_labels[key] = value
        except FundusDataError as exc:
            on_item_skip(str(exc), 'invalid_label')
    good, dropped = [], set()
    for i, finding in enumerate(findings or []):
        try:
            parse_record({**bare, 'findings': [finding]}, where=where)
            good.append(finding)
        except FundusDataError as exc:
            on_item_skip(str(exc).replace('findings[0]', f'findings[{i}]'), _item_reason(finding, data))
            label = finding.get('label') if isinstance(finding, dict) else None
            dropped.add(vocab.canonical_finding(label) if isinstance(label, str) else None)  # None: class unknown
    provenance = data.get('provenance')
    if isinstance(provenance, dict) and isinstance(provenance.get('annotated_labels'), list):
        keep = [] if None in dropped else [a for a in provenance['annotated_labels'] if a not in dropped]
        provenance = {**provenance, 'annotated_labels': keep}
    out = {**data, 'findings': good, 'provenance': provenance}
    if labels is not None:
        out['image_labels'] = good_labels
    return out


def read_records(path: os.PathLike | str, *, lenient: bool = False,
                 skipped: Optional[List[str]] = None, counts: Optional[Counter] = None,
                 box_counts: Optional[Counter] = None, box_skipped: Optional[List[str]] = None,
                 locations: Optional[Dict[str, str]] = None) -> Iterator[FundusGenRecord]:
    """Stream records from a jsonl file.

    Args:
        path: jsonl file, one record per line (blank lines ignored; encodings of :mod:`.jsonl`).
        lenient: log and skip invalid lines instead of raising. A line whose only faults are some of
            its items keeps the rest: each bad finding (a NaN, inverted, out-of-image or unknown-label
            box) is skipped, named in ``box_skipped`` and counted in ``box_counts`` (``box_outside_image``,
            ``box_not_numbers``, ``box_not_finite``, ``box_empty_or_inverted``, ``unknown_label`` as the
            annotation readers count them, else ``invalid_box``; a box within 1 px of the image is clipped),
            and its class leaves ``provenance.annotated_labels``; each bad ``image_labels`` entry (an
            unknown grade or diagnosis) likewise (``invalid_label``).
        skipped: if given, receives one message per skipped line (else each is logged as a warning).
        counts: if given, counts the skipped lines by reason (``invalid_json``, ``invalid_record``,
            ``duplicate_id``).
        box_counts, box_skipped: if given, count the skipped items (the box reasons above, ``invalid_label``)
            and receive one message per skipped item (without ``box_skipped`` each is logged as a warning).
        locations: if given, receives ``record_id -> '<path>:<line>'`` of every record read, so that
            later checks (the builder's image checks) can name the line.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FundusDataError: an invalid line or a ``record_id`` given twice (both lines named), when not
            ``lenient``; a file that yields no record (empty, or every line bad), always.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'record file not found: {path}')
    reasons: Counter = Counter()
    messages: List[str] = []

    def skip(msg: str, reason: str) -> None:
        messages.append(msg)
        reasons[reason] += 1
        if skipped is not None:
            skipped.append(msg)
        else:
            logger.warning('skipped: %s', msg)
        if counts is not None:
            counts[reason] += 1

    def item_skip(msg: str, reason: str) -> None:
        if box_skipped is not None:
            box_skipped.append(msg)
        else:
            logger.warning('skipped %s: %s', 'label' if reason == 'invalid_label' else 'box', msg)
        if box_counts is not None:
            box_counts[reason] += 1

    seen: Dict[str, int] = {}
    n_lines = kept = 0
    for line_no, data in read_jsonl(path, lenient=lenient, on_skip=skip):
        n_lines += 1
        where = f'{path}:{line_no}'
        try:
            try:
                record = parse_record(data, where=where)
            except FundusDataError:
                salvaged = _without_bad_items(data, where, item_skip) if lenient and isinstance(data, dict) else None
                if salvaged is None:
                    raise
                record = parse_record(salvaged, where=where)
            if record.record_id in seen:
                raise FundusDataError(f'{where}: record_id {record.record_id!r} already given at line '
                                      f'{seen[record.record_id]} ({path}:{seen[record.record_id]}); ids must be unique',
                                      reason='duplicate_id')
            seen[record.record_id] = line_no
            if locations is not None:
                locations[record.record_id] = where
        except FundusDataError as exc:
            if not lenient:
                raise
            skip(str(exc), exc.reason or 'invalid_record')
            continue
        kept += 1
        yield record
    if not kept:
        n_lines += reasons['invalid_json'] + reasons['not_an_object']  # lines read_jsonl itself skipped
        why = f'; skipped {dict(reasons)}; first: {messages[0]}' if messages else '; the file has no record line'
        raise FundusDataError(f'{path}: read {n_lines} lines, kept no record{why}', reason='empty_input')


def write_records(records: List[FundusGenRecord], path: os.PathLike | str) -> Path:
    """Write records as jsonl (one JSON object per line, UTF-8). Returns the path."""
    return write_jsonl(path, (rec.model_dump(mode='json') for rec in records))
