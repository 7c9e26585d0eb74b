"""The ``llvm`` target of the host: LLVM's name of this CPU as ``mcpu``. Imports tvm."""

from __future__ import annotations

import tvm
from tvm.target import codegen


def host_target(cores: int) -> tvm.target.Target:
    """``{"kind": "llvm", "mcpu": <host CPU>, "num-cores": cores}``; without ``mcpu``
    where LLVM reports the generic CPU (the target is then plain ``llvm``)."""
    spec: dict[str, object] = {"kind": "llvm", "num-cores": int(cores)}
    cpu = str(codegen.llvm_get_system_cpu() or "")
    if cpu and cpu != "generic":
        spec["mcpu"] = cpu
    return tvm.target.Target(spec)
