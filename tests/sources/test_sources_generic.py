"""Tests of engine/sources/generic.py: YOLO (incl. the bundled sample), COCO, class masks, label CSV."""
import json
from pathlib import Path

import pytest

from fundusexpert_plugin.sources.base import ConvertLog, SourceInfo
from fundusexpert_plugin.sources.generic import (parse_class_map, read_class_masks, read_coco, read_label_csv,
                                                        read_yolo, resolve_class)
from fundusexpert_plugin.core.record import FundusDataError

SAMPLE = Path(__file__).resolve().parents[2] / 'fundusexpert_plugin' / 'sample'
SRC = SourceInfo('IDRiD via CODRAS', 'CC BY-SA 4.0', 'von Csefalvay 2019')


def test_yolo_on_the_bundled_sample_gives_the_annotation_boxes():
    recs = list(read_yolo(SAMPLE / 'images', SAMPLE / 'labels_yolo', annotated='classes', source=SRC))
    expected = {}
    for line in (SAMPLE / 'annotations.jsonl').read_text().splitlines():
        row = json.loads(line)
        expected[Path(row['image']).name] = row
    assert sorted(Path(r.image).name for r in recs) == sorted(expected)
    for rec in recs:
        row = expected[Path(rec.image).name]
        assert (rec.width, rec.height) == (row['width'], row['height'])
        want = sorted(('haemorrhages' if a['label'] == 'haemorrhage' else a['label'], a['bbox_xyxy'])
                      for a in row['annotations'])
        got = sorted((f.label, list(f.box_px)) for f in rec.findings)
        assert [label for label, _ in got] == [label for label, _ in want]
        for (_, box_got), (_, box_want) in zip(got, want):
            assert list(box_got) == box_want      # exact: boxes are rounded to 1e-6 px, no 478.99999999999994
        assert rec.provenance.annotated_labels == ['optic_disc', 'hard_exudates', 'haemorrhages']


def test_yolo_bad_lines_and_classes(tmp_path, make_image, make_text):
    make_image(tmp_path / 'images' / 'a.jpg', 200, 100)
    make_text(tmp_path / 'labels' / 'classes.names', 'optic_disc\nvessel\n')
    make_text(tmp_path / 'labels' / 'a.txt', '0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n')
    with pytest.raises(FundusDataError, match=r"classes\.names:2: unknown finding label 'vessel'"):
        list(read_yolo(tmp_path / 'images', tmp_path / 'labels'))
    log = ConvertLog()
    (rec,) = read_yolo(tmp_path / 'images', tmp_path / 'labels', class_map={'vessel': None}, log=log)
    assert [(f.label, f.box_px) for f in rec.findings] == [('optic_disc', (80.0, 30.0, 120.0, 70.0))]
    assert rec.provenance.annotated_labels == [] and rec.provenance.licence == "see the dataset's terms"
    make_text(tmp_path / 'labels' / 'a.txt', '0 0.5 0.5 0.2 0.4\n2 0.1 0.1 0.1 0.1\n')
    with pytest.raises(FundusDataError, match=r"a\.txt:2: column 'class index' = '2': unknown class; expected one of \[0, 1\]"):
        list(read_yolo(tmp_path / 'images', tmp_path / 'labels', class_map={'vessel': None}))
    make_text(tmp_path / 'labels' / 'a.txt', '0 0.5 0.5 0.2\n')
    with pytest.raises(FundusDataError, match=r'a\.txt:1: .*\(5 fields\)'):
        list(read_yolo(tmp_path / 'images', tmp_path / 'labels', class_map={'vessel': None}))


def _coco(tmp_path, **changes):
    data = {'images': [{'id': 1, 'file_name': 'imgs/a.png', 'width': 200, 'height': 100},
                       {'id': 2, 'file_name': 'imgs/b.png', 'width': 200, 'height': 100}],
            'annotations': [{'id': 7, 'image_id': 1, 'category_id': 3, 'bbox': [10.5, 20, 30, 40], 'iscrowd': 0}],
            'categories': [{'id': 3, 'name': 'hard exudates'}, {'id': 4, 'name': 'optic disc'}]}
    data.update(changes)
    path = tmp_path / 'instances.json'
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_are_xywh_pixels(tmp_path, make_image):
    make_image(tmp_path / 'imgs' / 'a.png', 200, 100)
    make_image(tmp_path / 'imgs' / 'b.png', 200, 100)
    a, b = read_coco(_coco(tmp_path), annotated='classes')
    assert [(f.label, f.box_px) for f in a.findings] == [('hard_exudates', (10.5, 20.0, 40.5, 60.0))]
    assert b.findings == [] and b.absent_labels() == ['optic_disc', 'hard_exudates']


def test_coco_crowd_region_is_no_box_and_claims_no_absence_of_its_class(tmp_path, make_image):
    make_image(tmp_path / 'imgs' / 'a.png', 200, 100)
    make_image(tmp_path / 'imgs' / 'b.png', 200, 100)
    good = {'id': 7, 'image_id': 1, 'category_id': 3, 'bbox': [10.5, 20, 30, 40], 'iscrowd': 0}
    crowd = {'id': 8, 'image_id': 2, 'category_id': 3, 'bbox': [100, 50, 50, 40], 'iscrowd': 1,
             'segmentation': {'counts': 'abc', 'size': [100, 200]}}
    log = ConvertLog()
    a, b = read_coco(_coco(tmp_path, annotations=[good, crowd]), annotated='classes', log=log)
    assert [(f.label, f.box_px) for f in a.findings] == [('hard_exudates', (10.5, 20.0, 40.5, 60.0))]
    # b: no box from the crowd region; hard exudates are there but not boxed: only the disc is known absent
    assert b.findings == [] and b.provenance.annotated_labels == ['optic_disc'] and b.absent_labels() == ['optic_disc']
    assert log.notes['hard_exudates: crowd region (iscrowd = 1) not read as a box; class left unannotated'] == 1
    assert not log.skipped


def test_coco_errors_name_the_entry(tmp_path, make_image):
    make_image(tmp_path / 'imgs' / 'a.png', 200, 100)
    make_image(tmp_path / 'imgs' / 'b.png', 200, 90)
    with pytest.raises(FundusDataError, match=r'instances\.json: images\[1\]: width/height = 200x100 but .* 200x90'):
        list(read_coco(_coco(tmp_path)))
    make_image(tmp_path / 'imgs' / 'b.png', 200, 100)
    bad = [{'id': 7, 'image_id': 1, 'category_id': 3, 'bbox': [150, 20, 60, 40]}]
    with pytest.raises(FundusDataError, match=r'instances\.json: images\[0\]: annotations\[0\]: bbox = '
                                              r'\[150\.0, 20\.0, 210\.0, 60\.0\]: outside'):
        list(read_coco(_coco(tmp_path, annotations=bad)))
    log = ConvertLog()
    # lenient works per annotation: the bad box is skipped and counted, image a keeps its record
    records = list(read_coco(_coco(tmp_path, annotations=bad), annotated='classes', lenient=True, log=log))
    assert [r.record_id for r in records] == ['imgs/a.png', 'imgs/b.png'] and records[0].findings == []
    assert len(log.skipped) == 1 and log.skipped_items == {'box_outside_image': 1} and not log.skipped_records


def test_class_mask_folders(tmp_path, make_image, make_mask):
    make_image(tmp_path / 'images' / 'p1.png', 300, 200)
    make_mask(tmp_path / 'masks' / 'optic_disc' / 'p1.png', [(10, 10, 60, 70), (250, 150, 255, 155)], 300, 200)
    make_mask(tmp_path / 'masks' / 'EX' / 'p1_EX.png', [(100, 100, 140, 120)], 300, 200)
    (tmp_path / 'masks' / 'haemorrhage').mkdir()
    (rec,) = read_class_masks(tmp_path / 'images', tmp_path / 'masks', missing='absent', infer_laterality=True)
    # optic disc keeps the largest cluster only; the stray 5x5 px spot is dropped
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (100.0, 100.0, 140.0, 120.0)),
                                                          ('optic_disc', (10.0, 10.0, 60.0, 70.0))]
    assert rec.absent_labels() == ['haemorrhages'] and rec.laterality == 'left'
    with pytest.raises(FundusDataError, match=r"haemorrhage mask = 'p1': no file"):
        list(read_class_masks(tmp_path / 'images', tmp_path / 'masks', missing='error'))


def test_label_csv(tmp_path, make_image, make_text):
    make_image(tmp_path / 'a.jpg', 50, 40)
    make_image(tmp_path / 'b.jpg', 50, 40)
    csv = make_text(tmp_path / 'labels.csv', 'image,dr_grade,dme_grade,diagnosis,laterality,site\n'
                                             'a.jpg,2,1,,OD,x\nb.jpg,,,Glaucoma,left,y\n')
    log = ConvertLog()
    a, b = read_label_csv(csv, source=SRC, log=log)
    assert (a.image_labels, a.laterality) == ({'dr_grade': '2', 'dme_grade': '1'}, 'right')
    assert (b.image_labels, b.laterality, b.laterality_source) == ({'diagnosis': 'glaucoma'}, 'left', 'label')
    assert any("column 'site'" in r for r in log.notes)
    make_text(csv, 'image,diagnosis\na.jpg,retinitis\n')
    with pytest.raises(FundusDataError, match=r"labels\.csv:2: column 'diagnosis' = 'retinitis': unknown"):
        list(read_label_csv(csv))
    make_text(csv, 'Image,Image_Quality,DR grade\na.jpg,2,1.0\n')       # every grade scale, any header spelling
    (a,) = read_label_csv(csv)
    assert a.image_labels == {'dr_grade': '1', 'image_quality': '2'}
    make_text(csv, 'image,Image_Quality\na.jpg,3\n')
    with pytest.raises(FundusDataError, match=r"labels\.csv:2: column 'Image_Quality' = '3': unknown grade"):
        list(read_label_csv(csv))


def test_label_csv_without_an_image_column_names_the_expected_column_first(tmp_path, make_text):
    csv = make_text(tmp_path / 'labels.csv', 'img,dr_grade\na.jpg,2\n')
    with pytest.raises(FundusDataError) as exc:
        list(read_label_csv(csv))
    assert str(exc.value) == (f"{csv}:1: no image column; expected 'image' (also accepted: ['imgName', 'Image name', "
                              "'Image No', 'image_id', 'filename', 'file name', 'name', 'Drishti-GS File']); "
                              "columns found: ['img', 'dr_grade']")


def test_class_map_and_vocabulary_aliases():
    mapping = parse_class_map(['exudate=hard_exudates', 'scar=-'])
    assert mapping == {'exudate': 'hard_exudates', 'scar': None}
    assert resolve_class('haemorrhage', {}, where='w') == 'haemorrhages'
    assert resolve_class('Scar', mapping, where='w') is None
    with pytest.raises(FundusDataError, match=r"classes\.names:3: unknown finding label 'vessel'.*--class-map vessel="):
        resolve_class('vessel', {}, where='classes.names:3')


def test_yolo_and_coco_lenient_skips_leave_the_box_class_unannotated(tmp_path, make_image, make_text):
    make_image(tmp_path / 'images' / 'a.jpg', 200, 100)
    make_text(tmp_path / 'labels' / 'classes.names', 'optic_disc\nhard_exudates\n')
    make_text(tmp_path / 'labels' / 'a.txt', '0 0.5 0.5 0.2 0.4\n1 1.5 0.1 0.1 0.1\n')    # cx > 1: skipped
    (rec,) = read_yolo(tmp_path / 'images', tmp_path / 'labels', annotated='classes', lenient=True)
    assert [f.label for f in rec.findings] == ['optic_disc']
    assert rec.provenance.annotated_labels == ['optic_disc'] and rec.absent_labels() == []
    make_image(tmp_path / 'imgs' / 'a.png', 200, 100)
    make_image(tmp_path / 'imgs' / 'b.png', 200, 100)
    bad = {'id': 8, 'image_id': 2, 'category_id': 4, 'bbox': [10, 20, -5, 40], 'iscrowd': 0}   # negative width
    good = {'id': 7, 'image_id': 1, 'category_id': 3, 'bbox': [10.5, 20, 30, 40], 'iscrowd': 0}
    a, b = read_coco(_coco(tmp_path, annotations=[good, bad]), annotated='classes', lenient=True)
    assert a.absent_labels() == ['optic_disc']                   # image a: every class known
    assert b.findings == [] and b.provenance.annotated_labels == ['hard_exudates']   # b lost its disc box


def test_label_csv_ids_keep_the_extension_and_a_repeat_names_the_csv_and_both_lines(tmp_path, make_image, make_text):
    make_image(tmp_path / 'a.jpg', 50, 40)
    make_image(tmp_path / 'a.png', 50, 40)
    make_image(tmp_path / 'sub' / 'b.jpg', 50, 40)
    csv = make_text(tmp_path / 'labels.csv', 'image,dr_grade\na.jpg,1\na.png,2\nsub\\b.jpg,0\n')
    assert [r.record_id for r in read_label_csv(csv)] == ['a.jpg', 'a.png', 'sub/b.jpg']   # the box-csv rule
    make_text(csv, 'image,dr_grade\na.jpg,1\na.png,2\na.jpg,3\n')
    with pytest.raises(FundusDataError, match=r"^\S*labels\.csv:4: record_id 'a\.jpg' already given at "
                                              r"\S*labels\.csv:2; ids must be unique within a dataset$"):
        list(read_label_csv(csv))
    log = ConvertLog()
    kept = list(read_label_csv(csv, lenient=True, log=log))   # lenient keeps the first
    assert [(r.record_id, r.image_labels['dr_grade']) for r in kept] == [('a.jpg', '1'), ('a.png', '2')]
    assert log.skipped_records == {'duplicate_id': 1}



def test_an_absolute_image_path_gives_the_relative_id_and_meets_its_relative_spelling(tmp_path, make_image, make_text):
    """No local folder in record ids: /…/set/a.jpg inside the dataset folder is id 'a.jpg', so the same photo
    written both ways is caught as a repeat; a file outside (allowed) keeps its ../ path."""
    from fundusexpert_plugin.sources.box_csv import read_box_csv

    make_image(tmp_path / 'set' / 'a.jpg', 50, 40)
    make_image(tmp_path / 'other' / 'c.jpg', 50, 40)
    absolute = tmp_path / 'set' / 'a.jpg'
    csv = make_text(tmp_path / 'set' / 'labels.csv', f'image,dr_grade\n{absolute},1\n./a.jpg,2\n')
    with pytest.raises(FundusDataError, match=r"labels\.csv:3: record_id 'a\.jpg' already given at \S*labels\.csv:2"):
        list(read_label_csv(csv))
    make_text(csv, f'image,dr_grade\n{absolute},1\n../other/c.jpg,2\n')
    assert [r.record_id for r in read_label_csv(csv, allow_outside_root=True)] == ['a.jpg', '../other/c.jpg']
    boxes = make_text(tmp_path / 'set' / 'boxes.csv',
                      f'image,label,x1,y1,x2,y2\n{absolute},optic_disc,1,1,9,9\na.jpg,optic_disc,20,20,30,30\n')
    [rec] = read_box_csv(boxes)                     # one image, whichever way it is written
    assert rec.record_id == 'a.jpg' and len(rec.boxes('optic_disc')) == 2


def test_label_csv_sha256_column_is_the_expected_digest(tmp_path, make_image, make_text):
    import hashlib
    digest = hashlib.sha256(make_image(tmp_path / 'a.jpg', 50, 40).read_bytes()).hexdigest()
    csv = make_text(tmp_path / 'labels.csv', f'image,dr_grade,sha256\na.jpg,1,{digest}\n')
    log = ConvertLog()
    (rec,) = read_label_csv(csv, log=log)
    assert rec.sha256 == digest and not any('sha256' in r for r in log.notes)
    wrong = '0' * 64
    make_text(csv, f'image,dr_grade,sha256\na.jpg,1,{wrong}\n')
    with pytest.raises(FundusDataError, match=rf"labels\.csv:2: image: \S*a\.jpg: sha256 {digest} does not match "
                                              rf"the recorded {wrong}$"):
        list(read_label_csv(csv))
    make_text(csv, 'image,dr_grade,sha256\na.jpg,1,abc\n')
    with pytest.raises(FundusDataError, match=r"labels\.csv:2: column 'sha256' = 'abc': expected 64 hexadecimal "
                                              r"digits \(SHA-256 of the image file\)$"):
        list(read_label_csv(csv))


def test_a_skipped_label_cell_is_logged_as_an_item_never_a_box(tmp_path, make_image, make_text, caplog):
    make_image(tmp_path / 'a.jpg', 50, 40)
    csv = make_text(tmp_path / 'bad.csv', 'image,dr_grade,dme_grade\na.jpg,5,1\n')
    log = ConvertLog()
    with caplog.at_level('WARNING'):
        (rec,) = read_label_csv(csv, lenient=True, log=log)
    assert rec.image_labels == {'dme_grade': '1'} and log.skipped_items == {'unknown_grade': 1}
    assert f"skipped item: {csv}:2: column 'dr_grade' = '5': unknown grade" in caplog.text
    assert 'skipped box' not in caplog.text
    assert log.counts() == {'records': {}, 'boxes/items': {'unknown_grade': 1}}


def test_a_missing_annotation_path_is_file_not_found_without_a_format(tmp_path):
    from fundusexpert_plugin.sources.registry import detect_format, read_annotations
    with pytest.raises(FileNotFoundError, match=r'annotations not found: .*nope\.jsonl'):
        detect_format(tmp_path / 'nope.jsonl')
    with pytest.raises(FileNotFoundError, match='nope.jsonl'):
        list(read_annotations(tmp_path / 'nope.jsonl'))


def test_a_label_file_or_mask_without_a_photo_is_an_error_or_one_counted_skip(tmp_path, make_image, make_mask,
                                                                                 make_text):
    make_image(tmp_path / 'images' / 'a.jpg', 200, 100)
    make_text(tmp_path / 'labels' / 'classes.names', 'optic_disc\n')          # the class file is no label file
    make_text(tmp_path / 'labels' / 'a.txt', '0 0.5 0.5 0.2 0.4\n')
    make_text(tmp_path / 'labels' / 'zzz.txt', '0 0.5 0.5 0.2 0.4\n')        # its photo was renamed or is missing
    with pytest.raises(FundusDataError, match=r"^\S*labels/zzz\.txt: YOLO label file for no photo: no image named "
                                              r"'zzz' among the photos converted"):
        list(read_yolo(tmp_path / 'images', tmp_path / 'labels'))
    log = ConvertLog()
    (rec,) = read_yolo(tmp_path / 'images', tmp_path / 'labels', lenient=True, log=log)
    assert rec.record_id == 'a.jpg' and log.skipped_records == {'annotation_without_image': 1}
    # class mask folders: a mask named by the suffix rule (p1_EX) belongs to p1; zz_EX belongs to nothing
    make_image(tmp_path / 'photos' / 'p1.jpg', 300, 200)
    make_mask(tmp_path / 'masks' / 'EX' / 'p1_EX.png', [(100, 100, 140, 120)], 300, 200)
    make_mask(tmp_path / 'masks' / 'EX' / 'zz_EX.png', [(100, 100, 140, 120)], 300, 200)
    with pytest.raises(FundusDataError, match=r"zz_EX\.png: EX mask for no photo"):
        list(read_class_masks(tmp_path / 'photos', tmp_path / 'masks'))
    log = ConvertLog()
    (rec,) = read_class_masks(tmp_path / 'photos', tmp_path / 'masks', lenient=True, log=log)
    assert [f.label for f in rec.findings] == ['hard_exudates'] and log.skipped_records == {'annotation_without_image': 1}


def test_yolo_reads_the_class_names_of_an_ultralytics_data_yaml(tmp_path, make_image, make_text):
    # Ultralytics layout: <root>/data.yaml (names), <root>/images/train, <root>/labels/train
    make_image(tmp_path / 'images' / 'train' / 'a.jpg', 200, 100)
    make_text(tmp_path / 'labels' / 'train' / 'a.txt', '1 0.5 0.5 0.2 0.4\n')
    make_text(tmp_path / 'data.yaml', 'path: .\ntrain: images/train\nnames:\n  0: optic disc\n  1: hard exudates\n')
    (rec,) = read_yolo(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train')   # found two folders up
    # cx 0.5 w 0.2 of 200 px -> 80..120; cy 0.5 h 0.4 of 100 px -> 30..70
    assert [(f.label, f.box_px) for f in rec.findings] == [('hard_exudates', (80.0, 30.0, 120.0, 70.0))]
    make_text(tmp_path / 'data.yaml', 'names: [hard exudates, optic disc]\n')
    (rec,) = read_yolo(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train', classes=tmp_path / 'data.yaml')
    assert [f.label for f in rec.findings] == ['optic_disc']
    make_text(tmp_path / 'data.yaml', 'path: .\ntrain: images/train\n')
    with pytest.raises(FundusDataError, match=r"data\.yaml: names = None: expected the list \(or index mapping\)"):
        list(read_yolo(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train'))
    make_text(tmp_path / 'data.yaml', 'names: {0: optic disc, 2: hard exudates}\n')
    with pytest.raises(FundusDataError, match=r"data\.yaml: names = .*: expected class indices 0\.\.1 as keys"):
        list(read_yolo(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train'))
    make_text(tmp_path / 'data.yaml', 'names: [vessel]\n')
    with pytest.raises(FundusDataError, match=r"data\.yaml: names\[0\]: unknown finding label 'vessel'"):
        list(read_yolo(tmp_path / 'images' / 'train', tmp_path / 'labels' / 'train'))
