#!/usr/bin/env bash
# Train one recipe with ms-swift: bash examples/recipes/sft.sh examples/recipes/<recipe>.yaml [more swift sft flags]
#
# The recipe YAML holds every swift flag (`swift sft <file>.yaml` turns its keys into flags, its ENV section into
# environment variables). This script only adds what depends on the machine:
#   * --external_plugins <plugin file>: registers fundusgen, our templates, --loss_type/--loss_scale fundus_grounding;
#   * --gradient_accumulation_steps = FUNDUS_GLOBAL_BATCH / (per_device_train_batch_size x NPROC_PER_NODE x NNODES),
#     so the global batch of the recipe (128 in the paper) holds on any number of GPUs;
#   * --attn_impl flash_attn when flash-attn is installed (set ATTN_IMPL=sdpa to opt out);
#   * NPROC_PER_NODE = the number of visible GPUs when unset, so one multi-GPU machine uses torchrun (DDP/ZeRO).
# Flags given after the YAML win over the YAML (e.g. --model /local/dir, --output_dir, --max_steps 10).
#
# Environment:
#   FUNDUSGEN_DIR                 FundusGen training folder (`fundusexpert data build`); unset = the bundled 12-photo sample
#   NPROC_PER_NODE, NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT
#                                 swift's torchrun switches; multi-node: same command on every node, NODE_RANK 0..N-1
#   PER_DEVICE_TRAIN_BATCH_SIZE   override the recipe's per-device batch (the accumulation follows)
#   FUNDUS_GLOBAL_BATCH           override the recipe's global batch
#   PYTHON, SWIFT                 interpreter / swift command to use (default: python, swift on PATH)
#   FUNDUS_RECIPE_DRY_RUN=1       print the command as JSON instead of running it (tests/recipes uses this)
set -euo pipefail
recipe=${1:?usage: sft.sh RECIPE.yaml [extra swift sft flags]}
shift
[ -f "$recipe" ] || { echo "sft.sh: recipe not found: $recipe" >&2; exit 2; }
PYTHON=${PYTHON:-python}
SWIFT=${SWIFT:-swift}
source "$(dirname "${BASH_SOURCE[0]}")/launch_lib.sh"

# per-device and global batch from the recipe (ENV section), unless overridden here
read -r recipe_per_device recipe_global < <("$PYTHON" - "$recipe" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))
print(cfg.get('per_device_train_batch_size', 1), (cfg.get('ENV') or {}).get('FUNDUS_GLOBAL_BATCH', 0))
PY
)
per_device=${PER_DEVICE_TRAIN_BATCH_SIZE:-$recipe_per_device}
global_batch=${FUNDUS_GLOBAL_BATCH:-$recipe_global}

# GPUs of this node: NPROC_PER_NODE, else CUDA_VISIBLE_DEVICES, else nvidia-smi; >1 switches swift to torchrun
set_nproc_per_node
world=$(( ${NPROC_PER_NODE:-1} * ${NNODES:-1} ))

extra=(--external_plugins "$("$PYTHON" -c 'from fundusexpert_plugin.swift_plugin.registry import plugin_path; print(plugin_path())')")
if [ -n "${PER_DEVICE_TRAIN_BATCH_SIZE:-}" ]; then extra+=(--per_device_train_batch_size "$per_device"); fi
if [ "$global_batch" -gt 0 ]; then
  denominator=$(( per_device * world ))
  if [ $(( global_batch % denominator )) -ne 0 ]; then
    echo "sft.sh: global batch $global_batch is not a multiple of per_device_train_batch_size $per_device x $world" \
         "GPUs; set PER_DEVICE_TRAIN_BATCH_SIZE or FUNDUS_GLOBAL_BATCH" >&2
    exit 2
  fi
  extra+=(--gradient_accumulation_steps "$(( global_batch / denominator ))")
fi
if [ -z "${ATTN_IMPL:-}" ] && "$PYTHON" -c 'import flash_attn' 2>/dev/null; then ATTN_IMPL=flash_attn; fi
if [ -n "${ATTN_IMPL:-}" ]; then extra+=(--attn_impl "$ATTN_IMPL"); fi
if [ -z "${FUNDUSGEN_DIR:-}" ]; then
  echo "sft.sh: FUNDUSGEN_DIR is not set: training on the bundled 12-photo sample (a smoke test, not the recipe)" >&2
fi

cmd=("$SWIFT" sft "$recipe" "${extra[@]}" "$@")
run_or_print "${cmd[@]}"
