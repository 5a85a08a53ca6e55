#!/usr/bin/env bash
# Train the lesion detector on DDR lesion segmentation (one GPU): masks -> boxes -> RTMDet-s at 1536 px.
#   DDR=/data/DDR-dataset bash examples/recipes/detector_ddr_lesions.sh [extra train-detector flags]
# FUNDUS_RECIPE_DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
DDR=${DDR:?set DDR to the DDR-dataset folder, the one holding lesion_segmentation}
WORK=${WORK:-work_dirs/detector_ddr_lesions}
HERE=$(cd "$(dirname "$0")" && pwd)
run() { if [[ -n "${FUNDUS_RECIPE_DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
for split in train valid; do
  run fundusexpert convert ddr-segmentation --images "$DDR/lesion_segmentation/$split/image" \
      --masks "$DDR/lesion_segmentation/$split/label" --absolute-paths --out "$WORK/records_$split.jsonl"
done
run fundusexpert train-detector --format records --annotations "$WORK/records_train.jsonl" \
    --val-annotations "$WORK/records_valid.jsonl" --config "$HERE/detector_rtmdet-s_ddr-lesions.py" \
    --classes hard_exudates haemorrhages microaneurysms cotton_wool_spots \
    --img-scale 1536 --batch-size 8 --max-iters 12000 --work-dir "$WORK" "$@"
