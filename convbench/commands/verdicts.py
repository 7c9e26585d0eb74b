"""What ``compare``, ``ab`` and ``history`` share: the verdict options (threshold,
alpha, per-case thresholds, what fails) and how a comparison is written out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convbench.commands.common import UsageError, console

FORMATS = ("table", "md", "json", "csv")


def parse_fraction(text: str, what: str = "threshold") -> float:
    """``5%`` or ``0.05`` -> 0.05; anything else (or a bare number >= 1) is a UsageError."""

    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected a percentage like 5% or a fraction like 0.05") from None
    if not raw.endswith("%") and value >= 1:
        raise UsageError(f"{what} {text!r}: a fraction must be below 1; write {text}% for a percentage")
    if value < 0:
        raise UsageError(f"{what} {text!r}: must not be negative")
    return value


def parse_threshold_for(items: list[str]) -> list[tuple[str, float]]:
    """``PATTERN=VALUE`` items -> (pattern, fraction) pairs."""

    out = []
    for item in items:
        pattern, sep, value = item.rpartition("=")
        if not sep or not pattern:
            raise UsageError(f"--threshold-for {item!r}: expected PATTERN=VALUE, e.g. 'mobilenet*=10%'")
        out.append((pattern, parse_fraction(value, f"--threshold-for {item!r}")))
    return out


def read_thresholds(path: str) -> list[tuple[str, float]]:
    """A YAML or JSON mapping ``{pattern: threshold}`` (in file order; first match wins)."""
    import yaml


    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read thresholds ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{path}: expected a mapping of case-id or suite patterns to thresholds, e.g. 'smoke: 20%'")
    return [(str(k), parse_fraction(str(v), f"{path}: threshold of {k!r}")) for k, v in data.items()]


def verdict_options(args: argparse.Namespace) -> tuple[float, float, list[tuple[str, float]], list[str]]:
    """``(threshold, alpha, thresholds, fail_on)`` from the options compare and ab share;
    bad values are a UsageError."""
    from convbench.compare import VERDICTS

    threshold = parse_fraction(args.threshold)
    alpha = parse_fraction(args.alpha, "alpha")
    if not 0 < alpha < 1:
        raise UsageError(f"alpha {args.alpha!r}: must be between 0 and 1")
    thresholds = parse_threshold_for(args.threshold_for or [])
    if args.thresholds:
        thresholds += read_thresholds(args.thresholds)
    fail_on = [v.strip() for v in args.fail_on.split(",") if v.strip()]
    unknown = [v for v in fail_on if v not in VERDICTS]
    if unknown:
        raise UsageError(f"--fail-on {args.fail_on!r}: unknown verdicts {unknown}; expected some of {', '.join(VERDICTS)}")
    return threshold, alpha, thresholds, fail_on


def add_verdict_arguments(p: argparse.ArgumentParser, test: str) -> None:
    """The options compare and ab share: thresholds, significance, what fails, outputs."""
    p.add_argument("--threshold", default="5%", help="smallest change that counts, e.g. 5%% or 0.05 (default 5%%)")
    p.add_argument("--threshold-for", action="append", metavar="PATTERN=VALUE", help="threshold for cases whose id or suite matches the fnmatch PATTERN, e.g. '*|cuda|*=10%%' (repeatable; first match wins)")
    p.add_argument("--thresholds", metavar="FILE", help="YAML/JSON mapping of PATTERN: threshold (after --threshold-for; first match wins)")
    p.add_argument("--alpha", default="0.01", help=f"significance level of the {test} (default 0.01)")
    p.add_argument("--fail-on", default="slower,failed", help="verdicts that make the exit code 1 (default slower,failed; add removed to fail when cases disappear)")
    p.add_argument("--inconclusive-ok", action="store_true", help="exit 0 instead of 3 when nothing regressed but cases were inconclusive (too few samples, contended, or the machine changed speed)")
    p.add_argument("--format", choices=FORMATS, default="table", help="table (rich), md (GitHub step summary), json or csv")
    p.add_argument("-o", "--output", metavar="FILE", help="write there instead of stdout")
    p.add_argument("--only-changes", action="store_true", help="table format: leave out the cases whose verdict is same")


def emit(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def print_rich(renderable: Any, out: str | None) -> None:
    from rich.console import Console


    if out:
        with open(out, "w") as f:
            Console(file=f, width=200, no_color=True).print(renderable)
    else:
        console.print(renderable)


def render(cmp: Any, args: argparse.Namespace) -> None:
    """Write the comparison ``cmp`` in ``args.format`` to ``args.output`` (or stdout)."""
    from convbench.compare_render import comparison_json, comparison_markdown, comparison_rich

    if args.format == "md":
        emit(comparison_markdown(cmp), args.output)
    elif args.format == "json":
        emit(comparison_json(cmp), args.output)
    elif args.format == "csv":
        emit(cmp.to_csv(), args.output)
    else:
        print_rich(comparison_rich(cmp, only_changes=args.only_changes), args.output)
