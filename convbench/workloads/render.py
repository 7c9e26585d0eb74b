"""The workload catalogue as a Markdown table (``convbench list --workloads --format markdown``).

``docs/networks.md`` is this table; a test keeps it equal to what the code computes.
"""

from __future__ import annotations

from typing import Any

from convbench.workloads import catalogue

HEADER = (
    "| kind | configuration | input | parameters | MACs (M) | published | agrees | source |\n"
    "|---|---|---|---:|---:|---|---|---|"
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def published_figures(row: dict[str, Any]) -> str:
    """The published parameter count and multiply-adds of a catalogue row, as printed."""
    pub = row.get("published")
    if pub is None:
        return ""
    suffix = " (2^20)" if pub.units == "binary" else ""
    return ", ".join(
        f"{v:,}" if isinstance(v, int) else f"{v}{suffix}" for v in (pub.params, pub.macs) if v is not None
    )


def markdown_table(rows: list[dict[str, Any]] | None = None) -> str:
    """Every configured workload (networks) with our figures against the published ones."""
    lines = [HEADER]
    for r in catalogue() if rows is None else rows:
        if "macs" not in r:
            continue
        pub = r["published"]
        shown = published_figures(r)
        agrees = (
            "-"
            if not shown
            else "yes"
            if not r["mismatches"]
            else "NO: " + "; ".join(r["mismatches"])
        )
        source = (
            f"{pub.source}{' (' + pub.note + ')' if pub.note else ''}" if pub else r["description"]
        )
        cells = [
            r["kind"], r["config"], "x".join(map(str, r["input"])), f"{r['parameters']:,}",
            f"{r['macs'] / 1e6:.2f}", shown, agrees, source,
        ]  # fmt: skip
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"
