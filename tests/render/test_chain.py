import pytest

from fundusexpert_plugin.render.chain import cognitive_chain, diagnosis_answer, union_area_frac
from fundusexpert_plugin.render.grounded_text import GroundedText


def _left_eye(make_record, **kw):
    return make_record([('optic_disc', (100, 100, 200, 200)), ('hard_exudates', (500, 60, 540, 100))],
                       laterality='left', laterality_source='optic_disc_position', **kw)


def test_plain_chain_en_every_sentence_from_the_record(make_record):
    text = cognitive_chain(_left_eye(make_record), 'en')
    # values worked by hand in tests/render/test_position.py: superotemporal, 1.25 DD, 2 o'clock;
    # box 40x40 px = 0.4 x 0.4 DD; area 1600 / (1000*800) = 0.2 %
    assert text == (
        'This is a colour fundus photograph of the left eye (judged from the position of the optic disc).\n'
        'The optic disc lies on the left side of the image. The fovea is not marked; it is taken 2.5 disc '
        'diameters (DD) temporal and 0.25 DD inferior to the centre of the optic disc.\n'
        'Hard exudates: one region, in the superotemporal quadrant around the fovea, the nearest 1.2 DD from it. '
        'No haemorrhages are seen.\n'
        'The boxed regions of hard exudates cover about 0.2% of the image; the largest region measures about '
        '0.4 x 0.4 DD, '
        'at clock hour 2 as seen from the fovea.\n'
        'Conclusion: hard exudates are present, consistent with diabetic retinopathy; no severity grade is given '
        'for this image.')


def test_grounded_chain_collects_objects_in_reading_order(make_record):
    grounded = GroundedText()
    text = cognitive_chain(_left_eye(make_record), 'zh', grounded=grounded)
    assert text.splitlines()[1].startswith('<ref-object><bbox>位于图像左侧。')
    assert '<ref-object><bbox>：1处，位于黄斑中心凹颞上象限，最近处距中心凹1.2 DD。未见出血。' in text
    assert grounded.objects() == {'ref': ['视盘', '硬性渗出'],
                                  'bbox': [[100.0, 100.0, 200.0, 200.0], [500.0, 60.0, 540.0, 100.0]],
                                  'bbox_type': 'real'}
    assert text.count('<ref-object>') == 2 and text.count('<bbox>') == 2


def test_grade_label_drives_conclusion_and_is_never_invented(make_record):
    graded = _left_eye(make_record, image_labels={'dr_grade': '2'})
    assert cognitive_chain(graded, 'en').endswith(
        'Conclusion: moderate non-proliferative diabetic retinopathy (moderate NPDR).')
    assert 'grade is given' in diagnosis_answer(_left_eye(make_record), 'en')
    assert 'NPDR' not in cognitive_chain(_left_eye(make_record), 'en')


def test_only_exhaustively_annotated_classes_are_called_absent(make_record):
    rec = make_record([('optic_disc', (100, 100, 200, 200))], laterality='left',
                      provenance={'source_dataset': 't', 'licence': 'x', 'annotated_labels': ['optic_disc', 'hard_exudates']})
    text = cognitive_chain(rec, 'en')
    assert 'No hard exudates are seen.' in text
    assert 'haemorrhages' not in text and 'microaneurysms' not in text
    assert diagnosis_answer(rec, 'en') == 'None of the annotated lesion types (hard exudates) is present.'


def test_no_disc_falls_back_to_image_positions(make_record):
    rec = make_record([('haemorrhages', (600, 500, 700, 600))])
    text = cognitive_chain(rec, 'en')
    assert 'The optic disc is not identified' in text
    assert 'in the lower-right part of the image' in text


def test_a_marked_fovea_without_a_disc_is_named_and_grounded(make_record):
    """IDRiD grading records: a fovea point (a 1-DD box) and no disc box."""
    rec = make_record([('fovea', (400, 300, 460, 360))])
    assert cognitive_chain(rec, 'en').splitlines()[1] == (
        'The optic disc is not identified, so positions are given relative to the image. The fovea is marked.')
    for lang, ref in (('en', 'fovea'), ('zh', '黄斑中心凹')):
        grounded = GroundedText()
        line = cognitive_chain(rec, lang, grounded=grounded).splitlines()[1]
        assert line.count('<ref-object><bbox>') == 1
        assert grounded.objects() == {'ref': [ref], 'bbox': [[400.0, 300.0, 460.0, 360.0]], 'bbox_type': 'real'}
    assert 'fovea' not in cognitive_chain(make_record([('haemorrhages', (600, 500, 700, 600))]), 'en')
    # laterality from a disc-centre point (IDRiD): the disc is not "not identified", its extent is not marked
    idrid = make_record([('fovea', (400, 300, 460, 360))], laterality='left', laterality_source='optic_disc_position')
    lines = cognitive_chain(idrid, 'en').splitlines()
    assert lines[0].endswith('of the left eye (judged from the position of the optic disc).')
    assert lines[1] == ('The extent of the optic disc is not marked, so positions are given relative to the image. '
                        'The fovea is marked.')
    assert cognitive_chain(idrid, 'zh').splitlines()[1] == '未标注视盘范围，以下位置相对于图像描述。已标注黄斑中心凹。'


def test_union_area_counts_overlap_once():
    # two 10x10 boxes overlapping by 5x10 -> union 150 px of 100x100
    assert union_area_frac([(0, 0, 10, 10), (5, 0, 15, 10)], 100, 100) == 0.015


def test_grounded_refs_follow_one_casing_rule_in_both_languages(make_record):
    # vocab.ref_name: the display name as in vocab.FINDINGS, never capitalised at a sentence start
    for lang, names in (('en', ['optic disc', 'hard exudates']), ('zh', ['视盘', '硬性渗出'])):
        grounded = GroundedText()
        text = cognitive_chain(_left_eye(make_record), lang, grounded=grounded)
        assert grounded.refs == names
    assert text.splitlines()[2].startswith('<ref-object><bbox>')


def test_grounded_chain_says_how_many_boxes_are_shown(make_record):
    # 7 haemorrhage boxes, cap 5: "7 regions (5 of 7 shown, the largest)" / "7处（显示7处中最大的5处）"
    boxes = [('haemorrhages', (100 + 30 * i, 500, 120 + 30 * i, 520)) for i in range(7)]
    rec = make_record([('optic_disc', (100, 100, 200, 200)), *boxes], laterality='left')
    grounded = GroundedText()
    en = cognitive_chain(rec, 'en', grounded=grounded, max_boxes=5)
    assert '<ref-object><bbox><bbox><bbox><bbox><bbox>: 7 regions (5 of 7 shown, the largest), ' in en
    assert len(grounded.bboxes) == 1 + 5
    zh = cognitive_chain(rec, 'zh', grounded=GroundedText(), max_boxes=5)
    assert '：7处（显示7处中最大的5处），' in zh
    # no cap: every box, no "shown" remark
    grounded = GroundedText()
    full = cognitive_chain(rec, 'en', grounded=grounded, max_boxes=None)
    assert ': 7 regions, ' in full and len(grounded.bboxes) == 1 + 7


def test_union_area_frac_equals_a_1px_rasterisation_of_random_boxes():
    import random

    import numpy as np
    rng = random.Random(0)
    for _ in range(200):
        w, h = rng.randint(5, 60), rng.randint(5, 60)
        boxes = []
        for _ in range(rng.randint(1, 6)):
            x1, y1 = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
            boxes.append((x1, y1, min(w, x1 + rng.uniform(0.1, w)), min(h, y1 + rng.uniform(0.1, h))))
        mask = np.zeros((h, w), dtype=bool)
        for x1, y1, x2, y2 in boxes:
            mask[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = True
        assert union_area_frac(boxes, w, h) == pytest.approx(mask.mean(), abs=1e-12)


def test_clock_hours_are_listed_with_the_enumeration_comma_in_chinese(make_record):
    # fovea centre (500, 400); haemorrhage centres right of, above and below it -> 3, 12 and 6 o'clock
    rec = make_record([('optic_disc', (100, 100, 200, 200)), ('fovea', (470, 370, 530, 430)),
                       ('haemorrhages', (700, 390, 720, 410)), ('haemorrhages', (490, 190, 510, 210)),
                       ('haemorrhages', (490, 590, 510, 610))], laterality='left')
    assert '从中心凹看位于3、6、12点钟方向。' in cognitive_chain(rec, 'zh').splitlines()[3]
    assert 'at clock hours 3, 6, 12 as seen from the fovea.' in cognitive_chain(rec, 'en').splitlines()[3]


def test_greyscale_is_read_from_the_intake_notes_of_real_conversions(tmp_path):
    """Files of each Pillow mode through core.images.load_image: single-channel sources are greyscale."""
    from PIL import Image

    from fundusexpert_plugin.core.images import load_image, was_greyscale
    files = {'L.png': Image.new('L', (8, 8), 90), '1.png': Image.new('1', (8, 8), 1),
             'LA.png': Image.new('LA', (8, 8), (90, 255)), 'I16.png': Image.new('I;16', (8, 8), 3000),
             'F.tif': Image.new('F', (8, 8), 12.5), 'RGB.png': Image.new('RGB', (8, 8), (90, 20, 10)),
             'RGBA.png': Image.new('RGBA', (8, 8), (90, 20, 10, 255)), 'CMYK.tif': Image.new('CMYK', (8, 8)),
             'P.png': Image.new('RGB', (8, 8), (90, 20, 10)).convert('P')}
    notes = {}
    for name, im in files.items():
        im.save(tmp_path / name)
        notes[name] = load_image(tmp_path / name).conversion
    grey = {name for name, note in notes.items() if was_greyscale(note)}
    assert grey == {'L.png', '1.png', 'LA.png', 'I16.png', 'F.tif'}, notes
    assert notes['L.png'] == 'L->RGB' and notes['RGB.png'] == ''
    # DICOM notes (core.dicom.read_dicom) and several notes joined by '; '
    assert was_greyscale('DICOM MONOCHROME1->RGB') and was_greyscale('DICOM MONOCHROME2->RGB; frame 0 of 3')
    assert was_greyscale('exif-rotated (orientation 6); L->RGB')
    assert not was_greyscale('DICOM YBR_FULL_422->RGB') and not was_greyscale('DICOM RGB') and not was_greyscale('')


def test_greyscale_global_sentence_en_zh(make_record):
    prov = {'source_dataset': 'test', 'licence': 'CC0', 'stages': {'image': 'I;16 16-bit->8-bit RGB'}}
    rec = _left_eye(make_record, provenance=prov)
    assert cognitive_chain(rec, 'en').splitlines()[0] == (
        'This is a greyscale fundus photograph of the left eye (judged from the position of the optic disc).')
    assert cognitive_chain(rec, 'zh').splitlines()[0] == '这是一张左眼的灰度眼底照片（根据视盘位置判断）。'
    unknown = make_record([], provenance=prov)
    assert cognitive_chain(unknown, 'en').splitlines()[0] == (
        'This is a greyscale fundus photograph; the side of the eye is not determined.')
    assert cognitive_chain(unknown, 'zh').splitlines()[0] == '这是一张灰度眼底照片，眼别未确定。'


@pytest.mark.parametrize('stage,name', [
    ('mmdet:rtmdet-tiny_idrid-lesions.py@rtmdet-tiny_idrid-lesions.pth', 'rtmdet-tiny_idrid-lesions'),
    ('mmdet:rtmdet.py@epoch_12.pth', 'rtmdet'),          # the checkpoint's name never shows
    ('rtmdet', 'rtmdet'), ('none', ''), ('detector', ''), (None, '')])
def test_detector_display_name(stage, name):
    from fundusexpert_plugin.render.chain import detector_display_name
    assert detector_display_name(stage) == name


def test_an_unnamed_detector_is_just_the_detector(make_record):
    prov = {'source_dataset': 'test', 'licence': 'CC0', 'detector_labels': ['hard_exudates'],
            'score_threshold': 0.5, 'stages': {'localization': 'detector'}}
    rec = make_record([('optic_disc', (100, 100, 200, 200))], provenance=prov)
    assert 'Hard exudates: not detected by the detector at score \u2265 0.5.' in cognitive_chain(rec, 'en')
    assert '硬性渗出：检测器在分数\u22650.5时未检出。' in cognitive_chain(rec, 'zh')


def test_a_detector_that_found_nothing_gives_a_report_but_no_diagnosis_row(make_record, tmp_path):
    from fundusexpert_plugin.render.chain import draws_conclusion, draws_diagnosis
    from fundusexpert_plugin.tasks.config import default_tasks_dir, load_task
    from fundusexpert_plugin.tasks.render import RenderContext, render_rows
    prov = {'source_dataset': 'test', 'licence': 'CC0', 'detector_labels': ['hard_exudates', 'haemorrhages'],
            'score_threshold': 0.3, 'stages': {'localization': 'mmdet:rtm.py@rtm.pth'}}
    rec = make_record([('optic_disc', (100, 100, 200, 200))], provenance=prov)
    assert draws_conclusion(rec) and not draws_diagnosis(rec)
    ctx = RenderContext(tmp_path, '.')
    assert render_rows(rec, load_task(default_tasks_dir() / 'diagnosis.yaml'), 'en', ctx) == []
    (report,) = render_rows(rec, load_task(default_tasks_dir() / 'report.yaml'), 'en', ctx)
    assert ('Conclusion: none of the lesion types looked for (hard exudates and haemorrhages) is detected by the '
            'detector (rtm) at score \u2265 0.3; this does not show that they are absent.') in report['messages'][1]['content']
    # a detected lesion, or a label, is a diagnosis again
    found = make_record([('optic_disc', (100, 100, 200, 200)), ('haemorrhages', (300, 300, 320, 320))], provenance=prov)
    assert draws_diagnosis(found) and len(render_rows(found, load_task(default_tasks_dir() / 'diagnosis.yaml'),
                                                      'en', ctx)) == 1


def test_each_kind_of_flag_gets_its_own_sentence_and_an_unknown_one_the_generic_review_line(make_record):
    base = make_record([('optic_disc', (100, 100, 200, 220))]).model_dump()
    en_other = 'Flagged for review: the sources of this record disagree (see its provenance flags).'
    zh_other = '待复核：本记录的来源之间存在不一致（见其来源标记）。'

    def chain(flags, lang='en', **kw):
        data = {**base, **kw, 'provenance': {**base['provenance'], 'flags': flags}}
        return cognitive_chain(type(make_record()).model_validate(data), lang)

    assert en_other in chain(['two annotators disagree on the disc']) and zh_other in chain(['x'], 'zh')
    assert 'Flagged' not in chain([])
    # a DICOM laterality flag on a record whose laterality is not the header's: stated generically
    dicom = "dcm-1: DICOM laterality 'right' disagrees with the optic-disc position ('left' ...)"
    assert en_other in chain([dicom]) and 'DICOM header' not in chain([dicom])
    text = chain([dicom, 'fovea: the detector (1, 1) and the landmark locator (9, 9) are 2.0 DD apart'],
                 laterality='right', laterality_source='dicom')
    assert text.count('Flagged for review') == 2 and en_other not in text
    assert 'disagree on the position of the fovea.' in text and 'the DICOM header gives the right eye' in text


def _right_label_left_disc(make_record, findings=(), **kw):
    # disc centre x 162 of 1072 (left of the image centre): a left eye by the macula-centred rule
    return make_record([('optic_disc', (112, 315, 212, 415)), ('haemorrhages', (600, 300, 630, 330)), *findings],
                       width=1072, height=712, laterality='right', laterality_source='label', **kw)


def test_a_laterality_that_disagrees_with_the_disc_places_no_fovea_and_says_why(make_record):
    from fundusexpert_plugin.render.chain import feature_text, frame_of
    rec = _right_label_left_disc(make_record)
    assert frame_of(rec) is None       # the 2.5-DD prior temporal of a right eye would be at x = -88: off the image
    lines = cognitive_chain(rec, 'en').splitlines()
    assert lines[0] == 'This is a colour fundus photograph of the right eye.'
    assert lines[1] == ('The optic disc lies on the left side of the image, whereas in a right eye it lies on the '
                        'right: the side of the eye and the position of the disc disagree, so the fovea, which is '
                        'not marked, is not estimated and positions are given relative to the image.')
    assert lines[2] == 'Haemorrhages: one region, in the upper-right part of the image. No hard exudates are seen.'
    assert 'temporal' not in '\n'.join(lines) and 'DD' not in '\n'.join(lines)
    assert feature_text(rec) == 'The boxed regions of haemorrhages cover about 0.1% of the image.'
    zh = cognitive_chain(rec, 'zh').splitlines()
    assert zh[1] == '视盘位于图像左侧，而非右眼应有的右侧；眼别与视盘位置不一致，未标注的黄斑中心凹不作推定，以下位置相对于图像描述。'
    grounded = GroundedText()
    text = cognitive_chain(rec, 'en', grounded=grounded)
    assert text.splitlines()[1].startswith('The <ref-object><bbox> lies on the left side of the image, whereas')
    assert grounded.objects()['bbox'][0] == [112.0, 315.0, 212.0, 415.0]
    # a marked fovea: the frame is kept, nothing is estimated
    fovea = _right_label_left_disc(make_record, [('fovea', (400, 340, 440, 380))])
    assert frame_of(fovea).fovea_source == 'annotation' and 'whereas in a right eye' not in cognitive_chain(fovea)


def test_a_label_laterality_flag_is_stated_as_such(make_record):
    flag = ("laterality label 'right' disagrees with the optic-disc position ('left' by the macula-centred rule); "
            "keeping the label")
    prov = {'source_dataset': 'test', 'licence': 'CC0', 'flags': [flag]}
    lines = cognitive_chain(_right_label_left_disc(make_record, provenance=prov), 'en').splitlines()
    assert lines[2] == ('Flagged for review: the laterality label gives the right eye, but the position of the optic '
                        'disc suggests the left eye; the label is followed.')
    zh = cognitive_chain(_right_label_left_disc(make_record, provenance=prov), 'zh').splitlines()
    assert zh[2] == '待复核：眼别标签记录为右眼，但视盘位置提示为左眼；按标签记录。'
    # the same flag on a record whose laterality is the header's is not stated as a label's
    dicom = _right_label_left_disc(make_record, provenance=prov).model_copy(update={'laterality_source': 'dicom'})
    assert 'Flagged for review: the sources of this record disagree' in cognitive_chain(dicom)
    assert 'laterality label gives' not in cognitive_chain(dicom)


def test_small_lesions_are_sized_in_hundredths_of_a_disc_diameter(make_record):
    # disc 100 x 100 px: 1 DD = 100 px; a 4 x 3 px microaneurysm is 0.04 x 0.03 DD, not "0.0 x 0.0"
    rec = make_record([('optic_disc', (100, 100, 200, 200)), ('microaneurysms', (600, 400, 604, 403))],
                      laterality='left', provenance={'source_dataset': 't', 'licence': 'CC0'})
    assert 'the largest region measures about 0.04 x 0.03 DD' in cognitive_chain(rec, 'en')
    big = make_record([('optic_disc', (100, 100, 200, 200)), ('haemorrhages', (600, 400, 650, 430))],
                      laterality='left', provenance={'source_dataset': 't', 'licence': 'CC0'})
    assert 'the largest region measures about 0.5 x 0.3 DD' in cognitive_chain(big, 'en')
