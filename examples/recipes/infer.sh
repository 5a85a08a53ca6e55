#!/usr/bin/env bash
# Evaluate a trained checkpoint: swift infer on held-out FundusGen, then `fundusexpert eval` on the result.
#
#   RECIPE=examples/recipes/fundusexpert_internvl2_5_8b.yaml FUNDUSGEN_HELDOUT_DIR=/data/fundusgen/heldout \
#     bash examples/recipes/infer.sh output/fundusexpert_internvl2_5_8b/v0-.../checkpoint-2324 [more swift infer flags]
#
# * The backend is vLLM when `import vllm` works (INFER_BACKEND=transformers to force the plain one). vLLM takes
#   the whole GPU (VLLM_GPU_MEMORY_UTILIZATION, default 0.9) and TP GPUs per replica (default 1); with
#   NPROC_PER_NODE=N, swift runs N/TP data-parallel replicas through torchrun.
# * RECIPE (optional): the training recipe, whose ENV section (MAX_NUM / INPUT_SIZE / MAX_PIXELS) is exported so
#   inference sees images the way training did. For the remote-code InternVL2.5 models under vLLM, the tile limit
#   is vLLM's own `max_dynamic_patch` processor option; it is passed from MAX_NUM (not verified on a GPU here).
#   The paper's quick_start.py used 12 tiles at inference after training with 6; set MAX_NUM=12 to match that.
# * A LoRA checkpoint (adapter_config.json) goes in as --adapters; swift finds the base model in its args.json.
# * The plugin is re-imported from the checkpoint's args.json; --external_plugins is passed again for base models.
# Environment: VAL_DATASET (default fundusgen_heldout: every held-out task), RESULT (default
# <checkpoint>/infer_result/fundusgen_heldout.jsonl), EVAL_OUT (default <RESULT without .jsonl>_eval),
# EVAL_ARGS (extra `fundusexpert eval` flags, e.g. "--box-space qwen=grid" for Qwen3-VL), MAX_NEW_TOKENS (1024,
# as the paper's quick_start.py), FUNDUS_RECIPE_DRY_RUN=1 (print the swift command as JSON, run nothing).
set -euo pipefail
checkpoint=${1:?usage: infer.sh CHECKPOINT_OR_MODEL [extra swift infer flags]}
shift
PYTHON=${PYTHON:-python}
SWIFT=${SWIFT:-swift}

if [ -n "${RECIPE:-}" ]; then  # export the recipe's ENV (values already in the environment win, as in swift)
  eval "$("$PYTHON" - "$RECIPE" <<'PY'
import os, shlex, sys, yaml
env = yaml.safe_load(open(sys.argv[1], encoding='utf-8')).get('ENV') or {}
for key, value in env.items():
    if key not in os.environ and not key.startswith('FUNDUS_GLOBAL'):
        print(f'export {key}={shlex.quote(str(value))}')
PY
)"
fi
backend=${INFER_BACKEND:-}
if [ -z "$backend" ]; then
  if "$PYTHON" -c 'import vllm' 2>/dev/null; then backend=vllm; else backend=transformers; fi
fi
val_dataset=${VAL_DATASET:-fundusgen_heldout}
result=${RESULT:-$checkpoint/infer_result/${val_dataset//[:\/#]/_}.jsonl}

if [ -f "$checkpoint/adapter_config.json" ]; then model_flag=--adapters; else model_flag=--model; fi  # LoRA or full
args=("$model_flag" "$checkpoint" --val_dataset $val_dataset --result_path "$result"
      --external_plugins "$("$PYTHON" -c 'from fundusexpert_plugin.swift_plugin.registry import plugin_path; print(plugin_path())')"
      --infer_backend "$backend" --temperature 0 --max_new_tokens "${MAX_NEW_TOKENS:-1024}")
if [ "$backend" = vllm ]; then
  args+=(--vllm_max_model_len "${VLLM_MAX_MODEL_LEN:-8192}"
         --vllm_gpu_memory_utilization "${VLLM_GPU_MEMORY_UTILIZATION:-0.9}"
         --vllm_tensor_parallel_size "${TP:-1}"
         --vllm_limit_mm_per_prompt '{"image": 1}')
  if [ -n "${MAX_NUM:-}" ]; then
    args+=(--vllm_engine_kwargs "{\"mm_processor_kwargs\": {\"max_dynamic_patch\": $MAX_NUM}}")
  fi
else
  args+=(--max_batch_size "${MAX_BATCH_SIZE:-16}")
fi

cmd=("$SWIFT" infer "${args[@]}" "$@")
if [ "${FUNDUS_RECIPE_DRY_RUN:-0}" = 1 ]; then
  exec "$PYTHON" -c 'import json, os, sys
keys = ("NPROC_PER_NODE", "MAX_NUM", "INPUT_SIZE", "MAX_PIXELS")
print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ[k] for k in keys if k in os.environ}}))' "${cmd[@]}"
fi
mkdir -p "$(dirname "$result")"
echo "+ ${cmd[*]}" >&2
"${cmd[@]}"
eval_out=${EVAL_OUT:-${result%.jsonl}_eval}
# shellcheck disable=SC2086  # EVAL_ARGS is a flag list
"$PYTHON" -m fundusexpert_plugin.cli eval score --result "$result" --out "$eval_out" ${EVAL_ARGS:-}
echo "metrics: $eval_out/metrics.json  report: $eval_out/report.html" >&2
