"""Benchmark of the regression gate (not a test): run suites/smoke.yaml twice on this
machine with the CLI, compare the runs, and record what `convbench compare` says.

Nothing changed between the runs, so every `slower` is a false alarm. Repeats the pair
``--pairs`` times and tallies the verdicts with and without the run-to-run noise estimate
(docs/compare.md). Then, since all 2 x pairs runs are of the same code, compares every
split of them into BASE and NEW with k = 1, 2 and 3 runs per side (merged: the two-stage
bootstrap), to show how repetition buys a trustworthy gate on a noisy machine. Writes
benchmarks/compare_smoke_twice.md.

    .venv/bin/python benchmarks/compare_smoke_twice.py [--pairs 3] [--out results/bench-compare] [--reuse]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONVBENCH = [sys.executable, "-m", "convbench.cli"]
#: Everything after this line of the report is hand-written and kept when it is rewritten.
NOTES = "<!-- notes: kept when the script rewrites this file -->"


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CONVBENCH, *args], cwd=ROOT, capture_output=True, text=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", default="results/bench-compare")
    parser.add_argument("--report", default=str(ROOT / "benchmarks" / "compare_smoke_twice.md"))
    parser.add_argument("--reuse", action="store_true", help="reuse the runs already in --out")
    parser.add_argument("--suite", default="suites/smoke.yaml")
    args = parser.parse_args()
    out = ROOT / args.out
    if not args.reuse:
        shutil.rmtree(out, ignore_errors=True)
    tallies = []
    first_md = first_cmd = ""
    for k in range(args.pairs):
        runs = []
        for side in ("a", "b"):
            run = out / f"pair{k}-{side}"
            runs.append(run)
            if args.reuse and (run / "run.json").exists():
                continue
            t0 = time.perf_counter()
            proc = sh("run", args.suite, "--out", str(run))
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            print(f"ran {run.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rel = [str(r.relative_to(ROOT)) for r in runs]
        row = {"pair": k}
        for label, extra in (("run noise", []), ("no run noise", ["--no-run-noise"])):
            proc = sh("compare", *rel, "--format", "json", *extra)
            doc = json.loads(proc.stdout)
            row[label] = {"exit": proc.returncode, **doc["counts"], "untested": sum(str(c["reason"]).startswith("not tested") for c in doc["cases"])}
            if label == "run noise":
                row["noise"] = doc["run_noise"]
        if k == 0:
            first_cmd = f"convbench compare {rel[0]} {rel[1]} --format md"
            first_md = sh("compare", *rel, "--format", "md").stdout
        tallies.append(row)
        print(json.dumps(row), file=sys.stderr)
    lines = [
        f"# Benchmark: {args.suite} twice, compared",
        "",
        f"Recorded by `.venv/bin/python benchmarks/compare_smoke_twice.py --suite {args.suite} --pairs {args.pairs}` "
        f"on {platform.node()} ({platform.machine()}, {platform.python_version()}), {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        f"Each pair is `convbench run {args.suite}` twice in a row, then `convbench compare FIRST SECOND`",
        "(threshold 5%, alpha 0.01). Nothing changed between the runs: every `slower` is a false alarm.",
        "",
        "| pair | exit code | slower | faster | same | not tested | run-to-run noise estimated | without the noise estimate: exit, slower, faster |",
        "|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in tallies:
        a, b = r["run noise"], r["no run noise"]
        noise = ", ".join(f"{g} ±{v:.0%}" for g, v in sorted((r["noise"] or {}).items())) or "-"
        lines.append(f"| {r['pair']} | {a['exit']} | {a['slower']} | {a['faster']} | {a['same']} | {a['untested']} | {noise} | {b['exit']}, {b['slower']}, {b['faster']} |")
    lines += ["", *splits(sorted(out.glob("pair*-*")))]
    lines += ["", "## The first pair, as a pull request would see it", "", f"    {first_cmd}", "", first_md]
    report = Path(args.report)
    notes = report.read_text().partition(NOTES)[2] if report.exists() else ""
    report.write_text("\n".join(lines) + "\n" + (NOTES + notes if notes else ""))
    print(f"wrote {args.report}", file=sys.stderr)
    return 0


def splits(runs: list[Path]) -> list[str]:
    """Every split of ``runs`` (all the same code) into disjoint BASE and NEW sets of k
    runs each, compared; the share of comparisons that would fail a gate."""
    sys.path.insert(0, str(ROOT))
    from convbench.compare import compare_paths

    lines = [
        f"## Repetition: k runs per side, every split of the {len(runs)} runs",
        "",
        "BASE and NEW are disjoint sets of k runs (merged; each side bootstrapped in two stages,",
        "runs then samples). Every comparison whose exit code is 1 is a false alarm.",
        "",
        "| k | comparisons | false alarms (exit 1) | slower cases per comparison | false alarms without the noise estimate |",
        "|--:|--:|--:|--:|--:|",
    ]
    for k in (1, 2, 3):
        alarms = alarms_raw = slower = total = 0
        for base in itertools.combinations(runs, k):
            rest = [r for r in runs if r not in base]
            for new in itertools.combinations(rest, k):
                if k > 1 and min(base) > min(new):
                    continue  # each unordered split once for k > 1 (both orders for k = 1)
                cmp = compare_paths(list(base), list(new), n_boot=1000)
                raw = compare_paths(list(base), list(new), n_boot=1000, run_noise=False)
                total += 1
                alarms += cmp.exit_code
                alarms_raw += raw.exit_code
                slower += cmp.counts["slower"]
        if total:
            lines.append(f"| {k} | {total} | {alarms} ({alarms / total:.0%}) | {slower / total:.2f} | {alarms_raw} ({alarms_raw / total:.0%}) |")
        print(lines[-1], file=sys.stderr)
    return lines


if __name__ == "__main__":
    sys.exit(main())
