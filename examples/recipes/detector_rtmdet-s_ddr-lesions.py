# RTMDet-s for fundus LESIONS on one GPU: DDR lesion segmentation masks (EX, HE, MA, SE) turned into
# boxes by the converters, trained by `fundusexpert detector train` at 1536 px, the input size small
# lesions need (a microaneurysm of 10-25 px at DDR's ~2000-4000 px is 4-10 px at 1536; at the CPU
# default of 640 px it is 2-4 px). Launcher and data steps: detector_ddr_lesions.sh.
#
# Over the packaged config (same pipelines and choices: no pretrained weights are downloaded, BN, no
# Mosaic/MixUp), with: the RTMDet-s widths of mmdet's rtmdet_s_8xb32-300e_coco.py, the four DDR
# lesion classes (disc and fovea come from the landmark locator, detector/landmarks.py), 12,000
# iterations of batch 8, 8 loader workers, up to 300 boxes per image (DDR images hold many
# microaneurysms), 500 warmup iterations. detector train sets img_scale, batch,
# iterations and classes from its flags, and the schedule (detector/train.py build_config).
#
# Boxes: one per 8-connected lesion component (detector_ddr_lesions.sh says why not the paper's defaults).
#
# Expected GPU time and COCO AP: NOT MEASURED YET (no GPU run of this recipe so far). detector train
# writes the COCO AP of the validation set to <work-dir>/metrics.json; record time and AP here.
# Measured on CPU: one iteration of these settings (1536 px, batch 8) takes 126-130 s on 2 cores, so
# the 12,000 iterations are a GPU job. tests/recipes/test_detector_recipe.py runs both steps of the
# launcher on CPU at 256 px for one iteration. For orientation only (another model and protocol):
# YOLOv5 with tiling reached AP50 0.263 on DDR valid and 0.154 on DDR test (Santos et al., Sensors
# 22:6441, 2022).
_base_ = '../../fundusexpert_plugin/detector/configs/rtmdet-tiny_idrid-lesions.py'

classes = ('hard_exudates', 'haemorrhages', 'microaneurysms', 'cotton_wool_spots')
img_scale = (1536, 1536)
max_iters = 12000

model = dict(
    backbone=dict(deepen_factor=0.33, widen_factor=0.5),
    neck=dict(in_channels=[128, 256, 512], out_channels=128, num_csp_blocks=1),
    bbox_head=dict(num_classes=len(classes), in_channels=128, feat_channels=128, exp_on_reg=False),
    test_cfg=dict(nms_pre=3000, max_per_img=300))
train_dataloader = dict(batch_size=8, num_workers=8, persistent_workers=True, pin_memory=True,
                        dataset=dict(metainfo=dict(classes=classes)))
test_dataloader = dict(dataset=dict(metainfo=dict(classes=classes)))
# the schedule detector train builds from max_iters and warmup_iters (detector/train.py build_config)
warmup_iters = 500
base_lr = 0.004
optim_wrapper = dict(optimizer=dict(lr=base_lr))
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, by_epoch=False, begin=warmup_iters,
         end=max_iters, T_max=max_iters - warmup_iters),
]
