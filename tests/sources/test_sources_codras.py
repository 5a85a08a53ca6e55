"""The CODRAS-style annotation jsonl reader (our own format): strict and per-box lenient reading;
licence and attribution from each line's own source dataset."""
import json

import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.detector.coco import samples_from_records
from fundusexpert_plugin.sample import SAMPLE_DIR as IDRID
from fundusexpert_plugin.sources.base import ConvertLog
from fundusexpert_plugin.sources.codras import codras_provenance, read_codras
from fundusexpert_plugin.sources.generic import read_yolo


def _image(path, width=100, height=80):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (width, height)).save(path)


def test_codras_reader_maps_labels_to_finding_ids_in_vocabulary_order(codras_dir):
    data = samples_from_records(list(read_codras(codras_dir / 'annotations.jsonl')))
    assert data.classes == ('optic_disc', 'haemorrhages')
    assert data.image_root == codras_dir / 'images'          # the deepest folder holding every image
    assert data.samples[0].file_name == '0001.jpg' and (data.samples[0].width, data.samples[0].height) == (100, 80)
    assert data.samples[0].labels == ('haemorrhages', 'optic_disc')
    assert data.samples[0].boxes_px == ((10, 20, 30, 40), (50, 10, 90, 60))
    assert data.samples[1].labels == ()


def test_codras_reader_accepts_the_images_folder_itself(codras_dir):
    data = samples_from_records(list(read_codras(codras_dir / 'annotations.jsonl', codras_dir / 'images')))
    assert [s.file_name for s in data.samples] == ['0001.jpg', '0002.jpg']


def test_codras_bad_box_names_file_line_record_and_field(codras_dir):
    path = codras_dir / 'annotations.jsonl'
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row['annotations'] = [dict(label='hard_exudates', bbox_xyxy=[30, 10, 20, 40]),
                          dict(label='hard_exudates', bbox_xyxy=[1, 2, 3, 4])]
    path.write_text(lines[0] + '\n' + json.dumps(row) + '\n')
    with pytest.raises(ValueError, match=r"annotations\.jsonl:2: record '0002': "
                                         r"annotations\[0\]\.bbox_xyxy = .*inverted"):
        list(read_codras(path))
    log = ConvertLog()                                   # lenient: the good box beside it is kept
    second = list(read_codras(path, lenient=True, log=log))[1]
    assert [f.box_px for f in second.findings] == [(1, 2, 3, 4)]
    assert log.skipped_items == {'box_empty_or_inverted': 1} and not log.skipped_records


def test_a_skipped_box_leaves_its_class_unannotated_and_an_unknown_class_leaves_none(codras_dir):
    path = codras_dir / 'annotations.jsonl'
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row['annotations'] = [dict(label='optic_disc', bbox_xyxy=[10, 20, 30, 40]),
                          dict(label='hard_exudates', bbox_xyxy=[30, 10, 20, 40])]   # inverted: skipped
    path.write_text(lines[0] + '\n' + json.dumps(row) + '\n')
    first, second = read_codras(path, lenient=True)
    assert first.provenance.annotated_labels == ['optic_disc', 'hard_exudates', 'haemorrhages']
    # hard exudates lost a box, so "no hard exudates" is not known; the other two classes still are
    assert second.provenance.annotated_labels == ['optic_disc', 'haemorrhages']
    row['annotations'][1] = dict(label='drusen??', bbox_xyxy=[1, 2, 3, 4])             # class unknown
    path.write_text(lines[0] + '\n' + json.dumps(row) + '\n')
    log = ConvertLog()
    second = list(read_codras(path, lenient=True, log=log))[1]
    assert second.provenance.annotated_labels == [] and [f.label for f in second.findings] == ['optic_disc']
    assert log.skipped_items == {'unknown_label': 1}


def test_codras_missing_image_names_the_record_and_the_path(codras_dir):
    (codras_dir / 'images' / '0002.jpg').unlink()
    with pytest.raises(FundusDataError, match=r":2: record '0002': image: image not found: .*0002\.jpg"):
        list(read_codras(codras_dir / 'annotations.jsonl'))


def test_codras_unknown_label_suggests_a_finding_id(codras_dir):
    path = codras_dir / 'annotations.jsonl'
    path.write_text(path.read_text().replace('haemorrhage"', 'haemorhage"'))
    with pytest.raises(ValueError, match=r":1: record '0001': annotations\[0\]\.label: unknown "
                                         r"finding label 'haemorhage'; did you mean 'haemorrhages'"):
        list(read_codras(path))


def test_class_id_contradicting_the_label_is_an_error_or_a_warning(codras_dir):
    path = codras_dir / 'annotations.jsonl'
    path.write_text(path.read_text().replace('"class_id": 0', '"class_id": 1'))
    with pytest.raises(FundusDataError, match=r"annotations\[1\]\.class_id = 1 contradicts label 'optic_disc'"):
        list(read_codras(path))
    log = ConvertLog()
    first = list(read_codras(path, lenient=True, log=log))[0]
    assert [f.label for f in first.findings] == ['haemorrhages', 'optic_disc'] and len(log.warnings) == 1


def test_idrid_codras_jsonl_and_yolo_labels_give_the_same_boxes():
    # the jsonl also carries 6 official IDRiD fovea centres that the YOLO labels do not: leave them out
    jsonl = samples_from_records(list(read_codras(IDRID / 'annotations.jsonl')),
                                 classes=('optic_disc', 'hard_exudates', 'haemorrhages'))
    yolo = samples_from_records(list(read_yolo(IDRID / 'images', IDRID / 'labels_yolo')))
    assert jsonl.dropped == {'class fovea not requested': 6}
    assert len(jsonl.samples) == 12 and sum(len(s.labels) for s in jsonl.samples) == 135
    assert jsonl.classes == yolo.classes == ('optic_disc', 'hard_exudates', 'haemorrhages')
    by_name = {s.file_name: s for s in jsonl.samples}
    for s in yolo.samples:
        ref = by_name[s.file_name]
        assert (s.width, s.height, s.labels) == (ref.width, ref.height, ref.labels)
        np.testing.assert_allclose(s.boxes_px, ref.boxes_px, atol=1.0)  # jsonl: whole pixels


def test_licence_follows_each_lines_source(tmp_path):
    (tmp_path / 'images').mkdir()
    for name in ('a', 'b', 'c', 'd'):
        Image.new('RGB', (100, 80)).save(tmp_path / 'images' / f'{name}.png')
    box = [{'label': 'optic_disc', 'bbox_xyxy': [60, 20, 90, 50]}]
    lines = [{'image': 'images/a.png', 'width': 100, 'height': 80, 'annotations': box,
              'source_dataset': 'IDRiD (grading/localization set, 516 imgs; exact IDRiD id not given by CODRAS)'},
             {'image': 'images/b.png', 'width': 100, 'height': 80, 'annotations': box, 'source_dataset': 'DIARETDB1'},
             {'image': 'images/c.png', 'width': 100, 'height': 80, 'annotations': box},          # no source
             {'image': 'images/d.png', 'width': 100, 'height': 80, 'annotations': box, 'source_dataset': 'Messidor'}]
    path = tmp_path / 'annotations.jsonl'
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))
    a, b, c, d = (r.provenance for r in read_codras(path))
    assert a.licence.startswith('images: IDRiD, CC BY 4.0') and 'DIARETDB1' not in a.licence
    assert b.licence.startswith('images: DIARETDB1, research use only') and 'IDRiD' not in b.licence
    assert b.attribution == 'DIARETDB1 (Kauppi et al. 2007); CODRAS boxes (von Csefalvay 2019)'
    for p in (a, b):
        assert p.licence.endswith('boxes: CODRAS, (c) Chris von Csefalvay 2019, CC BY-SA 4.0')
    assert (c.licence, c.source_dataset) == ('unknown', 'unknown (CODRAS boxes)')
    assert (d.licence, d.source_dataset) == ('unknown', 'Messidor')
    assert 'IDRiD' not in c.attribution and 'IDRiD' not in d.attribution


def test_a_line_naming_two_sources_is_unknown():
    assert codras_provenance('IDRiD or DIARETDB1')[1] == 'unknown'
    assert codras_provenance('diaretdb1 (lesion set)')[1].startswith('images: DIARETDB1')


def test_fovea_xy_is_a_one_dd_fovea_box_and_marks_the_fovea_annotated():
    """The bundled sample's 0015: CODRAS disc box and the official IDRiD fovea centre, scaled."""
    rows = {json.loads(line)['codras_id']: json.loads(line) for line in (IDRID / 'annotations.jsonl').read_text().splitlines()}
    row = rows['0015']
    rec = next(r for r in read_codras(IDRID / 'annotations.jsonl') if r.record_id == '0015')
    disc = next(a['bbox_xyxy'] for a in row['annotations'] if a['label'] == 'optic_disc')
    dd = ((disc[2] - disc[0]) + (disc[3] - disc[1])) / 2
    (fx, fy) = row['fovea_xy']
    assert rec.boxes('fovea') == [pytest.approx((fx - dd / 2, fy - dd / 2, fx + dd / 2, fy + dd / 2))]
    assert 'fovea' in rec.provenance.annotated_labels
    # a photo without fovea_xy says nothing about the fovea
    other = next(r for r in read_codras(IDRID / 'annotations.jsonl') if r.record_id == '0003')
    assert other.boxes('fovea') == [] and 'fovea' not in other.provenance.annotated_labels



def test_a_bad_fovea_xy_is_one_skipped_item_and_the_fovea_is_not_claimed(tmp_path):
    row = next(json.loads(line) for line in (IDRID / 'annotations.jsonl').read_text().splitlines()
               if json.loads(line)['codras_id'] == '0015')
    (tmp_path / 'a.jsonl').write_text(json.dumps({**row, 'fovea_xy': ['x', 1]}) + '\n')
    log = ConvertLog()
    (rec,) = read_codras(tmp_path / 'a.jsonl', IDRID, lenient=True, log=log)
    assert rec.boxes('fovea') == [] and rec.boxes('optic_disc')
    assert 'fovea' not in rec.provenance.annotated_labels and log.skipped_items == {'point_not_numbers': 1}
