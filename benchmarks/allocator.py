"""Page faults in a timed step, by allocator mode (a benchmark, not a test).

For each depthwise conv shape and each ``timing: allocator`` mode, PROCESSES fresh
processes (torch, one thread) each warm up, then time 20 calls and count the page faults
they take: the per-process spread is what the ``steady`` mode removes
(convbench/allocator.py, docs/timing.md).

    .venv/bin/python benchmarks/allocator.py [--processes 5]    # writes benchmarks/allocator.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from convbench.allocator import ALLOCATOR_MODES, worker_environment  # noqa: E402

SHAPES = [(32, 1024, 7), (32, 32, 112)]  # (batch, channels, size): conv_dw_13 and conv_dw_1 at batch 32

PROGRAM = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
b, c, h = map(int, sys.argv[1:4])
x = torch.randn(b, c, h, h); w = torch.randn(c, 1, 3, 3)
step = lambda: torch.nn.functional.conv2d(x, w, padding=1, groups=c)
for _ in range(5):
    step()
faults = lambda: (lambda u: u.ru_minflt + u.ru_majflt)(resource.getrusage(resource.RUSAGE_SELF))
f0, t0 = faults(), time.perf_counter()
for _ in range(20):
    step()
print(json.dumps({"ms": (time.perf_counter() - t0) / 20 * 1e3, "faults": (faults() - f0) / 20}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=5)
    args = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    lines = [
        "# Page faults in a timed step, by allocator mode",
        "",
        f"`benchmarks/allocator.py --processes {args.processes}`; load average before: {os.getloadavg()[0]:.2f}.",
        "One row per shape and mode; per fresh process: ms per call (faults per call).",
        "",
        "| conv (batch, channels, size) | allocator | per process | min-max ms |",
        "|---|---|---|--:|",
    ]
    for shape in SHAPES:
        for mode in ALLOCATOR_MODES:
            runs = []
            for _ in range(args.processes):
                out = subprocess.run([sys.executable, "-c", PROGRAM, *map(str, shape)], env=worker_environment(mode, base),
                                     capture_output=True, text=True, check=True)  # fmt: skip
                runs.append(json.loads(out.stdout))
            cells = ", ".join(f"{r['ms']:.2f} ({r['faults']:,.0f})" for r in runs)
            ms = [r["ms"] for r in runs]
            lines.append(f"| {shape} | {mode} | {cells} | {min(ms):.2f}-{max(ms):.2f} |")
    text = "\n".join(lines) + "\n"
    (HERE / "allocator.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
