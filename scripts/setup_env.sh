#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with the known-good CPU stack.
# Idempotent: does nothing when .venv already matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=".venv/.fundusexpert-installed"
want="$(sha256sum pyproject.toml scripts/setup_env.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch/torchvision first: these versions run on CPU (a CUDA build that falls back to the CPU).
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e '.[test,cluster]' 'ray[data]==2.60.0'
# mmengine pulls the GUI build of OpenCV; keep the headless one importable on machines without libGL.
python -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$(python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
python -m pip check || true
echo "$want" > "$stamp"
