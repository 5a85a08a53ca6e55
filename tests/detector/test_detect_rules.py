"""Post-processing rules of the detector output: nested boxes, bright lesions in the disc, tiling."""
import json

import numpy as np

from fundusexpert_plugin.core.geometry import fraction_inside, intersection_over_smaller, iou
from fundusexpert_plugin.core.images import load_image
from fundusexpert_plugin.detector.detect import Detection, clean_detections, merge_detections, suppress_nested, tile_windows
from fundusexpert_plugin.sample import ANNOTATIONS, SAMPLE_DIR
from fundusexpert_plugin.testing.fake_detector import TileConfusedDetector

SAMPLE = {json.loads(line)['codras_id']: json.loads(line) for line in ANNOTATIONS.read_text().splitlines()}


def test_intersection_over_smaller_and_fraction_inside_by_hand():
    # inter 5x10 = 50; areas 100 and 200 -> 50 / 100
    assert intersection_over_smaller((0, 0, 10, 10), (5, 0, 25, 10)) == 0.5
    assert intersection_over_smaller((0, 0, 10, 10), (1, 1, 9, 9)) == 1.0    # IoU only 0.64
    assert iou((0, 0, 10, 10), (1, 1, 9, 9)) == 0.64
    assert fraction_inside((5, 0, 25, 10), (0, 0, 10, 10)) == 0.25           # 50 of 200


def test_nested_boxes_of_one_class_are_suppressed_on_a_real_photo():
    """Photo 0008: 19 CODRAS exudate boxes; boxes 4 and 17 lie >= 0.8 inside boxes 1 and 8 (0.93, 0.96)
    and box 4 also inside box 2 (1.0); no other pair reaches 0.8."""
    boxes = [a['bbox_xyxy'] for a in SAMPLE['0008']['annotations'] if a['label'] == 'hard_exudates']
    dets = [Detection('hard_exudates', tuple(b), 0.9 - i / 100) for i, b in enumerate(boxes)]
    kept = suppress_nested(dets)
    assert len(boxes) == 19 and len(kept) == 17
    assert [d for d in dets if d not in kept] == [dets[4], dets[17]]
    # a nested box of another class is kept
    other = Detection('haemorrhages', dets[4].box_px, 0.1)
    assert other in suppress_nested(dets + [other])


def test_bright_lesion_mostly_inside_the_disc_is_not_an_exudate():
    disc = Detection('optic_disc', (100, 100, 200, 200), 0.9)
    rim = Detection('hard_exudates', (150, 150, 190, 190), 0.8)        # wholly inside the disc
    near = Detection('hard_exudates', (180, 100, 260, 140), 0.7)       # 20 x 40 of 80 x 40 inside: 0.25
    haem = Detection('haemorrhages', (150, 150, 190, 190), 0.6)        # dark lesion: kept
    second_disc = Detection('optic_disc', (400, 100, 500, 200), 0.5)
    kept, counts = clean_detections([disc, rim, near, haem, second_disc])
    assert kept == [disc, near, haem]
    assert counts == {'nested': 0, 'inside_disc': 1, 'extra_disc': 1}


def test_tiling_no_longer_lowers_disc_iou_on_a_real_photo():
    row = SAMPLE['0005']
    truth = next(a['bbox_xyxy'] for a in row['annotations'] if a['label'] == 'optic_disc')
    bgr = load_image(SAMPLE_DIR / row['image']).bgr()
    whole = TileConfusedDetector(tile_size=None).predict(bgr)
    tiled_det = TileConfusedDetector(tile_size=256)
    tiled = tiled_det.predict(bgr)

    def top_disc(dets):
        return max((d for d in dets if d.label_id == 'optic_disc'), key=lambda d: d.score).box_px

    assert iou(top_disc(whole), truth) >= 0.5
    assert iou(top_disc(tiled), truth) == iou(top_disc(whole), truth)
    assert [d for d in tiled if d.label_id == 'optic_disc'] == [d for d in whole if d.label_id == 'optic_disc']
    windows = tile_windows(row['width'], row['height'], 256, 0.2)
    assert sum(d.label_id == 'hard_exudates' for d in tiled) == len(windows)   # lesions still come from tiles
    # the former rule (every class from every tile, merged by NMS) put a tile's confident misfire on top
    crops = [np.ascontiguousarray(bgr[y1:y2, x1:x2]) for x1, y1, x2, y2 in windows]
    old = [d._replace(box_px=(d.box_px[0] + w[0], d.box_px[1] + w[1], d.box_px[2] + w[0], d.box_px[3] + w[1]))
           for w, dets in zip(windows, tiled_det._infer(crops)) for d in dets] + whole
    assert iou(top_disc(merge_detections(old, 0.5)), truth) < 0.5
