"""``convbench compare``: run against run (a CI gate), or variants/backends within a run.

    convbench compare BASE NEW [--threshold 5%] [--alpha 0.01] [--format table|md|json|csv]
    convbench compare --base DIR... --new DIR...          # several runs per side, merged
    convbench compare RUN --by variant --baseline native  # speedup tables of one run
    convbench compare AB_RUN                              # the verdicts of a `convbench ab` run again

Exit codes: 0 no regression, 1 a regression (a case, or the suite pooled, is slower, or a
case failed; see ``--fail-on``), 2 bad input, 3 inconclusive (no regression found, but
cases could not be tested, were contended, or the machine itself changed speed; accept
with ``--inconclusive-ok``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convbench.commands.verdicts import (
    add_verdict_arguments,
    emit,
    print_rich,
    render,
    verdict_options,
)


def cmd_compare(args: argparse.Namespace) -> int:
    from convbench.commands.common import UsageError
    from convbench.results import ResultsError

    paths = list(args.paths or [])
    if args.by:
        if args.base or args.new or not paths:
            raise UsageError("convbench compare --by: give the run folder(s) to tabulate as RUN..., without --base/--new")
        return _within(args, paths)
    base, new = list(args.base or []), list(args.new or [])
    if paths and (base or new):
        raise UsageError("convbench compare: give BASE NEW, or --base ... --new ..., not both")
    if len(paths) == 1 and not (base or new) and _is_ab(paths[0]):
        return _ab_verdicts(args, paths[0])
    if paths:
        if len(paths) != 2:
            raise UsageError(
                f"convbench compare: expected BASE and NEW (2 paths), got {len(paths)}; "
                "use --base/--new for several runs per side, or RUN --by variant for one run"
            )
        base, new = [paths[0]], [paths[1]]
    if not base or not new:
        raise UsageError("convbench compare: give BASE NEW (or --base DIR... --new DIR...)")
    from convbench.compare import compare_paths

    threshold, alpha, thresholds, fail_on = verdict_options(args)
    try:
        cmp = compare_paths(
            base, new, threshold=threshold, alpha=alpha, thresholds=thresholds, seed=args.seed,
            fail_on=fail_on, run_noise=not args.no_run_noise, allow_emulated=args.allow_emulated,
            inconclusive_ok=args.inconclusive_ok,
        )  # fmt: skip
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    render(cmp, args)
    return cmp.exit_code


def _is_ab(path: str) -> bool:
    """Whether ``path`` is the run folder of a ``convbench ab`` (both sides in one)."""
    try:
        return bool(json.loads((Path(path) / "run.json").read_text()).get("ab"))
    except (OSError, ValueError):
        return False


def _ab_verdicts(args: argparse.Namespace, path: str) -> int:
    """The verdicts of an ab run folder again (other thresholds, another format)."""
    import pandas as pd

    from convbench.ab import ab_comparison
    from convbench.commands.common import UsageError
    from convbench.results import ResultsError, load, read_meta

    try:
        cases, samples, meta = load(path), load(path, samples=True), read_meta(Path(path))
    except (ResultsError, OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if cases.empty or "side" not in cases:
        raise UsageError(f"{path}: an ab run folder without finished cases")
    threshold, alpha, thresholds, fail_on = verdict_options(args)
    cmp = ab_comparison(
        cases, samples if len(samples) else pd.DataFrame(columns=["case_id", "side", "ratio", "kept"]),
        threshold=threshold, alpha=alpha, thresholds=thresholds, fail_on=fail_on, inconclusive_ok=args.inconclusive_ok, meta=meta,
    )  # fmt: skip
    render(cmp, args)
    return cmp.exit_code


def _within(args: argparse.Namespace, paths: list[str]) -> int:
    from convbench.commands.common import UsageError
    from convbench.compare import load_side, to_jsonable, within_run
    from convbench.compare_render import within_markdown, within_rich

    baseline = args.baseline or {"variant": "native", "backend": "torch"}.get(args.by)
    if baseline is None:
        raise UsageError(f"convbench compare --by {args.by}: give --baseline")
    try:
        side = load_side(paths)
    except Exception as exc:  # ResultsError, or a parquet reader error
        raise UsageError(str(exc)) from None
    values = set(side.cases[args.by].map(str))
    if baseline not in values:
        raise UsageError(f"--baseline {baseline!r}: no case has {args.by} {baseline!r}; the runs have {', '.join(sorted(values))}")
    frame = within_run(side.cases, by=args.by, baseline=baseline, samples=side.samples, seed=args.seed)
    if args.format == "md":
        emit(within_markdown(frame, args.by, baseline), args.output)
    elif args.format == "json":
        emit(json.dumps(to_jsonable(frame), indent=2), args.output)
    elif args.format == "csv":
        emit(frame.to_csv(index=False), args.output)
    else:
        print_rich(within_rich(frame, args.by, baseline), args.output)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare runs (exit 1 on a regression) or variants/backends within a run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="BASE NEW run folders (each may be a folder of runs, merged); with --by: RUN...")
    p.add_argument("--base", nargs="+", metavar="DIR", help="BASE run folders, merged")
    p.add_argument("--new", nargs="+", metavar="DIR", help="NEW run folders, merged")
    add_verdict_arguments(p, "Mann-Whitney U test")
    p.add_argument("--no-run-noise", action="store_true", help="do not widen the CIs by the run-to-run noise estimated from the cases (docs/compare.md)")
    p.add_argument("--by", choices=["variant", "backend"], help="within a run: each variant (or backend) against --baseline")
    p.add_argument("--baseline", help="with --by: the baseline value (default native for variant, torch for backend)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--allow-emulated", action="store_true", help="compare runs taken under an emulator (qemu-user, Rosetta) with native ones; refused (exit 2) without it")
    p.set_defaults(func=cmd_compare)
