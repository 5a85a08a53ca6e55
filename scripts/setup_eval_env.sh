#!/usr/bin/env bash
# Side environment for `swift eval` (evalscope 1.10.0), reusing the project's environment read-only.
#
# evalscope[opencompass]==1.10.0 (the last release with EvalType.SERVICE, which ms-swift 4.6.0
# uses) cannot live in the project's .venv: ms-opencompass pins numpy<2 and mmengine needs
# pkg_resources (setuptools<81). So this creates .venv-eval whose site-packages adds the project's
# site-packages (torch, ms-swift, this package) after its own, and installs the `eval` extra on top.
#
#   bash scripts/setup_eval_env.sh            # -> .venv-eval/bin/python
#   PROJECT_VENV=/path/.venv EVAL_VENV=/path/.venv-eval bash scripts/setup_eval_env.sh
#
# Idempotent: does nothing when the side environment already matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PROJECT_VENV=${PROJECT_VENV:-$ROOT/.venv}
EVAL_VENV=${EVAL_VENV:-$ROOT/.venv-eval}
[ -x "$PROJECT_VENV/bin/python" ] || { echo "no project environment at $PROJECT_VENV: run scripts/setup_env.sh first" >&2; exit 2; }
stamp="$EVAL_VENV/.fundusexpert-eval-installed"
want="$( (cat pyproject.toml scripts/setup_eval_env.sh; echo "$PROJECT_VENV") | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# same interpreter as the project environment (its base python), so its compiled packages load
[ -x "$EVAL_VENV/bin/python" ] || "$PROJECT_VENV/bin/python" -m venv "$EVAL_VENV"
project_site="$("$PROJECT_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
eval_site="$("$EVAL_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# addsitedir (not a bare path) so the project's own .pth files (editable installs) are read too
echo "import site; site.addsitedir('$project_site')" > "$eval_site/zz_fundusexpert_project.pth"
py="$EVAL_VENV/bin/python"
numpy_version="$("$PROJECT_VENV/bin/python" -c 'import numpy; print(numpy.__version__)')"
"$py" -m pip install -q --upgrade pip
# this checkout (editable) with the `eval` extra (pins in pyproject.toml); the project's packages
# already satisfy the rest
"$py" -m pip install -q -e "$ROOT[eval]"
# ms-opencompass pulls numpy<2 into the side environment; the project's compiled packages
# (pyarrow, OpenCV, torch) need the project's numpy 2.x, and evalscope's Native backend runs on it.
"$py" -m pip install -q --no-deps "numpy==$numpy_version"
"$py" -c 'import evalscope, swift; from evalscope.constants import EvalType; EvalType.SERVICE; print("evalscope", evalscope.__version__, "ms-swift", swift.__version__)'
echo "$want" > "$stamp"
