"""Tests of fundusexpert_plugin.detector.mmcv_ops (torchvision stand-in for mmcv._ext)."""
import sys

import pytest
import torch
import torchvision

from fundusexpert_plugin.detector.mmcv_ops import ensure_mmcv_ops

pytestmark = pytest.mark.mmdet
pytest.importorskip('mmcv')


@pytest.fixture(scope='module')
def ops_mode():
    return ensure_mmcv_ops()


def test_ensure_mmcv_ops_is_idempotent_and_lets_mmdet_models_import(ops_mode):
    assert ops_mode in ('stand-in', 'compiled')
    assert ensure_mmcv_ops() == ops_mode
    assert sys.modules['mmcv._ext'].__spec__.name == 'mmcv._ext'
    import mmdet.models  # noqa: F401  (failed with "No module named 'mmcv._ext'" before)
    from mmengine.utils.dl_utils import mmcv_full_available
    assert mmcv_full_available() == (ops_mode == 'compiled')


def _random_boxes(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 60 + 2
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def test_mmcv_nms_equals_torchvision_nms(ops_mode):
    from mmcv.ops import batched_nms, nms
    boxes, scores = _random_boxes(300)
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    expected = torchvision.ops.nms(boxes, scores, 0.5)
    assert torch.equal(keep, expected)
    assert torch.allclose(dets[:, 4], scores[expected])
    idxs = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(1))
    _, keep_b = batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=0.6))
    assert torch.equal(torch.sort(keep_b).values,
                       torch.sort(torchvision.ops.batched_nms(boxes, scores, idxs, 0.6)).values)


def test_nms_offset_one_uses_legacy_plus_one_widths(ops_mode):
    from mmcv.ops import nms
    # widths 10 (+1 = 11); the pair overlaps 5 px (+1 = 6): IoU 0.333 without offset, 0.375 with it
    boxes = torch.tensor([[0., 0., 10., 10.], [5., 0., 15., 10.]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.35, offset=0)[1].tolist() == [0, 1]
    assert nms(boxes, scores, 0.35, offset=1)[1].tolist() == [0]


def test_soft_nms_naive_keeps_the_hard_nms_set_and_gaussian_rescores(ops_mode):
    from mmcv.ops import soft_nms
    boxes, scores = _random_boxes(60, seed=2)
    _, inds = soft_nms(boxes, scores, 0.5, method='naive', min_score=1e-3)
    assert sorted(inds.tolist()) == sorted(torchvision.ops.nms(boxes, scores, 0.5).tolist())
    dets, inds = soft_nms(boxes, scores, 0.5, sigma=0.5, method='gaussian', min_score=1e-3)
    assert len(inds) >= len(torchvision.ops.nms(boxes, scores, 0.5))
    assert torch.all(dets[:, 4] <= scores[inds] + 1e-6) and dets[0, 4] == scores.max()


def test_roi_align_forward_and_backward_match_torchvision(ops_mode):
    from mmcv.ops import RoIAlign
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(2, 3, 16, 20, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 2.0, 10.5, 12.0], [1, 4.0, 0.5, 19.0, 9.0]], dtype=torch.float64)
    out = RoIAlign((4, 4), spatial_scale=0.5, sampling_ratio=2, aligned=True)(feats, rois)
    ref = torchvision.ops.roi_align(feats, rois, (4, 4), 0.5, 2, True)
    assert torch.allclose(out, ref)
    (grad,) = torch.autograd.grad(out.sum(), feats)
    (grad_ref,) = torch.autograd.grad(ref.sum(), feats)
    assert torch.allclose(grad, grad_ref)


def test_unimplemented_ops_raise_a_clear_error_only_when_called(ops_mode):
    if ops_mode == 'compiled':
        pytest.skip('full mmcv installed: all ops are real')
    ext = sys.modules['mmcv._ext']
    with pytest.raises(NotImplementedError, match=r"'deform_conv_forward' .*Install full mmcv"):
        ext.deform_conv_forward()
