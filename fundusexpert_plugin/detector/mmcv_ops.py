"""Make ``mmcv.ops`` importable on mmcv-lite (no compiled ``mmcv._ext``) by delegating to torchvision.

mmdet 3.3.0 needs ``mmcv>=2.0.0rc4,<2.2.0``; on CPU machines without OpenMMLab's prebuilt wheels the
practical install is mmcv-lite 2.1.0, which ships no compiled ops, so ``import mmdet.models`` fails
at ``from mmcv.ops import batched_nms`` (``No module named 'mmcv._ext'``). :func:`ensure_mmcv_ops`
registers a stand-in ``mmcv._ext`` whose ops the usual detectors call (``nms``, ``softnms``,
``roi_align_forward``/``roi_align_backward``) are implemented with ``torchvision.ops``; any other op
raises ``NotImplementedError`` when called. With full mmcv installed it does nothing.

Source: ours; verified on CPU (RetinaNet, FCOS, ATSS, GFL, RTMDet,
YOLOX, Faster/Mask R-CNN, DETR, DINO build and run; NMS equal to compiled mmcv, RoIAlign backward to
~5e-6). DCN/TOOD models still fail (no deformable convolution op here).

Op contracts follow mmcv 2.1.0 ``mmcv/ops/csrc/pytorch/cpu/nms.cpp`` and ``roi_align.cpp``:
``offset`` 1 means legacy boxes whose width is ``x2 - x1 + 1``.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
import types

import torch

logger = logging.getLogger(__name__)

EXT_NAME = 'mmcv._ext'
_IMPLEMENTED = ('nms', 'softnms', 'roi_align_forward', 'roi_align_backward')


def _legacy_offset(boxes: torch.Tensor, offset: int) -> torch.Tensor:
    """Shift x2, y2 by ``offset`` so torchvision's ``x2 - x1`` widths equal mmcv's ``x2 - x1 + offset``."""
    if not offset:
        return boxes
    boxes = boxes.clone()
    boxes[:, 2:4] += offset
    return boxes


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0
        ) -> torch.Tensor:
    """``mmcv._ext.nms``: indices (int64) of kept boxes, by decreasing score.

    Args:
        boxes: Tensor[N, 4] xyxy in the detector's pixel space.
        scores: Tensor[N].
        iou_threshold: discard boxes with IoU ``>`` this against a kept one.
        offset: 0 or 1 (legacy ``+1`` widths).
    """
    import torchvision

    if boxes.numel() == 0:
        return boxes.new_zeros(0, dtype=torch.long)
    if boxes.dtype not in (torch.float32, torch.float64):  # torchvision's CPU kernel: float/double
        boxes, scores = boxes.float(), scores.float()
    return torchvision.ops.nms(_legacy_offset(boxes[:, :4], offset), scores.to(boxes.dtype),
                               float(iou_threshold))


def softnms(boxes: torch.Tensor, scores: torch.Tensor, dets: torch.Tensor, iou_threshold: float,
            sigma: float, min_score: float, method: int, offset: int) -> torch.Tensor:
    """``mmcv._ext.softnms`` (Bodla et al., ICCV 2017), a torch port of mmcv's CPU loop.

    Writes ``dets[:K] = [x1, y1, x2, y2, rescored]`` in selection order and returns the original
    indices (int64, Tensor[K]) of the boxes that kept a score ``>= min_score``.
    ``method``: 0 naive (hard NMS), 1 linear, 2 gaussian. O(N^2); only for configs that ask for it.
    """
    import torchvision

    n = boxes.size(0)
    if n == 0:
        return boxes.new_zeros(0, dtype=torch.long)
    box, sc = boxes[:, :4].clone().float(), scores.clone().float()
    inds = torch.arange(n)
    alive = torch.ones(n, dtype=torch.bool)
    kept = []
    while alive.any():
        cand = torch.nonzero(alive).squeeze(1)
        i = int(cand[torch.argmax(sc[cand])])
        alive[i] = False
        dets[len(kept), :4] = box[i]
        dets[len(kept), 4] = sc[i]
        kept.append(i)
        rest = torch.nonzero(alive).squeeze(1)
        if rest.numel() == 0:
            break
        ovr = torchvision.ops.box_iou(_legacy_offset(box[i:i + 1], offset),
                                      _legacy_offset(box[rest], offset))[0]
        if method == 0:
            weight = torch.where(ovr >= iou_threshold, 0.0, 1.0)
        elif method == 1:
            weight = torch.where(ovr >= iou_threshold, 1.0 - ovr, 1.0)
        else:
            weight = torch.exp(-(ovr * ovr) / sigma)
        sc[rest] *= weight
        alive[rest[sc[rest] < min_score]] = False
    return inds[torch.tensor(kept, dtype=torch.long)]


def roi_align_forward(input: torch.Tensor, rois: torch.Tensor, output: torch.Tensor,
                      argmax_y: torch.Tensor, argmax_x: torch.Tensor, aligned_height: int,
                      aligned_width: int, spatial_scale: float, sampling_ratio: int,
                      pool_mode: int, aligned: bool) -> None:
    """``mmcv._ext.roi_align_forward``: fills ``output`` (Tensor[K, C, h, w]) in place.

    ``rois`` is Tensor[K, 5] ``(batch_index, x1, y1, x2, y2)`` in input-image pixels.

    Raises:
        NotImplementedError: ``pool_mode == 0`` (max pooling; torchvision has only average).
    """
    import torchvision

    if pool_mode == 0:
        raise NotImplementedError("RoIAlign pool_mode='max' needs compiled mmcv ops; mmcv-lite's "
                                  "torchvision stand-in supports pool_mode='avg' only")
    output.copy_(torchvision.ops.roi_align(input, rois.to(input.dtype),
                                           (aligned_height, aligned_width), spatial_scale,
                                           sampling_ratio, aligned))


def roi_align_backward(grad_output: torch.Tensor, rois: torch.Tensor, argmax_y: torch.Tensor,
                       argmax_x: torch.Tensor, grad_input: torch.Tensor, aligned_height: int,
                       aligned_width: int, spatial_scale: float, sampling_ratio: int,
                       pool_mode: int, aligned: bool) -> None:
    """``mmcv._ext.roi_align_backward``: adds the input gradient into ``grad_input`` (Tensor[N, C, H, W])."""
    if pool_mode == 0:
        raise NotImplementedError("RoIAlign pool_mode='max' needs compiled mmcv ops")
    n, c, h, w = grad_input.shape
    grad_input += torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), spatial_scale, aligned_height, aligned_width,
        n, c, h, w, sampling_ratio, aligned)


class _ExtStandIn(types.ModuleType):
    """Module object for ``mmcv._ext``; unknown ops exist (mmcv checks ``hasattr`` at import) and
    raise ``NotImplementedError`` naming the op when called."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise NotImplementedError(
                f'mmcv op {name!r} is not available: mmcv-lite has no compiled ops and the '
                f'torchvision stand-in implements only {_IMPLEMENTED}. Install full mmcv 2.1.0 '
                '(MMCV_WITH_OPS=1) or pick a model that does not use this op.')
        missing.__name__ = name
        return missing


def has_compiled_mmcv_ops() -> bool:
    """True when a real compiled ``mmcv._ext`` is importable (full mmcv)."""
    mod = sys.modules.get(EXT_NAME)
    if mod is not None:
        return not isinstance(mod, _ExtStandIn)
    try:
        return importlib.util.find_spec(EXT_NAME) is not None
    except (ImportError, ValueError):
        return False


def ensure_mmcv_ops() -> str:
    """Make ``mmcv.ops`` importable; call before importing ``mmdet.models`` / ``mmdet.apis``.

    Idempotent and cheap after the first call.

    Returns:
        ``'compiled'`` (full mmcv: nothing done), ``'stand-in'`` (the torchvision stand-in is
        registered in ``sys.modules``).

    Raises:
        ImportError: mmcv is not installed at all.
        RuntimeError: ``mmcv.ops`` was already imported without any ``mmcv._ext`` (cannot happen
            through a successful import; means a broken environment).
    """
    existing = sys.modules.get(EXT_NAME)
    if existing is not None:
        return 'stand-in' if isinstance(existing, _ExtStandIn) else 'compiled'
    import mmcv  # noqa: F401  (ImportError with pip's message if mmcv is missing)

    if has_compiled_mmcv_ops():
        return 'compiled'
    if 'mmcv.ops' in sys.modules:
        raise RuntimeError('mmcv.ops is imported but mmcv._ext is missing; call ensure_mmcv_ops() '
                           'before anything imports mmcv.ops / mmdet.models')
    ext = _ExtStandIn(EXT_NAME, 'torchvision stand-in for mmcv compiled ops '
                                '(fundusexpert_plugin.detector.mmcv_ops)')
    # A real spec (loader None): mmengine's mmcv_full_available() then reports False, which keeps it
    # away from DCN/SyncBN code paths that need compiled ops.
    ext.__spec__ = importlib.machinery.ModuleSpec(EXT_NAME, None)
    for name in _IMPLEMENTED:
        setattr(ext, name, globals()[name])
    sys.modules[EXT_NAME] = ext
    setattr(sys.modules['mmcv'], '_ext', ext)
    logger.info('mmcv-lite: registered a torchvision stand-in for mmcv._ext (%s)',
                ', '.join(_IMPLEMENTED))
    return 'stand-in'


__all__ = ['ensure_mmcv_ops', 'has_compiled_mmcv_ops', 'nms', 'softnms', 'roi_align_forward',
           'roi_align_backward']
