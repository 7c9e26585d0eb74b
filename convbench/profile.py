"""Per-op time breakdowns from each framework's own profiler: ``convbench profile``.

Flow
    The cases of a suite (after preset and filter) are scheduled by the runner
    (:class:`convbench.profile_runner.ProfileRunner`: groups, one worker per backend and
    device, ``cpus`` pinning, fault handling as for a run), whose workers get the
    ``profile`` command (:mod:`convbench.worker`): each case is built
    and verified as in a run, warmed up, then run ``steps`` times under the framework's
    profiler (:meth:`convbench.backend.Prepared.profile`). The rows come back attributed
    to graph nodes where the backend can tell; :func:`categorize` puts each in a
    :data:`CATEGORIES` entry; the rows are saved in ``profile.parquet`` of a run folder
    (:data:`PROFILE_COLUMNS`, one row per case, node, framework op and phase; a case
    that could not be profiled has one row with its status and reason).

Categories (:func:`node_category`), by the graph node an op computes
    ``depthwise`` (conv2d with groups = input channels > 1), ``pointwise`` (1x1 conv2d,
    grouped or not), ``other conv``, ``batchnorm``, ``activation`` (relu, relu6,
    sigmoid, prelu), ``pool`` (avg, max, global average), ``linear``, ``elementwise`` (add,
    mul), ``other`` (concat, slice, reshape, transpose, pad, shift, flatten, and every
    op outside the graph: loss, optimizer update, gradient bookkeeping). A variant's
    node is judged by the workload node it implements: a node keeps the name of the
    node it replaces, or extends it (``dw.part``, ``dw.diag_weight``), so diagonalwise's
    masked convs still count as ``depthwise``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from convbench.cases import KEY_FIELDS, Case
from convbench.graph import Graph, Node
from convbench.results import _atomic_write, find_runs

CATEGORIES = (
    "depthwise",
    "pointwise",
    "other conv",
    "batchnorm",
    "activation",
    "pool",
    "linear",
    "elementwise",
    "other",
)
_BY_OP = {
    "batchnorm": "batchnorm",
    "relu": "activation",
    "relu6": "activation",
    "sigmoid": "activation",
    "prelu": "activation",
    "avgpool": "pool",
    "maxpool": "pool",
    "global_avgpool": "pool",
    "linear": "linear",
    "add": "elementwise",
    "mul": "elementwise",
}
PROFILE_COLUMNS = [
    "case_id", *KEY_FIELDS, "status", "reason", "source", "steps",
    "node", "kind", "category", "phase", "op", "self_time", "count",
]  # fmt: skip


def node_category(graph: Graph, node: Node) -> str:
    """The category of one graph node (see the module docstring)."""
    if node.op == "conv2d":
        c_in = graph.shape(node.inputs[0])[1]
        if c_in > 1 and node.attrs["groups"] == c_in:
            return "depthwise"
        kh, kw = graph.shape(node.inputs[1])[2:]
        return "pointwise" if (kh, kw) == (1, 1) else "other conv"
    return _BY_OP.get(node.op, "other")


def _workload_node(name: str, native: Graph) -> str | None:
    """The native node that executed node ``name`` implements: itself, or the longest
    native op name it extends with a dot."""
    if name in native and native[name].op not in ("input", "param", "const"):
        return name
    best = None
    for node in native.ops:
        if name.startswith(node.name + ".") and (best is None or len(node.name) > len(best)):
            best = node.name
    return best


def categorize(rows: list[dict[str, Any]], native: Graph, executed: Graph) -> None:
    """Fill ``category`` (unless given) and ``kind`` (the workload node's op) of ``rows``."""
    cache: dict[str | None, tuple[str, str | None]] = {None: ("other", None)}
    for row in rows:
        name = row.get("node")
        if name not in cache:
            own = _workload_node(name, native)
            if own is not None:
                cache[name] = (node_category(native, native[own]), native[own].op)
            elif name in executed:
                cache[name] = (node_category(executed, executed[name]), executed[name].op)
            else:
                cache[name] = ("other", None)
        category, kind = cache[name]
        row.setdefault("category", category)
        row["category"] = row["category"] or category
        row["kind"] = kind


def case_rows(case: Case, event: dict[str, Any], steps: int) -> list[dict[str, Any]]:
    """profile.parquet rows of one case from the worker's ``profile`` event."""
    base = {"case_id": case.case_id, **case.key(), "status": event.get("status"), "reason": event.get("reason"), "steps": steps}
    rows = event.get("rows") or []
    if not rows:
        return [{**base, "source": None}]
    return [{**base, **{k: r.get(k) for k in ("source", "node", "kind", "category", "phase", "op", "self_time", "count")}} for r in rows]


def save(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as ``path`` (profile.parquet), atomically."""
    frame = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def shares(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case: milliseconds per step and the share of each category, in percent."""
    ok = frame[(frame["status"] == "ok") & frame["self_time"].notna()]
    if ok.empty:
        return pd.DataFrame()
    per = ok.pivot_table(index="case_id", columns="category", values="self_time", aggfunc="sum", fill_value=0.0)
    total = per.sum(axis=1)
    out = per.div(total.where(total > 0), axis=0) * 100
    out = out[[c for c in CATEGORIES if c in out.columns]]
    out.insert(0, "ms/step", total * 1e3)
    return out


def load_profile(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """The profile rows of every run under ``paths`` that has a profile.parquet."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    frames = []
    for run in find_runs(paths):
        file = run / "profile.parquet"
        if file.exists():
            frame = pd.read_parquet(file)
            frame.insert(0, "run", run.name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", *PROFILE_COLUMNS])
