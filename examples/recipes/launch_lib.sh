# Shared by sft.sh and grpo.sh (sourced, not run).

# NPROC_PER_NODE = the number of GPUs of this node (CUDA_VISIBLE_DEVICES, else nvidia-smi) when unset and
# more than one, or when NNODES is set: swift then launches torchrun.
set_nproc_per_node() {
  if [ -z "${NPROC_PER_NODE:-}" ]; then
    local gpus
    if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
      gpus=$(awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES")
    else
      gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    fi
    if [ "${gpus:-0}" -gt 1 ] || [ -n "${NNODES:-}" ]; then export NPROC_PER_NODE=$(( ${gpus:-0} > 0 ? gpus : 1 )); fi
  fi
}

# run_or_print CMD...: run CMD, or with FUNDUS_RECIPE_DRY_RUN=1 print it and the launch environment as JSON.
run_or_print() {
  if [ "${FUNDUS_RECIPE_DRY_RUN:-0}" = 1 ]; then
    exec "$PYTHON" -c 'import json, os, sys
keys = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES")
print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ[k] for k in keys if k in os.environ}}))' "$@"
  fi
  echo "+ $*" >&2
  exec "$@"
}
