"""Render the static site: pages from jinja2 templates, static assets, raw data.

Layout of the site folder::

    index.html                 headline speedups per suite, then the runs (when, machine,
                               software, suite, case counts)
    suite-<slug>.html          one per suite: plots and the table of its cases
    run-<slug>.html            one per run: environment, options, reasons, raw data
    compare.html               with --compare: NEW against BASE
    static/plotly.min.js       written once, from the installed plotly package
    static/report.css, report.js
    data/<run-slug>/           run.json, cases.parquet, samples.parquet (copied as they
                               are) and cases.csv, samples.csv

Pages link to each other with relative URLs, so the folder works from disk and on any
static host. The folder is replaced as a whole: files of an earlier rendering do not
linger; a non-empty folder that is not a convbench report is never touched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from convbench import __version__
from convbench.report import tables
from convbench.report.data import Run, load_runs, run_peaks, slugify, suite_frame, suites_of
from convbench.report.plots import Plot, absent_plots, suite_plots
from convbench.results import ResultsError, write_tables
from convbench.run_record import RunRecord, as_record

#: Written at the root of every rendered site; its presence allows replacing the folder.
MARKER = ".convbench-report"
STATIC_FILES = ("report.css", "report.js")
RAW_FILES = ("run.json", "cases.parquet", "samples.parquet")


class ReportError(Exception):
    """Bad input for a report (missing runs, an output folder that is not a report)."""


@dataclass
class Page:
    """One HTML page: its file name and title (for the navigation bar)."""

    file: str
    title: str


def environment() -> Environment:
    """The jinja2 environment: every ``{{ }}`` is HTML-escaped; undefined names raise."""
    env = Environment(
        loader=PackageLoader("convbench.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["version"] = __version__
    env.globals["run_badges"] = tables.run_badges
    return env


def plotly_js() -> str:
    """The minified plotly.js bundled with the installed plotly package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def render_site(
    run_paths: Iterable[str | Path],
    out: str | Path,
    compare: tuple[Sequence[str | Path], Sequence[str | Path]] | None = None,
    threshold: float = 0.05,
    alpha: float = 0.01,
) -> list[str]:
    """Render the site of the runs under ``run_paths`` (and of ``compare``'s BASE and NEW
    runs, with a comparison page) into ``out``; returns the pages written, in order.

    Raises :class:`ReportError` for bad input (a missing or unreadable run, no run at
    all, an output folder that holds something other than a report).
    """
    out = Path(out)
    paths = [*run_paths, *(compare[0] if compare else ()), *(compare[1] if compare else ())]
    if not paths:
        raise ReportError("no run to report: give one or more run folders, or --compare BASE NEW")
    _check_out(out)
    try:
        runs = load_runs(paths, skip_bad=True)  # (a corrupted run among good ones: left out, with a warning)
        comparison = _comparison(compare, threshold, alpha) if compare else None
    except ResultsError as exc:
        raise ReportError(str(exc)) from None
    if not runs:
        raise ReportError(f"{', '.join(map(str, paths))}: no run found")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        pages = _write(tmp, runs, comparison, compare)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return pages


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ReportError(f"{out}: a non-empty folder that is not a convbench report; choose another -o folder")


def _comparison(compare: tuple[Sequence[str | Path], Sequence[str | Path]], threshold: float, alpha: float) -> Any:
    from convbench.compare import compare_paths

    return compare_paths(list(compare[0]), list(compare[1]), threshold=threshold, alpha=alpha)


def _write(site: Path, runs: list[Run], comparison: Any, compare: Any) -> list[str]:
    env = environment()
    (site / "static").mkdir()
    (site / "static" / "plotly.min.js").write_text(plotly_js(), encoding="utf-8")
    for name in STATIC_FILES:
        (site / "static" / name).write_bytes((Path(__file__).parent / "static" / name).read_bytes())
    (site / MARKER).write_text(f"rendered by convbench {__version__}; `convbench report` replaces this folder\n")

    suites = suites_of(runs)
    taken: set[str] = {"index", "compare"}
    suite_pages = {name: f"suite-{slugify(name, taken)}.html" for name in suites}
    run_pages = {run.name: f"run-{run.slug}.html" for run in runs}
    nav = [Page("index.html", "Runs"), *[Page(suite_pages[s], f"Suite {s}") for s in suites]]
    if comparison is not None:
        nav.append(Page("compare.html", "Comparison"))
    common = {"nav": nav, "suite_pages": suite_pages, "run_pages": run_pages}

    pages = ["index.html"]
    frames = {name: suite_frame(srun) for name, srun in suites.items()}
    index = env.get_template("index.html.j2").render(
        **common, page="index.html", title="convbench report",
        headlines=tables.headlines({name: (srun, frames[name]) for name, srun in suites.items()}, suite_pages, run_pages),
        runs_table=tables.runs_table(runs, run_pages, suite_pages),
        suites=[(name, suite_pages[name], len(rs), _suite_description(rs)) for name, rs in suites.items()],
        has_compare=comparison is not None,
    )  # fmt: skip
    _write_text(site / "index.html", index)

    for i, (name, srun) in enumerate(suites.items(), start=1):
        frame = frames[name]
        table, constant = tables.suite_table(frame, f"cases-{i}", len(srun) > 1, run_pages)
        plots: list[Plot] = suite_plots(frame, id_prefix=f"plot-{i}", peaks=run_peaks(srun))
        absent = absent_plots(frame, plots)
        html = env.get_template("suite.html.j2").render(
            **common, page=suite_pages[name], title=f"Suite {name}", suite=name,
            description=_suite_description(srun), runs=srun, plots=plots, absent=absent, table=table, constant=constant,
            reasons=tables.reasons(frame), counts=_counts(frame),
        )  # fmt: skip
        _write_text(site / suite_pages[name], html)
        pages.append(suite_pages[name])

    for run in runs:
        data = _copy_raw(run, site / "data" / run.slug)
        html = env.get_template("run.html.j2").render(
            **common, page=run_pages[run.name], title=f"Run {run.name}", run=run, counts=run.counts(),
            core=tables.env_rows(run.core_env), backends=[(k, tables.backend_rows(v)) for k, v in run.backend_envs.items()],
            options=_options_rows(run.record), data=data, reasons=tables.reasons(run.cases),
            suite_page=suite_pages[run.suite], canary=tables.canary_table(run),
        )  # fmt: skip
        _write_text(site / run_pages[run.name], html)
        pages.append(run_pages[run.name])

    if comparison is not None:
        from convbench.report.compare_page import compare_context

        html = env.get_template("compare.html.j2").render(
            **common, page="compare.html", title="Comparison", **compare_context(comparison, compare, runs, run_pages),
        )  # fmt: skip
        _write_text(site / "compare.html", html)
        pages.append("compare.html")
    return pages


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def _suite_description(runs: list[Run]) -> str:
    for run in runs:
        text = _yaml_description(run.record.suite_text)
        if text:
            return text
    return ""


def _yaml_description(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return ""
    return str(data.get("description") or "") if isinstance(data, dict) else ""


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    from convbench.results import STATUSES

    got = frame["status"].value_counts().to_dict() if len(frame) else {}
    return {s: int(got.get(s, 0)) for s in STATUSES}


def _options_rows(meta: RunRecord | dict[str, Any]) -> list[tuple[str, str]]:
    """(option, value) rows: suite file, preset, filter, timing, timeout, tolerance, interpreters."""
    record = as_record(meta)
    opts = record.options
    rows = [("suite file", record.suite_path), ("preset", record.preset), ("filter", record.filter)]
    rows += [(f"timing.{k}", v) for k, v in opts.timing.items()]
    rows += [("timeout (s)", opts.timeout)]
    rows += [(f"tolerance.{k}", v) for k, v in (opts.tolerance or {}).items()]
    rows += [(f"interpreter.{k}", v) for k, v in (opts.interpreters or {}).items()]
    rows += [("status", record.status), ("started", record.started), ("finished", record.finished)]
    return [(k, "–" if v is None else str(v)) for k, v in rows]


def _copy_raw(run: Run, dest: Path) -> list[tuple[str, str, int]]:
    """Copy the run's files into ``dest`` and write CSV twins of the Parquet tables.

    Returns (file name, what it holds, size in bytes), in a fixed order.
    """
    dest.mkdir(parents=True)
    what = {
        "run.json": "suite, options, planned cases, environment",
        "cases.parquet": "one row per case (Parquet)",
        "cases.csv": "one row per case (CSV)",
        "samples.parquet": "raw per-iteration samples (Parquet)",
        "samples.csv": "raw per-iteration samples (CSV)",
    }
    if (run.path / "run.json").exists():
        shutil.copyfile(run.path / "run.json", dest / "run.json")
    write_tables(run.path, dest)  # copied, or written from the journal of a run in progress
    for name in ("cases", "samples"):
        src = dest / f"{name}.parquet"
        if src.exists():
            pd.read_parquet(src).to_csv(dest / f"{name}.csv", index=False, lineterminator="\n")
    return [(name, what[name], (dest / name).stat().st_size) for name in what if (dest / name).exists()]
