"""The Relax module of convbench's ONNX lowering: what both the worker and the tuning child import."""

from __future__ import annotations

import onnx
import tvm
from tvm.relax.frontend.onnx import from_onnx

from convbench.backend import UnsupportedCase


def import_onnx(proto: onnx.ModelProto) -> tvm.IRModule:
    """The Relax module of an ONNX model, its initializers bound as constants."""
    try:
        return from_onnx(proto, keep_params_in_input=False)
    except Exception as exc:  # an operator or attribute the frontend does not take
        raise UnsupportedCase(f"tvm: the Relax ONNX frontend refused the model: {str(exc).strip().splitlines()[-1][:300]}") from exc
