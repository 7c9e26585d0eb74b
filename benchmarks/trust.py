"""Do convbench's numbers hold on a shared machine? A benchmark (not a test).

Four parts, each recorded in benchmarks/trust-LABEL.json and tabulated in
benchmarks/trust.md (every label found, side by side):

a  stability: ``suites/depthwise.yaml --preset quick``, RUNS runs, quiet. Per case the
   diagonalwise/native ratio (per-round, interleaved) across the runs: max/min, and whether
   any run flagged the case contended. Goal: every unflagged case within 5%.
b  the same with 1, then 2 busy neighbour processes (a busy loop, BUSY_LOOP) that this
   script starts and stops. Goal: every case holds 5% or is flagged; none is silently
   (unflagged) more than 10% off the quiet runs' median ratio.
c  A/A under changing neighbour load: PAIRS pairs of runs of identical code, each side
   with its own number of neighbours (0-2) -> ``convbench compare`` exit codes; PAIRS
   ``convbench ab`` runs of one environment against itself while the neighbour count
   switches every 4 s. Goal: compare exits 1 in at most 1 of 10, ab in 0 of 10.
d  power: a real 10% slowdown planted by tests/plugins/convbench_slowtorch (its step
   burns 10% of its own time; BASE runs the same plugin burning nothing).
   ``convbench ab`` POWER times quiet and POWER times with one neighbour; ``convbench
   compare`` of POWER pairs of quiet runs. Goal: detected (exit 1) in at least 19 of 20.

(c) and (d) time benchmarks/trust-gate.yaml; ``ab`` runs with its default ``--pairs``.
``--no-compare`` leaves out the ``compare`` runs of (c) and (d). Nothing else may run on
the machine meanwhile: the script records the load average before each part.

    .venv/bin/python benchmarks/trust.py [--label after] [--parts abcd] [--runs 3] [--pairs 10] [--power 20]
    # another convbench (e.g. the code before a change, in a git worktree), same venv:
    .venv/bin/python benchmarks/trust.py --label before --source /tmp/before --parts abcd
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "plugins"))
from convbench_slowtorch import slow_environment  # noqa: E402

GATE = ROOT / "benchmarks" / "trust-gate.yaml"
#: A neighbour: one core kept busy until its parent (this script) is gone.
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass"
#: Neighbour counts (BASE, NEW) of the A/A pairs: every change of load, and no change.
AA_LOADS = [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1), (0, 0), (1, 1), (2, 2), (0, 1)]


class Bench:
    def __init__(self, source: Path, work: Path) -> None:
        self.source = source
        self.work = work
        self.env = {**os.environ}
        if source != ROOT:  # another convbench: its sources first on the path
            self.env["PYTHONPATH"] = f"{source}:{source / 'backends'}"
        self.log: list[dict[str, Any]] = []

    def convbench(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, float, str]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "convbench.cli", *args], cwd=self.source, env={**self.env, **(env or {})},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.monotonic() - t0
        self.log.append({"args": list(args), "rc": proc.returncode, "seconds": round(seconds, 1)})
        if proc.returncode not in (0, 1, 3):
            print(proc.stdout[-2000:], proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode, seconds, proc.stdout

    def out(self, *parts: str) -> Path:
        path = self.work.joinpath(*parts)
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@contextlib.contextmanager
def neighbours(count: int) -> Iterator[None]:
    """``count`` busy-loop processes beside whatever runs in the block."""
    # a busy loop that ends when this script does, however it ends (a killed benchmark
    # once left its neighbours running under the next measurement)
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@contextlib.contextmanager
def changing_neighbours(a: int, b: int, period: float = 4.0) -> Iterator[None]:
    """Neighbours switching between ``a`` and ``b`` processes every ``period`` seconds."""
    stop = threading.Event()

    def loop() -> None:
        counts = [a, b]
        i = 0
        while not stop.is_set():
            with neighbours(counts[i % 2]):
                stop.wait(period)
            i += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def load_average() -> float:
    return os.getloadavg()[0]


def truthy(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value) and bool(value)


# --------------------------------------------------------------------------- a and b
def depthwise_ratios(run: Path) -> dict[str, dict[str, Any]]:
    """Per case (workload, mode, batch): the diagonalwise/native per-round ratio, whether
    either variant was flagged contended, and the mean foreign CPU while timed."""
    cases = pd.read_parquet(run / "cases.parquet")
    cases = cases[cases["device"] == "cpu"]
    samples = pd.read_parquet(run / "samples.parquet", columns=["case_id", "ratio", "kept", "process"])
    rounds = samples[samples["ratio"].notna() & (samples["kept"] != False)]  # noqa: E712 (a nullable column)
    out = {}
    for (workload, mode, batch), g in cases.groupby(["workload", "mode", "batch"]):
        diag = g[g["variant"] == "diagonalwise"]
        if diag.empty or diag.iloc[0]["status"] != "ok":
            continue
        flagged = any(truthy(v) for v in g.get("contended", pd.Series(dtype=object)))
        foreign = [float(v) for v in g.get("foreign_cpu", pd.Series(dtype=float)) if v is not None and v == v]
        speed = {c: float(diag.iloc[0][c]) for c in ("speed_compute", "speed_memory") if c in diag and pd.notna(diag.iloc[0][c])}
        out[f"{workload} {mode} b{batch}"] = {
            "ratio": float(diag.iloc[0]["ratio"]), "contended": flagged,
            "foreign_cpu": max(foreign) if foreign else None, **speed,
            "pass_ratios": [float(v) for v in rounds[rounds["case_id"] == diag.iloc[0]["case_id"]].groupby("process")["ratio"].median()],
            "inner": [int(v) for v in g["inner"].dropna()], "reason": next((r for r in g.get("contention", []) if isinstance(r, str)), None),
        }  # fmt: skip
    return out


def level_label(k: int) -> str:
    """The heading of (a)/(b)'s runs with ``k`` neighbours."""
    return "quiet" if k == 0 else f"{k} neighbour{'s' if k > 1 else ''}"


def part_ab(bench: Bench, runs: int, levels: list[int]) -> dict[str, Any]:
    suite = str(bench.source / "suites" / "depthwise.yaml")
    result: dict[str, Any] = {}
    for k in levels:
        label = level_label(k)
        entries = []
        for i in range(runs):
            out = bench.out("depthwise", f"n{k}-{i}")
            before = load_average()
            with neighbours(k):
                rc, seconds, _ = bench.convbench("run", suite, "--preset", "quick", "--out", str(out))
            entries.append({"rc": rc, "seconds": seconds, "load_before": before, "cases": depthwise_ratios(out) if rc == 0 else {}})
            print(f"[{label}] run {i + 1}: rc {rc}, {seconds:.0f} s", file=sys.stderr)
        result[label] = entries
    return result


def stability_table(part: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Markdown rows of (a)/(b) and their summary numbers."""
    quiet = part.get("quiet") or []
    reference = {}
    for case in quiet[0]["cases"] if quiet else []:
        values = [e["cases"][case]["ratio"] for e in quiet if case in e["cases"]]
        reference[case] = statistics.median(values)
    lines, summary = [], {}
    for label, entries in part.items():
        cases = sorted({c for e in entries for c in e["cases"]})
        held = flagged = silent = spread_all = 0
        factors = []
        lines += [f"#### {label}", "", "| case | ratios (diagonalwise / native) per run | max/min | contended in | verdict |", "|---|---|--:|---|---|"]
        for case in cases:
            got = [e["cases"].get(case) for e in entries]
            ratios = [g["ratio"] for g in got if g]
            flags = [i + 1 for i, g in enumerate(got) if g and g["contended"]]
            factor = max(ratios) / min(ratios) if ratios else float("nan")
            factors.append(factor)
            ref = reference.get(case)
            off = [g["ratio"] / ref for g in got if g and not g["contended"] and ref and abs(g["ratio"] / ref - 1) > 0.10]
            unflagged = [g["ratio"] for g in got if g and not g["contended"]]
            uf = max(unflagged) / min(unflagged) if len(unflagged) >= 2 else 1.0
            if flags:
                flagged += 1
                verdict = "flagged"
            elif factor <= 1.05:
                held += 1
                verdict = "holds 5%"
            else:
                spread_all += 1
                verdict = "**off, unflagged**"
            if off:
                silent += 1
                verdict += f"; **silently off {max(abs(x - 1) for x in off):.0%} vs quiet**"
            shown = ", ".join(f"{g['ratio']:.3f}{'!' if g['contended'] else ''}" if g else "-" for g in got)
            lines.append(f"| {case} | {shown} | {factor:.3f} (unflagged {uf:.3f}) | {', '.join(map(str, flags)) or '-'} | {verdict} |")
        # within one run: how far apart its passes put the ratio (what merging had to pool)
        within = [max(g["pass_ratios"]) / min(g["pass_ratios"]) for e in entries for g in e["cases"].values() if len(g.get("pass_ratios") or []) >= 2]
        med = statistics.median(factors) if factors else float("nan")
        worst = max(factors) if factors else float("nan")
        seconds = [e["seconds"] for e in entries]
        loads = [e["load_before"] for e in entries]
        summary[label] = {"cases": len(cases), "held": held, "flagged": flagged, "off_unflagged": spread_all, "silently_off_10pct": silent, "median_factor": med, "worst_factor": worst}
        lines += ["", f"{len(cases)} cases: {held} hold 5%, {flagged} flagged contended, {spread_all} off by more than 5% unflagged, "
                  f"{silent} silently (unflagged) more than 10% off the quiet median; max/min across runs: median {med:.3f}, worst {worst:.3f}. "
                  f"Runs took {', '.join(f'{s:.0f}' for s in seconds)} s; load average before each: {', '.join(f'{x:.2f}' for x in loads)}."
                  + (f" Within one run, max/min of a case's per-pass ratios: median {statistics.median(within):.3f}, worst {max(within):.3f} ({len(within)} case runs)." if within else ""), ""]  # fmt: skip
    return lines, summary


# --------------------------------------------------------------------------- c and d
def part_c(bench: Bench, pairs: int, with_ab: bool, with_compare: bool = True) -> dict[str, Any]:
    gate = str(GATE)
    compare, ab = [], []
    for i in range(pairs):
        kb, kn = AA_LOADS[i % len(AA_LOADS)]
        if with_compare:
            base, new = bench.out("aa", f"{i}-base"), bench.out("aa", f"{i}-new")
            with neighbours(kb):
                bench.convbench("run", gate, "--out", str(base))
            with neighbours(kn):
                bench.convbench("run", gate, "--out", str(new))
            rc, _, text = bench.convbench("compare", str(base), str(new), "--format", "json")
            compare.append({"loads": [kb, kn], "rc": rc, **_counts(text)})
            print(f"[A/A compare {i + 1}] loads {kb}/{kn}: exit {rc}", file=sys.stderr)
        if with_ab:
            out = bench.out("aa", f"{i}-ab")
            with changing_neighbours(kb, kn):
                rc, seconds, text = bench.convbench("ab", gate, "--base", sys.executable, "--new", sys.executable, "--out", str(out), "--format", "json")
            ab.append({"loads": [kb, kn], "rc": rc, "seconds": seconds, **_counts(text)})
            print(f"[A/A ab {i + 1}] loads {kb}<->{kn}: exit {rc}", file=sys.stderr)
    return {"compare": compare, "ab": ab}


def _counts(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return {}
    suite = doc.get("suite_verdict") or {}
    return {"counts": doc.get("counts"), "suite": suite.get("verdict"), "suite_ratio": suite.get("ratio"), "canary": (doc.get("canary") or {}).get("ratio")}


def part_d(bench: Bench, power: int, with_ab: bool, with_compare: bool = True, power_neighbour: int | None = None) -> dict[str, Any]:
    gate = str(GATE)
    envs = bench.work / "envs"
    plain = slow_environment(envs / "plain", sys.executable, fraction=0.0)
    slow = slow_environment(envs / "slow", sys.executable, fraction=0.10)
    result: dict[str, Any] = {"ab_quiet": [], "ab_neighbour": [], "compare_quiet": []}
    for label, k in (("ab_quiet", 0), ("ab_neighbour", 1)):
        if not with_ab:
            break
        for i in range(power if k == 0 or power_neighbour is None else power_neighbour):
            out = bench.out("power", f"{label}-{i}")
            with neighbours(k):
                rc, seconds, text = bench.convbench("ab", gate, "--base", str(plain), "--new", str(slow), "--out", str(out), "--format", "json")
            result[label].append({"rc": rc, "seconds": seconds, **_counts(text), "ratios": _ratios(text)})
            print(f"[power {label} {i + 1}] exit {rc}", file=sys.stderr)
    for i in range(power if with_compare else 0):
        base, new = bench.out("power", f"cmp-{i}-base"), bench.out("power", f"cmp-{i}-new")
        bench.convbench("run", gate, "--out", str(base), env={"CONVBENCH_PYTHON_TORCH": str(plain / "bin" / "python")})
        bench.convbench("run", gate, "--out", str(new), env={"CONVBENCH_PYTHON_TORCH": str(slow / "bin" / "python")})
        rc, _, text = bench.convbench("compare", str(base), str(new), "--format", "json")
        result["compare_quiet"].append({"rc": rc, **_counts(text), "ratios": _ratios(text)})
        print(f"[power compare {i + 1}] exit {rc}", file=sys.stderr)
    return result


def _ratios(text: str) -> list[float]:
    try:
        return [round(c["ratio"], 4) for c in json.loads(text)["cases"] if c.get("ratio")]
    except (json.JSONDecodeError, KeyError, TypeError):
        return []


def reanalyze(bench: Bench, rep: dict[str, Any], power: int, levels: list[int]) -> None:
    """Recompute (a)/(b)'s per-case numbers and every verdict of (c) and (d) from the run
    folders kept in the work folder (the measurements are not retaken): after a change to
    the verdict rules or to what is read from a run."""
    for k in levels:
        for i, entry in enumerate((rep.get("ab") or {}).get(level_label(k)) or []):
            folder = bench.work / "depthwise" / f"n{k}-{i}"
            if entry["rc"] == 0 and (folder / "cases.parquet").exists():
                entry["cases"] = depthwise_ratios(folder)
    c, d = rep.get("c") or {}, rep.get("d") or {}
    for i, entry in enumerate(c.get("compare") or []):
        rc, _, text = bench.convbench("compare", str(bench.work / "aa" / f"{i}-base"), str(bench.work / "aa" / f"{i}-new"), "--format", "json")
        entry.update(rc=rc, **_counts(text))
    for i, entry in enumerate(c.get("ab") or []):
        rc, _, text = bench.convbench("compare", str(bench.work / "aa" / f"{i}-ab"), "--format", "json")
        entry.update(rc=rc, **_counts(text))
    for label in ("ab_quiet", "ab_neighbour"):
        for i, entry in enumerate(d.get(label) or []):
            rc, _, text = bench.convbench("compare", str(bench.work / "power" / f"{label}-{i}"), "--format", "json")
            entry.update(rc=rc, **_counts(text), ratios=_ratios(text))
    for i, entry in enumerate(d.get("compare_quiet") or []):
        rc, _, text = bench.convbench("compare", str(bench.work / "power" / f"cmp-{i}-base"), str(bench.work / "power" / f"cmp-{i}-new"), "--format", "json")
        entry.update(rc=rc, **_counts(text), ratios=_ratios(text))
    rep["meta"]["reanalyzed"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")


def exits_line(entries: list[dict[str, Any]]) -> str:
    codes = [e["rc"] for e in entries]
    tally = ", ".join(f"exit {c}: {codes.count(c)}" for c in sorted(set(codes)))
    return f"{len(codes)} runs; {tally}"


# --------------------------------------------------------------------------- report
def render(reports: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Trust: do convbench's numbers hold on a shared machine?", "",
        "Written by `benchmarks/trust.py` (its docstring says what each part does and the goals).", "",
    ]  # fmt: skip
    for label, rep in reports.items():
        meta = rep["meta"]
        lines += [f"## {label}", "", f"- convbench: {meta['source_rev']} ({meta['source']}); machine: {meta['machine']}", f"- command: `{meta['command']}`", f"- started {meta['started']}, took {meta['seconds'] / 60:.0f} min"]
        lines += [f"- recomputed from the kept run folders on {meta['reanalyzed']} (`benchmarks/trust.py --label {label} --reanalyze`)"] if meta.get("reanalyzed") else []
        lines += [f"- note: {meta['note']}"] if meta.get("note") else []
        lines += [""]
        if "ab" in rep:
            lines += ["### (a) and (b): ratio stability across runs, quiet and with busy neighbours", "", "`!`: the run flagged the case contended.", ""]
            table, summary = stability_table(rep["ab"])
            rep["summary_ab"] = summary
            lines += table
        if "c" in rep:
            c = rep["c"]
            lines += ["### (c) A/A: identical code under changing neighbour load", ""]
            if c["compare"]:
                lines += [f"- `compare` (one run per side, neighbours per side {[e['loads'] for e in c['compare']]}): {exits_line(c['compare'])}"]
                lines += [f"  - suite verdicts: {[e.get('suite') for e in c['compare']]}; canary NEW/BASE: {[round(e['canary'], 3) if e.get('canary') else None for e in c['compare']]}"]
                lines += [f"  - slower cases per pair: {[(e.get('counts') or {}).get('slower') for e in c['compare']]}"]
            if c["ab"]:
                lines += [f"- `ab` (one environment against itself, neighbours switching every 4 s): {exits_line(c['ab'])}"]
                lines += [f"  - suite verdicts: {[e.get('suite') for e in c['ab']]}; slower cases per run: {[(e.get('counts') or {}).get('slower') for e in c['ab']]}; "
                          f"inconclusive cases per run: {[(e.get('counts') or {}).get('inconclusive') for e in c['ab']]}; seconds per run: {[round(e.get('seconds') or 0) for e in c['ab']]}"]
            lines += [""]
        if "d" in rep:
            d = rep["d"]
            lines += ["### (d) power: a planted 10% slowdown (exit 1 = detected)", ""]
            for key, title in (("ab_quiet", "`ab`, quiet"), ("ab_neighbour", "`ab`, one busy neighbour"), ("compare_quiet", "`compare`, quiet runs")):
                if d.get(key):
                    ratios = [r for e in d[key] for r in e.get("ratios") or []]
                    med = statistics.median(ratios) if ratios else float("nan")
                    lines += [f"- {title}: {exits_line(d[key])}; measured NEW/BASE per case: median {med:.3f}; suite verdicts {[e.get('suite') for e in d[key]]}"]
            lines += [""]
    return "\n".join(lines) + "\n"


def git_rev(path: Path) -> str:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="after")
    parser.add_argument("--source", default=str(ROOT), help="the convbench checkout to measure (default this one)")
    parser.add_argument("--parts", default="abcd")
    parser.add_argument("--levels", default="0,1,2", help="neighbour counts of (a)/(b)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--power", type=int, default=20)
    parser.add_argument("--power-neighbour", type=int, help="runs of (d)'s ab with a neighbour (default --power)")
    parser.add_argument("--work", default="/tmp/convbench-trust")
    parser.add_argument("--no-ab", action="store_true", help="the measured convbench has no `ab` (before it existed)")
    parser.add_argument("--no-compare", action="store_true", help="(c) and (d) without their `compare` runs (only `ab`)")
    parser.add_argument("--note", help="what the record cannot say itself (the machine's state, what else ran), shown under its label")
    parser.add_argument("--annotate", action="store_true", help="set --note on LABEL's existing record and rewrite trust.md (nothing is run)")
    parser.add_argument("--reanalyze", action="store_true", help="recompute (a)/(b)'s cases and (c)/(d)'s verdicts of LABEL's record from its kept run folders")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if args.reanalyze or args.annotate:
        out = ROOT / "benchmarks" / f"trust-{args.label}.json"
        rep = json.loads(out.read_text())
        if args.annotate:
            rep["meta"]["note"] = args.note
        else:
            reanalyze(Bench(Path(rep["meta"]["source"]), Path(args.work) / args.label), rep, args.power, levels)
        out.write_text(json.dumps(rep, indent=1, default=str))
        (ROOT / "benchmarks" / "trust.md").write_text(render({p.stem.removeprefix("trust-"): json.loads(p.read_text()) for p in sorted((ROOT / "benchmarks").glob("trust-*.json"))}))
        return 0
    source = Path(args.source).resolve()
    bench = Bench(source, Path(args.work) / args.label)
    rep: dict[str, Any] = {"meta": {
        "label": args.label, "source": str(source), "source_rev": git_rev(source), "machine": f"{platform.node()}, {os.cpu_count()} CPUs",
        "command": " ".join(["benchmarks/trust.py", *sys.argv[1:]]), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **({"note": args.note} if args.note else {}),
    }}  # fmt: skip
    t0 = time.monotonic()
    if "a" in args.parts or "b" in args.parts:
        rep["ab"] = part_ab(bench, args.runs, levels)
    if "c" in args.parts:
        rep["c"] = part_c(bench, args.pairs, not args.no_ab, not args.no_compare)
    if "d" in args.parts:
        rep["d"] = part_d(bench, args.power, not args.no_ab, not args.no_compare, args.power_neighbour)
    rep["meta"]["seconds"] = time.monotonic() - t0
    rep["log"] = bench.log
    out = ROOT / "benchmarks" / f"trust-{args.label}.json"
    out.write_text(json.dumps(rep, indent=1, default=str))
    reports = {}
    for label in ("before", "after"):
        path = ROOT / "benchmarks" / f"trust-{label}.json"
        if path.exists():
            reports[label] = json.loads(path.read_text())
    for path in sorted((ROOT / "benchmarks").glob("trust-*.json")):
        reports.setdefault(path.stem.removeprefix("trust-"), json.loads(path.read_text()))
    (ROOT / "benchmarks" / "trust.md").write_text(render(reports))
    print(f"wrote {out} and benchmarks/trust.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
