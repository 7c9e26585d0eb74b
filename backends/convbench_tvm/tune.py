"""``python -m convbench_tvm.tune SPEC``: MetaSchedule on one ONNX model, in a process of its own.

SPEC is a JSON object: ``model`` (an ONNX file), ``work_dir`` (MetaSchedule's logs),
``target`` (a TVM target, as JSON or its string), ``trials`` (the global trial budget) and
``library`` (where the tuned, compiled module is exported). :mod:`convbench_tvm.prepared`
runs it so that a crash of the tuner is one case's error, not the worker's, and loads the
library it exports. Prints one JSON line: the tasks and records, how many of the module's
PrimFuncs took a tuned schedule, and its timings. A model TVM cannot compile (float16
after BatchNormalization) is exit 3 with ``{"unsupported": reason}``.

Why not ``relax.get_pipeline("static_shape_tuning")``: with apache-tvm 0.27.0.post1 and
apache-tvm-ffi 0.1.15.post2 (what pip installs with it unless told otherwise), tvm-ffi's ``ToJSONGraph``
(``tvm.ir.save_json``, ``SaveJSON`` in C++, also what pickling a TVM object calls)
segfaults on any TVM IR object: ``save_json(IntImm("int32", 3))`` or of a ``tirx.Var``
dies of SIGSEGV, while ffi-level objects (Array, Map, String, testing.TestIntPair)
serialize. With apache-tvm-ffi 0.1.14.post0 on ``PYTHONPATH`` the same calls work, and the
pipeline tunes (4 trials of a depthwise conv: 4 records, 196 s): a tvm / tvm-ffi mismatch,
not a MetaSchedule rule. MetaSchedule serializes the module in several places, each a
crash here. gdb, on ``save_json(tirx.Var("x", "int32"))``: SIGSEGV at ``lock xadd
%rax,0(%r13)`` with ``r13 = 0x100000001`` (a packed strong/weak reference count, one and
one, read as an object pointer: a field read at the wrong place), in stripped
libtvm_ffi.so five frames below the exported ``tvm::ffi::ToJSONGraph``; in MetaSchedule
the same frames, called from libtvm_compiler.so, with ``py-bt`` in
``TuneContextInitialize`` or ``TaskScheduler.tune``. Measured: one process per row, a
64-element add, a conv2d (1x8x16x16, 3x3) and a depthwise PrimFunc, or convbench's
depthwise model through ``tune_relax``; [src]: read in the TVM / tvm-ffi source, not run::

    component (llvm target)                                   result
    sch_rules: all 7 llvm defaults (ApplyCustomRule,
      InlineConstantScalars, AutoInline, AddRFactor,
      MultiLevelTiling, ParallelizeVectorizeUnroll,
      RandomComputeLocation) + design-space generation       ok (conv2d, depthwise)
    postprocs: all 4 llvm defaults + design spaces            ok
    mutator MutateTileSize / MutateUnroll (add)               ok
    mutator MutateComputeLocation / MutateParallel (add)      SIGSEGV at TuneContext init
                                                                ([src]: SaveJSON of the module)
    search strategy replay-trace / evolutionary (tune_relax,  SIGSEGV after the design spaces
      no mutators, random cost model, in-process builder)       ([src]: DeepCopyIRModule =
                                                                LoadJSON(SaveJSON), per thread)
    cost model xgb                                            [src] its PerBlockFeature deep-
                                                                copies each candidate; xgboost
                                                                is not installed here anyway
    LocalBuilder                                              [src] pickles the module to its
                                                                worker (Object.__getstate__ is
                                                                ToJSONGraph)
    JSONDatabase                                              [src] writes workloads as JSON
    LocalRunner                                               ok (measured: it tunes)
    target {"kind":"llvm","num-cores":2}, with or without
      "mcpu": "emeraldrapids" (the host's)                     no difference: save_json of a
                                                                tirx.Var crashes with no target
    (target strings such as "llvm -mcpu=x86-64" are refused by 0.27: JSON dict form only)

convbench's ``tvm`` extra therefore pins apache-tvm-ffi 0.1.14.post0, with which
``save_json`` works, the backend's tests and its conformance check pass, and the stock
pipeline would run. The tuner here stays the assembled one: it runs under either tvm-ffi
(an environment that resolved tvm-ffi itself may have 0.1.15), and on this 2-core machine
it is the faster of the two (8 trials of a depthwise conv in 54 s; the stock pipeline, 4
trials in 196 s). The price is the search: replay with a random cost model, no
evolutionary search, no xgboost model (xgboost is not a dependency).

So this child builds the tuner from the parts that never serialize a TVM object
(:data:`TUNING`): the ``PostOrderApply`` space generator with the llvm target's default
schedule rules and postprocessors and no mutators; a replay search written here
(:class:`_Replay`, what MetaSchedule's ``replay-trace`` does: each trial replays one
design space's trace with fresh samples and the postprocessors, without its per-thread
module copies); the random cost model; an in-process builder (TVM's own
``default_build``/``default_export``, no worker pool); TVM's ``LocalRunner``; an in-memory
database. The database is applied (``MetaScheduleApplyDatabase``) and the module compiled
here, and the library exported for the parent to load.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

#: What ``tuned`` runs, recorded in the case's ``details["tuning"]``.
TUNING: dict[str, Any] = {
    "tuner": "MetaSchedule, assembled in convbench_tvm.tune (not relax's static_shape_tuning pipeline)",
    "space": "PostOrderApply: the llvm target's default schedule rules and postprocessors, no mutators",
    "search": "replay of the design spaces' traces with fresh samples (MetaSchedule's replay-trace, as a Python search strategy)",
    "cost_model": "random",
    "builder": "in process (TVM's default_build and default_export)",
    "runner": "LocalRunner",
    "database": "in memory, applied by MetaScheduleApplyDatabase before tvm.compile",
    "left_out": (
        "the evolutionary search, MetaSchedule's own replay-trace, the xgb cost model, the mutators MutateComputeLocation "
        "and MutateParallel, LocalBuilder's worker pool and JSONDatabase: each serializes the module through tvm-ffi's "
        "ToJSONGraph, which segfaults on TVM IR objects with apache-tvm 0.27.0.post1 and apache-tvm-ffi 0.1.15.post2 "
        "(convbench pins 0.1.14.post0, where it works; this tuner runs under both); xgboost is not a dependency"
    ),
}


def _tuner_parts() -> tuple[Any, Any, Any]:
    """The in-process builder class, the replay search class and the space generator."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import Schedule, Trace
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export
    from tvm.s_tir.meta_schedule.search_strategy import MeasureCandidate, PySearchStrategy

    @derived_object
    class _InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list) -> list:
            results = []
            for item in build_inputs:
                try:
                    results.append(BuilderResult(default_export(default_build(item.mod, item.target, None)), None))
                except Exception as exc:  # a candidate that does not build is that trial's error
                    results.append(BuilderResult(None, f"in-process builder: {exc}"))
            return results

    @derived_object
    class _Replay(PySearchStrategy):
        def __init__(self, seed: int = 0) -> None:
            self.seed = seed

        def _initialize_with_tune_context(self, context: Any) -> None:
            self.mod = context.mod
            self.postprocs = list(context.space_generator.postprocs)
            self.args_info = ArgInfo.from_prim_func(self.mod["main"])
            self.rng = random.Random(self.seed)

        def pre_tuning(self, max_trials: int, num_trials_per_iter: int, design_spaces: list, database: Any = None, cost_model: Any = None) -> None:
            self.traces = [space.trace.simplified(remove_postproc=True) for space in design_spaces]
            self.max_trials, self.per_iter, self.done = int(max_trials), int(num_trials_per_iter), 0

        def post_tuning(self) -> None:
            pass

        def generate_measure_candidates(self) -> list | None:
            if self.done >= self.max_trials or not self.traces:
                return None
            want = min(self.per_iter, self.max_trials - self.done)
            candidates: list = []
            for _ in range(16 * want):  # a sample the postprocessors reject is drawn again
                if len(candidates) == want:
                    break
                trace = self.traces[self.rng.randrange(len(self.traces))]
                sch = Schedule(self.mod, seed=self.rng.randrange(1, 2**30), debug_mask=0)
                Trace(trace.insts, {}).apply_to_schedule(sch, remove_postproc=True)  # no decisions: sampled afresh
                if all(postproc.apply(sch) for postproc in self.postprocs):
                    candidates.append(MeasureCandidate(sch, self.args_info))
            return candidates or None

        def notify_runner_results(self, measure_candidates: list, results: list) -> None:
            self.done += len(measure_candidates)

        def clone(self) -> Any:
            return _Replay(self.seed)

    space = ms.space_generator.PostOrderApply(sch_rules="from-target", postprocs="from-target", mutator_probs={})
    return _InProcessBuilder, _Replay, space


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m convbench_tvm.tune SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    import onnx
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from convbench_tvm.frontend import import_onnx

    target = tvm.target.Target(spec["target"])
    mod = import_onnx(onnx.load(spec["model"]))
    builder_cls, replay_cls, space = _tuner_parts()
    database = ms.database.MemoryDatabase()
    start = time.perf_counter()
    with target:
        # the static_shape_tuning pipeline's passes before and after its tuning pass
        mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(), relax.get_pipeline("zero")])(mod)
        tasks = len(ms.relax_integration.extract_tasks(mod, target, {}))
        ms.relax_integration.tune_relax(
            mod, {}, target, spec["work_dir"], int(spec["trials"]), num_trials_per_iter=min(64, int(spec["trials"])),
            builder=builder_cls(), runner="local", database=database, cost_model="random", space=space,
            strategy=replay_cls(), seed=0,
        )  # fmt: skip
        search_seconds = time.perf_counter() - start
        with database:
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    prim_funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    scheduled = sum(1 for f in prim_funcs if f.attrs is not None and bool(f.attrs.get("tirx.is_scheduled", False)))
    compile_start = time.perf_counter()
    try:
        executable = tvm.compile(mod, target=target)
    except TypeError as exc:  # float16 after BatchNormalization: the parent's UnsupportedCase
        print(json.dumps({"unsupported": str(exc).strip().splitlines()[0][:240]}))
        return 3
    executable.export_library(spec["library"])
    records = database.get_all_tuning_records()
    print(json.dumps({
        "records": len(records), "tasks": tasks,
        "prim_funcs_tuned": scheduled, "prim_funcs": len(prim_funcs),
        "search_seconds": round(search_seconds, 3), "compile_seconds": round(time.perf_counter() - compile_start, 3),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
