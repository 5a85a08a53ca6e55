"""Train an MMDetection detector on fundus boxes, evaluate it with pycocotools, ship slim weights.

Steps: FundusGen records (read from YOLO / COCO / CODRAS jsonl / box CSV by
:mod:`fundusexpert_plugin.sources`, in the caller) -> COCO json (train, val; :mod:`.coco`) -> mmdet
config (``configs/rtmdet-tiny_idrid-lesions.py``: one ``_base_`` level over the config shipped in
the mmdet wheel) -> mmengine ``Runner`` training (seeded) -> slim checkpoint
``{'state_dict', 'meta': {'dataset_meta': {'classes'}}}`` that ``torch.load(weights_only=True)`` and
``init_detector`` read (mmengine's own checkpoints hold HistoryBuffer objects that torch >= 2.6
refuses) -> merged config dumped next to it -> COCO evaluation (:func:`core.coco_eval.coco_box_ap`, shared with the text-box scorer) of
the shipped files on the validation images.

Files written in ``work_dir``: ``train.json``, ``val.json`` (COCO), ``<config stem>.py`` (merged
config), ``<config stem>.pth`` (slim weights), ``metrics.json``, and the Runner's logs.

Command line: ``fundusexpert detector train`` (:mod:`fundusexpert_plugin.cli.detector` reads the annotations
with :mod:`fundusexpert_plugin.sources` and passes records here).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from fundusexpert_plugin.core.record import FundusGenRecord
from fundusexpert_plugin.detector.coco import DetectionSample, samples_from_records, split_samples, write_coco
from fundusexpert_plugin.detector.detect import Detector, load_config

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).parent / 'configs' / 'rtmdet-tiny_idrid-lesions.py'


@dataclass
class TrainResult:
    """What :func:`train_detector` produced.

    Attributes:
        checkpoint: slim weights file.
        config: merged, self-contained config file.
        metrics: :func:`evaluate_detector` on the validation images.
        classes: finding ids in the model's output order.
        n_train_images, n_val_images: split sizes.
        train_seconds: wall time of ``Runner.train()``.
    """

    checkpoint: Path
    config: Path
    metrics: Dict
    classes: Tuple[str, ...]
    n_train_images: int
    n_val_images: int
    train_seconds: float


def _set_img_scale(pipeline, img_scale: Tuple[int, int]) -> None:
    for t in pipeline or []:
        kind = str(t.get('type', '')).split('.')[-1]
        if kind in ('Resize', 'RandomResize') and 'scale' in t:
            t['scale'] = img_scale
        elif kind == 'Pad' and t.get('size') is not None:
            t['size'] = img_scale
        elif kind == 'RandomCrop' and 'crop_size' in t:
            t['crop_size'] = img_scale
        if 'img_scale' in t:
            t['img_scale'] = img_scale


def build_config(config: Union[str, Path], *, classes: Sequence[str], train_json: Path,
                 train_root: Path, val_json: Path, val_root: Path, work_dir: Path,
                 img_scale: Tuple[int, int], batch_size: int, max_iters: int,
                 lr: Optional[float], seed: int, log_level: str = 'INFO'):
    """Load ``config`` and set data, classes, schedule and seed (module docstring).

    The schedule is always rebuilt from ``max_iters``, whatever ``param_scheduler`` the config holds:
    ``IterBasedTrainLoop`` with one validation at the end; linear warmup from 1e-3 x lr over the config's
    ``warmup_iters`` (default 50; at most a fifth of the run, none below 5 iterations), then cosine to
    5 % of lr at ``max_iters``. A config sets its warmup with ``warmup_iters``, not with its own scheduler.
    The logger interval is max_iters / 10, between 1 and 50.

    Returns:
        ``mmengine.Config`` with train and test dataloaders (the test one reads ``val_json``).
    """
    cfg = load_config(config)
    classes = tuple(classes)
    cfg.model.bbox_head.num_classes = len(classes)
    for key, ann, root in (('train_dataloader', train_json, train_root),
                           ('test_dataloader', val_json, val_root)):
        ds = cfg[key].dataset
        ds.data_root, ds.ann_file = '', str(ann)
        ds.data_prefix = dict(img=str(root) + '/')
        ds.metainfo = dict(classes=classes)
        _set_img_scale(ds.pipeline, img_scale)
    for key in ('train_pipeline', 'test_pipeline'):
        _set_img_scale(cfg.get(key), img_scale)
    cfg.classes, cfg.img_scale = classes, img_scale
    cfg.train_dataloader.batch_size = batch_size
    if cfg.get('test_evaluator') is not None:
        cfg.test_evaluator.ann_file = str(val_json)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
    base_lr = float(lr) if lr is not None else float(cfg.optim_wrapper.optimizer.lr)
    cfg.optim_wrapper.optimizer.lr = base_lr
    # warmup <= max_iters // 5 < max_iters, so the cosine phase always spans >= 1 iteration (mmengine
    # refuses end <= begin); a run shorter than 5 iterations has no warmup
    warmup = min(int(cfg.get('warmup_iters', 50)), max_iters // 5)
    cosine = dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, by_epoch=False, begin=warmup,
                  end=max_iters, T_max=max_iters - warmup)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup),
                           cosine] if warmup else [cosine]
    cfg.base_lr, cfg.max_iters, cfg.warmup_iters = base_lr, max_iters, warmup
    cfg.default_hooks.logger.interval = max(1, min(50, max_iters // 10 or 1))
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.work_dir, cfg.log_level, cfg.load_from, cfg.resume = str(work_dir), log_level, None, False
    return cfg


def save_slim_checkpoint(model, path: Path, classes: Sequence[str], **meta) -> Path:
    """Save ``{'state_dict', 'meta': {'dataset_meta': {'classes'}, **meta}}`` (tensors, str, int,
    float, tuples only: loadable with ``torch.load(weights_only=True)``)."""
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({'state_dict': state,
                'meta': {'dataset_meta': {'classes': tuple(classes)}, **meta}}, path)
    return path


def evaluate_detector(detector, samples: Sequence[DetectionSample], image_root: Path,
                      classes: Sequence[str]) -> Dict:
    """COCO box metrics (pycocotools) of ``detector`` on ``samples``.

    Args:
        detector: a :class:`~fundusexpert_plugin.detector.detect.Detector` (low score threshold).
        samples: images with ground truth, ``file_name`` relative to ``image_root``.
        classes: finding ids; category ``i + 1`` is ``classes[i]``.

    Returns:
        ``{'bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'AP50_per_class': {id: float}, 'n_images',
        'n_gt_boxes', 'n_detections'}``; a class without ground truth in ``samples`` has AP50 NaN.
    """
    from fundusexpert_plugin.core.coco_eval import coco_box_ap
    from fundusexpert_plugin.detector.coco import to_coco

    gt = to_coco(samples, classes)
    results = []
    for img in gt['images']:
        for det in detector.predict(str(Path(image_root) / img['file_name'])):
            x1, y1, x2, y2 = det.box_px
            results.append(dict(image_id=img['id'], category_id=classes.index(det.label_id) + 1,
                                bbox=[x1, y1, x2 - x1, y2 - y1], score=det.score))
    scores = coco_box_ap(gt, results)
    metrics = dict(bbox_mAP=max(scores['ap'] or 0.0, 0.0), bbox_mAP_50=max(scores['ap50'] or 0.0, 0.0),
                   bbox_mAP_75=max(scores['ap75'] or 0.0, 0.0),
                   AP50_per_class={c: float('nan') for c in classes},
                   n_images=len(samples), n_gt_boxes=len(gt['annotations']), n_detections=len(results))
    for cid, per in scores['per_category'].items():  # only classes with ground truth (COCO semantics)
        ap50 = per['ap50']
        metrics['AP50_per_class'][classes[cid - 1]] = float('nan') if ap50 is None else ap50
    return metrics


def train_detector(records: Sequence[FundusGenRecord], work_dir: Union[str, Path] = 'work_dirs/detector', *,
                   val_split: Optional[float] = 0.2,
                   val_records: Optional[Sequence[FundusGenRecord]] = None, max_iters: int = 300,
                   img_scale: Tuple[int, int] = (640, 640), batch_size: int = 4,
                   lr: Optional[float] = None, seed: int = 0,
                   config: Union[str, Path] = DEFAULT_CONFIG,
                   classes: Optional[Sequence[str]] = None,
                   log_level: str = 'INFO', annotation_skips: Optional[dict] = None) -> TrainResult:
    """Convert, train, save and evaluate (module docstring).

    Args:
        records: training records with absolute image paths (any reader of :mod:`fundusexpert_plugin.sources`).
        work_dir: output folder (created).
        val_split: fraction of images held out (seeded) when ``val_records`` is not given.
        val_records: a separate validation set.
        max_iters: training iterations (batches).
        img_scale: ``(width, height)`` the images are resized into (keep ratio) and padded to.
        batch_size: images per iteration.
        lr: AdamW learning rate; default the config's ``base_lr``.
        seed: seeds the split, the Runner (torch, numpy, random) and data order.
        config: mmdet config with at most one ``_base_`` level.
        classes: fixed class order (finding ids or aliases); default vocabulary order of those present.
        log_level: the Runner's log level.
        annotation_skips: what a lenient reading of the annotations left out (``fundusexpert detector
            train --lenient``: ``ConvertLog.counts()`` plus ``'messages'``); kept in ``metrics.json``
            and ``TrainResult.metrics`` under ``'annotation_skips'``, so the work dir says what the
            model was not trained on.

    Raises:
        ValueError: bad options, no record, or validation labels outside the training classes.
    """
    if max_iters < 1 or batch_size < 1:
        raise ValueError(f'`max_iters` and `batch_size` must be >= 1, got {max_iters}, {batch_size}')
    if len(img_scale) != 2 or min(img_scale) < 32:
        raise ValueError(f'`img_scale` must be (width, height) >= 32 px, got {img_scale}')
    from fundusexpert_plugin.detector.mmcv_ops import ensure_mmcv_ops

    work_dir = Path(work_dir)
    data = samples_from_records(records, classes, source='training records')
    if val_records is not None:
        # the validation labels must be classes the training set has (or the ones asked for)
        val = samples_from_records(val_records, data.classes, source='validation records')
        train_samples, val_samples, val_root = data.samples, val.samples, val.image_root
    else:
        train_samples, val_samples = split_samples(data.samples, val_split, seed)
        val_root = data.image_root
    class_names = data.classes
    work_dir.mkdir(parents=True, exist_ok=True)   # after the inputs are checked: a bad class leaves no folder
    train_json = write_coco(work_dir / 'train.json', train_samples, class_names)
    val_json = write_coco(work_dir / 'val.json', val_samples, class_names)

    ensure_mmcv_ops()
    from mmdet.utils import register_all_modules
    from mmengine.runner import Runner

    register_all_modules(init_default_scope=False)
    cfg = build_config(config, classes=class_names, train_json=train_json.resolve(),
                       train_root=data.image_root.resolve(), val_json=val_json.resolve(),
                       val_root=Path(val_root).resolve(), work_dir=work_dir.resolve(),
                       img_scale=tuple(img_scale), batch_size=batch_size, max_iters=max_iters,
                       lr=lr, seed=seed, log_level=log_level)
    stem = Path(config).stem
    config_out, ckpt_out = work_dir / f'{stem}.py', work_dir / f'{stem}.pth'
    runner_cfg = copy.deepcopy(cfg)
    runner_cfg.test_dataloader = runner_cfg.test_cfg = runner_cfg.test_evaluator = None
    runner = Runner.from_cfg(runner_cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    cfg.dump(str(config_out))  # after the Runner, which dumps its own copy under the same name
    # ... or under the name of the resolved temporary file (0_<stem>.py, no test pipeline): not usable
    runner_dump = work_dir / Path(runner_cfg.filename or config_out.name).name
    if runner_dump != config_out and runner_dump.is_file():
        runner_dump.unlink()
    logger.info('trained %d iterations in %.1f s (%.2f s/iter)', max_iters, seconds,
                seconds / max_iters)
    import mmdet
    save_slim_checkpoint(runner.model, ckpt_out, class_names, iters=max_iters, seed=seed,
                         mmdet_version=mmdet.__version__)
    detector = Detector(str(config_out), ckpt_out, score_threshold=0.0)
    metrics = evaluate_detector(detector, val_samples, Path(val_root), list(class_names))
    if annotation_skips is not None:
        metrics['annotation_skips'] = annotation_skips
    (work_dir / 'metrics.json').write_text(json.dumps(json_safe(metrics), indent=2))
    logger.info('validation (%d images): mAP %.4f, AP50 %.4f, AP50 per class %s',
                len(val_samples), metrics['bbox_mAP'], metrics['bbox_mAP_50'],
                metrics['AP50_per_class'])
    if not metrics['bbox_mAP_50']:   # 0.0 or NaN
        logger.warning('validation AP50 is %s on %d images: this detector finds nothing yet. Fundus-Engine '
                       'records made with it say each lesion class is "not detected"; train longer '
                       '(--max-iters) or at a larger --img-scale before building training data from them',
                       metrics['bbox_mAP_50'], len(val_samples))
    return TrainResult(ckpt_out, config_out, metrics, tuple(class_names), len(train_samples),
                       len(val_samples), seconds)


def json_safe(value):
    """NaN -> None (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value
