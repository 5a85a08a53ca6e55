"""Detector inference (MMDetection) -> ``(label_id, box_px, score)`` with optional tiled inference.

Boxes come back in ``box_px`` space (:mod:`fundusexpert_plugin.core.geometry`): xyxy floats in pixels of
the **original** photograph, whatever the model's input size or tiling; mmdet rescales each
prediction to the image it was given, we clip it to that image (mmdet clips only to the padded
network input), and tile predictions are shifted by their tile's offset.
Labels are vocabulary finding ids (``optic_disc``, ``hard_exudates``, ``haemorrhages`` ...): the
model's class names (``meta.dataset_meta.classes`` of the checkpoint) go through
:func:`fundusexpert_plugin.core.vocab.resolve_finding`.

Tiling (ours; the usual remedy for tiny objects such as microaneurysms in 4288x2848 photos, cf.
SAHI, Akyon et al., ICIP 2022): square windows of ``tile_size`` px overlapping by ``tile_overlap``,
the last row/column aligned to the image edge, plus one whole-image pass. Only **lesion** classes
are taken from the windows: a window shows a part of the disc at a scale the model never saw for
it, so anatomy (optic disc, fovea ...) comes from the whole-image pass only. All predictions are
merged per class with ``torchvision.ops.batched_nms``.

Post-processing before anything is counted (:func:`clean_detections`, ours):
    * nested boxes of one class: a box whose intersection with a higher-scoring box of the same
      class covers >= :data:`NESTED_THRESHOLD` of the smaller box is dropped (NMS by IoU keeps a
      small box inside a large one, since their IoU is low; the report would count both);
    * bright lesions inside the optic disc: a box of :data:`BRIGHT_LESIONS` with >=
      :data:`INSIDE_DISC_THRESHOLD` of its area inside the disc box is dropped (the bright disc
      rim is not an exudate);
    * one optic disc per eye: only the highest-scoring disc box is kept.

mmdet is imported when a :class:`Detector` is built, never at module import.
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from fundusexpert_plugin.core import vocab
from fundusexpert_plugin.core.errors import FundusDataError
from fundusexpert_plugin.core.geometry import fraction_inside, intersection_over_smaller
from fundusexpert_plugin.core.vocab import resolve_finding

logger = logging.getLogger(__name__)

ImageInput = Union[str, Path, np.ndarray]
_SCOPED_BASE = re.compile(r"""(_base_\s*=\s*)(['"])mmdet::([^'"]+)\2""")


class Detection(NamedTuple):
    """One detected box.

    Attributes:
        label_id: vocabulary finding id.
        box_px: ``(x1, y1, x2, y2)`` original-image pixels.
        score: detector confidence in [0, 1].
    """

    label_id: str
    box_px: Tuple[float, float, float, float]
    score: float


def tile_windows(width: int, height: int, tile_size: int, overlap: float
                 ) -> List[Tuple[int, int, int, int]]:
    """Sliding windows covering an image.

    Args:
        width, height: image size in pixels.
        tile_size: window side in pixels (clipped to the image side when the image is smaller).
        overlap: fraction of ``tile_size`` shared by neighbouring windows, ``0 <= overlap < 1``.

    Returns:
        ``(x1, y1, x2, y2)`` integer windows in original-image pixels (x2 exclusive), row-major;
        the last window of each row/column ends at the image edge.

    Raises:
        ValueError: ``tile_size < 1`` or ``overlap`` outside [0, 1).
    """
    if tile_size < 1:
        raise ValueError(f'`tile_size` must be >= 1 pixel, got {tile_size}')
    if not 0 <= overlap < 1:
        raise ValueError(f'`tile_overlap` must be in [0, 1), got {overlap}')

    def starts(size: int) -> List[int]:
        side = min(tile_size, size)
        step = max(1, int(side * (1 - overlap)))
        out = list(range(0, size - side + 1, step))
        if out[-1] != size - side:
            out.append(size - side)
        return out

    tw, th = min(tile_size, width), min(tile_size, height)
    return [(x, y, x + tw, y + th) for y in starts(height) for x in starts(width)]


def merge_detections(detections: Sequence[Detection], iou_threshold: float) -> List[Detection]:
    """Per-class NMS (``torchvision.ops.batched_nms``) over detections from several passes.

    Returns:
        The kept detections by decreasing score.
    """
    import torch
    import torchvision

    if not detections:
        return []
    names = sorted({d.label_id for d in detections})
    boxes = torch.tensor([d.box_px for d in detections], dtype=torch.float32)
    scores = torch.tensor([d.score for d in detections], dtype=torch.float32)
    idxs = torch.tensor([names.index(d.label_id) for d in detections])
    keep = torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold)
    return [detections[i] for i in keep.tolist()]


#: Intersection over the smaller box at or above which two same-class boxes count as nested (ours).
NESTED_THRESHOLD = 0.8
#: Share of a bright-lesion box inside the optic-disc box at or above which it is dropped (ours).
INSIDE_DISC_THRESHOLD = 0.5
#: Bright lesions that the optic disc (its rim, peripapillary atrophy) is mistaken for.
BRIGHT_LESIONS = ('hard_exudates', 'cotton_wool_spots', 'drusen')


def suppress_nested(detections: Sequence[Detection], threshold: float = NESTED_THRESHOLD) -> List[Detection]:
    """Drop boxes nested in a higher-scoring box of the same class.

    Args:
        detections: any order; boxes xyxy pixels.
        threshold: intersection over the smaller box at or above which the lower-scoring box goes.

    Returns:
        The kept detections by decreasing score.
    """
    kept: List[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        if not any(k.label_id == det.label_id and intersection_over_smaller(k.box_px, det.box_px) >= threshold
                   for k in kept):
            kept.append(det)
    return kept


def clean_detections(detections: Sequence[Detection], *, disc_box_px: Optional[Sequence[float]] = None,
                     nested_threshold: float = NESTED_THRESHOLD,
                     inside_disc_threshold: float = INSIDE_DISC_THRESHOLD) -> Tuple[List[Detection], Dict[str, int]]:
    """The post-processing of the module docstring, in that order.

    Args:
        detections: boxes xyxy pixels of one photograph.
        disc_box_px: the optic disc to test bright lesions against; default the top-scoring
            ``optic_disc`` detection.

    Returns:
        ``(kept by decreasing score, counts)`` with counts ``{'nested', 'inside_disc', 'extra_disc'}``
        of dropped boxes.
    """
    kept = suppress_nested(detections, nested_threshold)
    counts = {'nested': len(detections) - len(kept), 'inside_disc': 0, 'extra_disc': 0}
    discs = [d for d in kept if d.label_id == 'optic_disc']
    if disc_box_px is None and discs:
        disc_box_px = discs[0].box_px
    out = []
    for det in kept:
        if det.label_id == 'optic_disc' and det is not (discs[0] if discs else None):
            counts['extra_disc'] += 1
        elif (disc_box_px is not None and det.label_id in BRIGHT_LESIONS
              and fraction_inside(det.box_px, disc_box_px) >= inside_disc_threshold):
            counts['inside_disc'] += 1
        else:
            out.append(det)
    return out, counts


_LOCAL_BASE = re.compile(r"""(_base_\s*=\s*)(['"])([^'":]+\.py)\2""")


def load_config(path: Union[str, Path]):
    """``mmengine.Config.fromfile`` that also resolves ``_base_ = 'mmdet::<rel>'`` to the wheel's file.

    mmengine resolves ``mmdet::`` through ``pkg_resources``, which recent setuptools no longer
    ships; we point the base at ``<mmdet>/.mim/configs/<rel>`` directly. A local base file
    (``_base_ = '../x.py'``, relative to the config) may itself have an ``mmdet::`` base: both
    levels are resolved (e.g. a recipe over the packaged config).

    Raises:
        FileNotFoundError: the config or one of its bases is missing.
        FundusDataError: the file is not a readable Python config (binary, e.g. a checkpoint given
            as the config; a syntax error), named with the reason.
    """
    from mmengine.config import Config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'detector config not found: {path}')
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError:
        raise FundusDataError(f'{path}: not an MMDetection config (a binary file; is it the checkpoint? '
                              'give the .py config as --detector and the .pth as --checkpoint)') from None
    try:
        if _SCOPED_BASE.search(text) is None and _LOCAL_BASE.search(text) is None:
            return Config.fromfile(str(path))
        with tempfile.TemporaryDirectory() as tmp:
            return Config.fromfile(str(_resolve_bases(path, Path(tmp), depth=0)))
    except (SyntaxError, NameError, ImportError) as exc:
        raise FundusDataError(f'{path}: not a valid MMDetection config: {type(exc).__name__}: {exc}') from exc


def _resolve_bases(path: Path, tmp: Path, depth: int) -> Path:
    """Copy ``path`` into ``tmp`` with its ``mmdet::`` or local ``_base_`` replaced by resolved files."""
    import mmdet

    if not path.is_file():
        raise FileNotFoundError(f'detector config not found: {path}')
    text = path.read_text()
    scoped, local = _SCOPED_BASE.search(text), _LOCAL_BASE.search(text)
    if scoped is not None:
        base = Path(mmdet.__file__).parent / '.mim' / 'configs' / scoped.group(3)
        if not base.is_file():
            raise FileNotFoundError(f'{path}: _base_ {scoped.group(0)!r}: {base} not found in the mmdet '
                                    f'wheel (mmdet {mmdet.__version__})')
        text = _SCOPED_BASE.sub(lambda m: f'{m.group(1)}{str(base)!r}', text, count=1)
    elif local is not None and depth < 4:
        base = _resolve_bases((path.parent / local.group(3)).resolve(), tmp, depth + 1)
        text = _LOCAL_BASE.sub(lambda m: f'{m.group(1)}{str(base)!r}', text, count=1)
    resolved = tmp / f'{depth}_{path.name}'
    resolved.write_text(text)
    return resolved


def _check_checkpoint(checkpoint) -> None:
    """Refuse a checkpoint torch cannot read (not a file, cut, not a checkpoint) in one line.

    Raises:
        FileNotFoundError: no such file.
        FundusDataError: naming the file and torch's reason.
    """
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f'detector checkpoint not found: {path}')
    try:
        torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as exc:   # pickle, zip and torch errors alike: the file is not a loadable checkpoint
        reason = ' '.join(str(exc).split())[:200]
        raise FundusDataError(f'{path}: not a loadable checkpoint ({type(exc).__name__}: {reason}); give the '
                              '.pth that `detector train` wrote') from exc


class Detector:
    """An MMDetection detector that speaks finding ids and original-image pixels.

    Args:
        config: mmdet config file (e.g. the one train_detector dumped next to the checkpoint) or an
            ``mmengine.Config``.
        checkpoint: weights file (slim ``{'state_dict', 'meta': {'dataset_meta': {'classes'}}}`` or a
            full mmengine checkpoint loadable with ``torch.load(weights_only=True)``); ``None`` keeps
            random weights (tests) and then needs ``classes``.
        device: torch device string.
        score_threshold: drop detections scoring below this (after the model's own ``test_cfg``).
        classes: model class names in output-index order; default the checkpoint's meta.
        class_map: model class name -> finding id, for names the vocabulary does not know.
        tile_size: window side in pixels for tiled inference; ``None`` runs one whole-image pass.
            Each window still goes through the config's test pipeline (resize to ``img_scale``), so
            ``tile_size`` equal to the training ``img_scale`` runs windows at native resolution.
        tile_overlap: fraction of ``tile_size`` shared by neighbouring windows.
        merge_iou: IoU above which same-class boxes from different passes are merged (NMS).
        whole_image_pass: with tiling, also take lesion boxes from the whole-image pass (the
            whole image always runs once: anatomy comes from it only).

    Raises:
        ValueError: no class names available, or a class name the vocabulary does not know
            (message names the checkpoint and the field).
        FileNotFoundError, FundusDataError: the config or checkpoint is missing or unusable (a binary
            config, one without a test pipeline, a file torch cannot load), named in one line.
    """

    def __init__(self, config, checkpoint=None, *, device: str = 'cpu',
                 score_threshold: float = 0.3, classes: Optional[Sequence[str]] = None,
                 class_map: Optional[Dict[str, str]] = None, tile_size: Optional[int] = None,
                 tile_overlap: float = 0.2, merge_iou: float = 0.5, whole_image_pass: bool = True):
        from fundusexpert_plugin.detector.mmcv_ops import ensure_mmcv_ops

        ensure_mmcv_ops()
        import warnings

        from mmdet.apis import init_detector
        from mmdet.utils import register_all_modules

        register_all_modules(init_default_scope=True)
        if tile_size is not None:
            tile_windows(tile_size, tile_size, tile_size, tile_overlap)  # validates both
        cfg = load_config(config) if isinstance(config, (str, Path)) else config
        if cfg.get('test_dataloader') is None:   # mmdet's init_detector reads test_dataloader.dataset
            raise FundusDataError(f'{config}: no test_dataloader, so images cannot be prepared for '
                                  'the model (a training dump such as 0_<name>.py? use the <name>.py that '
                                  '`detector train` writes beside its checkpoint)')
        if checkpoint is not None:
            _check_checkpoint(checkpoint)
        with warnings.catch_warnings():
            if checkpoint is None:  # init_detector warns that COCO classes are assumed
                warnings.simplefilter('ignore')
            self.model = init_detector(cfg, None if checkpoint is None else str(checkpoint), device=device)
        names = classes if classes is not None else (
            None if checkpoint is None else self.model.dataset_meta.get('classes'))
        if not names:
            raise ValueError(f'{checkpoint}: no meta.dataset_meta.classes; pass `classes=`')
        class_map = class_map or {}
        self.classes: Tuple[str, ...] = tuple(
            class_map[n] if n in class_map else resolve_finding(
                n, where=f'{checkpoint}: meta.dataset_meta.classes[{i}] (or pass class_map=)')
            for i, n in enumerate(names))
        self.score_threshold = float(score_threshold)
        self.tile_size, self.tile_overlap = tile_size, float(tile_overlap)
        self.merge_iou, self.whole_image_pass = float(merge_iou), bool(whole_image_pass)

    def _infer(self, images: List) -> List[List[Detection]]:
        from mmdet.apis import inference_detector

        results = inference_detector(self.model, images)
        out = []
        for res in results:
            pred = res.pred_instances
            height, width = res.metainfo['ori_shape'][:2]
            # mmdet clips to the padded network input, which can reach past the photo: clip again
            boxes = pred.bboxes.detach().cpu().numpy().astype(float)
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
            scores = pred.scores.detach().cpu().numpy().astype(float)
            labels = pred.labels.detach().cpu().numpy()
            nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            keep = (scores >= self.score_threshold) & nonempty
            if (~nonempty).any():
                logger.debug('dropped %d boxes that lie outside the %dx%d image',
                             int((~nonempty).sum()), width, height)
            out.append([Detection(self.classes[int(k)], tuple(b.tolist()), float(s))
                        for b, s, k in zip(boxes[keep], scores[keep], labels[keep])])
        return out

    def predict(self, image: ImageInput) -> List[Detection]:
        """Detect on one photograph.

        Args:
            image: a file path, or np.ndarray[H, W, 3] uint8 in BGR order (OpenCV / mmdet).

        Returns:
            Detections in original-image pixels, by decreasing score.

        Raises:
            FileNotFoundError: the image path does not exist or cannot be decoded.
        """
        if isinstance(image, (str, Path)):
            if not Path(image).is_file():
                raise FileNotFoundError(f'image not found: {image}')
            if self.tile_size is None:
                return sorted(self._infer([str(image)])[0], key=lambda d: -d.score)
            import cv2
            array = cv2.imread(str(image), cv2.IMREAD_COLOR)
            if array is None:
                raise FileNotFoundError(f'{image}: cannot be decoded as an image')
        else:
            array = np.ascontiguousarray(image)
        if self.tile_size is None:
            return sorted(self._infer([array])[0], key=lambda d: -d.score)
        height, width = array.shape[:2]
        windows = tile_windows(width, height, self.tile_size, self.tile_overlap)
        crops = [np.ascontiguousarray(array[y1:y2, x1:x2]) for x1, y1, x2, y2 in windows]
        if len(windows) == 1:
            return sorted(self._infer([array])[0], key=lambda d: -d.score)
        found: List[Detection] = []
        for (x1, y1, _, _), dets in zip(windows, self._infer(crops)):
            found += [d._replace(box_px=(d.box_px[0] + x1, d.box_px[1] + y1,
                                         d.box_px[2] + x1, d.box_px[3] + y1))
                      for d in dets if vocab.FINDINGS[d.label_id].kind == 'lesion']
        whole = self._infer([array])[0]
        found += whole if self.whole_image_pass else [d for d in whole if vocab.FINDINGS[d.label_id].kind != 'lesion']
        merged = merge_detections(found, self.merge_iou)
        logger.debug('tiled inference: %d windows of %d px, %d boxes -> %d after merging',
                     len(windows), self.tile_size, len(found), len(merged))
        return merged

    __call__ = predict

