#!/usr/bin/env bash
# Train the lesion detector on DDR lesion segmentation (one GPU): masks -> boxes -> RTMDet-s at 1536 px.
#   DDR=/data/DDR-dataset bash examples/recipes/detector_ddr_lesions.sh [extra detector train flags]
# FUNDUS_RECIPE_DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail
DDR=${DDR:?set DDR to the DDR-dataset folder, the one holding lesion_segmentation}
WORK=${WORK:-work_dirs/detector_ddr_lesions}
HERE=$(cd "$(dirname "$0")" && pwd)
run() { if [[ -n "${FUNDUS_RECIPE_DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
# One box per 8-connected lesion (DBSCAN eps 1.5 px, min_samples 1, every component of area > 0, up to
# 300 per class: the detector's max_per_img). The paper's defaults (eps 50 px, min_samples 10, area
# > 100 px^2, top 10) describe lesion regions for text; they merge neighbouring lesions and drop most
# microaneurysms, which would then be trained as background.
for split in train valid; do
  run fundusexpert data convert ddr-segmentation --images "$DDR/lesion_segmentation/$split/image" \
      --masks "$DDR/lesion_segmentation/$split/label" --eps-px 1.5 --min-samples 1 \
      --area-threshold-px2 0 --max-boxes 300 --absolute-paths --out "$WORK/records_$split.jsonl"
done
run fundusexpert detector train --format records --annotations "$WORK/records_train.jsonl" \
    --images "$DDR/lesion_segmentation/train/image" --val-annotations "$WORK/records_valid.jsonl" \
    --val-images "$DDR/lesion_segmentation/valid/image" --config "$HERE/detector_rtmdet-s_ddr-lesions.py" \
    --classes hard_exudates haemorrhages microaneurysms cotton_wool_spots \
    --img-scale 1536 --batch-size 8 --max-iters 12000 --work-dir "$WORK" "$@"
