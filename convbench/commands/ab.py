"""``convbench ab``: a suite in two environments at once, round by round (the CI gate).

    convbench ab SUITE --base PYTHON --new PYTHON [--pairs 3] [--preset P] [--filter EXPR] [--out DIR]
                 [--threshold 5%] [--alpha 0.01] [--format table|md|json|csv] [-o FILE]

PYTHON is an interpreter or a virtual-environment folder with convbench installed (the
same result schema on both sides). Each case group is timed in --pairs fresh pairs of
worker processes, and the verdicts test across the pairs. Exit codes as ``compare``: 0 no regression, 1 a
regression, 2 bad input, 3 inconclusive (accept with ``--inconclusive-ok``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from convbench.commands.verdicts import add_verdict_arguments, verdict_options

#: Fresh worker pairs per case group unless --pairs says otherwise: two processes of the
#: same code can differ (memory layout, where the allocator put things), which one pair's
#: rounds cannot show; the verdicts test across pairs (convbench.ab.paired_test).
DEFAULT_PAIRS = 3


#: Most --pairs accepted (each pair starts two workers per case group).
MAX_PAIRS = 50


def _pairs(text: str) -> int:
    """--pairs: an integer from 1 to MAX_PAIRS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of process pairs, got {text!r}") from None
    if not 1 <= value <= MAX_PAIRS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_PAIRS} process pairs, got {value}")
    return value


def _comparison(folder: Any, args: argparse.Namespace, verdicts: tuple[float, float, list[tuple[str, float]], list[str]]) -> Any:
    import pandas as pd

    from convbench.ab import ab_comparison
    from convbench.results import SAMPLE_COLUMNS

    threshold, alpha, thresholds, fail_on = verdicts
    samples = pd.DataFrame(folder.samples, columns=SAMPLE_COLUMNS)
    return ab_comparison(
        folder.frame(), samples, threshold=threshold, alpha=alpha, thresholds=thresholds, fail_on=fail_on,
        inconclusive_ok=args.inconclusive_ok, meta=folder.meta,
    )  # fmt: skip


def cmd_ab(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from convbench.ab import SIDES, AbError, AbRunner, probe, resolve_python
    from convbench.commands import common
    from convbench.commands.verdicts import render
    from convbench.compare_render import comparison_json, comparison_markdown
    from convbench.results import ResultsError, RunFolder, write_json

    UsageError = common.UsageError
    verdicts = verdict_options(args)  # bad options fail before anything runs
    suite, cases, resolved = common.load_cases(args)
    if not cases:
        raise UsageError(f"{args.suite}: the filter and preset leave no case to run")
    try:
        pythons = {side: resolve_python(getattr(args, side), f"--{side}") for side in SIDES}
        hellos = {side: probe(pythons[side], f"--{side}") for side in SIDES}
    except AbError as exc:
        raise UsageError(str(exc)) from None
    for side in SIDES:
        common.err_console.print(f"{side}: starts workers with {pythons[side]} (convbench {hellos[side].get('convbench')})", highlight=False, markup=False)
    options = common.options_from(resolved)
    pinning = common.pinning_for(resolved)
    out = Path(args.out) if args.out else common.default_out(f"{suite.name}-ab")
    meta = common.run_meta(args, suite, cases, options, pinning, getattr(resolved, "cpus", None))
    meta["ab"] = {side: pythons[side] for side in SIDES}
    meta["ab"]["convbench"] = {side: hellos[side].get("convbench") for side in SIDES}
    meta["ab"]["pairs"] = args.pairs
    try:
        folder = RunFolder.create(out, meta)
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the run folder: {exc.strerror or exc}") from None
    completed = common.execute(
        folder, cases, options, f"ab {suite.name}", runner=lambda on_result: AbRunner(folder, options, pythons, on_result, args.seed, args.pairs),
        total=2 * len(cases),
    )  # fmt: skip
    if not completed:
        folder.finish("interrupted")
        common.err_console.print(f"\n[bold yellow]Interrupted[/]: {len(folder.rows)} rows kept in {escape(str(folder.path))} (ab runs do not resume)")
        return common.EXIT_INTERRUPTED
    folder.finish("complete")
    cmp = _comparison(folder, args, verdicts)
    write_json(folder.path / "ab.json", json.loads(comparison_json(cmp)))
    (folder.path / "ab.md").write_text(comparison_markdown(cmp))
    render(cmp, args)
    common.err_console.print(f"Both sides in {folder.path} (ab.md, ab.json: the verdicts)", highlight=False, markup=False)
    return cmp.exit_code


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ab",
        help="run a suite in two environments side by side, round by round; exit 1 on a regression",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("suite", help="suite YAML file")
    p.add_argument("--base", required=True, metavar="PYTHON", help="BASE interpreter or virtual-environment folder")
    p.add_argument("--new", required=True, metavar="PYTHON", help="NEW interpreter or virtual-environment folder")
    p.add_argument(
        "--pairs", type=_pairs, default=DEFAULT_PAIRS, metavar="N",
        help=f"fresh pairs of worker processes per case group, tested across (default {DEFAULT_PAIRS})",
    )  # fmt: skip
    p.add_argument("--preset", help="a preset of the suite (e.g. quick)")
    p.add_argument("--filter", help="a condition over case keys, as for run")
    p.add_argument("--cpus", metavar="SPEC", help="pin both sides' workers to these CPUs (as for run)")
    p.add_argument("--out", metavar="DIR", help="run folder to create (default results/SUITE-ab-TIME-HOST)")
    add_verdict_arguments(p, "signed-rank test")
    p.add_argument("--seed", type=int, default=0, help="seed of the round order (default 0)")
    p.set_defaults(func=cmd_ab)
