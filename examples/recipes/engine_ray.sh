#!/usr/bin/env bash
# Fundus-Engine across a Ray cluster (optional `cluster` extra: pip install 'fundusexpert-plugin[cluster]').
# Detector + semantic expansion run as a pool of Ray Data actors (one detector each); the driver writes the shard
# files of `fundusexpert engine run`, then the merged, deduplicated records.jsonl.
#
#   ray start --head                                  # on the head node (workers: ray start --address=<head>:6379)
#   IMAGES=/shared/photos DETECTOR=/shared/det/rtmdet.py CHECKPOINT=/shared/det/rtmdet.pth OUT=/shared/engine_out \
#     NUM_ACTORS=16 GPUS_PER_ACTOR=0.5 bash examples/recipes/engine_ray.sh
#
# IMAGES, DETECTOR, CHECKPOINT and OUT must be the same paths on every node (shared storage), and every node needs
# this package installed. Rerunning resumes. RAY_ADDRESS (default auto: the running cluster; set "" for a local
# one), NUM_ACTORS (4), GPUS_PER_ACTOR (0: CPU), CPUS_PER_ACTOR (1), BATCH_SIZE (8), ENGINE_ARGS (extra flags of
# `fundusexpert engine ray`), FUNDUSEXPERT (the command, default `fundusexpert`), FUNDUS_RECIPE_DRY_RUN=1 (print
# the command, run nothing).
set -euo pipefail
: "${IMAGES:?set IMAGES}" "${DETECTOR:?set DETECTOR}" "${CHECKPOINT:?set CHECKPOINT}" "${OUT:?set OUT}"
read -r -a FUNDUSEXPERT_CMD <<<"${FUNDUSEXPERT:-fundusexpert}"
read -r -a engine_args <<<"${ENGINE_ARGS:-}"
cmd=("${FUNDUSEXPERT_CMD[@]}" engine ray --images "$IMAGES" --detector "$DETECTOR"
     --checkpoint "$CHECKPOINT" --out "$OUT" --num-actors "${NUM_ACTORS:-4}" --batch-size "${BATCH_SIZE:-8}"
     --num-cpus-per-actor "${CPUS_PER_ACTOR:-1}" --num-gpus-per-actor "${GPUS_PER_ACTOR:-0}" "${engine_args[@]}")
if [ -n "${RAY_ADDRESS-auto}" ]; then cmd+=(--address "${RAY_ADDRESS-auto}"); fi
if [ "${FUNDUS_RECIPE_DRY_RUN:-0}" = 1 ]; then printf '%s\0' "${cmd[@]}"; printf '\n'; exit 0; fi
exec "${cmd[@]}"
