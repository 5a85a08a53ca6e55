#!/usr/bin/env bash
# GPU check of fundusexpert-plugin: swift sft throughput (tokens/s) and peak GPU memory with the plugin's template +
# grounding loss against the stock template + plain cross-entropy (bf16, 20 steps each, same data: FundusGen of the
# bundled sample), then swift infer throughput. Builds a ~1B random Qwen2.5-VL from a config: no download, no
# internet. Writes one JSON (default benchmarks/results/gpu_check.json; --out PATH to change it).
#
#   bash benchmarks/gpu_check.sh                    # one GPU, under 8 minutes
#   bash benchmarks/gpu_check.sh --with-vllm        # also swift infer --infer_backend vllm (if installed)
#   bash benchmarks/gpu_check.sh --tiny             # CPU smoke run with the tiny model, under 3 minutes
#   bash benchmarks/gpu_check.sh --keep --work-dir /tmp/gc   # keep model, checkpoints and logs
#
# Uses the first visible GPU only (CUDA_VISIBLE_DEVICES defaults to 0). PYTHON selects the interpreter.
# See benchmarks/results/README.md for the JSON fields.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 MODELSCOPE_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
unset NPROC_PER_NODE NNODES   # a single process: swift must not switch to torchrun
exec "${PYTHON:-python}" benchmarks/gpu_check.py "$@"
