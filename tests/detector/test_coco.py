"""Tests of fundusexpert_plugin.detector.coco (annotation readers -> COCO json)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.detector.coco import (DetectionSample, read_annotations, read_coco,
                                             read_codras, read_yolo, split_samples, to_coco,
                                             write_coco)

from fundusexpert_plugin.sample import SAMPLE_DIR as IDRID  # noqa: E402  (12 bundled IDRiD photos)


def _image(path: Path, width=100, height=80):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (width, height)).save(path)


@pytest.fixture
def codras_dir(tmp_path):
    _image(tmp_path / 'images' / '0001.jpg')
    _image(tmp_path / 'images' / '0002.jpg')
    rows = [
        dict(image='images/0001.jpg', codras_id='0001', width=100, height=80, annotations=[
            dict(label='haemorrhage', class_id=2, bbox_xyxy=[10, 20, 30, 40]),
            dict(label='optic_disc', class_id=0, bbox_xyxy=[50, 10, 90, 60])]),
        dict(image='images/0002.jpg', codras_id='0002', width=100, height=80, annotations=[]),
    ]
    (tmp_path / 'annotations.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    return tmp_path


def test_codras_reader_maps_labels_to_finding_ids_in_vocabulary_order(codras_dir):
    data = read_codras(codras_dir / 'annotations.jsonl')
    assert data.classes == ('optic_disc', 'haemorrhages')
    assert data.image_root == codras_dir
    assert data.samples[0] == DetectionSample('images/0001.jpg', 100, 80,
                                              ('haemorrhages', 'optic_disc'),
                                              ((10, 20, 30, 40), (50, 10, 90, 60)))
    assert data.samples[1].labels == ()


def test_codras_reader_accepts_the_images_folder_itself(codras_dir):
    data = read_codras(codras_dir / 'annotations.jsonl', codras_dir / 'images')
    assert [s.file_name for s in data.samples] == ['0001.jpg', '0002.jpg']


def test_codras_bad_box_names_file_line_record_and_field(codras_dir):
    path = codras_dir / 'annotations.jsonl'
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row['annotations'] = [dict(label='hard_exudates', bbox_xyxy=[30, 10, 20, 40])]
    path.write_text(lines[0] + '\n' + json.dumps(row) + '\n')
    with pytest.raises(ValueError, match=r"annotations\.jsonl:2: record '0002': "
                                         r"annotations\[0\]\.bbox_xyxy = .*inverted"):
        read_codras(path)


def test_codras_missing_image_lists_the_paths_tried(codras_dir):
    (codras_dir / 'images' / '0002.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r":2: record '0002': image not found; tried"):
        read_codras(codras_dir / 'annotations.jsonl')


def test_codras_unknown_label_suggests_a_finding_id(codras_dir):
    path = codras_dir / 'annotations.jsonl'
    path.write_text(path.read_text().replace('haemorrhage"', 'haemorhage"'))
    with pytest.raises(ValueError, match=r":1: record '0001': annotations\[0\]\.label: unknown "
                                         r"finding label 'haemorhage'; did you mean 'haemorrhages'"):
        read_codras(path)


def test_yolo_reader_converts_normalised_centres_to_pixels_and_clips(tmp_path):
    _image(tmp_path / 'img' / 'a.png', 200, 100)
    _image(tmp_path / 'img' / 'b.png', 200, 100)  # no label file: an image without objects
    labels = tmp_path / 'labels'
    labels.mkdir()
    (labels / 'classes.names').write_text('optic_disc\nhard_exudates\nhaemorrhage\n')
    # cx 0.5 * 200 = 100, w 0.2 * 200 = 40 -> x 80..120; cy 0.5 * 100 = 50, h 0.4 -> y 30..70
    # second box: cx 0.95, w 0.2 -> x 170..210 clipped to 200
    (labels / 'a.txt').write_text('2 0.5 0.5 0.2 0.4\n0 0.95 0.5 0.2 0.2\n')
    data = read_yolo(labels, tmp_path / 'img')
    assert data.classes == ('optic_disc', 'haemorrhages')
    a, b = data.samples
    assert a.labels == ('haemorrhages', 'optic_disc')
    np.testing.assert_allclose(a.boxes_px, [(80, 30, 120, 70), (170, 40, 200, 60)])
    assert (b.file_name, b.labels) == ('b.png', ())


def test_yolo_errors_name_the_file_and_line(tmp_path):
    _image(tmp_path / 'img' / 'a.png')
    labels = tmp_path / 'labels'
    labels.mkdir()
    with pytest.raises(FileNotFoundError, match='no classes.names or classes.txt'):
        read_yolo(labels, tmp_path / 'img')
    (labels / 'classes.names').write_text('optic_disc\n')
    (labels / 'a.txt').write_text('0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n')
    with pytest.raises(ValueError, match=r"a\.txt:2: '3 0\.5 0\.5 0\.1 0\.1': expected 5 fields "
                                         r'with class in 0\.\.0'):
        read_yolo(labels, tmp_path / 'img')


def test_coco_round_trip_keeps_samples_and_uses_xywh_from_category_one(codras_dir, tmp_path):
    data = read_codras(codras_dir / 'annotations.jsonl')
    coco = to_coco(data.samples, data.classes)
    assert coco['categories'][0] == dict(id=1, name='optic_disc', supercategory='fundus')
    assert coco['annotations'][0]['bbox'] == [10, 20, 20, 20]
    assert coco['annotations'][0]['category_id'] == 2  # haemorrhages
    path = write_coco(tmp_path / 'out' / 'train.json', data.samples, data.classes)
    back = read_coco(path, codras_dir)
    assert back.samples == data.samples and back.classes == data.classes


def test_read_annotations_rejects_unknown_format_and_missing_images_folder(codras_dir):
    with pytest.raises(ValueError, match=r"unknown annotation format 'voc'"):
        read_annotations(codras_dir / 'annotations.jsonl', 'voc')
    with pytest.raises(ValueError, match=r"format 'yolo' needs the images folder"):
        read_annotations(codras_dir, 'yolo')


def test_split_is_seeded_disjoint_and_never_empty():
    samples = [DetectionSample(f'{i}.jpg', 10, 10) for i in range(10)]
    train, val = split_samples(samples, 0.2, seed=3)
    assert (len(train), len(val)) == (8, 2)
    assert split_samples(samples, 0.2, seed=3) == (train, val)
    assert not {s.file_name for s in train} & {s.file_name for s in val}
    assert [len(x) for x in split_samples(samples[:2], 0.01, seed=0)] == [1, 1]
    with pytest.raises(ValueError, match=r'`val_split` must be in \(0, 1\), got 1.5'):
        split_samples(samples, 1.5, seed=0)


def test_idrid_codras_jsonl_and_yolo_labels_give_the_same_boxes():
    jsonl = read_codras(IDRID / 'annotations.jsonl')
    yolo = read_yolo(IDRID / 'labels_yolo', IDRID / 'images')
    assert len(jsonl.samples) == 12 and sum(len(s.labels) for s in jsonl.samples) == 135
    assert jsonl.classes == yolo.classes == ('optic_disc', 'hard_exudates', 'haemorrhages')
    by_name = {Path(s.file_name).name: s for s in jsonl.samples}
    for s in yolo.samples:
        ref = by_name[s.file_name]
        assert (s.width, s.height, s.labels) == (ref.width, ref.height, ref.labels)
        np.testing.assert_allclose(s.boxes_px, ref.boxes_px, atol=1.0)  # jsonl: whole pixels
