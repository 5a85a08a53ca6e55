#!/usr/bin/env bash
# swift sft with the plugin on CPU: tiny Qwen2.5-VL built locally, FundusGen of the bundled sample.
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MAX_PIXELS=50176
fundusexpert make-tiny-model --family qwen2_5_vl tiny-qwen2_5_vl
fundusexpert data build --sample --out fundusgen
export FUNDUSGEN_DIR=$PWD/fundusgen/train
swift sft \
    --model tiny-qwen2_5_vl \
    --template fundusexpert_qwen2_5_vl \
    --external_plugins "$(fundusexpert swift plugin-path)" \
    --dataset fundusgen:region_detection fundusgen:diagnosis 'fundusgen:grounded_report#8' \
    --tuner_type full --freeze_vit false --freeze_aligner false \
    --torch_dtype float32 --max_steps 40 --per_device_train_batch_size 2 --learning_rate 5e-4 \
    --max_length 1024 --logging_steps 1 --save_steps 40 --add_version false --save_only_model true \
    --split_dataset_ratio 0 --dataloader_num_workers 0 --check_model false --report_to none \
    --output_dir output/tiny-qwen2_5_vl
