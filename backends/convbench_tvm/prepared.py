"""One case as a Relax VM: convbench's ONNX model imported, compiled for the host, inputs set once.

The model is the onnxruntime backend's ONNX lowering of the graph with the case's
weights as initializers (:func:`convbench_onnxruntime.onnx_graph.build_model`, what
``convbench export`` writes), imported by ``tvm.relax.frontend.onnx.from_onnx`` with the
weights kept as constants (so the compiler may fold and pre-pack them), compiled by
``tvm.compile`` for :func:`convbench_tvm.target.host_target` and loaded into a
``relax.VirtualMachine`` on the CPU. The timed step is ``invoke_stateful("main")``: the
inputs are set once with ``set_input`` (outside the timed step) and outputs are read only
by :meth:`TvmPrepared.check`. ONNX operators are NCHW: an NHWC case's model takes and
returns NHWC with a Transpose at each boundary, inside the step (as onnxruntime's).

``tuned`` runs MetaSchedule in a child process (:mod:`convbench_tvm.tune`, which says
why it is assembled from parts rather than ``relax.get_pipeline("static_shape_tuning")``:
apache-tvm-ffi 0.1.15 segfaults serializing TVM IR, and the tuner runs under it as under
the pinned 0.1.14.post0); the child applies its in-memory
database, compiles the model and exports the library, which is loaded here
(``tvm.runtime.load_module``) and verified like any case. A tuner that crashes or overruns
is the case's error, with the child's last lines.

This module imports tvm and onnx; :mod:`convbench_tvm.backend` imports it lazily.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tvm
from convbench_lowering.layout import to_logical
from convbench_onnxruntime.onnx_graph import OPSET, build_model, physical_inputs
from tvm import relax
from tvm.support import cc as tvm_cc

from convbench.backend import Prepared, UnsupportedCase
from convbench.cases import Case
from convbench.data import Tensors
from convbench.graph import Graph
from convbench_tvm.frontend import import_onnx
from convbench_tvm.target import host_target

#: Seconds a ``tuned`` case's tuning child may take before the case is an error.
TUNE_TIMEOUT = 1500


#: Why a float16 model is skipped: TVM refuses the one its Relax ONNX frontend builds.
FLOAT16_REFUSED = (
    "tvm: float16: TVM rejected the float16 model its Relax ONNX frontend built (a float32 value "
    "meets float16 weights; seen after BatchNormalization)"
)
#: Why ``tuned`` cannot run where TVM finds no C/C++ compiler to link its libraries with.
NO_COMPILER = (
    "tvm: tuned links every measured candidate and the tuned module into shared libraries, which needs "
    "a C/C++ compiler (g++, gcc, clang++, clang, c++ or cc on PATH, or $CXX / $CC): none found "
    "(Debian: apt-get install g++); the default execution needs none"
)


def tune(model: onnx.ModelProto, target: tvm.target.Target, trials: int, work_dir: Path, dtype: str) -> tuple[Any, dict[str, Any]]:
    """Run MetaSchedule on ``model`` in a child process: the tuned library (loaded) and its summary."""
    if tvm_cc.get_cc() is None:
        raise UnsupportedCase(NO_COMPILER)
    path = work_dir / "model.onnx"
    onnx.save(model, str(path))
    library = work_dir / "tuned.so"
    spec = {
        "model": str(path), "work_dir": str(work_dir / "ms"), "library": str(library), "trials": trials,
        "target": json.loads(target.export_json()) if hasattr(target, "export_json") else str(target),
    }  # fmt: skip
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "convbench_tvm.tune", json.dumps(spec)],
            capture_output=True, text=True, timeout=TUNE_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"tvm: MetaSchedule tuning ({trials} trials) ran past {TUNE_TIMEOUT} s") from exc
    seconds = time.perf_counter() - start
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode == 3 and last.startswith("{") and dtype == "float16":
        raise UnsupportedCase(f"{FLOAT16_REFUSED}: {json.loads(last)['unsupported']}")
    if proc.returncode != 0:
        # With apache-tvm 0.27.0.post1 and apache-tvm-ffi 0.1.15.post2 (convbench pins 0.1.14.post0),
        # serializing any TVM IR object (tvm-ffi's ToJSONGraph: save_json, SaveJSON, pickling)
        # segfaults; the child avoids every MetaSchedule part known to do so (convbench_tvm.tune).
        where = ""
        if proc.returncode == -signal.SIGSEGV or proc.returncode == 139:
            where = "SIGSEGV in the tuning child (with apache-tvm-ffi 0.1.15, tvm-ffi's ToJSONGraph crashes on TVM IR objects: convbench[tvm] pins 0.1.14.post0; see convbench_tvm.tune): "
        tail = " | ".join(line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip() and not line.strip().startswith("File "))[-600:]
        raise RuntimeError(f"tvm: MetaSchedule tuning ({trials} trials) failed in its child process (exit {proc.returncode}): {where}{tail}")
    summary = json.loads(last)
    summary["tune_seconds"] = round(seconds, 3)
    return tvm.runtime.load_module(str(library)), summary


class TvmPrepared(Prepared):
    """A Relax VM running the compiled ONNX model of the case's graph."""

    def __init__(self, case: Case, graph: Graph, tensors: Tensors, execution: str, threads: int, trials: int) -> None:
        self.case = case
        self.graph = graph
        self.model = build_model(graph, tensors, layout=case.layout, dtype=case.dtype, name=case.workload)
        target = host_target(threads)
        mod = import_onnx(self.model.proto)  # also for tuned (the child imports it again): a refusal is a skip here
        tuning: dict[str, Any] | None = None
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="convbench-tvm-") as tmp:
            if execution == "tuned":
                executable, tuning = tune(self.model.proto, target, trials, Path(tmp), case.dtype)
                compile_seconds = float(tuning["compile_seconds"])  # in the tuning child
            else:
                compile_start = time.perf_counter()
                try:
                    executable = tvm.compile(mod, target=target)
                except TypeError as exc:
                    if case.dtype != "float16":
                        raise
                    raise UnsupportedCase(f"{FLOAT16_REFUSED}: {str(exc).strip().splitlines()[0][:240]}") from exc
                compile_seconds = time.perf_counter() - compile_start
        tvm.get_global_func("runtime.config_threadpool")(1, int(threads))
        used = int(tvm.get_global_func("runtime.NumThreads")())
        if used != int(threads):
            raise UnsupportedCase(
                f"tvm: asked for {threads} threads, TVM's thread pool runs {used} (sized once per process, here "
                f"from TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')!r}); unset it or set it to at least {threads}"
            )
        self.device = tvm.cpu(0)
        self.vm = relax.VirtualMachine(executable, self.device)
        inputs = physical_inputs(self.model, tensors, case.dtype)
        self._args = [tvm.runtime.tensor(value, self.device) for value in inputs.values()]
        self.vm.set_input("main", *self._args)
        self.output_names = [o.name for o in self.model.proto.graph.output]
        self._details: dict[str, Any] = {
            "tvm": tvm.__version__,
            "frontend": "tvm.relax.frontend.onnx.from_onnx (weights as constants)",
            "opset": OPSET,
            "target": str(target),
            "runtime": "relax.VirtualMachine (invoke_stateful)",
            "compile_seconds": round(compile_seconds, 3),
            "prepare_seconds": round(time.perf_counter() - start, 3),
            "num_threads": int(threads),
            "num_threads_used": used,  # read back from TVM's pool (runtime.NumThreads)
            "layout_requested": case.layout,
            "layout_used": "nchw",
        }
        if tuning is not None:
            from convbench_tvm.tune import TUNING

            self._details["tuning"] = {**TUNING, "max_trials_global": trials, **tuning}
        else:
            self._details["tuning"] = "none (default schedules)"
        if case.layout == "nhwc":
            self._details["layout_note"] = "ONNX operators are NCHW: the model takes and returns NHWC with a Transpose at each boundary, inside the timed step"
        if case.dtype == "float16":
            self._details["half_precision"] = "the ONNX model in float16 (weights, activations), compiled by LLVM for the host; arithmetic as LLVM lowers float16 on this CPU"

    def step(self) -> None:
        self.vm.invoke_stateful("main")

    def check(self) -> dict[str, np.ndarray]:
        self.step()
        result = self.vm.get_outputs("main")
        values = [result] if len(self.output_names) == 1 else [result[i] for i in range(len(self.output_names))]
        return {
            name: to_logical(np.asarray(value.numpy(), dtype=np.float64), self.model.output_perms[onnx_name])
            for name, onnx_name, value in zip(self.graph.outputs, self.output_names, values, strict=True)
        }

    def details(self) -> dict[str, Any]:
        return dict(self._details)

    def close(self) -> None:
        self.vm = None  # type: ignore[assignment]
        self._args = []
