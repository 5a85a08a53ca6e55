#!/usr/bin/env bash
# swift rlhf --rlhf_type grpo with the plugin's rewards on CPU: tiny Qwen2.5-VL built locally (random
# weights: every reward is about 0; this shows the wiring, not learning), FundusGen of the bundled sample.
# About 30-60 s for 3 steps on 2 cores. The GPU recipes are examples/recipes/grpo*.{sh,yaml}.
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MAX_PIXELS=12544
fundusexpert make-tiny-model --family qwen2_5_vl tiny-qwen2_5_vl
fundusexpert data build --sample --out fundusgen
export FUNDUSGEN_DIR=$PWD/fundusgen/train
swift rlhf --rlhf_type grpo \
    --model tiny-qwen2_5_vl \
    --template fundusexpert_qwen2_5_vl \
    --external_plugins "$(fundusexpert swift plugin-path)" \
    --dataset 'fundusgen:region_detection#4' 'fundusgen:grounded_report#4' 'fundusgen:mcq#4' \
    --reward_funcs fundus_grounding fundus_format fundus_consistency fundus_mcq \
    --use_vllm false --num_generations 2 --beta 0.04 --temperature 1.0 --max_completion_length 32 \
    --per_device_train_batch_size 2 --max_steps 3 --learning_rate 1e-5 \
    --tuner_type full --torch_dtype float32 --gradient_checkpointing false \
    --split_dataset_ratio 0 --dataloader_num_workers 0 --check_model false --report_to none \
    --logging_steps 1 --save_steps 3 --save_only_model true --add_version false \
    --output_dir output/grpo-tiny-qwen2_5_vl
# rewards are logged per step as rewards/FundusGrounding/mean ... in output/grpo-tiny-qwen2_5_vl/logging.jsonl
