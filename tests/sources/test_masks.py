"""Tests of fundusexpert_plugin.sources.masks (masks -> boxes, official pixel2bbox rule)."""
import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from fundusexpert_plugin.sources.masks import cluster_mask, mask_to_boxes, neighbour_counts

MODES = ['paper', 'fast']


def _two_exudate_clusters():
    mask = np.zeros((100, 200), np.uint8)
    mask[10:25, 20:35] = 255  # patch A: 15x15 px, last pixels x 20..34, y 10..24
    mask[60:70, 120:130] = 255  # patch B: two blobs 10 px apart (< eps 50) -> one cluster
    mask[60:70, 140:150] = 255
    return mask


@pytest.mark.parametrize('mode', MODES)
def test_masks_to_boxes_splits_two_exudate_clusters(mode):
    boxes = mask_to_boxes(_two_exudate_clusters(), mode=mode)
    # B: x 120..149, y 60..69 -> xyxy exclusive [120, 60, 150, 70], official area 29*9 = 261
    # A: x 20..34,  y 10..24 -> [20, 10, 35, 25], official area 14*14 = 196; sorted 261 > 196
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    np.testing.assert_array_equal(boxes, [[120, 60, 150, 70], [20, 10, 35, 25]])


@pytest.mark.parametrize('mode', MODES)
def test_x2_is_exclusive_and_area_is_the_official_expression(mode):
    mask = np.zeros((20, 30), bool)
    mask[5, 3:15] = True  # one row of 12 px: official area (14 - 3) * (5 - 5) = 0
    result = cluster_mask(mask, mode=mode, eps_px=2, min_samples=3, area_threshold_px2=-1)
    np.testing.assert_array_equal(result.boxes_px, [[3, 5, 15, 6]])
    assert result.areas_px2.tolist() == [0]
    assert cluster_mask(mask, mode=mode, eps_px=2, min_samples=3).boxes_px.shape == (0, 4)


@pytest.mark.parametrize('mode', MODES)
def test_noise_pixels_and_small_clusters_are_removed_and_counted(mode):
    mask = np.zeros((200, 400), np.uint8)
    mask[:100, :200] = _two_exudate_clusters()
    for y, x in [(180, 10), (10, 390), (190, 250), (120, 230)]:  # isolated: > eps 50 from all else
        mask[y, x] = 1
    mask[170:175, 340:345] = 1  # 25 px cluster, official area 4*4 = 16 <= 100
    result = cluster_mask(mask, mode=mode)
    np.testing.assert_array_equal(result.boxes_px, [[120, 60, 150, 70], [20, 10, 35, 25]])
    assert (result.n_noise_px, result.n_clusters, result.n_dropped_small) == (4, 3, 1)
    assert result.n_foreground_px == 225 + 200 + 4 + 25


@pytest.mark.parametrize('mode', MODES)
def test_top_k_keeps_the_largest_boxes_in_area_order(mode):
    mask = np.zeros((60, 400), bool)
    sides = [12, 20, 14, 18, 16]  # official areas (s-1)^2: 121, 361, 169, 289, 225
    for i, s in enumerate(sides):
        mask[5:5 + s, 10 + 80 * i:10 + 80 * i + s] = True  # 80 px apart > eps 50
    result = cluster_mask(mask, mode=mode, max_boxes=3)
    assert result.areas_px2.tolist() == [361, 289, 225]
    np.testing.assert_array_equal(result.boxes_px[:, 0], [90, 250, 330])
    assert result.n_dropped_topk == 2
    assert len(mask_to_boxes(mask, mode=mode, max_boxes=None)) == 5


@pytest.mark.parametrize('seed', range(6))
def test_fast_and_paper_modes_agree_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((60, 90)) < rng.uniform(0.01, 0.3)
    eps = [1.5, 2.0, 3.0, 4.5, 8.0, 12.0][seed]
    kw = dict(eps_px=eps, min_samples=int(rng.integers(2, 15)), area_threshold_px2=0, max_boxes=None)
    paper, fast = cluster_mask(mask, mode='paper', **kw), cluster_mask(mask, mode='fast', **kw)
    np.testing.assert_array_equal(paper.boxes_px, fast.boxes_px)
    assert (paper.n_noise_px, paper.n_clusters) == (fast.n_noise_px, fast.n_clusters)


def test_paper_mode_matches_scikit_learn_dbscan_on_pixel_coordinates():
    rng = np.random.default_rng(7)
    mask = rng.random((50, 70)) < 0.08
    ys, xs = np.nonzero(mask)
    labels = DBSCAN(eps=3, min_samples=4).fit(np.column_stack((xs, ys))).labels_
    expected = sorted([xs[labels == k].min(), ys[labels == k].min(),
                       xs[labels == k].max() + 1, ys[labels == k].max() + 1]
                      for k in set(labels.tolist()) - {-1})
    got = cluster_mask(mask, mode='paper', eps_px=3, min_samples=4, area_threshold_px2=-1,
                       max_boxes=None).boxes_px.astype(int).tolist()
    assert sorted(got) == [list(map(int, b)) for b in expected]


def test_neighbour_counts_match_an_inclusive_radius_query():
    rng = np.random.default_rng(3)
    mask = rng.random((40, 50)) < 0.2
    ys, xs = np.nonzero(mask)
    pts = np.column_stack((xs, ys))
    for eps in (1.0, 2.0, 5.0, 7.5):
        ref = NearestNeighbors(radius=eps).fit(pts).radius_neighbors(pts, return_distance=False)
        np.testing.assert_array_equal(neighbour_counts(mask, ys, xs, eps), [len(r) for r in ref])


def test_foreground_value_selects_one_label_of_a_label_map():
    label_map = np.zeros((40, 40), np.uint8)
    label_map[2:16, 2:16] = 1
    label_map[22:38, 22:38] = 2
    np.testing.assert_array_equal(mask_to_boxes(label_map, foreground_value=2), [[22, 22, 38, 38]])


def test_paper_mode_refuses_large_solid_masks_and_points_to_fast_mode():
    mask = np.zeros((200, 200), bool)
    mask[20:180, 20:180] = True  # 25,600 px, all within eps 160 of each other
    with pytest.raises(ValueError, match=r"max_foreground_px=1000; .*mode='fast'"):
        cluster_mask(mask, mode='paper', max_foreground_px=1000)
    with pytest.raises(ValueError, match=r"neighbour pairs .* max_neighbour_pairs=1000000 .*mode='fast'"):
        cluster_mask(mask, mode='paper', eps_px=160, max_neighbour_pairs=1_000_000)
    np.testing.assert_array_equal(mask_to_boxes(mask, mode='fast', eps_px=160), [[20, 20, 180, 180]])


def test_empty_mask_gives_no_boxes():
    result = cluster_mask(np.zeros((10, 10), bool))
    assert result.boxes_px.shape == (0, 4) and result.n_clusters == 0


@pytest.mark.parametrize('kwargs, message', [
    (dict(mode='dbscan'), r'`mode` must be one of'),
    (dict(eps_px=0), r'`eps_px` must be a positive'),
    (dict(eps_px=1.0, mode='fast'), r"sqrt\(2\).*mode='paper'"),
    (dict(min_samples=0), r'`min_samples` must be >= 1'),
    (dict(max_boxes=0), r'`max_boxes` must be >= 1 or None'),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cluster_mask(np.ones((5, 5), bool), **kwargs)


def test_three_dimensional_mask_is_rejected():
    with pytest.raises(ValueError, match=r'2-D array \[H, W\], got shape \(2, 5, 5\)'):
        mask_to_boxes(np.ones((2, 5, 5), bool))
