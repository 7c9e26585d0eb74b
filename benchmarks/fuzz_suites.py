"""Fuzz the suite loader with mutated copies of the shipped suites (a benchmark, not a test).

Half the inputs are random mutations of a packaged suite (1-4 edits: inserted tokens a
careless or hostile edit brings: anchors, aliases, brackets, control characters, huge
numbers, markup, long strings; deleted spans; duplicated lines), half are targeted
(deep nesting, alias bombs, recursive aliases, huge numbers, huge CPU lists, markup and
path characters in names, very long ids, loosely typed params, large matrices). Each is
loaded with ``loads_suite``, every preset resolved and, when it loads, ``convbench run
--dry-run`` run on it for every preset, in a child process bounded to 20 s per input and
2 GiB. An input ends clean when it loads (and every dry run exits 0 or 2) or raises
``SuiteError`` whose message starts with the file name; anything else (another
exception, a hang, running out of memory, another exit code) is a failure.

    .venv/bin/python benchmarks/fuzz_suites.py [--count 2000] [--seed 0]
    # the code before (a copy of an older convbench, e.g. `git archive REV convbench`):
    .venv/bin/python benchmarks/fuzz_suites.py --source /tmp/before --label before

Writes benchmarks/fuzz_suites-LABEL.json and the table in benchmarks/fuzz_suites.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TIME_LIMIT = 20.0
MEMORY_LIMIT = 2 << 30


def child(source: str) -> None:
    """Judge one input per stdin line (JSON text); one JSON outcome per stdout line.
    Runs the convbench found in ``source`` (put first on the path before it is imported)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    sys.path.insert(0, source)
    from convbench.suite import SuiteError, loads_suite

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, alarm)
    import contextlib
    import io
    import tempfile

    from convbench.cli import main as cli_main

    folder = Path(tempfile.mkdtemp(prefix="fuzz-suites-"))
    for line in sys.stdin:
        text = json.loads(line)
        signal.alarm(int(TIME_LIMIT))
        try:
            suite = loads_suite(text, "fuzz.yaml")
            for preset in suite.preset_names:
                suite.resolved(preset)
            # the command line on what loaded: every preset's --dry-run prints its matrix
            path = folder / "fuzz.yaml"
            path.write_text(text)
            sink = io.StringIO()
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                codes = [cli_main(["run", str(path), "--dry-run", *(["--preset", p] if p else [])]) for p in [None, *suite.presets]]
            bad = [c for c in codes if c not in (0, 2)]
            out = ("loaded", "") if not bad else (f"exit {bad[0]}", sink.getvalue()[-200:])
        except SuiteError as exc:
            out = ("refused" if str(exc).startswith("fuzz.yaml") else "unlocated", str(exc)[:200])
        except TimeoutError:
            out = ("hang", "")
        except MemoryError:
            out = ("MemoryError", "")
        except BaseException as exc:  # what the benchmark counts
            out = (type(exc).__name__, str(exc)[:200])
        finally:
            signal.alarm(0)
        print(json.dumps(out), flush=True)


class Judge:
    """A child process judging inputs; restarted when it dies or stops answering."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--child", "--source", self.source],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/",
            )  # fmt: skip
        return self.proc

    def judge(self, text: str) -> tuple[str, float, str]:
        proc = self.start()
        start = time.monotonic()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(text) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], TIME_LIMIT + 10)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            proc.wait()
            self.proc = None
            return ("hang" if not ready else "crashed"), time.monotonic() - start, ""
        outcome, detail = json.loads(line)
        return outcome, time.monotonic() - start, detail


#: Inputs a person or a hostile file brings on purpose, beside the random edits.
def _targeted(rng: random.Random, base: str) -> str:
    kind = rng.randrange(9)
    head = "name: t\nworkloads:\n  - {id: w, kind: depthwise, params: {channels: 4, size: 6}}\n"
    matrix = "matrix:\n  variant: [native]\n  backend: [reference]\n"
    if kind == 0:  # nesting
        depth = rng.choice([20, 60, 200, 500, 2000])
        return head + matrix + "x: " + "[" * depth + "]" * depth + "\n"
    if kind == 1:  # an alias bomb
        levels = rng.randint(3, 9)
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
        return head + matrix + "\n".join(lines) + "\n"
    if kind == 2:  # a recursive alias where a list is expected
        return head + matrix.replace("backend: [reference]", "backend: [reference]\n  batch: &r [1, *r]")
    if kind == 3:  # huge numbers
        field = rng.choice(["batch", "threads"])
        return head + matrix + f"  {field}: [{rng.choice(['18446744073709551616', '1' + '0' * 100, '-5', '0', '1e400'])}]\n"
    if kind == 4:  # a huge CPU list
        return head + matrix + f"cpus: {rng.choice(['0-99999999', '0-4294967296', '5-1', ',,,', '0-3,7'])}\n"
    if kind == 5:  # markup and path characters in names
        name = rng.choice(["'[/]'", "'[bold red]x'", "'../../x'", "'/etc/passwd'", "'a\\u0000b'"])
        return f"name: {name}\ndescription: {name}\n" + head.split("\n", 1)[1] + matrix
    if kind == 6:  # a very long id
        wid = "y" * rng.choice([200, 10_000, 100_000])
        return head + f"matrix:\n  workload: [{wid}]\n  variant: [native]\n  backend: [reference]\n"
    if kind == 7:  # loose params
        value = rng.choice(["true", "'32'", "32.0", "100000000000", "-1", "null", "[1, 2]"])
        return head.replace("channels: 4", f"channels: {value}") + matrix
    axes = ", ".join(str(i) for i in range(1, rng.choice([10, 100, 1000]) + 1))  # a large matrix
    return head + f"matrix:\n  variant: [native, diagonalwise]\n  backend: [reference]\n  batch: [{axes}]\n  threads: [{axes}]\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", default=str(ROOT), help="the folder holding the convbench package to fuzz")
    ap.add_argument("--label", default="after")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.source)
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.test_suite_bounds import _mutate  # the mutator the test suite uses

    judge = Judge(args.source)
    rng = random.Random(args.seed)
    suites = sorted((ROOT / "convbench" / "suites").glob("*.yaml"))
    sources = [p.read_text() for p in suites]
    outcomes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    slowest = 0.0
    started = time.time()
    for _ in range(args.count):
        base = rng.choice(sources)
        text = _targeted(rng, base) if rng.random() < 0.5 else _mutate(base, rng)
        outcome, seconds, detail = judge.judge(text)
        outcomes[outcome] += 1
        slowest = max(slowest, seconds)
        if outcome not in ("loaded", "refused"):
            examples.setdefault(outcome, f"{detail} | input: {text[:160]!r}")
    record = {
        "label": args.label, "source": args.source, "count": args.count, "seed": args.seed,
        "outcomes": dict(outcomes), "slowest_s": round(slowest, 2), "examples": examples,
        "minutes": round((time.time() - started) / 60, 1), "load_average": os.getloadavg()[0],
    }  # fmt: skip
    (HERE / f"fuzz_suites-{args.label}.json").write_text(json.dumps(record, indent=2) + "\n")
    write_table()
    print(json.dumps(record, indent=2))
    return 0


def write_table() -> None:
    lines = [
        "# Fuzzing the suite loader",
        "",
        "Written by `benchmarks/fuzz_suites.py` (its docstring says how inputs are made and judged).",
        "",
        "| label | inputs | loaded | refused (a SuiteError that starts with the file name) | failures | slowest input | minutes |",
        "|---|--:|--:|--:|---|--:|--:|",
    ]
    for path in sorted(HERE.glob("fuzz_suites-*.json")):
        r = json.loads(path.read_text())
        o = dict(r["outcomes"])
        loaded, refused = o.pop("loaded", 0), o.pop("refused", 0)
        failures = ", ".join(f"{n} {k}" for k, n in sorted(o.items())) or "none"
        lines.append(f"| {r['label']} | {r['count']} | {loaded} | {refused} | {failures} | {r['slowest_s']} s | {r['minutes']} |")
    lines += ["", "Examples of failures, per label:", ""]
    for path in sorted(HERE.glob("fuzz_suites-*.json")):
        r = json.loads(path.read_text())
        for kind, text in r["examples"].items():
            lines.append(f"- {r['label']}, {kind}: `{text[:300].replace('`', chr(39))}`")
    (HERE / "fuzz_suites.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
