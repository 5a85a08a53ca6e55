"""Tests of fundusexpert_plugin.detector.coco (records -> samples -> COCO json, split)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundusexpert_plugin.detector.coco import DetectionSample, samples_from_records, split_samples, to_coco, write_coco
from fundusexpert_plugin.sources.codras import read_codras
from fundusexpert_plugin.sources.generic import read_coco, read_yolo


def _image(path: Path, width=100, height=80):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (width, height)).save(path)


def test_yolo_reader_converts_normalised_centres_to_pixels_and_refuses_far_out_boxes(tmp_path):
    _image(tmp_path / 'img' / 'a.png', 200, 100)
    _image(tmp_path / 'img' / 'b.png', 200, 100)  # no label file: an image without objects
    labels = tmp_path / 'labels'
    labels.mkdir()
    (labels / 'classes.names').write_text('optic_disc\nhard_exudates\nhaemorrhage\n')
    # cx 0.5 * 200 = 100, w 0.2 * 200 = 40 -> x 80..120; cy 0.5 * 100 = 50, h 0.4 -> y 30..70
    # second box: cx 0.9, w 0.2 -> x 160..200; third: cx 0.95 -> x 170..210, 10 px out: refused (one rule)
    (labels / 'a.txt').write_text('2 0.5 0.5 0.2 0.4\n0 0.9 0.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n')
    with pytest.raises(ValueError, match=r'a\.txt:3: box = .*outside the 200x100 px image by more than 1\.0 px'):
        list(read_yolo(tmp_path / 'img', labels))
    # annotated='classes': an image without a label file is kept, with no objects (YOLO convention)
    data = samples_from_records(list(read_yolo(tmp_path / 'img', labels, lenient=True, annotated='classes')))
    assert data.classes == ('optic_disc', 'haemorrhages')
    a, b = data.samples
    assert a.labels == ('haemorrhages', 'optic_disc')
    np.testing.assert_allclose(a.boxes_px, [(80, 30, 120, 70), (160, 40, 200, 60)])
    assert (b.file_name, b.labels) == ('b.png', ())


def test_yolo_errors_name_the_file_and_line(tmp_path):
    _image(tmp_path / 'img' / 'a.png')
    labels = tmp_path / 'labels'
    labels.mkdir()
    with pytest.raises(FileNotFoundError, match='YOLO class-name file not found'):
        list(read_yolo(tmp_path / 'img', labels))
    (labels / 'classes.names').write_text('optic_disc\n')
    (labels / 'a.txt').write_text('0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n')
    with pytest.raises(ValueError, match=r"a\.txt:2: column 'class index' = '3': unknown class; expected one of \[0\]"):
        list(read_yolo(tmp_path / 'img', labels))


def test_coco_round_trip_keeps_samples_and_uses_xywh_from_category_one(codras_dir, tmp_path):
    data = samples_from_records(list(read_codras(codras_dir / 'annotations.jsonl')))
    coco = to_coco(data.samples, data.classes)
    assert coco['categories'][0] == dict(id=1, name='optic_disc', supercategory='fundus')
    assert coco['annotations'][0]['bbox'] == [10, 20, 20, 20]
    assert coco['annotations'][0]['category_id'] == 2  # haemorrhages
    path = write_coco(codras_dir / 'images' / 'train.json', data.samples, data.classes)
    back = samples_from_records(list(read_coco(path, codras_dir / 'images', annotated='classes')))
    assert back.samples == data.samples and back.classes == data.classes


def test_no_record_is_an_error():
    with pytest.raises(ValueError, match='records: no images found'):
        samples_from_records([])


def test_split_is_seeded_disjoint_and_never_empty():
    samples = [DetectionSample(f'{i}.jpg', 10, 10) for i in range(10)]
    train, val = split_samples(samples, 0.2, seed=3)
    assert (len(train), len(val)) == (8, 2)
    assert split_samples(samples, 0.2, seed=3) == (train, val)
    assert not {s.file_name for s in train} & {s.file_name for s in val}
    assert [len(x) for x in split_samples(samples[:2], 0.01, seed=0)] == [1, 1]
    with pytest.raises(ValueError, match=r'`val_split` must be in \(0, 1\), got 1.5'):
        split_samples(samples, 1.5, seed=0)
