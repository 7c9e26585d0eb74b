"""Does the machine itself change speed while nothing else runs? A benchmark (not a test).

Each of PROCESSES fresh processes runs, for SECONDS, chunks of 15 side-by-side calls of:
the native depthwise conv and the diagonalwise conv of MobileNetV1's conv_dw_5 at batch
32 (torch, the machine's threads), a 384x384 float32 matmul x10 (torch), a 64 MiB copy
(torch), and convbench's speed probe (convbench.speed_probe, NumPy). Per chunk it records
the medians and what the kernel's counters saw (other processes' CPU, steal, CPU pressure:
convbench.contention). The table in benchmarks/machine_speed.md shows whether the conv
ratio moves with the machine's compute speed while the counters stay quiet, and whether
the speed probe sees it (correlations over all chunks).

    .venv/bin/python benchmarks/machine_speed.py [--processes 3] [--seconds 25]

Nothing else may run on the machine meanwhile: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "machine_speed.md"


def child(seconds: float) -> None:
    import torch

    from convbench.contention import Monitor
    from convbench.speed_probe import SpeedProbe

    torch.manual_seed(0)
    c, h, b = 256, 28, 32
    x = torch.randn(b, c, h, h)
    w_native, w_diag = torch.randn(c, 1, 3, 3), torch.randn(c, 32, 3, 3)
    a, big = torch.randn(384, 384), torch.randn(16 << 20)
    probe = SpeedProbe()
    monitor = Monitor()

    def native() -> None:
        torch.nn.functional.conv2d(x, w_native, padding=1, groups=c)

    def diag() -> None:
        torch.nn.functional.conv2d(x, w_diag, padding=1, groups=c // 32)

    def matmul() -> None:
        for _ in range(10):
            torch.mm(a, a)

    def copy() -> None:
        big.clone()

    def timed(f) -> float:  # noqa: ANN001
        t0 = time.perf_counter()
        f()
        return time.perf_counter() - t0

    with torch.inference_mode():
        for _ in range(10):
            native(), diag(), matmul(), copy(), probe.measure()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            snap = monitor.mark()
            got: dict[str, list[float]] = {k: [] for k in ("native", "diag", "matmul", "copy", "probe_compute", "probe_memory")}
            for _ in range(15):
                got["native"].append(timed(native))
                got["diag"].append(timed(diag))
                got["matmul"].append(timed(matmul))
                got["copy"].append(timed(copy))
                speed = probe.measure()
                got["probe_compute"].append(speed.compute)
                got["probe_memory"].append(speed.memory)
            load = monitor.load(snap, monitor.mark())
            row = {k: statistics.median(v) for k, v in got.items()}
            row.update(t=round(time.perf_counter() - start, 2), foreign_cpu=load.foreign_cpu, steal=load.steal, cpu_pressure=load.cpu_pressure)
            print(json.dumps(row), flush=True)


def corr(xs: list[float], ys: list[float]) -> float:
    return statistics.correlation(xs, ys) if len(xs) > 2 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.seconds)
        return 0
    from convbench.allocator import worker_environment

    load_before = os.getloadavg()[0]
    env = worker_environment("steady", os.environ)
    runs = []
    for _ in range(args.processes):
        proc = subprocess.run([sys.executable, __file__, "--child", "--seconds", str(args.seconds)], capture_output=True, text=True, env=env, check=True)
        runs.append([json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")])
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    lines = [
        "# Does the machine change speed by itself?", "",
        f"`benchmarks/machine_speed.py --processes {args.processes} --seconds {args.seconds:g}` at {rev} on "
        f"{platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average before: {load_before:.2f}. Script's docstring: what each column is.", "",
        "Per chunk of 15 calls, medians (ms); ratio = diagonalwise / native; probe = convbench's speed probe "
        "(compute, memory, in us); other CPU, steal: cores, over the chunk.", "",
    ]
    every: dict[str, list[float]] = {}
    for k, rows in enumerate(runs):
        lines += [f"## process {k + 1}", "", "| t (s) | native | diagonalwise | ratio | matmul x10 | copy 64 MiB | probe compute | probe memory | other CPU | steal |", "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in rows:
            ratio = r["diag"] / r["native"]
            for key, value in (("ratio", ratio), ("diag", r["diag"]), ("native", r["native"]), ("matmul", r["matmul"]), ("copy", r["copy"]), ("probe_compute", r["probe_compute"]), ("probe_memory", r["probe_memory"])):
                every.setdefault(key, []).append(value)
            lines.append(
                f"| {r['t']:.1f} | {r['native'] * 1e3:.2f} | {r['diag'] * 1e3:.2f} | {ratio:.2f} | {r['matmul'] * 1e3:.2f} | {r['copy'] * 1e3:.2f} "
                f"| {r['probe_compute'] * 1e6:.0f} | {r['probe_memory'] * 1e6:.0f} | {r['foreign_cpu'] or 0:.2f} | {r['steal'] or 0:.2f} |"
            )
        lines.append("")
    lines += ["## over all chunks", "", "| quantity | min | median | max | max/min |", "|---|--:|--:|--:|--:|"]
    for key in ("ratio", "native", "diag", "matmul", "copy", "probe_compute", "probe_memory"):
        v = every[key]
        lines.append(f"| {key} | {min(v):.4g} | {statistics.median(v):.4g} | {max(v):.4g} | {max(v) / min(v):.2f} |")
    lines += ["", "| correlation (Pearson, over chunks) | r |", "|---|--:|"]
    for a, b in (("diag", "matmul"), ("diag", "probe_compute"), ("matmul", "probe_compute"), ("native", "copy"), ("native", "probe_memory"), ("ratio", "probe_compute"), ("ratio", "matmul")):
        lines.append(f"| {a} ~ {b} | {corr(every[a], every[b]):.2f} |")
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
