#!/usr/bin/env bash
# Fundus-Engine over a large image set on ONE machine: one process per GPU (or per CPU slot), each running its own
# shard (`fundusexpert engine run --shard i/n`, photographs split by a stable hash of their relative path: roughly
# balanced, and a photo keeps its shard when others are added), then one merge.
#
#   IMAGES=/data/photos DETECTOR=work/detector/rtmdet-tiny_idrid-lesions.py \
#   CHECKPOINT=work/detector/rtmdet-tiny_idrid-lesions.pth OUT=/data/engine_out bash examples/recipes/engine_shards.sh
#
# Rerunning the same command resumes every shard (done photographs are skipped, a half-written line is cut).
# Environment: NUM_SHARDS (default: number of GPUs, else 2 CPU processes), DEVICE (cuda when GPUs are visible,
# else cpu), ENGINE_ARGS (extra `engine run` flags, e.g. "--tile-size 1024 --describer openai ..."),
# FUNDUSEXPERT (the command, default `fundusexpert`), FUNDUS_RECIPE_DRY_RUN=1 (print the commands, run nothing).
# Several machines without Ray: run this with the same OUT on a shared disk and SHARD_OFFSET/TOTAL_SHARDS, e.g.
# node k of 4 with 8 GPUs each: NUM_SHARDS=8 SHARD_OFFSET=$((8*k)) TOTAL_SHARDS=32; merge once at the end.
# Across a cluster the Ray route (engine_ray.sh) balances the load instead of fixing it per process.
set -euo pipefail
: "${IMAGES:?set IMAGES (folder or list file)}" "${DETECTOR:?set DETECTOR (mmdet config)}"
: "${CHECKPOINT:?set CHECKPOINT (detector weights)}" "${OUT:?set OUT (output folder)}"
read -r -a FUNDUSEXPERT_CMD <<<"${FUNDUSEXPERT:-fundusexpert}"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
gpus=${gpus:-0}
n=${NUM_SHARDS:-$(( gpus > 0 ? gpus : 2 ))}
offset=${SHARD_OFFSET:-0}
total=${TOTAL_SHARDS:-$n}
device=${DEVICE:-$([ "$gpus" -gt 0 ] && echo cuda || echo cpu)}
read -r -a engine_args <<<"${ENGINE_ARGS:-}"
pids=()
for (( i = 0; i < n; i++ )); do
  cmd=("${FUNDUSEXPERT_CMD[@]}" engine run --images "$IMAGES" --detector "$DETECTOR" --checkpoint "$CHECKPOINT"
       --out "$OUT" --shard "$(( offset + i ))/$total" --device "$device" --no-progress "${engine_args[@]}")
  if [ "${FUNDUS_RECIPE_DRY_RUN:-0}" = 1 ]; then printf '%s\0' "${cmd[@]}"; printf '\n'; continue; fi
  mkdir -p "$OUT"
  if [ "$gpus" -gt 0 ]; then  # one GPU per process
    CUDA_VISIBLE_DEVICES=$(( i % gpus )) "${cmd[@]}" >"$OUT/engine-$(( offset + i ))-of-$total.log" 2>&1 &
  else
    "${cmd[@]}" >"$OUT/engine-$(( offset + i ))-of-$total.log" 2>&1 &
  fi
  pids+=($!)
done
[ "${FUNDUS_RECIPE_DRY_RUN:-0}" = 1 ] && exit 0
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
if [ "$status" -ne 0 ]; then echo "engine_shards.sh: a shard failed; see $OUT/engine-*.log, then rerun to resume" >&2; exit 1; fi
if [ "$total" = "$n" ]; then "${FUNDUSEXPERT_CMD[@]}" engine merge --out "$OUT"; else
  echo "engine_shards.sh: shards $offset..$(( offset + n - 1 )) of $total done; run \`fundusexpert engine merge --out $OUT\` once all nodes finish" >&2
fi
