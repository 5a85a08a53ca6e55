# RTMDet-tiny for fundus anatomy and lesions (IDRiD/CODRAS boxes: optic disc, hard exudates,
# haemorrhages), trained from scratch on CPU or GPU by fundusexpert_plugin.detector.train.
#
# One level of inheritance: everything not set here comes from the config shipped in the mmdet
# 3.3.0 wheel (mmdet/.mim/configs/rtmdet/rtmdet_tiny_8xb32-300e_coco.py, which itself chains to
# rtmdet_s/rtmdet_l/_base_). train_detector resolves the 'mmdet::' prefix itself (mmengine needs
# pkg_resources for it) and dumps the merged, self-contained config next to the checkpoint.
#
# train_detector overrides at run time: classes (metainfo and bbox_head.num_classes), img_scale
# (every Resize/RandomResize/RandomCrop/Pad), annotation files and image folders, batch size,
# max_iters, learning rate and warm-up, seed.
#
# Choices (ours, not the paper's: FundusExpert localises with nnU-Net masks + DBSCAN):
#   * no ImageNet-pretrained backbone (nothing may be downloaded): backbone.init_cfg=None;
#   * BN instead of SyncBN (single process, CPU);
#   * no Mosaic/MixUp: fundus photographs are single circular fields; composites of four eyes are
#     unrealistic, and the caches cost memory on 4288x2848 inputs;
#   * iteration-based schedule (linear warm-up then cosine), no EMA, no pipeline switch;
#   * test_cfg with 1,000 pre-NMS boxes (base: 30,000) and 100 per image: the base values make
#     CPU inference and sliced inference slow.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

classes = ('optic_disc', 'hard_exudates', 'haemorrhages')
img_scale = (640, 640)
base_lr = 0.002
max_iters = 300
warmup_iters = 50
norm_cfg = dict(type='BN')

model = dict(
    backbone=dict(norm_cfg=norm_cfg, init_cfg=None),
    neck=dict(norm_cfg=norm_cfg),
    bbox_head=dict(num_classes=len(classes), norm_cfg=norm_cfg),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.001,
                  nms=dict(type='nms', iou_threshold=0.65), max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root='', ann_file='', data_prefix=dict(img=''),
                 metainfo=dict(classes=classes),
                 filter_cfg=dict(filter_empty_gt=False, min_size=8), pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root='', ann_file='', data_prefix=dict(img=''),
                 metainfo=dict(classes=classes), test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(type='CocoMetric', ann_file='', metric='bbox', format_only=False)
# Validation runs after training (pycocotools, engine/train_detector.py), not inside the Runner.
val_dataloader = None
val_cfg = None
val_evaluator = None

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, by_epoch=False, begin=warmup_iters,
         end=max_iters, T_max=max_iters - warmup_iters),
]
optim_wrapper = dict(optimizer=dict(lr=base_lr))
custom_hooks = []
default_hooks = dict(logger=dict(type='LoggerHook', interval=10), checkpoint=None)
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, deterministic=False)
