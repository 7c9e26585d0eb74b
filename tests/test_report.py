"""The HTML report: pages, escaping, determinism, offline assets, raw data, comparison, CLI."""

from __future__ import annotations

import filecmp
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from convbench.compare import VERDICTS
from convbench.report import ReportError, render_site
from convbench.report.compare_page import VERDICT_COLORS
from convbench.report.data import load_runs, run_peaks, slugify, suite_frame
from convbench.report.plots import absent_plots, esc, log_axis, suite_plots, tick_text, to_json
from convbench.report.render import MARKER, plotly_js
from convbench.report.tables import (
    ALL_CORES_LEGEND,
    ALL_CORES_MARK,
    headlines,
    speedup_summary,
    suite_table,
)
from tests.conftest import ROOT, run_cli
from tests.report_data import CONTENTION, XSS, XSS_IMG, make_run, read_json_specs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two runs of one suite on two hosts (NEW 30% slower) and a run of a hostile-named suite."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "a": make_run(root / "a", host="host-a"),
        "b": make_run(root / "b", host=f"host-b {XSS}", slowdown=1.3, seed=1, started="2026-01-02T00:00:00+00:00"),
        "x": make_run(root / "x", suite=XSS, failures=False, started="2026-01-03T00:00:00+00:00"),
    }


@pytest.fixture(scope="module")
def site(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "report"
    render_site([runs["a"].parent], out, compare=([runs["a"]], [runs["b"]]))
    return out


def pages(site: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(site.glob("*.html"))}


class Scripts(HTMLParser):
    """Every <script> element's attributes and text, and every text node."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        else:
            self.text.append(data)


def parse(page: str) -> Scripts:
    parser = Scripts()
    parser.feed(page)
    return parser


# --------------------------------------------------------------------------- the site
def test_site_has_every_page_and_links_resolve(site: Path) -> None:
    names = set(pages(site))
    assert {"index.html", "suite-synthetic.html", "compare.html", "run-a.html", "run-b.html", "run-x.html"} <= names
    hostile = [n for n in names if n.startswith("suite-script-alert-1-script-")]
    assert len(hostile) == 1, names
    for name, page in pages(site).items():
        for href in re.findall(r'(?:href|src)="([^"#]+)"', page):
            if href.startswith("data:"):
                continue
            assert not re.match(r"^[a-z]+://", href), f"{name} links outside the site: {href}"
            assert (site / href).exists(), f"{name} links to a missing file {href}"


def test_plotly_js_is_written_once_from_the_installed_package(site: Path) -> None:
    js_files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.js"))
    assert js_files == ["static/plotly.min.js", "static/report.js"]
    assert (site / "static" / "plotly.min.js").read_text() == plotly_js()
    for name, page in pages(site).items():
        for attrs, text in parse(page).scripts:
            if "src" in attrs:
                assert attrs["src"] in ("static/plotly.min.js", "static/report.js"), (name, attrs)
            else:  # the only inline scripts are plot specs (JSON, never executed)
                assert attrs.get("type") == "application/json", (name, attrs)
                json.loads(text)
    assert "static/plotly.min.js" in pages(site)["suite-synthetic.html"]
    assert "plotly.min.js" not in pages(site)["index.html"]  # pages without plots do not load it


def test_same_input_renders_a_byte_identical_site(runs: dict[str, Path], site: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    render_site([runs["a"].parent], again, compare=([runs["a"]], [runs["b"]]))
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(site, again, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    # Runs named in another order still give the same site.
    third = tmp_path / "third"
    render_site([runs["x"], runs["b"], runs["a"]], third, compare=([runs["a"]], [runs["b"]]))
    assert filecmp.cmpfiles(site, third, [str(f) for f in files], shallow=False)[1] == []


def test_rendering_writes_no_time_or_absolute_path(site: Path, runs: dict[str, Path]) -> None:
    for name, page in pages(site).items():
        assert str(runs["a"].parent) not in page, name
        assert not re.search(r"20(?!26-01-0[123]T00)\d\d-\d\d-\d\dT\d\d", page), f"{name} holds a time that is not the runs'"


# --------------------------------------------------------------------------- escaping
def test_hostile_strings_show_as_text_and_never_as_markup(site: Path) -> None:
    for name, page in pages(site).items():
        assert XSS not in page, f"{name} holds a raw <script> from the data"
        assert XSS_IMG not in page and "<img" not in page, name
        doc = parse(page)
        # Every script element is ours: static files or JSON plot specs.
        assert all(a.get("src", "").startswith("static/") or a.get("type") == "application/json" for a, _ in doc.scripts)
    text = {name: "".join(parse(page).text) for name, page in pages(site).items()}
    assert XSS in text["suite-synthetic.html"]  # the workload, as text in the table
    assert f"synthetic layers {XSS}" in text["suite-synthetic.html"]  # the suite description
    assert f"Suite {XSS}" in text["index.html"]  # a suite named <script>: nav and list
    assert f"host-b {XSS}" in text["index.html"] and f"host-b {XSS}" in text["compare.html"]
    assert f"Test CPU {XSS_IMG}" in text["run-a.html"]
    assert f"RuntimeError: kernel {XSS_IMG} failed" in text["suite-synthetic.html"]  # a reason
    assert f"\n  {XSS}\n" in text["suite-synthetic.html"]  # a traceback


def test_plot_text_is_escaped_for_plotly(site: Path) -> None:
    specs = read_json_specs(pages(site)["suite-synthetic.html"])
    assert specs
    seen = 0
    for spec in specs:
        for trace in spec["data"]:
            for value in [*trace.get("x", []), *trace.get("hovertext", []), trace.get("name", "")]:
                if isinstance(value, str) and "script" in value:
                    assert "<script" not in value and "&lt;script&gt;alert(1)&lt;/script&gt;" in value
                    seen += 1
    assert seen, "the hostile workload should appear in the plots"
    # and the JSON is safe inside a <script> element
    assert to_json({"data": [{"type": "bar", "x": [XSS], "y": [1]}], "layout": {}}).count("<") == 0
    assert esc("<b>&") == "&lt;b&gt;&amp;"


# --------------------------------------------------------------------------- content
def test_index_lists_runs_with_machine_software_and_counts(site: Path) -> None:
    index = pages(site)["index.html"]
    rows = re.findall(r"<tr data-status=[^>]*>(.*?)</tr>", index, re.S)
    assert len(rows) == 3
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
    first = [re.sub(r"<[^>]+>", "", c) for c in cells[0]]
    assert first[:5] == ["a", "synthetic", "quick", "2026-01-01 00:00:00+00:00", "complete"]  # wraps between date and time
    assert 'data-sort="2026-01-01T00:00:00+00:00" class="when" title="2026-01-01T00:00:00+00:00"' in rows[0]
    assert first[5:10] == ["48", "26", "2", "16", "4"]  # planned, ok, mismatch, skipped, error
    assert first[10] == "host-a" and "x86_64, 8 GiB" in first[11] and first[12] == "none"
    assert "torch:cpu 2.13.0+cpu" in first[13] and "Python 3.11.7" in first[13]


def test_index_opens_with_the_headline_speedups_of_each_suite(site: Path) -> None:
    index = pages(site)["index.html"]
    assert index.index('<h2 id="headline">Headline</h2>') < index.index("<h2>Runs</h2>")  # the answer first
    headline = index.split('<section class="headline"')[1].split("</section>")[0]
    text = " ".join("".join(parse(headline).text).split())
    assert "A speedup is baseline time / variant time of one case" in text  # says what the numbers are
    items = [" ".join(html.unescape(re.sub(r"<[^>]+>", "", li)).split()) for li in re.findall(r"<li>(.*?)</li>", headline, re.S)]
    # Runs a and b of synthetic and x of the hostile suite; torch and reference each.
    assert len(items) == 6 and {i.split(" (run ")[0] for i in items} == {"diagonalwise vs native, torch on cpu", "diagonalwise vs native, reference on cpu"}
    line = r"0\.6\d×–0\.6\d× across 6 cases \(inference and training\), median 0\.6\d×; per-case 95% CIs within 0\.\d\d×–0\.\d\d×\. All 6 slower than native\."
    assert all(re.search(line, i) for i in items), items
    assert any(f"(run b on host-b {XSS}):" in i for i in items)
    assert headline.index('href="suite-synthetic.html"') and '<a href="run-a.html">a</a>' in headline
    assert XSS not in headline and "&lt;script&gt;" in headline


def test_headline_counts_faster_slower_unclear_and_suites_without_comparisons(runs: dict[str, Path]) -> None:
    rows = pd.DataFrame({
        "speedup": [2.0, 0.5, 1.02, 0.9], "speedup_low": [1.5, 0.4, 0.95, None], "speedup_high": [2.5, 0.6, 1.07, None],
        "mode": ["inference", "inference", "training", "training"],
    })  # fmt: skip
    assert speedup_summary(rows, "native") == (
        "0.50×–2.00× across 4 cases (inference and training), median 0.96×; per-case 95% CIs within 0.40×–2.50×. "
        "1 slower than native, 1 faster than native, 1 within noise of no change, 1 without a CI."
    )
    assert speedup_summary(rows.iloc[[2]], "native") == "1.02× in 1 case (training), 95% CI 0.95×–1.07×. Within noise of no change."
    assert speedup_summary(rows.iloc[[3]], "native") == "0.90× in 1 case (training), no CI. Without a CI."
    loaded = load_runs([runs["a"]])
    frame = suite_frame(loaded)
    natives = frame[frame["variant"] == "native"]  # one variant: nothing compared
    [only] = headlines({"synthetic": (loaded, natives)}, {"synthetic": "s.html"}, {"a": "run-a.html"})
    assert only.lines == () and only.none == "no variant was timed beside its baseline; 14 timed cases on the suite page."
    [full] = headlines({"synthetic": (loaded, frame)}, {"synthetic": "s.html"}, {"a": "run-a.html"})
    assert [(h.compared, h.where, h.run, h.run_href, h.host) for h in full.lines] == [
        ("diagonalwise vs native", "torch on cpu", "a", "run-a.html", "host-a"),
        ("diagonalwise vs native", "reference on cpu", "a", "run-a.html", "host-a"),
    ]


def test_suite_table_shows_every_case_reasons_and_speedups(runs: dict[str, Path]) -> None:
    loaded = [r for r in load_runs([runs["a"]])]
    frame = suite_frame(loaded)
    assert len(frame) == 48 and list(frame["case_id"]) == [c for c in frame["case_id"]]
    table, constant = suite_table(frame, "t", False, {})
    assert constant == {"dtype": "float32", "layout": "nchw", "execution": "eager"}
    labels = [c.key for c in table.columns]
    assert labels[:3] == ["workload", "variant", "backend"] and "notes" in labels
    col = {k: i for i, k in enumerate(labels)}
    by_status: dict[str, list] = {}
    for row, status in zip(table.rows, table.row_status, strict=True):
        by_status.setdefault(status, []).append(row)
    assert {len(v) for v in by_status.values()} and sorted(by_status) == ["error", "mismatch", "ok", "skipped"]
    assert all("cuda" in r[col["notes"]].text for r in by_status["skipped"])
    assert all(r[col["notes"]].details.startswith("Traceback") for r in by_status["error"])
    assert all("exceeds" in r[col["notes"]].text for r in by_status["mismatch"])
    # diagonalwise: speedup = 1 / per-round ratio (~1 / 1.6), with its CI
    diag = frame[(frame.variant == "diagonalwise") & (frame.status == "ok")]
    assert (diag["speedup_source"] == "interleaved").all()
    assert diag["speedup"].astype(float).between(1 / 1.7, 1 / 1.5).all()
    assert ((1 / diag["ratio"] - diag["speedup"].astype(float)).abs() < 1e-12).all()
    assert (diag["speedup_low"].astype(float) <= diag["speedup"].astype(float)).all()
    texts = [r[col["speedup"]].text for r, s in zip(table.rows, table.row_status, strict=True) if s == "ok"]
    assert "baseline" in texts and any(re.fullmatch(r"0\.6\d× \[0\.\d\d–0\.\d\d\]", t) for t in texts)
    # unconverged medians are starred, and sort keys are numbers
    medians = [r[col["median"]] for r in by_status["ok"]]
    assert any(m.text.endswith("*") for m in medians) and all(float(m.sort) > 0 for m in medians)


def test_suite_plots_cover_speedups_frameworks_modes_and_roofline(runs: dict[str, Path]) -> None:
    frame = suite_frame(load_runs([runs["a"]]))
    plots = suite_plots(frame, "plot-1")
    ids = [p.id for p in plots]
    assert ids == [
        "plot-1-speedup-1", "plot-1-speedup-2", "plot-1-frameworks-1", "plot-1-frameworks-2",
        "plot-1-modes-1", "plot-1-roofline-1",
    ]  # fmt: skip
    specs = {p.id: json.loads(p.spec) for p in plots}
    speed = specs["plot-1-speedup-1"]
    assert speed["layout"]["yaxis"]["type"] == "log"
    assert [t["name"] for t in speed["data"]] == ["diagonalwise · inference", "diagonalwise · training"]
    trace = speed["data"][0]
    assert trace["x"] == ["dw_a", esc(XSS), "dw_c"]  # planned order, broken (no speedup) left out
    for y, plus, minus in zip(trace["y"], trace["error_y"]["array"], trace["error_y"]["arrayminus"], strict=True):
        assert 0.55 < y < 0.7 and plus >= 0 and minus >= 0
    assert all("diagonalwise · torch · cpu · inference" in h for h in trace["hovertext"])
    fw = specs["plot-1-frameworks-1"]
    assert [t["name"] for t in fw["data"]] == ["torch (eager)", "reference (eager)"]
    modes = specs["plot-1-modes-1"]
    point = modes["data"][0]
    assert all(y > x for x, y in zip(point["x"], point["y"], strict=True))  # training is slower here
    roof = specs["plot-1-roofline-1"]
    points = [t for t in roof["data"] if t["mode"] == "markers"]
    assert all(x > 0 for t in points for x in t["x"])
    assert sum(len(t["x"]) for t in points) == int((frame.status == "ok").sum())
    assert not any(t["name"].startswith("roof") for t in points)


def log_axes(spec: dict) -> list[dict]:
    return [v for k, v in spec["layout"].items() if k.startswith(("xaxis", "yaxis")) and v.get("type") == "log"]


def test_log_axes_label_readable_values_never_small_digits(runs: dict[str, Path], site: Path) -> None:
    """Plotly's own log ticks label 0.2 and 0.5 as a small "2" and "5" (dtick D1/D2);
    every log axis of the report has explicit ticks whose text is the value itself."""
    specs = [json.loads(p.spec) for p in suite_plots(suite_frame(load_runs([runs["a"]])), "p")]
    specs += read_json_specs(pages(site)["compare.html"])
    axes = [a for spec in specs for a in log_axes(spec)]
    assert len(axes) == 9  # speedup x2, frameworks x2, modes x and y, roofline x and y, compare
    for axis in axes:
        assert axis["tickmode"] == "array" and "dtick" not in axis
        assert len(axis["tickvals"]) == len(axis["ticktext"]) >= 3
        for value, label in zip(axis["tickvals"], axis["ticktext"], strict=True):
            assert label == tick_text(value) and float(label.replace(",", "")) == pytest.approx(value, rel=1e-6)
        assert not set(axis["minor"]["tickvals"]) & set(axis["tickvals"])  # minor grid lines carry no label
    speedup_ticks = dict(zip(axes[0]["ticktext"], axes[0]["tickvals"], strict=True))
    assert {"0.6", "0.7", "1"} <= set(speedup_ticks) and "5" not in speedup_ticks and "2" not in speedup_ticks


@pytest.mark.parametrize(
    ("values", "labels"),
    [
        ([0.2, 10], ["0.2", "0.5", "1", "2", "5", "10"]),  # about two decades: 1-2-5
        ([0.012, 50], ["0.1", "1", "10"]),  # several: decades only
        ([0.52, 1.0, 0.7], ["0.6", "0.7", "0.8", "0.9", "1"]),  # under a decade: even steps
        ([3, 900], ["5", "10", "20", "50", "100", "200", "500"]),  # decades would label only 10 and 100
        ([3, 2500], ["10", "100", "1,000"]),
        ([1e-3, 1e7], ["0.01", "1", "100", "10,000", "1e6"]),  # ten decades: every second one
    ],
)
def test_log_axis_picks_the_coarsest_readable_ticks(values: list[float], labels: list[str]) -> None:
    axis = log_axis([None, -1, *values])
    shown = [t for v, t in zip(axis["tickvals"], axis["ticktext"], strict=True) if min(values) <= v <= max(values)]
    assert shown == labels
    assert log_axis([None]) == {"type": "log"}
    assert [tick_text(v) for v in (0.5, 0.05, 1e-4, 2e-5, 12345.6, 3e6, 0.1 * 3)] == ["0.5", "0.05", "0.0001", "2e-5", "12,345.6", "3e6", "0.3"]


def test_roofline_draws_the_measured_roof_of_each_device(runs: dict[str, Path]) -> None:
    loaded = load_runs([runs["a"]])
    peaks = run_peaks(loaded)
    assert peaks == {("a", "torch", "cpu", "float32", "2"): (50e9, 10e9)}
    plot = [p for p in suite_plots(suite_frame(loaded), "p", peaks) if p.id == "p-roofline-1"][0]
    roofs = [t for t in json.loads(plot.spec)["data"] if t["mode"] == "lines"]
    assert [t["name"] for t in roofs] == ["roof: torch cpu float32 2 thr"]  # reference measured no peaks
    xs, ys = roofs[0]["x"], roofs[0]["y"]
    assert ys == pytest.approx([min(50.0, x * 10.0) for x in xs])  # GFLOP/s: bandwidth slope, then the roof
    assert xs[1] == pytest.approx(5.0) and max(ys) == pytest.approx(50.0)  # the ridge: 50 GFLOP/s at 5 FLOP/byte
    assert "Dashed: the roof" in plot.caption


def test_frameworks_side_by_side_match_cases_across_eager_and_compiled(runs: dict[str, Path]) -> None:
    frame = suite_frame(load_runs([runs["a"]]))
    frame.loc[frame.backend == "reference", "execution"] = "compiled"
    plots = [p for p in suite_plots(frame, "p") if "frameworks" in p.id]
    names = [[t["name"] for t in json.loads(p.spec)["data"]] for p in plots]
    assert names == [["torch (eager)", "reference (compiled)"]] * 2
    # a backend that ran both gets a trace for each
    extra = frame[frame.backend == "torch"].assign(execution="compiled")
    both = pd.concat([frame, extra], ignore_index=True)
    plot = [p for p in suite_plots(both, "p") if p.id == "p-frameworks-1"][0]
    assert [t["name"] for t in json.loads(plot.spec)["data"]] == ["torch · eager", "reference · compiled", "torch · compiled"]


def test_plots_of_a_suite_without_timed_cases_are_absent() -> None:
    empty = pd.DataFrame(columns=["status", "speedup", "median", "backend", "device", "mode", "flops", "bytes"])
    assert suite_plots(empty) == []


def test_run_page_has_environment_options_and_raw_data(site: Path, runs: dict[str, Path]) -> None:
    page = pages(site)["run-a.html"]
    for fact in ("hostname", "host-a", "torch:cpu", "environment.num_threads", "timing.min_samples", "Suite file as run"):
        assert fact in page
    data = site / "data" / "a"
    assert sorted(p.name for p in data.iterdir()) == ["cases.csv", "cases.parquet", "run.json", "samples.csv", "samples.parquet"]
    for name in ("cases.parquet", "samples.parquet", "run.json"):
        assert (data / name).read_bytes() == (runs["a"] / name).read_bytes()
        assert f'href="data/a/{name}"' in page
    csv = pd.read_csv(data / "cases.csv")
    assert len(csv) == 48 and list(csv.columns) == list(pd.read_parquet(runs["a"] / "cases.parquet").columns)
    assert len(pd.read_csv(data / "samples.csv")) == len(pd.read_parquet(runs["a"] / "samples.parquet"))


def test_comparison_page_has_verdicts_environment_diff_and_forest_plot(site: Path) -> None:
    page = pages(site)["compare.html"]
    text = "".join(parse(page).text)
    assert re.search(r"\b26 slower\b", text) and re.search(r"\b0 faster\b", text)
    assert "hostname" in text and f"host-b {XSS}" in text
    verdicts = re.findall(r'<tr data-status="([a-z]+)">', page)
    assert verdicts[0] == "slower" and set(verdicts) == {"slower", "same"}
    specs = read_json_specs(page)
    assert len(specs) == 1 and specs[0]["data"][0]["name"] == "slower"
    assert all(1.2 < x < 1.4 for x in specs[0]["data"][0]["x"])


def test_slugs_are_safe_unique_and_stable() -> None:
    taken: set[str] = set()
    assert slugify("depthwise", taken) == "depthwise"
    assert slugify("depthwise", taken) == "depthwise-2"
    odd = slugify(XSS, taken)
    assert re.fullmatch(r"[a-z0-9-]+", odd) and odd == slugify(XSS, set())
    assert slugify("Depthwise", taken) != slugify("depthwise!", taken)


# --------------------------------------------------------------------------- errors, CLI
def test_output_folder_that_is_not_a_report_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ReportError, match="not a convbench report"):
        render_site([runs["a"]], tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_rerendering_replaces_the_previous_report(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "site"
    render_site([runs["a"], runs["x"]], out)
    assert (out / "run-x.html").exists() and (out / MARKER).exists()
    render_site([runs["a"]], out)
    assert not (out / "run-x.html").exists() and not (out / "data" / "x").exists()


def test_cli_renders_and_reports_bad_input_with_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = run_cli("report", str(runs["a"]), str(runs["b"]), "-o", str(out), "--compare", str(runs["a"]), str(runs["b"]))
    assert proc.returncode == 0, proc.stderr
    assert (out / "compare.html").exists() and "pages written" in proc.stdout
    missing = run_cli("report", str(tmp_path / "nope"), "-o", str(tmp_path / "o"))
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr and "Traceback" not in missing.stderr
    none = run_cli("report", "-o", str(tmp_path / "o"))
    assert none.returncode == 2 and "no run to report" in none.stderr
    other_suite = make_run(tmp_path / "other", suite="other", failures=False, workloads=[("dw_z", 8, 8)])
    disjoint = run_cli("report", "-o", str(tmp_path / "o"), "--compare", str(runs["x"]), str(other_suite))
    assert disjoint.returncode == 2 and "no case in common" in disjoint.stderr
    bad = run_cli("report", str(runs["a"]), "-o", str(tmp_path / "o"), "--threshold", "lots")
    assert bad.returncode == 2 and "--threshold" in bad.stderr


def test_a_real_run_renders(tmp_path: Path) -> None:
    """The smoke suite through `convbench run` (reference backend only: seconds), then a report."""
    run = tmp_path / "run"
    proc = run_cli("run", str(ROOT / "suites" / "smoke.yaml"), "--filter", "backend == 'reference'", "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "site"
    proc = run_cli("report", str(run), "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    suite = (out / "suite-smoke.html").read_text()
    cases = pd.read_parquet(run / "cases.parquet")
    assert (cases.status == "ok").any()
    assert len(re.findall(r'<tr data-status="[a-z]+">', suite)) == len(cases)
    assert [s["data"][0]["type"] for s in read_json_specs(suite)][:1] == ["bar"]


def test_a_run_with_no_finished_case_renders_and_says_so(runs: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "runs" / "empty"
    empty.mkdir(parents=True)
    (empty / "run.json").write_text((runs["a"] / "run.json").read_text())
    render_site([empty], tmp_path / "site")
    suite = (tmp_path / "site" / "suite-synthetic.html").read_text()
    assert "No case has finished." in suite and "No timed case to plot." in suite
    assert 'data-status="' not in suite.split("<tbody>")[1].split("</tbody>")[0]
    assert "48 planned cases have no result" in (tmp_path / "site" / "index.html").read_text()


def test_runs_sharing_a_folder_name_stay_apart(tmp_path: Path) -> None:
    first = make_run(tmp_path / "m1" / "run", host="one", failures=False)
    second = make_run(tmp_path / "m2" / "run", host="two", failures=False, started="2026-01-02T00:00:00+00:00")
    loaded = load_runs([tmp_path])
    assert [(r.path, r.name) for r in loaded] == [(first, "m1/run"), (second, "m2/run")]
    assert len({r.slug for r in loaded}) == 2
    render_site([tmp_path], tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert index.split('<table id="runs"')[1].count('href="run-') == 2 and "m1/run" in index and "m2/run" in index
    assert set(suite_frame(loaded)["run"]) == {"m1/run", "m2/run"}


def test_a_suite_page_says_which_plots_are_absent_and_why(runs: dict[str, Path], tmp_path: Path) -> None:
    frame = suite_frame(load_runs([runs["a"]]))
    torch_only = frame[frame.backend != "reference"]
    plots = suite_plots(torch_only, "p")
    assert absent_plots(torch_only, plots) == ["Frameworks side by side: only torch timed these cases."]
    inference = torch_only[torch_only["mode"] == "inference"]
    assert absent_plots(inference, suite_plots(inference, "p")) == [
        "Frameworks side by side: only torch timed these cases.",
        "Training against inference: no case was timed in both modes.",
    ]
    assert absent_plots(frame, suite_plots(frame, "p")) == []


# --------------------------------------------------------------------------- contention
@pytest.fixture(scope="module")
def contended(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two runs with contention telemetry and canaries (NEW and its canary 30% slower),
    and their site with the comparison."""
    root = tmp_path_factory.mktemp("contended")
    c = make_run(root / "runs" / "c", contention=True)
    d = make_run(root / "runs" / "d", contention=True, slowdown=1.3, seed=1, started="2026-01-02T00:00:00+00:00")
    render_site([root / "runs"], root / "site", compare=([c], [d]))
    return {"c": c, "d": d, "site": root / "site"}


def test_case_tables_show_other_cpu_a_contended_badge_and_the_all_cores_mark(contended: dict[str, Path]) -> None:
    frame = suite_frame(load_runs([contended["c"]]))
    table, _ = suite_table(frame, "t", False, {})
    col = {c.key: i for i, c in enumerate(table.columns)}
    assert table.columns[col["foreign_cpu"]].label == "other CPU" and table.legend == [ALL_CORES_LEGEND]
    rows = [r for r, s in zip(table.rows, table.row_status, strict=True) if s == "ok"]
    badged = [r for r in rows if r[col["status"]].badges]
    assert len(badged) == 4 and all(r[col["workload"]].text == "dw_a" and r[col["backend"]].text == "torch" for r in badged)
    assert {(b.text, b.cls, b.title) for r in badged for b in r[col["status"]].badges} == {("contended", "contended", CONTENTION)}
    assert {r[col["foreign_cpu"]].text for r in badged} == {f"0.82 {ALL_CORES_MARK}"} and badged[0][col["foreign_cpu"]].sort == "0.82"
    assert "the speed probe took 1.31x (compute) and 1.02x (memory) the machine's reference time" in badged[0][col["foreign_cpu"]].title
    assert {r[col["foreign_cpu"]].text for r in rows if not r[col["status"]].badges} == {f"0.05 {ALL_CORES_MARK}"}
    page = (contended["site"] / "suite-synthetic.html").read_text()
    assert '<button type="button">other CPU</button>' in page and ALL_CORES_LEGEND in page
    badge = re.findall(r'<span class="badge contended" title="([^"]*)">contended</span>', page)
    assert len(badge) == 8 and set(badge) == {CONTENTION.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")}
    assert XSS_IMG not in page


def test_runs_without_telemetry_render_without_it(runs: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "runs" / "old"
    old.mkdir(parents=True)
    for name in ("run.json", "samples.parquet"):
        (old / name).write_bytes((runs["a"] / name).read_bytes())
    telemetry = ["contended", "contention", "foreign_cpu", "steal", "cpu_pressure", "dropped", "quiet_wait", "threads_all_cores", "side"]
    pd.read_parquet(runs["a"] / "cases.parquet").drop(columns=telemetry).to_parquet(old / "cases.parquet")
    render_site([old], tmp_path / "site")
    html = "".join(p.read_text() for p in (tmp_path / "site").glob("*.html"))
    assert "other CPU" not in html and "badge contended" not in html and ALL_CORES_MARK not in html
    assert "<h2>Contention</h2>" not in html and ">canary</button>" not in html


def test_index_and_run_page_show_contended_runs_and_canary_points(contended: dict[str, Path], site: Path) -> None:
    index = (contended["site"] / "index.html").read_text()
    assert index.count('<span class="badge contended" title="4 of 26 timed cases were contended') == 2
    assert '<button type="button">canary</button>' in index and ">1 ms · 1.04 ms · 1.01 ms<" in index
    assert "middle 1.04 ms (contended)" in index
    headline = index.split('<section class="headline"')[1].split("</section>")[0]
    assert headline.count('<span class="badge contended" title="2 of these cases were contended') == 2  # torch of runs c and d
    assert "badge contended" not in pages(site)["index.html"]  # runs without contended cases: no badge
    run = (contended["site"] / "run-c.html").read_text()
    assert re.search(r"<h1>Run c <span class=\"badge contended\"[^>]*>4 contended</span></h1>", run)
    assert "<h2>Contention</h2>" in run and "4 of 26 timed cases were contended" in run
    canary = run.split('<table id="canary-c"')[1].split("</table>")[0]
    assert [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<tr><td[^>]*>(.*?)</td>", canary)] == ["start", "middle", "end"]
    assert 'class="warning"' in canary and ">0.82<" in canary and ">50%<" in canary and XSS_IMG not in run


def test_comparison_page_styles_inconclusive_and_shows_the_suite_verdict_and_canary(contended: dict[str, Path]) -> None:
    assert list(VERDICT_COLORS) == list(VERDICTS)
    css = (contended["site"] / "static" / "report.css").read_text()
    assert all(f".verdict-{v}" in css for v in VERDICTS) and ".badge.contended" in css
    page = (contended["site"] / "compare.html").read_text()
    text = " ".join("".join(parse(page).text).split())
    assert re.search(r"\b26 inconclusive\b", text)
    assert set(re.findall(r'<tr data-status="([a-z]+)">', page)) == {"inconclusive", "same"}
    assert page.count('<td data-sort="inconclusive" class="verdict verdict-inconclusive">inconclusive') == 26
    assert page.count(">contended: BASE and NEW</span>") == 4
    assert '<p class="suite-verdict">Suite verdict (pooled over the tested cases): <span class="verdict verdict-inconclusive">inconclusive</span>' in page
    assert "ran the canary 1.30x slower" in text and "Canary: NEW / BASE 1.300 (BASE 1.01 ms, NEW 1.31 ms)" in text
    spec = read_json_specs(page)[0]
    assert [t["name"] for t in spec["data"]] == ["inconclusive"] and spec["data"][0]["marker"]["color"] == VERDICT_COLORS["inconclusive"]
