#!/usr/bin/env bash
# One command for the paper's FundusExpert (InternVL2.5-8B, full fine-tune, global batch 128, ZeRO-3):
#   FUNDUSGEN_DIR=/data/fundusgen/train bash examples/recipes/fundusexpert.sh [extra swift sft flags]
# Multi-node: NNODES=2 NODE_RANK=<0|1> MASTER_ADDR=<node 0 address> MASTER_PORT=29500 NPROC_PER_NODE=8 on each node.
exec bash "$(dirname "$0")/sft.sh" "$(dirname "$0")/fundusexpert_internvl2_5_8b.yaml" "$@"
