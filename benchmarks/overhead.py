"""What does convbench cost per case beyond the case itself? A benchmark (not a test).

For each count N, ``convbench run`` (in this process, through ``convbench.cli.main``) of a
suite of N tiny depthwise workloads (one case each: native, torch, cpu, inference,
batch 1, one thread, a minimal timing budget), with its wall time split into

* ``own``: the worker's seconds for each group (the ``done`` event of the protocol:
  building, verifying and timing the group's cases, inside the worker);
* ``workers``: starting the worker processes (until their hello), once per run;
* ``canary``: the canary timed at the run's start, middle and end (convbench.canary);
* ``loop``: the rest of the runner's loop (``Runner.run``): scheduling, the protocol,
  persisting each case (``add``: in ``persist``), the progress bar;
* ``setup`` and ``after``: the command's costs before the loop (suite expansion,
  environment capture, run.json) and after it (``finish``: compaction; the summary).

``overhead/case`` is ``(wall - own - workers - canary) / N``: everything the command
spends per case beyond the case, its fixed costs spread over N; ``loop/case`` is the
marginal part, ``loop / N``. The goal: loop/case at most 5 ms, flat in N.

    .venv/bin/python benchmarks/overhead.py       # 100, 1000, 10000 -> overhead-current.json, overhead.md
    .venv/bin/python benchmarks/overhead.py --counts 100 400 --no-write
    .venv/bin/python benchmarks/overhead.py --counts 1000 --no-write --profile /tmp/run.prof
    # another convbench (e.g. the code before a change: git archive REV convbench | tar -x -C /tmp/before):
    .venv/bin/python benchmarks/overhead.py --source /tmp/before --label before --counts 100 1000

overhead.md holds one table per overhead-LABEL.json (rewritten between its markers; the
notes around them are written by hand).

Costs paid once per command, some of them growing with N (suite expansion, the summary
table printed at the end), are in ``setup`` and ``after``; ``overhead/case`` spreads them.

The machine's load average is recorded before and after each count: the numbers are
only comparable between quiet runs.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The timing budget of every case: a few samples of a few iterations (about 1-3 ms).
TIMING = "{warmup_iters: 1, warmup_time: 0.0, min_sample_time: 0.0002, min_samples: 3, max_samples: 3, precision: 0.5, max_time: 0.002, guard: flag, roofline: false}"


def write_suite(path: Path, n: int, backend: str) -> Path:
    """N tiny depthwise cases: up to 100 workloads (4-19 channels, 4-11 pixels, stride 1
    or 2) times batch 1..N/100 (each batch its own case group), so that the suite file
    stays short (its parsing is not what is measured)."""
    workloads = min(n, 100)
    if n % workloads:
        raise SystemExit(f"--counts {n}: expected at most 100 or a multiple of 100")
    lines = ["name: overhead", "description: tiny depthwise cases, one per group (benchmarks/overhead.py)", "workloads:"]
    for i in range(workloads):
        channels, size, stride = 4 + i % 16, 4 + (i // 16) % 8, 1 + (i // 8) % 2
        lines.append(f"  - {{id: dw{i:03d}, kind: depthwise, params: {{channels: {channels}, size: {size}, kernel: 3, stride: {stride}}}}}")
    batches = ", ".join(str(b) for b in range(1, n // workloads + 1))
    lines += [
        "matrix:",
        f"  - {{variant: [native], backend: [{backend}], device: [cpu], mode: [inference], batch: [{batches}], threads: [1]}}",
        f"timing: {TIMING}",
        "timeout: 120",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Clock:
    """Seconds spent in wrapped functions, by name (not re-entrant per name)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.began: dict[str, float] = {}  #: perf_counter when the first call began

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        original = getattr(owner, attr)

        def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            self.began.setdefault(name, t0)
            try:
                return original(*args, **kw)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    @contextlib.contextmanager
    def patched(self) -> Any:
        from convbench import cli, results, runner

        self._undo: list[tuple[Any, str, Any]] = []
        own: list[float] = []
        next_event = runner.Worker.next_event

        def next_event_own(worker: Any, timeout: float) -> dict[str, Any]:
            event = next_event(worker, timeout)
            if event.get("event") == "done" and event.get("seconds") is not None:
                own.append(event["seconds"])
            return event

        runner.Worker.next_event = next_event_own
        self.wrap(runner.Worker, "__init__", "workers")
        self.wrap(runner.Runner, "canary", "canary")
        self.wrap(runner.Runner, "run", "loop")
        self.wrap(results.RunFolder, "add", "persist")
        self.wrap(results.RunFolder, "finish", "finish")
        if hasattr(cli, "_execute"):  # convbench before the commands moved out of cli.py
            self.wrap(cli, "_execute", "execute")
        else:
            import convbench.commands.run as run_command

            self.wrap(run_command, "execute", "execute")
        try:
            yield own
        finally:
            runner.Worker.next_event = next_event
            for owner, attr, original in reversed(self._undo):
                setattr(owner, attr, original)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def measure(n: int, work: Path, backend: str, profile: Path | None) -> dict[str, Any]:
    from convbench import cli

    suite = write_suite(work / f"overhead-{n}.yaml", n, backend)
    out = work / f"run-{n}"
    clock = Clock()
    load_before = load_average()
    with clock.patched() as own, open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        prof = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        code = cli.main(["run", str(suite), "--out", str(out)])
        if prof:
            prof.disable()
        wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"convbench run of {n} cases exited {code}")
    if prof:
        prof.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue(), file=sys.stderr)
    s = clock.seconds
    own_s = sum(own)
    loop = s["loop"] - s["workers"] - s["canary"] - own_s
    setup = clock.began["execute"] - t0
    return {
        "n": n, "wall": wall, "own": own_s, "workers": s["workers"], "canary": s["canary"], "loop": loop,
        "persist": s["persist"], "finish": s["finish"], "setup": setup, "after": wall - setup - s["execute"],
        "overhead": (wall - own_s - s["workers"] - s["canary"]) / n, "loop_per_case": loop / n,
        "persist_per_case": s["persist"] / n, "own_per_case": own_s / n, "load_before": load_before, "load_after": load_average(),
    }  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    head = "| cases | wall (s) | own (s) | workers + canary (s) | loop/case (ms) | of it, add() (ms) | setup (s) | after the loop (s) (of it, finish) | overhead/case (ms) | load average before → after |"
    rows = [head, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in results:
        rows.append(
            f"| {r['n']:,} | {r['wall']:.1f} | {r['own']:.1f} | {r['workers'] + r['canary']:.1f} | {r['loop_per_case'] * 1e3:.2f} "
            f"| {r['persist_per_case'] * 1e3:.2f} | {r['setup']:.1f} | {r['after']:.1f} ({r['finish']:.2f}) | {r['overhead'] * 1e3:.2f} | {r['load_before']} → {r['load_after']} |"
        )
    return "\n".join(rows)


BEGIN, END = "<!-- tables: written by benchmarks/overhead.py -->", "<!-- end of tables -->"


def write_markdown(md: Path) -> None:
    """Rewrite the tables of ``md`` from every benchmarks/overhead-LABEL.json, keeping the
    text around them (the notes are written by hand)."""
    parts = []
    for path in sorted(md.parent.glob("overhead-*.json")):
        rec = json.loads(path.read_text())
        parts.append(
            f"### {rec['label']}\n\nRecorded by `{rec['command']}` on {rec['host']} ({rec['machine']}, {rec['cpus']} CPUs, "
            f"Python {rec['python']}), {rec['when']}, convbench from {rec['source']}.\n\n{table(rec['results'])}\n"
        )
    block = f"{BEGIN}\n\n" + "\n".join(parts) + f"\n{END}"
    text = md.read_text() if md.exists() else f"# Benchmark: per-case overhead\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = f"{text.rstrip()}\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    md.write_text(head + block + rest.split(END, 1)[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--backend", default="torch", help="backend of the cases (default torch; reference needs no torch)")
    p.add_argument("--source", type=Path, help="import convbench from this checkout instead (workers too)")
    p.add_argument("--label", default="current", help="name of this measurement: benchmarks/overhead-LABEL.json (default current)")
    p.add_argument("--profile", type=Path, help="cProfile the command (last count) into this file; prints the top 25")
    p.add_argument("--keep", type=Path, help="keep the run folders here")
    p.add_argument("--no-write", action="store_true", help="print the table only, write no file")
    args = p.parse_args()
    if args.source:
        sys.path.insert(0, str(args.source.resolve()))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(args.source.resolve()), os.environ.get("PYTHONPATH", "")])
        os.chdir(args.source)  # `python -m convbench.worker` puts its working directory first
    import convbench

    source = Path(convbench.__file__).parent.parent
    print(f"convbench from {source}", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="convbench-overhead-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(args.counts):
            r = measure(n, work, args.backend, args.profile if i == len(args.counts) - 1 else None)
            print(f"{n} cases: {r}", file=sys.stderr)
            results.append(r)
    print(table(results))
    if args.profile:
        print("(profiled: the last count's times include cProfile's own cost)", file=sys.stderr)
    if not args.no_write:
        cmd = " ".join([".venv/bin/python benchmarks/overhead.py", *sys.argv[1:]])
        rev = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
        record = {
            "label": args.label, "command": cmd, "host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "source": "this checkout" + (f" ({rev}, with its uncommitted changes if any)" if rev else "") if source == ROOT else f"{args.source} ({rev or 'not a git checkout'})",
            "results": results,
        }  # fmt: skip
        (ROOT / "benchmarks" / f"overhead-{args.label}.json").write_text(json.dumps(record, indent=2) + "\n")
        write_markdown(ROOT / "benchmarks" / "overhead.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
