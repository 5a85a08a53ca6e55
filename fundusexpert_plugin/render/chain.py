"""The clinical cognitive chain: global view -> anatomical positioning -> lesion localisation ->
fine-grained features -> diagnostic conclusion, written from one FundusGen record.

Every sentence is computed from a box or a label of the record (rule-based describer, EN and ZH):
positions come from :mod:`.position`, counts and sizes from the boxes, the conclusion from
``image_labels`` or, when there is none, from the lesions present ("consistent with ..." via
``vocab.FindingTerm.suggests``); no grade is ever invented. Only lesion classes the source
annotates exhaustively (``provenance.annotated_labels``) are reported absent. For engine records a
lesion class the detector looks for (``provenance.detector_labels``) with no box is "not detected by
the detector (<config stem>) at score >= t" (:func:`detector_display_name`: no file or checkpoint
names in a training target), and nothing at all is said about classes it was not trained on. The
global view says "colour" or, for a photograph the intake converted from grey, "greyscale"
(:func:`photo_was_greyscale`). The anatomy step says where the disc and the fovea come from
(annotation, detector, the landmark locator, or the 2.5-DD prior) and names flagged disagreements
and refused implausible detector discs (``provenance.flags``).

Measures say what was measured: the area share is that of the union of the class's *boxes*
("the boxed regions of hard exudates cover about 11.9% of the image"), not of the lesion itself
(a box around a cluster of exudates is mostly healthy retina); records carry boxes only, no
masks, so no lesion area is claimed. Grounded references (``<ref>``) are written as
:func:`vocab.ref_name` gives them (display name, never capitalised) in both languages; plain
text capitalises a sentence start. A class with more boxes than ``max_boxes`` says how many are
shown ("17 regions (5 of 17 shown, the largest)"). A class whose source kept only its largest
regions (``provenance.region_counts``, mask clusters beyond ``--max-boxes``) is counted by the
source's regions: "14 regions (the 10 largest located)", grounded "14 regions (5 of 14 shown, the
largest)"; its positions, sizes and area share are those of the boxes kept.

Source: the five steps follow the paper's clinical cognitive chain (arXiv 2507.17539, abstract and
demo figure: anatomy with boxes first, then lesions, then a conclusion); the exact wording and the
derived measures are ours (the paper does not publish its chain template).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.geometry import laterality_disagreement
from fundusexpert_plugin.core.images import was_greyscale
from fundusexpert_plugin.core.record import LATERALITY_FLAG_SOURCES, FundusGenRecord
from fundusexpert_plugin.render.grounded_text import GroundedText
from fundusexpert_plugin.render.position import FOVEA_INFERIOR_DD, FOVEA_TEMPORAL_DD, AnatomyFrame, Position, locate, make_frame

#: Start of the engine's flag for refused detector discs (:func:`fundusexpert_plugin.engine.pipeline.disc_plausibility`);
#: the chain states it as such (not as a detector-locator disagreement).
IMPLAUSIBLE_DISC_FLAG = 'implausible optic-disc box from the detector'

PHRASES: Dict[str, Dict[str, str]] = {
    'en': {
        'global': 'This is a {kind} fundus photograph of the {eye}{how}.',
        'global_unknown': 'This is a {kind} fundus photograph; the side of the eye is not determined.',
        'colour': 'colour', 'grey': 'greyscale',
        'how_disc': ' (judged from the position of the optic disc)',
        'disc': 'The {disc} lies on the {side} side of the image.',
        'no_disc': 'The optic disc is not identified, so positions are given relative to the image.',
        'no_disc_extent': 'The extent of the optic disc is not marked, so positions are given relative to the image.',
        'fovea_no_disc': ' The {fovea} is marked.',
        'disc_side_conflict': ('The {disc} lies on the {side} side of the image, whereas in a {eye} it lies on the '
                               '{expected}: the side of the eye and the position of the disc disagree, so the fovea, '
                               'which is not marked, is not estimated and positions are given relative to the image.'),
        'fovea_est': ('The fovea is not marked; it is taken {dd} disc diameters (DD) temporal and {inf} DD '
                      'inferior to the centre of the optic disc.'),
        'fovea_ann': 'The {fovea} lies {dist:.1f} DD from the optic disc.',
        'fovea_locator': ('The {fovea} is located on the image as the darkest macular region near its expected '
                          'position, {dist:.1f} DD from the optic disc.'),
        'fovea_detector': 'The {fovea}, as detected, lies {dist:.1f} DD from the optic disc.',
        'disc_locator': ' It is located on the image by its brightness and the convergence of the vessels.',
        'flagged': ('Flagged for review: the detector and the landmark locator disagree on the position of the '
                    '{what}.'),
        'flagged_dicom': ('Flagged for review: the DICOM header gives the {eye}, but the position of the optic disc '
                          'suggests the {other}; the header is followed.'),
        'flagged_label': ('Flagged for review: the laterality label gives the {eye}, but the position of the optic '
                          'disc suggests the {other}; the label is followed.'),
        'flagged_implausible': ('Flagged for review: an optic-disc box from the detector has an implausible size or '
                                'shape and is not used.'),
        'flagged_other': 'Flagged for review: the sources of this record disagree (see its provenance flags).',
        'not_detected': '{name}: not detected by {detector}{at}.', 'at': ' at score ≥ {t:g}',
        'detector': 'the detector', 'detector_named': 'the detector ({name})',
        'none_looked': 'No lesion type was looked for in this image, so nothing is said about lesions.',
        'concl_not_detected': ('Conclusion: none of the lesion types looked for ({names}) is detected by {detector}{at}; '
                               'this does not show that they are absent.'),
        'lesion': '{name}: {count}, {where}.',
        'count_one': 'one region', 'count_many': '{n} regions', 'count_capped': '{n} regions ({k} of {n} shown, the largest)',
        'count_located': '{n} regions (the {k} largest located)',
        'where_frame': 'in the {quads} {quad_word} around the fovea, {nearest}{macula}',
        'nearest': 'the nearest {dist:.1f} DD from it', 'overlap': 'one of them over the fovea',
        'where_image': 'in the {quads} part of the image',
        'quad_one': 'quadrant', 'quad_many': 'quadrants',
        'macula': ', within 1 DD of the fovea (macular involvement)',
        'absent': 'No {name} are seen.',
        'none_annotated': 'No lesions are annotated for this image.',
        'feature': ('The boxed regions of {name} cover about {frac} of the image{largest}, at {hours} as seen '
                    'from the fovea.'),
        'hour_one': 'clock hour {h}', 'hour_many': 'clock hours {h}',
        'feature_image': 'The boxed regions of {name} cover about {frac} of the image.',
        'largest': '; the largest region measures about {w} x {h} DD',
        'concl_label': 'Conclusion: {text}.',
        'concl_consistent': ('Conclusion: {names} are present, consistent with {diagnosis}; no severity grade is '
                             'given for this image.'),
        'concl_lesions': 'Conclusion: {names} are present; no diagnosis or grade is given for this image.',
        'concl_none': 'Conclusion: none of the annotated lesion types ({names}) is present.',
        'concl_nothing': 'Conclusion: no diagnosis can be drawn from the available labels.',
        'and': ' and ', 'comma': ', ',
    },
    'zh': {
        'global': '这是一张{eye}的{kind}眼底照片{how}。',
        'global_unknown': '这是一张{kind}眼底照片，眼别未确定。',
        'colour': '彩色', 'grey': '灰度',
        'how_disc': '（根据视盘位置判断）',
        'disc': '{disc}位于图像{side}。',
        'no_disc': '未识别到视盘，以下位置相对于图像描述。',
        'no_disc_extent': '未标注视盘范围，以下位置相对于图像描述。',
        'fovea_no_disc': '已标注{fovea}。',
        'disc_side_conflict': '{disc}位于图像{side}，而非{eye}应有的{expected}；眼别与视盘位置不一致，未标注的黄斑中心凹不作推定，以下位置相对于图像描述。',
        'fovea_est': '黄斑中心凹未标注，按解剖先验取视盘中心颞侧{dd}个视盘直径（DD）、下方{inf} DD处。',
        'fovea_ann': '{fovea}距视盘{dist:.1f} DD。',
        'fovea_locator': '{fovea}由图像定位（预期位置附近最暗的黄斑区域），距视盘{dist:.1f} DD。',
        'fovea_detector': '检测到的{fovea}距视盘{dist:.1f} DD。',
        'disc_locator': '视盘由其亮度和血管汇聚在图像上定位。',
        'flagged': '待复核：检测器与解剖标志定位器对{what}的位置判断不一致。',
        'flagged_dicom': '待复核：DICOM头信息记录为{eye}，但视盘位置提示为{other}；按头信息记录。',
        'flagged_label': '待复核：眼别标签记录为{eye}，但视盘位置提示为{other}；按标签记录。',
        'flagged_implausible': '待复核：检测器给出的一个视盘框大小或形状不合理，未被采用。',
        'flagged_other': '待复核：本记录的来源之间存在不一致（见其来源标记）。',
        'not_detected': '{name}：{detector}{at}未检出。', 'at': '在分数≥{t:g}时',
        'detector': '检测器', 'detector_named': '检测器（{name}）',
        'none_looked': '未在本图像中查找任何病灶类型，因此不对病灶作任何陈述。',
        'concl_not_detected': '结论：{detector}{at}未检出所检测的病灶类型（{names}）；这并不表明其不存在。',
        'lesion': '{name}：{count}，{where}。',
        'count_one': '1处', 'count_many': '{n}处', 'count_capped': '{n}处（显示{n}处中最大的{k}处）',
        'count_located': '{n}处（定位其中最大的{k}处）',
        'where_frame': '位于黄斑中心凹{quads}{quad_word}，{nearest}{macula}',
        'nearest': '最近处距中心凹{dist:.1f} DD', 'overlap': '其中一处覆盖中心凹',
        'where_image': '位于图像{quads}',
        'quad_one': '象限', 'quad_many': '象限',
        'macula': '，在中心凹1 DD范围内（累及黄斑）',
        'absent': '未见{name}。',
        'none_annotated': '该图像未标注病灶。',
        'feature': '{name}的标注框区域约占图像面积的{frac}{largest}，从中心凹看位于{hours}方向。',
        'hour_one': '{h}点钟', 'hour_many': '{h}点钟',
        'feature_image': '{name}的标注框区域约占图像面积的{frac}。',
        'largest': '，最大区域约{w} x {h} DD',
        'concl_label': '结论：{text}。',
        'concl_consistent': '结论：可见{names}，符合{diagnosis}表现；该图像未给出分级。',
        'concl_lesions': '结论：可见{names}；该图像未给出诊断或分级。',
        'concl_none': '结论：未见所标注的病灶类型（{names}）。',
        'concl_nothing': '结论：现有标签不足以得出诊断。',
        'and': '和', 'comma': '、',
    },
}


@dataclass(frozen=True)
class LesionSummary:
    """Derived measures of one lesion class in one image (all from its boxes).

    Attributes:
        label: finding id.
        boxes_px: xyxy pixel boxes, largest first.
        positions: one :class:`Position` per box (empty without an optic disc).
        area_frac: area of the union of the **boxes** / image area (0-1); not the lesion area.
    """

    label: str
    boxes_px: List[Tuple[float, float, float, float]]
    positions: List[Position]
    area_frac: float


def union_area_frac(boxes_px: Sequence[Sequence[float]], width: int, height: int) -> float:
    """Area of the union of xyxy pixel boxes divided by the image area (``width * height`` px).

    Each box covers the whole pixels ``[floor(x1), ceil(x2)) x [floor(y1), ceil(y2))``, clipped to the
    image, exactly as if rasterised at 1 px; the union is summed over the cells of the boxes' own
    edge coordinates (coordinate compression), so no image-sized mask is allocated.
    """
    cells = [(max(0, int(np.floor(x1))), max(0, int(np.floor(y1))), min(width, int(np.ceil(x2))),
              min(height, int(np.ceil(y2)))) for x1, y1, x2, y2 in boxes_px]
    cells = [c for c in cells if c[2] > c[0] and c[3] > c[1]]
    if not cells or width <= 0 or height <= 0:
        return 0.0
    xs = np.unique([v for c in cells for v in (c[0], c[2])])
    ys = np.unique([v for c in cells for v in (c[1], c[3])])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for x1, y1, x2, y2 in cells:
        covered[np.searchsorted(ys, y1):np.searchsorted(ys, y2), np.searchsorted(xs, x1):np.searchsorted(xs, x2)] = True
    area = (np.diff(ys)[:, None] * np.diff(xs)[None, :] * covered).sum()
    return float(area) / (width * height)


def disc_side_conflict(record: FundusGenRecord) -> Optional[str]:
    """The eye side the largest optic-disc box gives when the record's fovea is not marked and its
    laterality says the other side (:func:`~fundusexpert_plugin.core.geometry.laterality_disagreement`,
    image-centre rule); ``None`` otherwise. The fovea is then not estimated: the 2.5-DD prior taken
    temporal for the stated eye would put it on the far side of the disc, possibly off the image."""
    discs = record.boxes('optic_disc')
    if not discs or record.boxes('fovea'):
        return None
    return laterality_disagreement(record.laterality, discs[0], record.width)


def frame_of(record: FundusGenRecord) -> Optional[AnatomyFrame]:
    """Anatomy frame from the record's largest optic-disc box (and fovea box, if any); ``None``
    when the record has no optic disc, or when its fovea is not marked and its laterality disagrees
    with the disc's side (:func:`disc_side_conflict`: no fovea is estimated)."""
    discs = record.boxes('optic_disc')
    if not discs or disc_side_conflict(record):
        return None
    foveas = sorted((f for f in record.findings if f.label == 'fovea'),
                    key=lambda f: -(f.box_px[2] - f.box_px[0]) * (f.box_px[3] - f.box_px[1]))
    if not foveas:
        return make_frame(discs[0], record.width, laterality=record.laterality)
    fx1, fy1, fx2, fy2 = foveas[0].box_px
    return make_frame(discs[0], record.width, laterality=record.laterality,
                      fovea_px=((fx1 + fx2) / 2, (fy1 + fy2) / 2), fovea_source=foveas[0].source)


def summarise_lesions(record: FundusGenRecord, frame: Optional[AnatomyFrame]) -> List[LesionSummary]:
    """One :class:`LesionSummary` per lesion class present, in vocabulary order."""
    out = []
    for label in record.present_labels():
        if vocab.FINDINGS[label].kind != 'lesion':
            continue
        boxes = record.boxes(label)
        positions = [locate(b, frame, record.width) for b in boxes] if frame else []
        out.append(LesionSummary(label, boxes, positions, union_area_frac(boxes, record.width, record.height)))
    return out


def photo_was_greyscale(record: FundusGenRecord) -> bool:
    """Whether the record's photograph was greyscale before the intake made it RGB, read from the
    intake's conversion note ``provenance.stages['image']`` (:func:`fundusexpert_plugin.core.images.was_greyscale`:
    ``'L->RGB'``, ``'I;16 16-bit->8-bit RGB'``, ``'DICOM MONOCHROME2->RGB'`` ...). The global sentence
    then says "greyscale fundus photograph" instead of "colour". A record without the note (an
    RGB photograph) is taken as colour."""
    return was_greyscale(record.provenance.stages.get('image', ''))


def _flag_kind(flag: str) -> str:
    """``'implausible'`` (starts with :data:`IMPLAUSIBLE_DISC_FLAG`), a landmark id (``'optic_disc'``/
    ``'fovea'``: starts with its English name and ``':'``, a detector-locator disagreement), a laterality
    source ``'dicom'``/``'label'`` (holds its name in :data:`~fundusexpert_plugin.core.record.LATERALITY_FLAG_SOURCES`,
    :func:`~fundusexpert_plugin.core.record.laterality_flag`) or ``'other'``."""
    if flag.startswith(IMPLAUSIBLE_DISC_FLAG):
        return 'implausible'
    for lab in ('optic_disc', 'fovea'):
        if flag.startswith(vocab.finding_name(lab, 'en') + ':'):
            return lab
    return next((source for source, words in LATERALITY_FLAG_SOURCES.items() if words in flag), 'other')


def _flag_sentences(record: FundusGenRecord, lang: str, p: Dict[str, str]) -> List[str]:
    """One sentence per kind of ``provenance.flags`` (:func:`_flag_kind`): a refused implausible detector
    disc, detector-locator disagreements (:func:`fundusexpert_plugin.engine.pipeline`), a DICOM header's
    or a label's laterality that disagrees with the disc side (that value kept as the record's
    laterality), and any other flag (a laterality flag whose source is not the record's
    ``laterality_source`` included)."""
    kinds = {_flag_kind(f) for f in record.provenance.flags}
    landmark = [lab for lab in ('optic_disc', 'fovea') if lab in kinds]
    out = []
    if 'implausible' in kinds:
        out.append(p['flagged_implausible'])
    if landmark:
        out.append(p['flagged'].format(what=_join([vocab.finding_name(lab, lang) for lab in landmark], p)))
    unstated = False
    for source in LATERALITY_FLAG_SOURCES:
        if source not in kinds:
            continue
        if record.laterality_source == source and record.laterality:
            other_side = 'left' if record.laterality == 'right' else 'right'
            out.append(p[f'flagged_{source}'].format(eye=vocab.laterality_name(record.laterality, lang),
                                                     other=vocab.laterality_name(other_side, lang)))
        else:
            unstated = True
    if 'other' in kinds or unstated:
        out.append(p['flagged_other'])
    return out


def _join(items: List[str], p: Dict[str, str]) -> str:
    if len(items) <= 1:
        return ''.join(items)
    return p['comma'].join(items[:-1]) + p['and'] + items[-1]


def _capital(text: str, lang: str) -> str:
    return text[:1].upper() + text[1:] if lang == 'en' else text


def _hours(positions: List[Position], p: Dict[str, str]) -> str:
    # a bare list of numbers, no 'and': 'clock hours 1, 2, 5' / '1、2、5点钟' (enumeration comma)
    hours = sorted({pos.clock_hour for pos in positions})
    return p['hour_one' if len(hours) == 1 else 'hour_many'].format(h=p['comma'].join(str(h) for h in hours))


def cognitive_chain(record: FundusGenRecord, lang: str = 'en', *, grounded: Optional[GroundedText] = None,
                    max_boxes: Optional[int] = 5) -> str:
    """Write the five-step chain for one record.

    Args:
        record: the image and its findings.
        lang: ``'en'`` or ``'zh'``.
        grounded: when given, anatomy and lesions are written with ``<ref-object>``/``<bbox>``
            placeholders and their objects are appended to it (grounded report); when ``None``
            the text names findings without boxes (plain report).
        max_boxes: at most this many boxes (largest first) are marked per class (``None``: all);
            a capped class says "k of n shown".

    Returns:
        The chain as one paragraph per step, joined by newlines.
    """
    vocab.check_language(lang)
    p = PHRASES[lang]
    frame = frame_of(record)

    def name(label: str, boxes, *, capital: bool = False) -> str:
        # plain report: the display name (capitalised at a sentence start); grounded report:
        # <ref-object><bbox>.. filled with vocab.ref_name, the one casing rule for references
        if grounded is not None:
            return grounded.ref(vocab.ref_name(label, lang), boxes[:max_boxes])
        text = vocab.finding_name(label, lang)
        return _capital(text, lang) if capital else text

    steps: List[str] = []
    # 1. global view
    kind = p['grey' if photo_was_greyscale(record) else 'colour']
    if record.laterality:
        how = p['how_disc'] if record.laterality_source == 'optic_disc_position' else ''
        steps.append(p['global'].format(eye=vocab.laterality_name(record.laterality, lang), how=how, kind=kind))
    else:
        steps.append(p['global_unknown'].format(kind=kind))
    # 2. anatomical positioning
    conflict = disc_side_conflict(record)
    if conflict:
        steps.append(p['disc_side_conflict'].format(
            disc=name('optic_disc', record.boxes('optic_disc')[:1]), side=vocab.side_name(conflict, lang),
            expected=vocab.side_name(record.laterality, lang), eye=vocab.laterality_name(record.laterality, lang)))
    elif frame is None:
        fovea = record.boxes('fovea')
        # laterality judged from a disc-centre point (IDRiD): the disc is known, only its extent is not
        known = record.laterality_source == 'optic_disc_position'
        steps.append(p['no_disc_extent' if known else 'no_disc'] + (p['fovea_no_disc'].format(fovea=name('fovea', fovea))
                                     if fovea else ''))
    else:
        disc_cx = (frame.disc_box_px[0] + frame.disc_box_px[2]) / 2
        side = vocab.side_name('right' if disc_cx > record.width / 2 else 'left', lang)
        anatomy = p['disc'].format(disc=name('optic_disc', [frame.disc_box_px]), side=side)
        if record.provenance.landmarks.get('optic_disc') == 'locator':
            anatomy += p['disc_locator']
        if frame.fovea_source == 'estimated':
            anatomy += ' ' * (lang == 'en') + p['fovea_est'].format(dd=FOVEA_TEMPORAL_DD, inf=FOVEA_INFERIOR_DD)
        else:
            dist = np.hypot(frame.fovea_px[0] - disc_cx,
                            frame.fovea_px[1] - (frame.disc_box_px[1] + frame.disc_box_px[3]) / 2)
            phrase = {'locator': 'fovea_locator', 'detector': 'fovea_detector'}.get(frame.fovea_source, 'fovea_ann')
            anatomy += ' ' * (lang == 'en') + p[phrase].format(
                fovea=name('fovea', record.boxes('fovea')), dist=dist / frame.disc_diameter_px)
        steps.append(anatomy)
    steps += _flag_sentences(record, lang, p)
    # 3. lesion localisation
    lesions = summarise_lesions(record, frame)
    sentences = []
    for les in lesions:
        n = record.region_count(les.label)  # the source's regions: more than the boxes when it kept the largest
        shown = len(les.boxes_px) if grounded is None or max_boxes is None else min(len(les.boxes_px), max_boxes)
        count = (p['count_one'] if n == 1 else
                 p['count_many'].format(n=n) if shown == n else
                 p['count_capped'].format(n=n, k=shown) if grounded is not None else
                 p['count_located'].format(n=n, k=shown))
        if les.positions:
            quads = [q for q in vocab.QUADRANTS if q in {pos.quadrant for pos in les.positions}]
            dist = min(pos.distance_to_fovea_dd for pos in les.positions)
            macula = p['macula'] if any(pos.macular_involvement for pos in les.positions) else ''
            nearest = p['overlap'] if dist == 0 else p['nearest'].format(dist=dist)
            where = p['where_frame'].format(
                quads=_join([vocab.quadrant_name(q, lang) for q in quads], p),
                quad_word=p['quad_one'] if len(quads) == 1 else p['quad_many'], nearest=nearest, macula=macula)
        else:
            parts = sorted({('upper' if (b[1] + b[3]) / 2 < record.height / 2 else 'lower') + '_' +
                            ('left' if (b[0] + b[2]) / 2 < record.width / 2 else 'right') for b in les.boxes_px})
            where = p['where_image'].format(quads=_join([vocab.quadrant_name(q, lang) for q in parts], p))
        sentences.append(p['lesion'].format(name=name(les.label, les.boxes_px, capital=True), count=count,
                                            where=where))
    absent = [lab for lab in record.absent_labels() if vocab.FINDINGS[lab].kind == 'lesion']
    sentences += [p['absent'].format(name=vocab.finding_name(lab, lang)) for lab in absent]
    missed = _not_detected(record)
    detector, at = _detector_words(record, lang)
    sentences += [p['not_detected'].format(name=_capital(vocab.finding_name(lab, lang), lang), detector=detector, at=at)
                  for lab in missed]
    if not sentences:
        engine_made = bool(record.provenance.landmarks) or 'localization' in record.provenance.stages
        sentences.append(p['none_looked' if engine_made else 'none_annotated'])
    steps.append((' ' if lang == 'en' else '').join(sentences))
    # 4. fine-grained features: the engine's checked MLLM expansion if present, else the rule text
    features = record.feature_text.get(lang) or _feature_sentences(lesions, frame, lang)
    if features:
        steps.append(features)
    # 5. diagnostic conclusion
    steps.append(conclusion(record, lang, [les.label for les in lesions], absent))
    return '\n'.join(steps)


def _not_detected(record: FundusGenRecord) -> List[str]:
    """Lesion classes the record's detector looks for and did not find (never reported absent)."""
    return [lab for lab in record.not_detected_labels() if vocab.FINDINGS[lab].kind == 'lesion']


def detector_display_name(localization: Optional[str]) -> str:
    """The readable name of a detector from its exact identity in ``provenance.stages['localization']``.

    ``'mmdet:<config file>@<checkpoint file>'`` (:attr:`fundusexpert_plugin.engine.spec.EngineSpec.detector_name`)
    -> the config file's stem, e.g. ``'mmdet:rtmdet-tiny_idrid-lesions.py@rtmdet-tiny_idrid-lesions.pth'``
    -> ``'rtmdet-tiny_idrid-lesions'``: the chain is a training target, and a model trained on it
    should not learn to write file names or checkpoint names (the record keeps the exact identity).
    Any other name is kept as given; ``''`` for none, ``'none'`` or the
    engine's default ``'detector'`` (the chain then says just "the detector").
    """
    name = (localization or '').strip()
    if name.startswith('mmdet:'):
        name = name[len('mmdet:'):].split('@', 1)[0]
        name = PurePath(name).stem if name.endswith('.py') else PurePath(name).name
    return '' if name in ('', 'none', 'detector') else name


def _detector_words(record: FundusGenRecord, lang: str) -> Tuple[str, str]:
    """``(the detector, ' at score >= t')`` for the not-detected sentences: "the detector (<name>)"
    with :func:`detector_display_name`, never the checkpoint's file name."""
    p = PHRASES[lang]
    t = record.provenance.score_threshold
    name = detector_display_name(record.provenance.stages.get('localization'))
    detector = p['detector_named'].format(name=name) if name else p['detector']
    return detector, ('' if t is None else p['at'].format(t=t))


def _feature_sentences(lesions: List[LesionSummary], frame: Optional[AnatomyFrame], lang: str) -> str:
    p = PHRASES[lang]
    features = []
    for les in lesions:
        frac = f'{les.area_frac:.1%}'
        name = vocab.finding_name(les.label, lang)
        if frame is not None:
            x1, y1, x2, y2 = les.boxes_px[0]
            largest = p['largest'].format(w=_dd_size((x2 - x1) / frame.disc_diameter_px),
                                          h=_dd_size((y2 - y1) / frame.disc_diameter_px))
            features.append(p['feature'].format(name=name, frac=frac, largest=largest, hours=_hours(les.positions, p)))
        else:
            features.append(p['feature_image'].format(name=name, frac=frac))
    return (' ' if lang == 'en' else '').join(features)


def _dd_size(value: float) -> str:
    """A size in disc diameters: one decimal from 0.1 DD, two below (a microaneurysm is about 0.02 DD,
    which one decimal would print as 0.0)."""
    return f'{value:.1f}' if value >= 0.095 else f'{value:.2f}'


def feature_text(record: FundusGenRecord, lang: str = 'en') -> str:
    """Rule-based fine-grained features (step 4): area share, size of the largest region in DD and
    clock hours of each lesion class (``''`` when no lesion is located)."""
    frame = frame_of(record)
    return _feature_sentences(summarise_lesions(record, frame), frame, lang)


def conclusion(record: FundusGenRecord, lang: str, present_lesions: List[str], absent_lesions: List[str]) -> str:
    """The diagnostic conclusion sentence (step 5).

    Uses, in order: the record's ``diagnosis`` and grade labels; else the lesions present with the
    diagnosis they are a recognised sign of (only when every present lesion suggests the same
    one); else the known-absent lesion types.
    """
    p = PHRASES[lang]
    labelled = []
    if 'diagnosis' in record.image_labels:
        labelled.append(vocab.diagnosis_name(record.image_labels['diagnosis'], lang))
    for scale in vocab.DISEASE_SCALES:
        if scale in record.image_labels:
            labelled.append(vocab.grade_name(scale, record.image_labels[scale], lang))
    if labelled:
        return p['concl_label'].format(text=(p['comma'] if lang == 'zh' else '; ').join(labelled))
    if present_lesions:
        names = _join([vocab.finding_name(lab, lang) for lab in present_lesions], p)
        suggested = {d for lab in present_lesions for d in vocab.FINDINGS[lab].suggests}
        if len(suggested) == 1:
            return p['concl_consistent'].format(names=names,
                                                diagnosis=vocab.diagnosis_name(suggested.pop(), lang))
        return p['concl_lesions'].format(names=names)
    if absent_lesions:
        return p['concl_none'].format(names=_join([vocab.finding_name(lab, lang) for lab in absent_lesions], p))
    missed = _not_detected(record)
    if missed:
        detector, at = _detector_words(record, lang)
        return p['concl_not_detected'].format(names=_join([vocab.finding_name(lab, lang) for lab in missed], p),
                                              detector=detector, at=at)
    return p['concl_nothing']


def _lesion_lists(record: FundusGenRecord) -> Tuple[List[str], List[str]]:
    lesions = [lab for lab in record.present_labels() if vocab.FINDINGS[lab].kind == 'lesion']
    absent = [lab for lab in record.absent_labels() if vocab.FINDINGS[lab].kind == 'lesion']
    return lesions, absent


def draws_conclusion(record: FundusGenRecord) -> bool:
    """Whether the record supports any conclusion (:func:`conclusion`): a diagnosis or grade label, a
    lesion present, a lesion type known absent, or a detector's lesion classes looked for. Without
    one, the conclusion is "no diagnosis can be drawn", a non-answer that the diagnosis task does not
    train (:mod:`fundusexpert_plugin.tasks.render`)."""
    return conclusion(record, 'en', *_lesion_lists(record)) != PHRASES['en']['concl_nothing']


def draws_diagnosis(record: FundusGenRecord) -> bool:
    """Whether the record supports a diagnostic answer: a diagnosis or grade label, a lesion present or
    a lesion type known absent. A detector that found none of its classes supports the report's
    "not detected ... this does not show that they are absent", which is not a diagnosis: the
    diagnosis task writes no row for it (ours), as for "no diagnosis can be drawn"."""
    text = conclusion(record, 'en', *_lesion_lists(record))
    return text != PHRASES['en']['concl_nothing'] and not text.startswith(
        PHRASES['en']['concl_not_detected'].split('{')[0])


def diagnosis_answer(record: FundusGenRecord, lang: str) -> str:
    """Answer of the diagnosis task: the conclusion without its ``Conclusion:`` prefix."""
    text = conclusion(record, lang, *_lesion_lists(record))
    prefix = 'Conclusion: ' if lang == 'en' else '结论：'
    text = text[len(prefix):] if text.startswith(prefix) else text
    return _capital(text, lang)
