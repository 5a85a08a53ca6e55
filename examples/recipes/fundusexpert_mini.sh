#!/usr/bin/env bash
# One command for the paper's FundusExpert-mini (InternVL2.5-1B, full fine-tune, global batch 128, ZeRO-3):
#   FUNDUSGEN_DIR=/data/fundusgen/train bash examples/recipes/fundusexpert_mini.sh [extra swift sft flags]
exec bash "$(dirname "$0")/sft.sh" "$(dirname "$0")/fundusexpert_mini_internvl2_5_1b.yaml" "$@"
