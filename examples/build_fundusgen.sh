#!/usr/bin/env bash
# FundusGen from the bundled IDRiD sample (train/ and heldout/), then from your own records.
set -euo pipefail
fundusexpert data build --sample --out fundusgen
# your data: one FundusGen record per line (see README "FundusGen from your data")
# fundusexpert data build --records my_records.jsonl --out my_fundusgen/train --lenient
