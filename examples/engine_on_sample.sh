#!/usr/bin/env bash
# Fundus-Engine end to end on the bundled photographs (CPU, minutes):
# train a detector briefly -> run the engine over the held-out photographs -> FundusGen -> swift sft.
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MAX_PIXELS=50176
SAMPLE=$(python -c 'from fundusexpert_plugin.sample import SAMPLE_DIR; print(SAMPLE_DIR)')
mkdir -p work/heldout_photos
python - <<PY
import json, shutil
rows = [json.loads(l) for l in open('$SAMPLE/annotations.jsonl')]
with open('work/train.jsonl', 'w') as fh:
    for r in rows:
        if r['split'] == 'train':
            fh.write(json.dumps(r) + '\n')
        else:
            shutil.copy('$SAMPLE/' + r['image'], 'work/heldout_photos/')
PY
# 1. a small RTMDet-tiny on the 8 training photographs (more iterations give a usable detector)
fundusexpert detector train --annotations work/train.jsonl --images "$SAMPLE" --format codras --work-dir work/detector \
    --classes optic_disc hard_exudates haemorrhages \
    --max-iters 100 --img-scale 640 --val-split 0.25 --seed 0
# 2. the engine over the held-out photographs (rerun the same command after an interruption: it resumes;
#    add --shard i/n to split a folder across machines, then `fundusexpert engine merge`)
fundusexpert engine run --images work/heldout_photos --detector work/detector/rtmdet-tiny_idrid-lesions.py \
    --checkpoint work/detector/rtmdet-tiny_idrid-lesions.pth --out work/engine --score-threshold 0.3
fundusexpert engine merge --out work/engine
# 3. FundusGen from the engine's records, then training on it
fundusexpert data build --records work/engine/records.jsonl --out work/fundusgen_engine --allow-outside-root
fundusexpert make-tiny-model --family qwen2_5_vl work/tiny-qwen2_5_vl
FUNDUSGEN_DIR=$PWD/work/fundusgen_engine swift sft --model work/tiny-qwen2_5_vl \
    --template fundusexpert_qwen2_5_vl --external_plugins "$(fundusexpert swift plugin-path)" \
    --dataset fundusgen:grounded_report fundusgen:region_detection --tuner_type full --torch_dtype float32 \
    --max_steps 2 --per_device_train_batch_size 1 --check_model false --report_to none \
    --split_dataset_ratio 0 --dataloader_num_workers 0 --output_dir work/sft_engine
