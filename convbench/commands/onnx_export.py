"""``convbench export WORKLOAD [--param K=V ...] [--variant V] -o model.onnx``.

WORKLOAD names what to export, in one of two forms:

* ``SUITE.yaml:ID``: workload ``ID`` of a suite file (its kind and params), e.g.
  ``suites/depthwise.yaml:conv_dw_1``;
* ``KIND`` with its parameters as ``--param key=value`` (each value converted to its parameter's type),
  e.g. ``depthwise --param channels=32 --param size=112``; ``convbench list`` shows
  the kinds.

``--variant`` (default ``native``) applies a variant's graph rewrite first;
``--batch`` (default 1), ``--dtype float32|float16`` and ``--layout nchw|nhwc`` (NHWC
model inputs and outputs, with Transposes at the boundary) shape the model. The weights
are those a convbench run of the workload uses. The ONNX lowering lives in the
onnxruntime backend and runs in a subprocess with that backend's interpreter (it imports
onnx only); the file passes ``onnx.checker`` (full check). Bad input: one message, exit
code 2. (pytest-benchmark's JSON is converted by ``convbench pytest-benchmark``.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


#: Earlier spellings of other commands, which now read as a WORKLOAD: what to type instead.
MOVED = {
    "pytest-benchmark": "pytest-benchmark's JSON is written by `convbench pytest-benchmark export RUN -o FILE`",
    "onnx": "`convbench export WORKLOAD ... -o model.onnx` takes the workload directly (no `onnx`)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="a workload (and variant) as an ONNX model that passes onnx.checker",
        description="Write WORKLOAD (with --variant's rewrite) as an ONNX model with the weights a convbench run uses.",
    )
    p.add_argument("workload", metavar="WORKLOAD", help="SUITE.yaml:ID, or a workload KIND with --param key=value")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a parameter of KIND (repeatable)")
    p.add_argument("--variant", default="native", help="variant label, e.g. diagonalwise(group_size=16)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the model's inputs (default 1)")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="element type of the model (default float32)")
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw", help="layout of the model's 4-D inputs and outputs")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.set_defaults(func=cmd_export)


def _parse_params(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items as strings: the kind's model converts each to its parameter's
    type (``width=0.5`` stays the string "0.5" where width is a choice of strings)."""
    from convbench.commands.common import UsageError

    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = value.strip()
    return params


def _resolve(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """(workload id, kind, normalised params) from WORKLOAD and --param."""
    from pydantic import ValidationError

    from convbench.commands.common import UsageError
    from convbench.suite import SuiteError, load_suite
    from convbench.workloads import WORKLOADS

    target = args.workload
    path, sep, wid = target.rpartition(":")
    if sep and (path.endswith((".yaml", ".yml")) or Path(path).is_file()):
        if args.param:
            raise UsageError("--param applies to a KIND; a suite workload has its own params")
        try:
            suite = load_suite(path)
        except SuiteError as exc:
            raise UsageError(str(exc)) from None
        ids = [w.id for w in suite.workloads]
        if wid not in ids:
            raise UsageError(f"{path}: no workload {wid!r} (workloads: {', '.join(ids)})")
        spec = suite.workload(wid)
        return wid, spec.kind, dict(spec.params)
    if target not in WORKLOADS:
        raise UsageError(f"unknown workload {target!r}: give SUITE.yaml:ID or a kind ({', '.join(sorted(WORKLOADS))})")
    kind = WORKLOADS[target]
    try:
        model = kind.params_model.model_validate_strings(_parse_params(args.param))
        kind.build(model, 1)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"workload kind {target}: {problems}") from None
    except Exception as exc:
        raise UsageError(f"cannot build a {target} workload: {exc}") from None
    return target, target, model.model_dump(mode="json")


def cmd_export(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from convbench.commands.common import UsageError, console, err_console
    from convbench.runner import interpreter_for
    from convbench.variants import parse_variant

    if args.workload in MOVED and (args.extra or not Path(args.workload).exists()):
        raise UsageError(f"{MOVED[args.workload]}")
    if args.extra:
        raise UsageError(f"one WORKLOAD, got {len(args.extra) + 1}: {' '.join([args.workload, *args.extra])}")
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    wid, kind, params = _resolve(args)
    try:
        variant = parse_variant(args.variant).label
    except ValueError as exc:
        raise UsageError(f"--variant: {exc}") from None
    output = Path(args.output)
    if not output.parent.exists():
        raise UsageError(f"-o {output}: folder {output.parent} does not exist")
    spec = {"workload": wid, "kind": kind, "params": params, "batch": args.batch, "variant": variant, "dtype": args.dtype, "layout": args.layout, "output": str(output)}
    python = interpreter_for("onnxruntime")
    proc = subprocess.run([python, "-m", "convbench_onnxruntime.export", json.dumps(spec)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        err_console.print(f"[bold red]error[/]: {escape(message)}", highlight=False)
        return EXIT_USAGE if proc.returncode == EXIT_USAGE else 1
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in summary["inputs"].items())
    console.print(
        f"wrote {output}: {wid} ({kind}, {variant}, {args.dtype}), opset {summary['opset']}, {summary['nodes']} nodes, "
        f"inputs {shapes}, {summary['parameters']:,} parameters, {summary['macs']:,} MACs; passes onnx.checker",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return 0
