"""Every backend plugin loads through its entry point without importing its framework
(the framework is imported inside the worker only), in the interpreter its workers get."""

from __future__ import annotations

import subprocess

import pytest

from convbench.runner import interpreter_for

#: name -> (its class, the modules loading it must not import, its executions where checked)
PLUGINS: dict[str, tuple[str, tuple[str, ...], dict[str, str] | None]] = {
    "torch": ("TorchBackend", ("torch",), None),
    "tensorflow": ("TensorflowBackend", ("tensorflow",), None),
    "onnxruntime": ("OnnxruntimeBackend", ("onnxruntime", "onnx"), None),
    "mxnet": ("MxnetBackend", ("mxnet",), None),
    "jax": ("JaxBackend", ("jax",), None),
    "litert": ("LitertBackend", ("ai_edge_litert", "tensorflow"), {"xnnpack": "xnnpack", "reference": "reference"}),
    "tvm": ("TvmBackend", ("tvm", "onnx"), {"default": "default", "tuned": "tuned", "compiled": "default"}),
    "executorch": ("ExecutorchBackend", ("executorch", "torch"), None),
}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_entry_point_loads_without_importing_the_framework(name: str) -> None:
    cls, modules, executions = PLUGINS[name]
    code = (
        "import sys\n"
        "from convbench.backend import load_backend\n"
        f"b = load_backend({name!r})\n"
        f"assert type(b).__name__ == {cls!r}, type(b).__name__\n"
        f"assert not {set(modules)!r} & set(sys.modules), sorted(sys.modules)\n"
        + (f"assert b.executions == {executions!r}, b.executions\n" if executions else "")
    )
    subprocess.run([interpreter_for(name), "-c", code], check=True, timeout=60)
