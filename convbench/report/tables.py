"""Tables of the report as plain data: columns, and rows of cells with sort keys.

A :class:`Cell` holds the text shown (escaped by the template), the key the table script
sorts on (``data-sort``: a number written with ``repr``, or text; empty sorts last), an
optional CSS class, tooltip, link, longer details (a traceback) and badges (a small
``contended`` label with its reason as tooltip). Templates render these; nothing here
writes HTML.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from convbench.contention import CONTENDED_MEANING
from convbench.display import show
from convbench.environment import environment_rows
from convbench.report.data import KEY_COLUMNS, Run, flag, num, row_keys
from convbench.report.plots import SOURCES
from convbench.results import STATUSES
from convbench.summary import format_time


@dataclass(frozen=True)
class Badge:
    """A small label shown after a cell's text (class ``badge CLS``, ``title`` its tooltip)."""

    text: str
    cls: str
    title: str = ""


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str = ""
    cls: str = ""
    title: str = ""
    href: str = ""
    details: str = ""
    badges: tuple[Badge, ...] = ()


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool = False
    title: str = ""


@dataclass
class Table:
    """A sortable, filterable table; ``statuses`` are the choices of its status filter."""

    id: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    row_status: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    status_label: str = "status"
    legend: list[str] = field(default_factory=list)  #: lines shown under the table


#: Marks a case whose thread count equals the machine's usable cores (see ALL_CORES_LEGEND).
ALL_CORES_MARK = "‡"
ALL_CORES_LEGEND = (
    f"{ALL_CORES_MARK} as many threads as the machine has usable cores: any other process then "
    "takes a core from the case, so its time is the most fragile under contention."
)


def fnum(value: Any, digits: int = 3, unit: str = "") -> Cell:
    """A number with ``digits`` significant digits (and ``unit``), sortable; '–' if missing."""
    v = num(value)
    if v is None:
        return Cell("–")
    return Cell(f"{v:.{digits}g}{unit}", sort=repr(v))


def ftime(value: Any) -> Cell:
    v = num(value)
    return Cell(format_time(v), sort=repr(v)) if v is not None else Cell("–")


def text(value: Any) -> Cell:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return Cell("–")
    return Cell(str(value), sort=str(value))


def key_cell(field_name: str, value: Any) -> Cell:
    if field_name in ("batch", "threads") and num(value) is not None:
        return Cell(str(int(num(value))), sort=repr(float(num(value))))
    return text(value)


def status_cell(status: str, badges: tuple[Badge, ...] = ()) -> Cell:
    return Cell(status, sort=str(STATUSES.index(status)) if status in STATUSES else status, cls=f"status status-{status}", badges=badges)


def contended_badges(row: pd.Series) -> tuple[Badge, ...]:
    """A ``contended`` badge, its reason as tooltip, for a case contended while timed."""
    if not flag(row.get("contended")):
        return ()
    why = row.get("contention")
    return (Badge("contended", "contended", why if isinstance(why, str) and why else CONTENDED_MEANING),)


def has_telemetry(frame: pd.DataFrame) -> bool:
    """Some row has contention telemetry (runs older than it have none)."""
    cols = [c for c in ("contended", "foreign_cpu", "threads_all_cores") if c in frame]
    return bool(len(frame)) and any(frame[c].map(lambda v: v is not None and not pd.isna(v)).any() for c in cols)


def load_cell(row: pd.Series) -> Cell:
    """CPU cores other processes used while the case was timed ("0.82"), the rest of its
    telemetry as tooltip, and ALL_CORES_MARK when its threads equal the usable cores."""
    foreign = num(row.get("foreign_cpu"))
    steal, pressure = num(row.get("steal")), num(row.get("cpu_pressure"))
    dropped, wait = num(row.get("dropped")), num(row.get("quiet_wait"))
    parts = [f"other processes used {foreign:.2f} cores while it was timed"] if foreign is not None else []
    parts += [f"steal {steal:.2f} cores"] if steal else []
    parts += [f"tasks waited for a CPU {pressure:.0%} of the time"] if pressure is not None else []
    parts += [f"{int(dropped)} contended samples dropped"] if dropped else []
    parts += [f"waited {wait:.1f} s for quiet"] if wait else []
    compute, memory = num(row.get("speed_compute")), num(row.get("speed_memory"))
    if compute is not None and memory is not None:
        parts.append(f"the speed probe took {compute:.2f}x (compute) and {memory:.2f}x (memory) the machine's reference time")
    text = "–" if foreign is None else f"{foreign:.2f}"
    if flag(row.get("threads_all_cores")):
        text, parts = f"{text} {ALL_CORES_MARK}", [*parts, "threads = usable cores"]
    return Cell(text, sort=repr(foreign) if foreign is not None else "", title="; ".join(parts))


def constant_fields(frame: pd.DataFrame, fields: list[str]) -> tuple[list[str], dict[str, str]]:
    """(fields that vary, {field: value} of those that do not); ``workload``, ``variant``
    and ``backend`` always count as varying."""
    varying, constant = [], {}
    for f in fields:
        values = frame[f].map(str).unique() if f in frame and len(frame) else []
        if f in ("workload", "variant", "backend") or len(values) > 1:
            varying.append(f)
        elif len(values) == 1:
            constant[f] = values[0]
    return varying, constant


def _ci_text(lo: Any, hi: Any, fmt) -> Cell:  # noqa: ANN001 - fmt(float) -> str
    lo, hi = num(lo), num(hi)
    if lo is None or hi is None:
        return Cell("–")
    return Cell(f"{fmt(lo)} – {fmt(hi)}", sort=repr(hi - lo))


def _speedup_cell(row: pd.Series) -> Cell:
    if row["status"] != "ok":
        return Cell("–")
    if row["variant"] == row["baseline_variant"]:
        return Cell("baseline", sort="1.0", cls="muted", title=f"the baseline variant ({row['baseline_variant']})")
    s = num(row["speedup"])
    if s is None:
        return Cell("–")
    lo, hi = num(row["speedup_low"]), num(row["speedup_high"])
    ci = f" [{lo:.2f}–{hi:.2f}]" if lo is not None and hi is not None else ""
    how = SOURCES.get(row.get("speedup_source"), "no CI")
    cls = "faster" if lo is not None and lo > 1 else "slower" if hi is not None and hi < 1 else ""
    return Cell(f"{s:.2f}×{ci}", sort=repr(s), cls=cls, title=f"{row['baseline_variant']} time / {row['variant']} time: {how}")


def _median_cell(row: pd.Series) -> Cell:
    cell = ftime(row.get("median"))
    if not cell.sort:
        return cell
    parts = [f"timer {row.get('timer')}", f"n={row.get('n')} samples of {row.get('inner')} iterations"]
    iqr, med = num(row.get("iqr")), num(row.get("median"))
    if iqr is not None and med:
        parts.append(f"IQR {iqr / med * 100:.0f}% of the median")
    if num(row.get("processes")) and num(row.get("processes")) > 1:
        parts.append(f"{int(num(row['processes']))} processes, spread {num(row.get('process_spread')) or 0:.1%}")
    return Cell(cell.text + ("" if row.get("converged") else "*"), sort=cell.sort, title="; ".join(parts))


def _notes(row: pd.Series) -> Cell:
    if row["status"] != "ok":
        reason = row.get("reason") if isinstance(row.get("reason"), str) else "no reason recorded"
        details = row.get("details") if row["status"] == "error" and isinstance(row.get("details"), str) else ""
        return Cell(reason, sort=reason, cls="wrap", details=details)
    if num(row.get("median")) is not None and not row.get("converged"):
        return Cell("* did not converge to the requested precision", sort="did not converge", cls="wrap")
    return Cell("")


def _verify_cell(row: pd.Series) -> Cell:
    cell = fnum(row.get("verify_error"), 2)
    if not cell.sort:
        return cell
    tol, worst = num(row.get("verify_tolerance")), row.get("verify_worst")
    title = f"relative error against the float64 reference; tolerance {tol:g}" if tol is not None else ""
    if isinstance(worst, str):
        title += f"; worst in {worst}"
    return Cell(f"{float(cell.sort):.1e}", sort=cell.sort, title=title, cls="status-mismatch" if row["status"] == "mismatch" else "")


def suite_table(frame: pd.DataFrame, table_id: str, multi_run: bool, run_pages: dict[str, str]) -> tuple[Table, dict[str, str]]:
    """The cases of one suite: one row per case; returns (table, constant key fields)."""
    varying, constant = constant_fields(frame, KEY_COLUMNS)
    columns = [Column("run", "run")] if multi_run else []
    columns += [Column(f, f, numeric=f in ("batch", "threads")) for f in varying]
    columns += [
        Column("status", "status"),
        Column("notes", "reason / notes", title="why a case was skipped, failed or did not verify"),
        Column("median", "median", True, "median time per iteration (* = did not converge)"),
        Column("ci", "95% CI of median", True, "sorts by the CI's width"),
        Column("speedup", "speedup", True, "baseline variant time / this variant's time (>1: faster) [95% CI]"),
        Column("throughput", "samples/s", True, "batch / median time"),
        Column("gflops", "GFLOP/s", True, "2 × multiply-adds of the workload / median time"),
        Column("gbps", "GB/s", True, "fewest bytes moved / median time"),
        Column("verify", "rel. error", True, "verification against the float64 reference"),
    ]
    roofline = "roofline_fraction" in frame and frame["roofline_fraction"].map(num).notna().any()
    if roofline:
        columns.insert(-1, Column("roofline", "of roofline", True, "roofline bound / median time (100%: at the device's measured roof)"))
    telemetry = has_telemetry(frame)
    if telemetry:
        columns.insert(-1, Column("foreign_cpu", "other CPU", True, f"CPU cores other processes used while the case was timed ({ALL_CORES_MARK}: threads = usable cores)"))
    table = Table(table_id, columns, statuses=[s for s in STATUSES if s in set(frame["status"])] if len(frame) else [])
    for _, row in frame.iterrows():
        cells = [Cell(row["run"], sort=row["run"], href=run_pages.get(row["run"], ""))] if multi_run else []
        cells += [key_cell(f, row[f]) for f in varying]
        cells += [
            status_cell(row["status"], contended_badges(row)),
            _notes(row),
            _median_cell(row),
            _ci_text(row.get("ci_low"), row.get("ci_high"), format_time),
            _speedup_cell(row),
            fnum(row.get("throughput"), 4),
            fnum(row.get("gflops")),
            fnum(row.get("gbps")),
            _verify_cell(row),
        ]
        if roofline:
            frac = num(row.get("roofline_fraction"))
            limit = row.get("roofline_limit")
            cell = fnum(None if frac is None else frac * 100, 3, "%")
            cells.insert(-1, Cell(cell.text, cell.sort, title=f"{limit}-bound" if isinstance(limit, str) else ""))
        if telemetry:
            cells.insert(-1, load_cell(row))
        table.rows.append(cells)
        table.row_status.append(row["status"])
    if telemetry and "threads_all_cores" in frame and frame["threads_all_cores"].map(flag).any():
        table.legend.append(ALL_CORES_LEGEND)
    return table, constant


def _software(run: Run) -> str:
    env = run.core_env
    parts = [f"Python {env.get('python_version') or '?'}", f"numpy {env.get('numpy_version') or '?'}"]
    rev = env.get("git_revision")
    version = env.get("convbench_version") or run.record.convbench_version or "?"
    parts.append(f"convbench {version}" + (f" ({str(rev)[:10]}{', dirty' if env.get('git_dirty') else ''})" if rev else ""))
    for key, info in run.backend_envs.items():
        parts.append(f"{key} {info.get('version') or ('unavailable' if not info.get('available') else '?')}")
    return "; ".join(parts)


def _machine(run: Run) -> str:
    env = run.core_env
    cores = env.get("cpu_usable_cores") or env.get("cpu_logical_cores")
    mem = num(env.get("memory_total_bytes"))
    parts = [str(env.get("cpu") or "unknown CPU") + (f" ({cores} cores)" if cores else "")]
    if env.get("architecture"):
        parts.append(str(env["architecture"]))
    if run.emulated:
        parts.append(f"EMULATED ({run.emulator or 'emulator unknown'})")
    if mem:
        parts.append(f"{mem / 2**30:.0f} GiB")
    return ", ".join(parts)


def gpus_text(run: Run) -> str:
    gpus = run.core_env.get("gpus")
    if not gpus:
        return "none"
    return "; ".join(str(g.get("name") or g) for g in gpus)


def runs_table(runs: list[Run], run_pages: dict[str, str], suite_pages: dict[str, str]) -> Table:
    """The index: one row per run."""
    columns = [
        Column("run", "run"), Column("suite", "suite"), Column("preset", "preset"), Column("started", "started"),
        Column("status", "status"), Column("planned", "cases", True), *[Column(s, s, True) for s in STATUSES],
        Column("host", "host"), Column("machine", "machine"), Column("gpus", "GPUs"), Column("software", "software"),
    ]  # fmt: skip
    canaries = any(run.canary for run in runs)
    if canaries:
        columns.append(Column("canary", "canary", True, "the canary's median time at the run's start, middle and end (same work on every machine)"))
    table = Table("runs", columns, statuses=sorted({str(r.record.status or "unknown") for r in runs}), status_label="run status")
    for run in runs:
        counts = run.counts()
        status = str(run.record.status or "unknown")
        if counts["unfinished"]:
            status_title = f"{counts['unfinished']} of {counts['planned']} planned cases have no result"
        else:
            status_title = ""
        table.rows.append([
            Cell(run.name, sort=run.name, href=run_pages[run.name], badges=run_badges(run)),
            Cell(run.suite, sort=run.suite, href=suite_pages[run.suite]),
            text(run.record.preset),
            started_cell(run.record.started),
            Cell(status, sort=status, cls=f"run-{status}", title=status_title),
            Cell(str(counts["planned"]), sort=str(counts["planned"])),
            *[Cell(str(counts[s]), sort=str(counts[s]), cls=f"count-{s}" if counts[s] and s != "ok" else "") for s in STATUSES],
            text(run.core_env.get("hostname")),
            Cell(_machine(run), cls="wrap"),
            Cell(gpus_text(run)),
            Cell(_software(run), cls="wrap"),
            *([canary_cell(run)] if canaries else []),
        ])  # fmt: skip
        table.row_status.append(status)
    return table


def started_cell(value: Any) -> Cell:
    """A run's start time, ``2026-01-01T00:00:00+00:00`` shown as ``2026-01-01 00:00:00+00:00``
    (it wraps between date and time); the ISO text as tooltip and sort key."""
    if not isinstance(value, str) or not value:
        return text(value)
    return Cell(value.replace("T", " ", 1), sort=value, cls="when", title=value)


def run_badges(run: Run) -> tuple[Badge, ...]:
    """``N contended`` when some of the run's cases were contended while timed."""
    n = run.contended
    if not n:
        return ()
    return (Badge(f"{n} contended", "contended", f"{n} of {run.timed} timed cases were contended: {CONTENDED_MEANING}"),)


def canary_cell(run: Run) -> Cell:
    """The run's canary medians in order ("1.21 ms · 1.24 ms"), each point as tooltip."""
    points = [(e, num(e.get("median"))) for e in run.canary]
    times = [t for _, t in points if t is not None]
    if not times:
        return Cell("–")
    title = [f"{e.get('at') or '?'} {format_time(t) if t is not None else '–'}{' (contended)' if flag(e.get('contended')) else ''}" for e, t in points]
    if len(times) > 1 and min(times) > 0:
        title.append(f"drift {max(times) / min(times):.2f}x (slowest / fastest)")
    return Cell(" · ".join(format_time(t) for t in times), sort=repr(sorted(times)[len(times) // 2]), title="; ".join(title))


def canary_table(run: Run) -> Table:
    """One row per canary point of the run (empty for runs older than the canary)."""
    columns = [
        Column("at", "at"), Column("time", "time"), Column("median", "median", True), Column("ci", "95% CI", True),
        Column("n", "samples", True), Column("contended", "contended"), Column("foreign_cpu", "other CPU", True),
        Column("cpu_pressure", "CPU pressure", True, "fraction of the time tasks waited for a CPU"),
    ]  # fmt: skip
    table = Table(f"canary-{run.slug}", columns)
    for e in run.canary:
        pressure, foreign = num(e.get("cpu_pressure")), num(e.get("foreign_cpu"))
        why = e.get("contention") if isinstance(e.get("contention"), str) else ""
        table.rows.append([
            text(e.get("at")), text(e.get("time")), ftime(e.get("median")), _ci_text(e.get("ci_low"), e.get("ci_high"), format_time),
            fnum(e.get("n")), Cell("yes", sort="yes", cls="warning", title=why) if flag(e.get("contended")) else Cell("no", sort="no"),
            Cell("–") if foreign is None else Cell(f"{foreign:.2f}", sort=repr(foreign)),
            Cell("–") if pressure is None else Cell(f"{pressure:.0%}", sort=repr(pressure)),
        ])  # fmt: skip
        table.row_status.append("ok")
    return table


def env_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of an environment dict, nested values flattened."""
    return environment_rows(env)


def backend_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of one backend worker's info and environment."""
    rows = [(k, show(v)) for k, v in info.items() if k != "environment"]
    rows += [(f"environment.{k}", show(v)) for k, v in (info.get("environment") or {}).items()]
    return rows


def reasons(frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(status, reason, count) of the cases that are not ok, most frequent first."""
    bad = frame[frame["status"] != "ok"] if len(frame) else frame
    if bad.empty:
        return []
    reason = bad["reason"].map(lambda r: r if isinstance(r, str) else "no reason recorded")
    counts = pd.DataFrame({"status": bad["status"], "reason": reason}).value_counts().reset_index(name="n")
    counts = counts.sort_values(["n", "status", "reason"], ascending=[False, True, True], kind="stable")
    return [(r.status, r.reason, int(r.n)) for r in counts.itertuples()]


# --------------------------------------------------------------------------- headline
@dataclass(frozen=True)
class HeadlineLine:
    """One comparison of a suite's headline: a variant against its baseline in one run,
    backend and device, with the per-case speedups summarised in ``summary``."""

    compared: str  #: "diagonalwise vs native"
    where: str  #: "torch on cpu"
    run: str
    run_href: str
    host: str
    summary: str  #: the numbers, in words
    notes: tuple[Badge, ...] = ()  #: emulated, contended


@dataclass(frozen=True)
class Headline:
    """A suite's line on the index: its comparisons, or why it has none."""

    suite: str
    href: str
    lines: tuple[HeadlineLine, ...]
    none: str = ""  #: said when ``lines`` is empty


def ratio_text(value: float) -> str:
    """A speedup as the headline writes it: 0.63×, 0.042×, 12.5×."""
    return f"{value:.2f}×" if 0.1 <= value < 10 else f"{value:.2g}×" if value < 0.1 else f"{value:.3g}×"


def speedup_summary(rows: pd.DataFrame, baseline: str) -> str:
    """The per-case speedups of ``rows`` in words: their range and median, the span of
    their 95% CIs, and how many are faster or slower than ``baseline`` beyond their CI."""
    s = [num(v) for v in rows["speedup"]]
    lows, highs = [num(v) for v in rows["speedup_low"]], [num(v) for v in rows["speedup_high"]]
    with_ci = [(lo, hi) for lo, hi in zip(lows, highs, strict=True) if lo is not None and hi is not None]
    modes = list(dict.fromkeys(map(str, rows["mode"])))
    n = len(s)
    cases = f"{n} case{'s' if n != 1 else ''} ({' and '.join(modes)})"
    if n == 1:
        parts = [f"{ratio_text(s[0])} in {cases}" + (f", 95% CI {ratio_text(with_ci[0][0])}–{ratio_text(with_ci[0][1])}" if with_ci else ", no CI")]
    else:
        parts = [f"{ratio_text(min(s))}–{ratio_text(max(s))} across {cases}, median {ratio_text(statistics.median(s))}"]
        if with_ci:
            parts.append(f"per-case 95% CIs within {ratio_text(min(lo for lo, _ in with_ci))}–{ratio_text(max(hi for _, hi in with_ci))}")
    faster = sum(lo > 1 for lo, _ in with_ci)
    slower = sum(hi < 1 for _, hi in with_ci)
    kinds = [(slower, f"slower than {baseline}"), (faster, f"faster than {baseline}"),
             (len(with_ci) - faster - slower, "within noise of no change"), (n - len(with_ci), "without a CI")]  # fmt: skip
    kinds = [(k, what) for k, what in kinds if k]
    if len(kinds) == 1:
        what = kinds[0][1]
        verdict = what[0].upper() + what[1:] if n == 1 else f"All {n} {what}"
    else:
        verdict = ", ".join(f"{k} {what}" for k, what in kinds)
    return "; ".join(parts) + ". " + verdict + "."


def headlines(suites: dict[str, tuple[list[Run], pd.DataFrame]], suite_pages: dict[str, str], run_pages: dict[str, str]) -> list[Headline]:
    """Per suite (frames as :func:`convbench.report.data.suite_frame` gives them): each
    variant against the baseline it was timed beside, per run, backend and device."""
    out = []
    for name, (runs, frame) in suites.items():
        timed = frame[(frame["status"] == "ok") & frame["median"].map(num).notna()] if len(frame) else frame
        rows = timed[timed["speedup"].map(num).notna() & (timed["variant"] != timed["baseline_variant"])] if len(timed) else timed
        lines = []
        by_name = {r.name: r for r in runs}
        for run_name in dict.fromkeys(rows["run"]) if len(rows) else []:
            run = by_name[run_name]
            in_run = rows[rows["run"] == run_name]
            keys = row_keys(in_run, ["backend", "device", "variant"])
            for key in dict.fromkeys(keys):
                part = in_run[keys == key]
                first = part.iloc[0]
                baseline = str(first["baseline_variant"])
                notes: list[Badge] = []
                if run.emulated:
                    notes.append(Badge("emulated", "emulated", "taken under an emulator: these times say nothing about that CPU"))
                contended = sum(map(flag, part["contended"])) if "contended" in part else 0
                if contended:
                    notes.append(Badge(f"{contended} contended", "contended", f"{contended} of these cases were contended: {CONTENDED_MEANING}"))
                lines.append(HeadlineLine(
                    f"{first['variant']} vs {baseline}", f"{first['backend']} on {first['device']}", run.name,
                    run_pages.get(run.name, ""), str(run.core_env.get("hostname") or ""), speedup_summary(part, baseline), tuple(notes),
                ))  # fmt: skip
        none = ""
        if not lines:
            none = (
                f"no variant was timed beside its baseline; {len(timed)} timed case{'s' if len(timed) != 1 else ''} on the suite page."
                if len(timed) else "no case was timed."
            )
        out.append(Headline(name, suite_pages.get(name, ""), tuple(lines), none))
    return out

