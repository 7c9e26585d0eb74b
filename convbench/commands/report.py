"""``convbench report RUN... -o DIR [--compare BASE NEW]``: render the HTML site."""

from __future__ import annotations

import argparse
from pathlib import Path


def _fraction(text: str) -> float:
    """``5%`` or ``0.05`` -> 0.05."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.05 or 5%, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a fraction >= 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="render a static HTML site of runs (tables, plots, environment, raw data)",
        description="Render a static HTML site of one or more run folders (or folders holding runs). "
        "It works offline (plotly.js is written into the site) and the same runs always render the same files.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folders, or folders holding runs")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="site folder to write (replaced if it holds an earlier report)")
    p.add_argument("--compare", nargs=2, metavar=("BASE", "NEW"), help="add a comparison page: NEW against BASE (each a run or a folder of runs)")
    p.add_argument("--threshold", type=_fraction, default=0.05, help="comparison: smallest change that counts (default 5%%)")
    p.add_argument("--alpha", type=float, default=0.01, help="comparison: significance level (default 0.01)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from convbench.commands.common import EXIT_OK, UsageError, console
    from convbench.report import ReportError, render_site

    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha: expected a number between 0 and 1, got {args.alpha}")
    compare = ([args.compare[0]], [args.compare[1]]) if args.compare else None
    try:
        pages = render_site(args.runs, args.out, compare=compare, threshold=args.threshold, alpha=args.alpha)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # -o is a file, a read-only folder, a full disk...
        raise UsageError(f"-o {args.out}: cannot write the site: {exc.strerror or exc}") from None
    index = Path(args.out) / "index.html"
    console.print(f"{len(pages)} pages written to {args.out}; open {index}", highlight=False, markup=False)
    return EXIT_OK
