"""Tests of fundusexpert_plugin.detector.detect that need no mmdet (tiling, merging, lazy import)."""
import subprocess
import sys

import numpy as np
import pytest

from fundusexpert_plugin.detector.detect import Detection, Detector, merge_detections, tile_windows


def test_tile_windows_cover_the_image_and_end_at_its_edges():
    # 1000 px, tiles 400, overlap 0.25 -> step 300: starts 0, 300, 600 (600 + 400 = 1000)
    # 500 px high -> starts 0, then 100 appended so the last tile ends at 500
    windows = tile_windows(1000, 500, 400, 0.25)
    assert windows == [(0, 0, 400, 400), (300, 0, 700, 400), (600, 0, 1000, 400),
                       (0, 100, 400, 500), (300, 100, 700, 500), (600, 100, 1000, 500)]


def test_tile_windows_shrink_to_an_image_smaller_than_a_tile():
    assert tile_windows(300, 200, 1024, 0.2) == [(0, 0, 300, 200)]


@pytest.mark.parametrize('size, overlap, message', [(0, 0.2, '`tile_size` must be >= 1'),
                                                    (100, 1.0, r'`tile_overlap` must be in \[0, 1\)')])
def test_tile_windows_reject_bad_arguments(size, overlap, message):
    with pytest.raises(ValueError, match=message):
        tile_windows(100, 100, size, overlap)


def test_merge_detections_suppresses_within_a_class_only():
    dets = [Detection('hard_exudates', (0, 0, 10, 10), 0.9),
            Detection('hard_exudates', (1, 0, 11, 10), 0.8),  # IoU 0.82 with the first
            Detection('haemorrhages', (1, 0, 11, 10), 0.7),
            Detection('hard_exudates', (50, 50, 60, 60), 0.6)]
    assert merge_detections(dets, 0.5) == [dets[0], dets[2], dets[3]]
    assert merge_detections([], 0.5) == []


class _CentreBoxDetector(Detector):
    """Detector without mmdet: each pass 'finds' a 10x10 box at the centre of what it is given."""

    def __init__(self, **kwargs):  # noqa: D401  (no model)
        self.classes = ('microaneurysms',)
        self.score_threshold = 0.0
        self.tile_size = kwargs.get('tile_size')
        self.tile_overlap = kwargs.get('tile_overlap', 0.0)
        self.merge_iou = 0.5
        self.whole_image_pass = kwargs.get('whole_image_pass', True)
        self.calls = []

    def _infer(self, images):
        out = []
        for img in images:
            h, w = img.shape[:2]
            self.calls.append((w, h))
            out.append([Detection('microaneurysms', (w / 2 - 5, h / 2 - 5, w / 2 + 5, h / 2 + 5),
                                  0.5 + w / 10000)])
        return out


def test_tiled_prediction_shifts_tile_boxes_to_original_pixels():
    det = _CentreBoxDetector(tile_size=200, tile_overlap=0.0, whole_image_pass=True)
    found = det.predict(np.zeros((200, 400, 3), np.uint8))
    assert det.calls == [(200, 200), (200, 200), (400, 200)]
    # tile centres (100, 100) and (300, 100); whole image centre (200, 100)
    assert sorted(d.box_px for d in found) == [(95, 95, 105, 105), (195, 95, 205, 105),
                                               (295, 95, 305, 105)]
    assert found[0].score == max(d.score for d in found)


def test_untiled_prediction_is_one_pass():
    det = _CentreBoxDetector(tile_size=None)
    assert [d.box_px for d in det.predict(np.zeros((100, 60, 3), np.uint8))] == [(25, 45, 35, 55)]
    assert det.calls == [(60, 100)]


def test_missing_image_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match='image not found: .*nope.jpg'):
        _CentreBoxDetector().predict(tmp_path / 'nope.jpg')


def test_engine_modules_import_without_mmdet():
    code = ('import sys\n'
            'import fundusexpert_plugin.detector.detect, fundusexpert_plugin.detector.train\n'
            'import fundusexpert_plugin.sources.masks, fundusexpert_plugin.detector.coco\n'
            'import fundusexpert_plugin.detector.mmcv_ops\n'
            'bad = [m for m in ("mmdet", "mmengine", "mmcv", "sklearn") if m in sys.modules]\n'
            'assert not bad, bad\n')
    subprocess.run([sys.executable, '-c', code], check=True)
