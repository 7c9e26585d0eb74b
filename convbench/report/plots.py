"""Plotly figures of a suite's cases, as JSON specs drawn by plotly.js in the page.

Every figure is a plain dict (``data``, ``layout``) checked by ``plotly.graph_objects``
and serialised with sorted keys, so the same cases give the same bytes. Every string
that comes from a suite or a result is HTML-escaped first: plotly.js reads labels,
legend names and hover text as a subset of HTML, so ``<b>`` in a workload name would be
markup; escaped, it is shown as text. Times are plotted in milliseconds; error bars are
95% confidence intervals (of the median, or of the median per-round ratio). Log axes
label readable values only (:func:`log_axis`: decades, 1-2-5 steps or even steps, never
plotly's small minor digits, where "5" between 0.1 and 1 means 0.5).

Figures:

* :func:`speedup_figures`: per-layer speedup of each variant over the baseline variant
  (native), one figure per backend and device;
* :func:`framework_figures`: the same cases in each backend side by side (median times),
  one figure per mode, where two or more backends timed the same case;
* :func:`mode_figure`: training against inference time of the same case;
* :func:`roofline_figure`: achieved GFLOP/s against arithmetic intensity (FLOP per byte
  moved), where FLOPs and bytes are known.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from convbench.report.data import num, row_keys
from convbench.summary import format_time

#: Case fields that can tell traces apart, in label order.
TRACE_FIELDS = ["run", "backend", "device", "variant", "mode", "batch", "dtype", "layout", "execution", "threads"]

#: How a speedup and its CI were measured (``speedup_source``), in words.
SOURCES = {
    "interleaved": "per-round ratios, interleaved; 95% CI",
    "bootstrap": "ratio of medians; bootstrap 95% CI",
    "medians": "ratio of medians; no CI",
}

CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


@dataclass(frozen=True)
class Plot:
    """One figure of a page: its fixed div id, a title, a caption and its JSON spec."""

    id: str
    title: str
    caption: str
    spec: str  #: JSON with <, > and & escaped: safe inside a <script> element


def esc(value: Any) -> str:
    """``value`` as text that plotly.js shows literally (no markup)."""
    return html.escape(str(value), quote=False)


def to_json(figure: dict[str, Any]) -> str:
    """Validate ``figure`` with plotly and serialise it for a ``<script>`` element."""
    go.Figure(figure)  # raises ValueError on an unknown property or a bad value
    text = json.dumps({**figure, "config": CONFIG}, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _ms(seconds: Any) -> float | None:
    v = num(seconds)
    return None if v is None else v * 1e3


def _varying(rows: pd.DataFrame, fields: Iterable[str]) -> list[str]:
    return [f for f in fields if f in rows and rows[f].map(str).nunique() > 1]


def _label(row: pd.Series, fields: Sequence[str]) -> str:
    """Escaped ``a · b · c`` of the row's ``fields`` (batch as ``bN``, threads as ``N thr``)."""
    parts = []
    for f in fields:
        v = row[f]
        parts.append(f"b{v}" if f == "batch" else f"{v} thr" if f == "threads" else str(v))
    return esc(" · ".join(parts))


def case_hover(row: pd.Series, extra: Iterable[str] = ()) -> str:
    """Hover text naming the case (escaped), then ``extra`` lines (already escaped)."""
    lines = [
        f"<b>{esc(row['workload'])}</b>",
        esc(f"{row['variant']} · {row['backend']} · {row['device']} · {row['mode']}"),
        esc(f"batch {row['batch']} · {row['dtype']} · {row['layout']} · {row['execution']} · {row['threads']} threads"),
    ]
    if "run" in row and isinstance(row["run"], str):
        lines.append(esc(f"run {row['run']}"))
    return "<br>".join([*lines, *extra])


def _time_line(row: pd.Series) -> str:
    lo, hi = num(row.get("ci_low")), num(row.get("ci_high"))
    ci = f" [{format_time(lo)}, {format_time(hi)}]" if lo is not None and hi is not None else ""
    return esc(f"median {format_time(num(row.get('median')))}{ci}")


def _speed_line(row: pd.Series) -> str:
    s, lo, hi = num(row["speedup"]), num(row["speedup_low"]), num(row["speedup_high"])
    ci = f" [{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else ""
    return esc(f"speedup {s:.3g}x{ci} over {row['baseline_variant']} ({SOURCES.get(row.get('speedup_source'), 'no CI')})")


def _errors(values: list[float | None], lows: list[float | None], highs: list[float | None]) -> dict[str, Any]:
    """Asymmetric error bars; a point without a CI gets none (null)."""
    plus = [None if v is None or h is None else max(h - v, 0.0) for v, h in zip(values, highs, strict=True)]
    minus = [None if v is None or lo is None else max(v - lo, 0.0) for v, lo in zip(values, lows, strict=True)]
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True}


#: Fewest labelled ticks a log axis shows inside the range of its values.
MIN_LOG_LABELS = 3
#: Most labelled decades on a log axis; a wider range labels every second (third...) decade.
MAX_DECADES = 8


def tick_text(value: float) -> str:
    """``value`` as a plain tick label: 0.05, 0.5, 1, 20, 1,000; 1e-5 and 2e6 beyond."""
    v = float(f"{value:.6g}")
    if 1e-4 <= v < 1e6:
        return f"{v:,.6f}".rstrip("0").rstrip(".")
    mantissa, exponent = f"{v:.5e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _nice_step(rough: float) -> float:
    """The largest of 1, 2 or 5 times a power of ten that is at most ``rough``."""
    power = 10.0 ** math.floor(math.log10(rough))
    return max(m * power for m in (1, 2, 5) if m * power <= rough * (1 + 1e-9))


def _over(a: Any, b: Any) -> str:
    """``a / b`` for a hover text (``n/a`` where b is zero or either is missing)."""
    x, y = num(a), num(b)
    return f"{x / y:.3g}" if x is not None and y else "n/a"


def log_axis(values: Iterable[Any]) -> dict[str, Any]:
    """A log axis over ``values`` (missing and non-positive ones ignored) whose labels are
    readable numbers at explicit ticks (``tickvals``/``ticktext``): decades (0.1, 1, 10)
    where the values span several, else 1-2-5 steps (0.2, 0.5, 1, 2), else, within less
    than a decade, evenly spaced values (0.6, 0.7, 0.8); the coarsest of these that puts
    MIN_LOG_LABELS labels inside the values' range. Plotly's own log ticks label the
    digits between decades with a small "2" or "5" (for 0.2 and 0.5), which reads as 2
    and 5. The other digits of each decade get unlabelled grid lines (``minor``).
    Ticks continue a little past the values so the padded axis ends are labelled too.
    """
    vs = [v for v in (num(x) for x in values) if v is not None and v > 0]
    if not vs:
        return {"type": "log"}
    lo, hi = min(vs), max(vs)
    if hi / lo < 1.1:  # one value, or nearly: room either side
        lo, hi = lo / 1.05, hi * 1.05
    first, last = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1

    def inside(ticks: list[float]) -> int:
        return sum(lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9) for t in ticks)

    every = max(1, math.ceil(math.log10(hi / lo) / MAX_DECADES))
    decades = [10.0**k for k in range(first, last + 1) if k % every == 0]
    steps125 = [m * 10.0**k for k in range(first, last + 1) for m in (1, 2, 5)]
    if inside(decades) >= MIN_LOG_LABELS:
        major = decades
        minor = [d * 10.0**k for k in range(first, last + 1) for d in range(1, 10) if every == 1 or d == 1]
    elif inside(steps125) >= MIN_LOG_LABELS:
        major = steps125
        minor = [d * 10.0**k for k in range(first, last + 1) for d in (3, 4, 6, 7, 8, 9)]
    else:
        step = _nice_step((hi - lo) / MIN_LOG_LABELS)
        n0, n1 = max(1, math.floor(lo / step) - 2), math.ceil(hi / step) + 2
        major, minor = [n * step for n in range(n0, n1 + 1)], []
    labelled = {tick_text(t) for t in major}
    return {
        "type": "log", "tickmode": "array", "tickvals": [float(f"{t:.6g}") for t in major],
        "ticktext": [tick_text(t) for t in major],
        "minor": {"tickmode": "array", "tickvals": [float(f"{t:.6g}") for t in minor if tick_text(t) not in labelled],
                  "showgrid": True, "gridcolor": "#f3f3f3"},
    }  # fmt: skip


def _finite(*columns: Iterable[Any]) -> list[float]:
    """Every finite number of ``columns``, flattened."""
    return [v for col in columns for v in map(num, col) if v is not None]


def _layout(title: str, x_title: str, y_title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": esc(title)},
        "xaxis": {"title": {"text": x_title}, "automargin": True},
        "yaxis": {"title": {"text": y_title}, "automargin": True},
        "legend": {"orientation": "h", "y": -0.25},
        "margin": {"t": 50, "r": 20},
        "hovermode": "closest",
        "height": 460,
        "font": {"family": "system-ui, sans-serif", "size": 12},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _groups(rows: pd.DataFrame, fields: Sequence[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """``rows`` grouped by ``fields`` in order of first appearance."""
    if not fields:
        return [((), rows)]
    keys = row_keys(rows, fields)
    return [(tuple(g.iloc[0][list(fields)]), g) for _, g in rows.groupby(keys, sort=False)]


def speedup_figures(frame: pd.DataFrame, id_prefix: str) -> list[Plot]:
    """Per-layer speedup over the baseline variant, one figure per backend and device."""
    rows = frame[frame["speedup"].map(num).notna()] if len(frame) else frame
    plots = []
    for (backend, device), part in _groups(rows, ["backend", "device"]):
        workloads = [esc(w) for w in dict.fromkeys(part["workload"])]
        fields = ["variant", *_varying(part, [f for f in TRACE_FIELDS if f not in ("backend", "device", "variant")])]
        data = []
        for _, trace in _groups(part, fields):
            by_workload = {esc(r["workload"]): r for _, r in trace.iterrows()}
            pts = [by_workload.get(w) for w in workloads]
            ys = [None if r is None else num(r["speedup"]) for r in pts]
            lows = [None if r is None else num(r["speedup_low"]) for r in pts]
            highs = [None if r is None else num(r["speedup_high"]) for r in pts]
            hover = ["" if r is None else case_hover(r, [_speed_line(r), _time_line(r)]) for r in pts]
            data.append({
                "type": "bar", "name": _label(trace.iloc[0], fields), "x": workloads, "y": ys,
                "error_y": _errors(ys, lows, highs), "hovertext": hover, "hoverinfo": "text",
            })  # fmt: skip
        baseline = esc(part["baseline_variant"].iloc[0])
        layout = _layout(
            f"speedup over {part['baseline_variant'].iloc[0]}: {backend} on {device}",
            "workload", f"speedup over {baseline} (×, log scale; >1 is faster)",
            barmode="group", yaxis=log_axis([1.0, *_finite(part["speedup"], part["speedup_low"], part["speedup_high"])]),
            shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": 1, "y1": 1,
                     "line": {"color": "#444", "width": 1, "dash": "dot"}}],
        )  # fmt: skip
        plots.append(Plot(
            f"{id_prefix}-speedup-{len(plots) + 1}", f"Speedup per layer: {backend} on {device}",
            "Baseline time / variant time (>1: the variant is faster), from per-round ratios where the variant "
            "was timed interleaved with its baseline, else the ratio of medians; error bars: 95% CI. "
            "Dotted line: no change.",
            to_json({"data": data, "layout": layout}),
        ))  # fmt: skip
    return plots


def framework_figures(frame: pd.DataFrame, id_prefix: str) -> list[Plot]:
    """Median time of the same case in each backend, one figure per mode.

    Cases match on every key field but the backend and the execution (each framework is
    shown as it ran: eager or compiled); a trace per backend, or per backend and
    execution where a backend ran both.
    """
    rows = frame[(frame["status"] == "ok") & frame["median"].map(num).notna()] if len(frame) else frame
    if rows.empty or rows["backend"].nunique() < 2:
        return []
    key_fields = [f for f in TRACE_FIELDS if f not in ("backend", "execution")]
    key = row_keys(rows, key_fields)
    shared = key.map(rows.groupby(key)["backend"].nunique()) >= 2
    rows = rows[shared]
    plots = []
    for (mode,), part in _groups(rows, ["mode"]):
        label_fields = ["workload", *_varying(part, [f for f in key_fields if f not in ("mode", "workload")])]
        labels = list(dict.fromkeys(_label(r, label_fields) for _, r in part.iterrows()))
        both = part.groupby("backend")["execution"].nunique().gt(1).any()
        trace_fields = ["backend", "execution"] if both else ["backend"]
        data = []
        for _, trace in _groups(part, trace_fields):
            by_label = {_label(r, label_fields): r for _, r in trace.iterrows()}
            pts = [by_label.get(x) for x in labels]
            ys = [None if r is None else _ms(r["median"]) for r in pts]
            name = _label(trace.iloc[0], trace_fields) + ("" if both else f" ({esc(trace['execution'].iloc[0])})")
            data.append({
                "type": "bar", "name": name, "x": labels, "y": ys,
                "error_y": _errors(ys, [None if r is None else _ms(r["ci_low"]) for r in pts],
                                   [None if r is None else _ms(r["ci_high"]) for r in pts]),
                "hovertext": ["" if r is None else case_hover(r, [_time_line(r)]) for r in pts], "hoverinfo": "text",
            })  # fmt: skip
        times = [v * 1e3 for v in _finite(part["median"], part["ci_low"], part["ci_high"])]
        layout = _layout(f"frameworks side by side: {mode}", "case", "median time per iteration (ms, log scale)",
                         barmode="group", yaxis=log_axis(times))  # fmt: skip
        plots.append(Plot(
            f"{id_prefix}-frameworks-{len(plots) + 1}", f"Frameworks side by side: {mode}",
            "Median time per iteration of the same case in each backend, as each ran it (eager or compiled, "
            "in the legend); error bars: 95% CI of the median. Absolute times are facts about one machine at one moment.",
            to_json({"data": data, "layout": layout}),
        ))  # fmt: skip
    return plots


def mode_figure(frame: pd.DataFrame, id_prefix: str) -> list[Plot]:
    """Training time against inference time of the same case (log-log)."""
    rows = frame[(frame["status"] == "ok") & frame["median"].map(num).notna()] if len(frame) else frame
    if rows.empty or set(rows["mode"]) < {"inference", "training"}:
        return []
    key_fields = [f for f in TRACE_FIELDS if f != "mode"]
    key = row_keys(rows, ["workload", *key_fields])
    inf = {k: r for k, (_, r) in zip(key, rows.iterrows(), strict=True) if r["mode"] == "inference"}
    pairs = [(inf[k], r) for k, (_, r) in zip(key, rows.iterrows(), strict=True) if r["mode"] == "training" and k in inf]
    if not pairs:
        return []
    train = pd.DataFrame([t for _, t in pairs])
    train["_inference"] = [i for i, _ in pairs]
    fields = _varying(train, ["run", "backend", "device", "execution", "variant"]) or ["variant"]
    data, lo, hi = [], float("inf"), 0.0
    for _, trace in _groups(train, fields):
        xs = [_ms(i["median"]) for i in trace["_inference"]]
        ys = [_ms(t["median"]) for _, t in trace.iterrows()]
        lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        hover = [
            case_hover(t.drop("_inference"), [esc(f"training {format_time(num(t['median']))}"),
                                               esc(f"inference {format_time(num(i['median']))}"),
                                               esc(f"training / inference {_over(t['median'], i['median'])}")])
            for (_, t), i in zip(trace.iterrows(), trace["_inference"], strict=True)
        ]  # fmt: skip
        data.append({
            "type": "scatter", "mode": "markers", "name": _label(trace.iloc[0], fields), "x": xs, "y": ys,
            "error_x": _errors(xs, [_ms(i["ci_low"]) for i in trace["_inference"]], [_ms(i["ci_high"]) for i in trace["_inference"]]),
            "error_y": _errors(ys, [_ms(v) for v in trace["ci_low"]], [_ms(v) for v in trace["ci_high"]]),
            "hovertext": hover, "hoverinfo": "text", "marker": {"size": 9},
        })  # fmt: skip
    data.append({
        "type": "scatter", "mode": "lines", "name": "training = inference", "x": [lo, hi], "y": [lo, hi],
        "hoverinfo": "skip", "line": {"color": "#999", "dash": "dot", "width": 1},
    })  # fmt: skip
    inference = pd.DataFrame(list(train["_inference"]))
    layout = _layout("training against inference", "inference: median time (ms, log)", "training: median time (ms, log)",
                     xaxis=log_axis(v * 1e3 for v in _finite(inference["median"], inference["ci_low"], inference["ci_high"])),
                     yaxis=log_axis(v * 1e3 for v in _finite(train["median"], train["ci_low"], train["ci_high"])))  # fmt: skip
    return [Plot(
        f"{id_prefix}-modes-1", "Training against inference",
        "Each point is one case timed in both modes (training: forward, loss, backward and an SGD update; "
        "inference: one forward pass). Error bars: 95% CI of each median.",
        to_json({"data": data, "layout": layout}),
    )]  # fmt: skip


#: (run, backend, device, dtype, threads) -> (peak FLOP/s, peak bytes/s), as a run measured them.
Peaks = dict[tuple[str, str, str, str, str], tuple[float, float]]


def roof_traces(rows: pd.DataFrame, peaks: Peaks, x_range: tuple[float, float]) -> list[dict[str, Any]]:
    """One line per measured device peak that ``rows`` were timed against:
    min(peak FLOP/s, intensity x peak bytes/s), in GFLOP/s, across ``x_range`` widened
    to show the ridge point (peak FLOP/s / peak bytes/s)."""
    keys = dict.fromkeys(
        (str(r["run"]), str(r["backend"]), str(r["device"]), str(r["dtype"]), str(r["threads"])) for _, r in rows.iterrows()
    )
    lines = []
    for key in keys:
        if key not in peaks:
            continue
        flops, bw = peaks[key]
        ridge = flops / bw
        xs = [min(x_range[0], ridge / 2), ridge, max(x_range[1], ridge * 2)]  # the ridge is always shown
        run, backend, device, dtype, threads = key
        name = f"roof: {backend} {device} {dtype}" + (f" {threads} thr" if device == "cpu" else "") + (f" ({run})" if rows["run"].nunique() > 1 else "")
        tip = esc(f"{name}: peaks {flops / 1e9:.4g} GFLOP/s, {bw / 1e9:.4g} GB/s (matrix product and copy timed by the run)")
        lines.append({
            "type": "scatter", "mode": "lines", "name": esc(name), "x": xs, "y": [min(flops, x * bw) / 1e9 for x in xs],
            "line": {"color": "#555", "dash": "dash", "width": 1}, "hovertext": [tip] * len(xs), "hoverinfo": "text",
        })  # fmt: skip
    return lines


def roofline_figure(frame: pd.DataFrame, id_prefix: str, peaks: Peaks | None = None) -> list[Plot]:
    """Achieved GFLOP/s against FLOP per byte, for timed cases with known FLOPs and bytes,
    under the roofs of the device peaks the runs measured (where they did)."""
    if frame.empty:
        return []
    ok = (frame["status"] == "ok") & frame["median"].map(lambda v: (num(v) or 0) > 0)  # (a zero median has no rate)
    ok &= frame["flops"].map(lambda v: (num(v) or 0) > 0) & frame["bytes"].map(lambda v: (num(v) or 0) > 0)
    rows = frame[ok]
    if rows.empty:
        return []
    fields = ["variant", *_varying(rows, ["run", "backend", "device", "execution", "mode"])]
    data = []
    for _, trace in _groups(rows, fields):
        xs = [num(f) / num(b) for f, b in zip(trace["flops"], trace["bytes"], strict=True)]
        ys = [num(f) / num(m) / 1e9 for f, m in zip(trace["flops"], trace["median"], strict=True)]
        # Faster end of the median's CI gives the higher rate.
        highs = [None if num(c) is None or not num(c) else num(f) / num(c) / 1e9 for f, c in zip(trace["flops"], trace["ci_low"], strict=True)]
        lows = [None if num(c) is None or not num(c) else num(f) / num(c) / 1e9 for f, c in zip(trace["flops"], trace["ci_high"], strict=True)]
        hover = [
            case_hover(r, [esc(f"{x:.3g} FLOP/byte · {y:.3g} GFLOP/s · {num(r['gbps']) or 0:.3g} GB/s"),
                           esc(f"{int(r['flops']):,} FLOP · {int(r['bytes']):,} bytes"), _time_line(r)])
            for (_, r), x, y in zip(trace.iterrows(), xs, ys, strict=True)
        ]  # fmt: skip
        data.append({
            "type": "scatter", "mode": "markers", "name": _label(trace.iloc[0], fields), "x": xs, "y": ys,
            "error_y": _errors(ys, lows, highs), "hovertext": hover, "hoverinfo": "text", "marker": {"size": 9},
        })  # fmt: skip
    intensity = [num(f) / num(b) for f, b in zip(rows["flops"], rows["bytes"], strict=True)]
    roofs = roof_traces(rows, peaks or {}, (min(intensity) / 2, max(intensity) * 2))
    traces = [*data, *roofs]
    xs_all = _finite(*(t["x"] for t in traces))
    ys_all = _finite(*(t["y"] for t in traces))
    for t in data:  # error bar ends
        ys_all += [y + e for y, e in zip(t["y"], t["error_y"]["array"], strict=True) if e is not None]
        ys_all += [y - e for y, e in zip(t["y"], t["error_y"]["arrayminus"], strict=True) if e is not None]
    layout = _layout("roofline: achieved rate against arithmetic intensity", "arithmetic intensity (FLOP per byte, log)",
                     "achieved GFLOP/s (log)", xaxis=log_axis(xs_all), yaxis=log_axis(ys_all))  # fmt: skip
    roof_note = (
        " Dashed: the roof of each device, from the peak FLOP/s and bytes/s the run measured."
        if roofs else " No device peaks were measured in these runs, so no roof is drawn."
    )
    return [Plot(
        f"{id_prefix}-roofline-1", "Roofline",
        "FLOPs and bytes as the run recorded them: FLOPs are 2 × the workload's multiply-adds (not the extra "
        "arithmetic a variant such as diagonalwise executes); bytes are the fewest an op must move when it runs "
        "alone, summed over ops. Error bars: the rate at the ends of the median's 95% CI." + roof_note,
        to_json({"data": traces, "layout": layout}),
    )]  # fmt: skip


def suite_plots(frame: pd.DataFrame, id_prefix: str = "plot", peaks: Peaks | None = None) -> list[Plot]:
    """Every figure of a suite page, in page order."""
    return [
        *speedup_figures(frame, id_prefix),
        *framework_figures(frame, id_prefix),
        *mode_figure(frame, id_prefix),
        *roofline_figure(frame, id_prefix, peaks),
    ]


def absent_plots(frame: pd.DataFrame, plots: Sequence[Plot]) -> list[str]:
    """Why each kind of figure is missing from ``plots`` (one line per missing kind)."""
    kinds = {p.id.rsplit("-", 2)[-2] for p in plots}
    timed = frame[(frame["status"] == "ok") & frame["median"].map(num).notna()] if len(frame) else frame
    backends = sorted(map(str, timed["backend"].unique())) if len(timed) else []
    why = {
        "speedup": "Speedup per layer: no variant was timed beside its baseline variant.",
        "frameworks": (
            f"Frameworks side by side: only {backends[0]} timed these cases."
            if len(backends) == 1 else "Frameworks side by side: no case was timed in two backends."
        ),
        "modes": "Training against inference: no case was timed in both modes.",
        "roofline": "Roofline: no timed case has known FLOPs and bytes.",
    }
    return [] if timed.empty else [text for kind, text in why.items() if kind not in kinds]

