#!/usr/bin/env bash
# Create the MXNet environment convbench's mxnet backend runs in (default .venv-mxnet):
# Python 3.11, mxnet 1.9.1 and numpy 1.23.5 (MXNet fails on NumPy >= 1.24), with
# convbench itself installed editable (its core and the dev tools, on versions that
# support NumPy 1.23: scripts/mxnet-constraints.txt). The runner uses this interpreter
# for the mxnet backend when it exists (see README, "Backends").
#
#   scripts/setup-mxnet.sh [VENV]        PYTHON_MXNET=python3.11 by default
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-mxnet}
PY=${PYTHON_MXNET:-python3.11}
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "setup-mxnet: $PY not found; MXNet 1.9.1 needs Python <= 3.11 (set PYTHON_MXNET)" >&2
    exit 2
fi
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -c scripts/mxnet-constraints.txt "mxnet==1.9.1" "numpy==1.23.5" -e ".[dev]"
"$VENV/bin/python" -c "import mxnet, numpy; print('mxnet', mxnet.__version__, 'numpy', numpy.__version__)"
touch "$VENV/.installed"
