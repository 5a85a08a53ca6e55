from collections import Counter
import json

import pytest

from fundusexpert_plugin.core.record import FundusDataError, read_records, write_records


def test_record_canonicalises_labels_and_orders_boxes_by_area(make_record):
    rec = make_record([('hemorrhage', (0, 0, 10, 10)), ('haemorrhages', (0, 0, 30, 30)), ('OD', (100, 100, 200, 220))])
    assert rec.present_labels() == ['optic_disc', 'haemorrhages']
    assert rec.boxes('haemorrhages') == [(0, 0, 30, 30), (0, 0, 10, 10)]
    assert rec.absent_labels() == ['hard_exudates']  # annotated by the source, no box


@pytest.mark.parametrize('finding,match', [
    (('hard_exudates', (50, 10, 20, 30)), r"findings\.0\.box_px|findings\[0\]\.box_px.*inverted"),
    (('hard_exudates', (0, 0, 1001.5, 30)), r"findings\[0\]\.box_px.*outside the image"),   # > 1 px out
    (('exudatez', (0, 0, 10, 10)), r"findings\[0\]\.label = 'exudatez': unknown finding label 'exudatez'"),
])
def test_bad_findings_name_file_record_and_field(tmp_path, make_record, finding, match):
    good = make_record().model_dump()
    good['findings'] = [{'label': finding[0], 'box_px': list(finding[1])}]
    path = tmp_path / 'recs.jsonl'
    path.write_text(json.dumps(make_record().model_dump()) + '\n' + json.dumps(good) + '\n')
    with pytest.raises(FundusDataError, match=rf"recs\.jsonl:2: record 'r1': .*({match})"):
        list(read_records(path))


def test_a_record_level_box_check_reads_as_field_value_rule(tmp_path, make_record):
    """The box checks run on the whole record: their message names the field itself, with no pydantic
    location or prefix in front of it (strict and lenient alike)."""
    bad = make_record([('hard_exudates', (0, 0, 10, 10)), ('hard_exudates', (0, 10, 20, 30))]).model_dump()
    bad['findings'][1]['box_px'] = [50, 10, 20, 30]
    path = tmp_path / 'recs.jsonl'
    path.write_text(json.dumps(bad) + '\n')
    with pytest.raises(FundusDataError) as exc:
        list(read_records(path))
    assert str(exc.value).startswith(f"{path}:1: record 'r1': findings[1].box_px = [50.0, 10.0, 20.0, 30.0]: inverted")
    box_skipped = []
    list(read_records(path, lenient=True, box_skipped=box_skipped))
    assert box_skipped == [str(exc.value)]


def test_lenient_read_skips_and_reports(tmp_path, make_record):
    path = tmp_path / 'recs.jsonl'
    bad = make_record().model_dump()
    bad['width'] = 0
    path.write_text(json.dumps(make_record(record_id='a').model_dump()) + '\n{not json\n' + json.dumps(bad) + '\n')
    skipped = []
    records = list(read_records(path, lenient=True, skipped=skipped))
    assert [r.record_id for r in records] == ['a']
    assert len(skipped) == 2
    assert 'recs.jsonl:2: not valid JSON' in skipped[0]
    assert 'recs.jsonl:3' in skipped[1] and 'width' in skipped[1]


def test_records_reader_applies_the_annotation_box_rule(tmp_path, make_record):
    # 1000 x 800 image: x2 = 1000.5 is within 1 px (clipped to 1000, as every annotation reader does);
    # the skipped boxes are counted under the annotation readers' reasons
    from collections import Counter
    data = make_record([('OD', (100, 100, 200, 220))]).model_dump()
    data['findings'] += [{'label': 'hard_exudates', 'box_px': [990, 10, 1000.5, 20]},
                         {'label': 'hard_exudates', 'box_px': [990, 10, 1003, 20]},
                         {'label': 'haemorrhages', 'box_px': [10, 10, '20', 20]},
                         {'label': 'unicorn', 'box_px': [10, 10, 20, 20]}]
    path = tmp_path / 'r.jsonl'
    path.write_text(json.dumps(data) + '\n')
    boxes, messages = Counter(), []
    (rec,) = read_records(path, lenient=True, box_counts=boxes, box_skipped=messages)
    assert rec.boxes('hard_exudates') == [(990.0, 10.0, 1000.0, 20.0)]
    assert boxes == {'box_outside_image': 1, 'box_not_numbers': 1, 'unknown_label': 1} and len(messages) == 3
    with pytest.raises(FundusDataError, match=r"r\.jsonl:1: record 'r1': findings\[3\]\.box_px\[2\] = '20'"):
        list(read_records(path))


def test_lenient_read_drops_only_the_bad_finding_and_its_class_from_annotated_labels(tmp_path, make_record):
    from collections import Counter
    data = make_record([('OD', (100, 100, 200, 220)), ('hard_exudates', (10, 10, 20, 20))]).model_dump()
    labels = data['provenance']['annotated_labels']
    assert 'haemorrhages' in labels and 'hard_exudates' in labels
    data['findings'].append({'label': 'hemorrhage', 'box_px': [50, 10, 20, 30]})   # alias, inverted box
    path = tmp_path / 'r.jsonl'
    path.write_text(json.dumps(data) + '\n')
    boxes, messages = Counter(), []
    (rec,) = read_records(path, lenient=True, box_counts=boxes, box_skipped=messages)
    assert [f.label for f in rec.findings] == ['optic_disc', 'hard_exudates']
    assert rec.provenance.annotated_labels == [a for a in labels if a != 'haemorrhages']
    assert boxes == {'box_empty_or_inverted': 1} and len(messages) == 1 and 'findings[2].box_px' in messages[0]
    data['findings'][2]['label'] = 'exudatez'                                       # class unknown
    path.write_text(json.dumps(data) + '\n')
    (rec,) = read_records(path, lenient=True)
    assert len(rec.findings) == 2 and rec.provenance.annotated_labels == []


def test_unknown_image_label_is_rejected(tmp_path, make_record):
    data = make_record().model_dump()
    data['image_labels'] = {'dr_grade': '7'}
    path = tmp_path / 'r.jsonl'
    path.write_text(json.dumps(data) + '\n')
    with pytest.raises(FundusDataError, match=r"image_labels.*unknown grade dr_grade='7'"):
        list(read_records(path))


def test_write_then_read_round_trip(tmp_path, make_record):
    recs = [make_record([('optic_disc', (1, 2, 30, 40))], record_id='x', image_labels={'dr_grade': '2'})]
    path = write_records(recs, tmp_path / 'out.jsonl')
    assert list(read_records(path)) == recs


def test_string_or_boolean_coordinates_are_refused_never_coerced(tmp_path, make_record):
    """As in every annotation reader (README: strings refused, never coerced); lenient skips the box only."""
    bad = make_record([('hard_exudates', (0, 0, 10, 10)), ('optic_disc', (100, 100, 200, 220))]).model_dump()
    bad['findings'][0]['box_px'] = ['10', 10, 50, 50]
    bad['findings'][1]['score'] = '0.9'
    path = tmp_path / 'recs.jsonl'
    path.write_text(json.dumps(bad) + '\n')
    with pytest.raises(FundusDataError) as exc:
        list(read_records(path))
    assert str(exc.value) == (f"{path}:1: record 'r1': findings[0].box_px[0] = '10': Input should be a valid number; "
                              "findings[1].score = '0.9': Input should be a valid number")
    box_skipped = []
    (rec,) = read_records(path, lenient=True, box_skipped=box_skipped)
    assert rec.findings == [] and len(box_skipped) == 2
    bad['findings'] = [{'label': 'optic_disc', 'box_px': [True, 100, 200, 220]}]
    path.write_text(json.dumps(bad) + '\n')
    with pytest.raises(FundusDataError, match=r"findings\[0\]\.box_px\[0\] = True: Input should be a valid number"):
        list(read_records(path))


def test_lenient_read_drops_only_a_bad_image_label_and_keeps_the_boxes(tmp_path, make_record):
    rec = make_record([('optic_disc', (100, 100, 200, 220))]).model_dump()
    rec['image_labels'] = {'dr_grade': '5', 'dme_grade': '1'}          # ICDR has no grade 5; DME 1 is fine
    path = tmp_path / 'recs.jsonl'
    path.write_text(json.dumps(rec) + '\n')
    with pytest.raises(FundusDataError, match=r"recs\.jsonl:1: record 'r1': image_labels: unknown grade dr_grade='5'"):
        list(read_records(path))
    messages, counts = [], Counter()
    (kept,) = read_records(path, lenient=True, box_skipped=messages, box_counts=counts)
    assert kept.image_labels == {'dme_grade': '1'} and kept.boxes('optic_disc') == [(100, 100, 200, 220)]
    assert counts == {'invalid_label': 1} and len(messages) == 1 and "'5'" in messages[0]


def test_an_integer_grade_is_the_grade_and_a_boolean_is_refused(make_record):
    from fundusexpert_plugin.core.record import FundusGenRecord
    data = make_record().model_dump()
    assert FundusGenRecord.model_validate({**data, 'image_labels': {'dr_grade': 2}}).image_labels == {'dr_grade': '2'}
    with pytest.raises(ValueError, match='valid string'):
        FundusGenRecord.model_validate({**data, 'image_labels': {'dr_grade': True}})
    with pytest.raises(ValueError, match='valid string'):
        FundusGenRecord.model_validate({**data, 'image_labels': {'dr_grade': 2.5}})


@pytest.mark.parametrize('key, value', [('width', 1000.0), ('height', '800'), ('width', True), ('height', None)])
def test_a_size_that_is_not_a_json_integer_is_refused_as_the_codras_reader_refuses_it(tmp_path, make_record,
                                                                                     key, value):
    good = make_record([('optic_disc', (100, 100, 200, 220))], record_id='ok').model_dump()
    bad = {**make_record(record_id='bad').model_dump(), key: value}
    path = tmp_path / 'recs.jsonl'
    path.write_text(json.dumps(good) + '\n' + json.dumps(bad) + '\n')
    with pytest.raises(FundusDataError) as exc:
        list(read_records(path))
    assert str(exc.value) == f"{path}:2: record 'bad': {key} = {value!r}: expected an integer number of pixels"
    assert exc.value.reason == 'size_not_integer'
    skipped, counts = [], Counter()
    assert [r.record_id for r in read_records(path, lenient=True, skipped=skipped, counts=counts)] == ['ok']
    assert counts == {'size_not_integer': 1} and skipped == [str(exc.value)]


def test_a_label_laterality_against_the_disc_side_is_flagged_once_and_kept(make_record):
    from fundusexpert_plugin.core.geometry import laterality_disagreement
    from fundusexpert_plugin.core.record import flag_laterality, record_laterality_flag
    # disc centre x 162 of 1072: left of the image centre (536) -> a left eye by the macula-centred rule
    assert laterality_disagreement('right', (112, 315, 212, 415), 1072) == 'left'
    assert laterality_disagreement('left', (112, 315, 212, 415), 1072) is None
    assert laterality_disagreement(None, (112, 315, 212, 415), 1072) is None
    # a marked fovea decides instead of the image centre: disc right of a fovea at x 100 -> right eye
    assert laterality_disagreement('right', (112, 315, 212, 415), 1072, fovea_x=100.0) is None
    disc = [('optic_disc', (112, 315, 212, 415))]
    rec = make_record(disc, width=1072, height=712, laterality='right', laterality_source='label')
    flag = ("laterality label 'right' disagrees with the optic-disc position ('left' by the macula-centred rule); "
            "keeping the label")
    assert record_laterality_flag(rec) == flag
    flagged, added = flag_laterality(rec)
    assert added == flag and flagged.provenance.flags == [flag] and rec.provenance.flags == []
    assert (flagged.laterality, flagged.laterality_source) == ('right', 'label')        # kept, never resolved
    assert flag_laterality(flagged) == (flagged, None)                               # flagged once
    # with a fovea left of the disc, the right eye agrees with the disc
    fovea = make_record(disc + [('fovea', (40, 340, 80, 380))], width=1072, height=712, laterality='right',
                        laterality_source='label')
    assert record_laterality_flag(fovea) is None
    dicom = make_record(disc, width=1072, height=712, laterality='right', laterality_source='dicom')
    assert record_laterality_flag(dicom).startswith("DICOM laterality 'right' disagrees")
    # a laterality judged from the disc, or a record without a disc, has nothing to disagree with
    assert record_laterality_flag(make_record(disc, width=1072, height=712, laterality='right',
                                              laterality_source='optic_disc_position')) is None
    assert record_laterality_flag(make_record(width=1072, height=712, laterality='right',
                                              laterality_source='label')) is None
