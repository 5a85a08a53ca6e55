#!/usr/bin/env bash
# GRPO after SFT: bash examples/recipes/grpo.sh examples/recipes/grpo_<recipe>.yaml <sft checkpoint> [more swift rlhf flags]
#
# The recipe YAML holds the `swift rlhf` flags. This script adds what depends on the machine and the run:
#   * --model <sft checkpoint> (a merged or full checkpoint; the GRPO stage starts from it);
#   * --external_plugins <plugin file>: registers fundusgen, our templates and the fundus_* rewards;
#   * --use_vllm true (vLLM rollout, colocated) when vllm is installed, else transformers rollout
#     (USE_VLLM=true|false overrides);
#   * NPROC_PER_NODE = the number of visible GPUs when unset (torchrun for more than one).
# Flags given after the checkpoint win over the YAML.
#
# Environment: FUNDUSGEN_DIR (training folder; unset = the bundled sample), USE_VLLM, NPROC_PER_NODE,
#   NNODES, NODE_RANK, MASTER_ADDR, PYTHON, SWIFT, FUNDUS_RECIPE_DRY_RUN=1 (print the command as JSON).
set -euo pipefail
recipe=${1:?usage: grpo.sh RECIPE.yaml SFT_CHECKPOINT [extra swift rlhf flags]}
checkpoint=${2:?usage: grpo.sh RECIPE.yaml SFT_CHECKPOINT [extra swift rlhf flags]}
shift 2
[ -f "$recipe" ] || { echo "grpo.sh: recipe not found: $recipe" >&2; exit 2; }
PYTHON=${PYTHON:-python}
SWIFT=${SWIFT:-swift}
source "$(dirname "${BASH_SOURCE[0]}")/launch_lib.sh"

set_nproc_per_node
if [ -z "${USE_VLLM:-}" ]; then
  if "$PYTHON" -c 'import vllm' 2>/dev/null; then USE_VLLM=true; else USE_VLLM=false; fi
fi

extra=(--model "$checkpoint"
       --external_plugins "$("$PYTHON" -c 'from fundusexpert_plugin.swift_plugin.registry import plugin_path; print(plugin_path())')"
       --use_vllm "$USE_VLLM")
cmd=("$SWIFT" rlhf "$recipe" "${extra[@]}" "$@")
run_or_print "${cmd[@]}"
