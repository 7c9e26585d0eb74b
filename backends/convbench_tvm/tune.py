"""``python -m convbench_tvm.tune SPEC``: MetaSchedule on one ONNX model, in a process of its own.

SPEC is a JSON object: ``model`` (an ONNX file), ``work_dir`` (where the database is
written), ``target`` (a TVM target, as JSON or its string) and ``trials`` (the global
trial budget). :mod:`convbench_tvm.prepared` runs it so that a crash of the tuner is one
case's error, not the worker's. Prints one JSON line: the tasks and records it tuned.
"""

from __future__ import annotations

import json
import sys
import time


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

    from convbench_tvm.prepared import import_onnx

    target = tvm.target.Target(spec["target"])
    mod = import_onnx(onnx.load(spec["model"]))
    start = time.perf_counter()
    with target:
        relax.get_pipeline("static_shape_tuning", target=target, work_dir=spec["work_dir"], total_trials=int(spec["trials"]))(mod)
    database = ms.database.JSONDatabase(work_dir=spec["work_dir"])
    records = database.get_all_tuning_records()
    print(json.dumps({"records": len(records), "workloads": len(database), "search_seconds": round(time.perf_counter() - start, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
