#!/usr/bin/env bash
# Create the ExecuTorch environment convbench's executorch backend runs in (default
# .venv-executorch): torch (TORCH_SPEC, torch==2.13.0 by default: the CPU build here), the
# executorch wheel (it pins its torch and pulls some 33 packages of its own: coremltools,
# torchao, scikit-learn, ...; kept out of the main venv), and convbench itself installed
# editable with its torch extra, whose lowering the executorch backend exports. The runner
# uses this interpreter for the executorch backend when it exists (see README, "Backends").
#
#   scripts/setup-executorch.sh [VENV]        PYTHON_EXECUTORCH=python3 by default
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-executorch}
PY=${PYTHON_EXECUTORCH:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "setup-executorch: $PY not found (set PYTHON_EXECUTORCH)" >&2
    exit 2
fi
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "$TORCH_SPEC"
"$VENV/bin/pip" install -q "$TORCH_SPEC" -e ".[torch,executorch,dev]"
"$VENV/bin/python" -c "import torch, executorch; from importlib.metadata import version; print('torch', torch.__version__, 'executorch', version('executorch'))"
touch "$VENV/.installed"
