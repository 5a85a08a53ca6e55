#!/usr/bin/env bash
# swift infer on the held-out images: the plugin is re-imported from the checkpoint's args.json.
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MAX_PIXELS=50176
export FUNDUSGEN_HELDOUT_DIR=$PWD/fundusgen/heldout
swift infer \
    --model output/tiny-qwen2_5_vl/checkpoint-40 \
    --val_dataset fundusgen_heldout:region_detection \
    --infer_backend transformers --torch_dtype float32 --temperature 0 --max_new_tokens 96 \
    --result_path output/heldout_region_detection.jsonl
