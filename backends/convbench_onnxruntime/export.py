"""``python -m convbench_onnxruntime.export SPEC``: write one workload as an ONNX model.

The worker behind ``convbench export`` (it imports onnx, never onnxruntime, and runs in
its own process like every framework). SPEC is a JSON object: ``workload`` (a name for
the model), ``kind``, ``params`` (normalised), ``batch``, ``variant``, ``dtype`` (float32
or float16; default float32), ``layout``, ``output``. The model holds the weights a convbench run of that workload uses (seeded
by :attr:`convbench.cases.Case.data_seed`), is checked with ``onnx.checker`` (full
check, shape inference included) and saved. Prints one JSON line describing it; an op
without an ONNX lowering is one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys

from convbench.backend import UnsupportedCase
from convbench.cases import Case
from convbench.data import make_tensors
from convbench.variants import parse_variant
from convbench.workloads import build_graph


def export(spec: dict) -> dict:
    """Build, check and save the model of ``spec``; returns its summary."""
    import onnx

    from convbench_onnxruntime.onnx_graph import OPSET, build_model

    case = Case(suite="export", workload=spec["workload"], kind=spec["kind"], params=spec["params"], batch=spec["batch"])
    graph = build_graph(case.kind, case.params, case.batch)
    executed = parse_variant(spec["variant"]).apply(graph)
    model = build_model(executed, make_tensors(executed, case.data_seed), layout=spec["layout"], dtype=spec.get("dtype", "float32"), name=spec["workload"])
    onnx.checker.check_model(model.proto, full_check=True)
    onnx.save(model.proto, spec["output"])
    proto = model.proto.graph
    return {
        "output": spec["output"],
        "opset": OPSET,
        "dtype": spec.get("dtype", "float32"),
        "nodes": len(proto.node),
        "inputs": {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.input},
        "outputs": {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.output},
        "parameters": graph.param_count(),
        "macs": executed.macs(),
        "data_seed": case.data_seed,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m convbench_onnxruntime.export SPEC_JSON", file=sys.stderr)
        return 2
    try:
        summary = export(json.loads(args[0]))
    except UnsupportedCase as exc:
        print(f"cannot export: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"cannot export: onnx is not importable ({exc}): pip install 'convbench[onnx]'", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
