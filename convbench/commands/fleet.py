"""``convbench fleet``: the Ray resources a node should advertise, and the nodes of a cluster.

``convbench fleet node-resources`` prints the ``--resources`` JSON for ``ray start`` on
this machine (``{"cpu:x86_64": 1, "cuda:nvidia-h100-80gb-hbm3": 1}``);
``--label cpu=NAME`` (or ``CONVBENCH_FLEET_LABELS=cpu=NAME``) overrides a device's label.
``convbench fleet nodes ADDRESS`` lists the live nodes of a cluster and their devices.
See docs/fleet.md.
"""

from __future__ import annotations

import argparse
import json


def cmd_node_resources(args: argparse.Namespace) -> int:
    from convbench.commands.common import UsageError
    from convbench.fleet import FleetError, node_resources, parse_labels

    try:
        labels = parse_labels(args.label) if args.label else None
        resources = node_resources(labels=labels)
    except FleetError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(resources))
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from convbench.commands.common import UsageError, console
    from convbench.fleet import FleetError, connect, device_resources, import_ray

    try:
        connect(args.address, [])
    except FleetError as exc:
        raise UsageError(str(exc)) from None
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"Ray cluster at {args.address}"))
    for col in ("node", "address", "alive", "devices"):
        table.add_column(col)
    for node in import_ray().nodes():
        devices = device_resources(node.get("Resources") or {})
        shown = ", ".join(f"{k} x{v}" for k, v in sorted(devices.items())) or "-"
        table.add_row(
            escape(str(node["NodeID"])[:12]),
            escape(str(node.get("NodeManagerAddress"))),
            "yes" if node.get("Alive") else "no",
            escape(shown),
        )
    console.print(table)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fleet", help="Ray fleet helpers: node resources, cluster nodes", description=__doc__
    )
    sub = p.add_subparsers(dest="fleet_command", required=True)
    res = sub.add_parser(
        "node-resources", help="print the --resources JSON `ray start` needs on this machine"
    )
    res.add_argument(
        "--label",
        action="append",
        metavar="DEVICE=LABEL",
        help="override a device's label, e.g. cpu=labela (repeatable)",
    )
    res.set_defaults(func=cmd_node_resources)
    nodes = sub.add_parser(
        "nodes", help="the live nodes of a Ray cluster and their convbench devices"
    )
    nodes.add_argument("address", help="the cluster's address (host:port, or auto)")
    nodes.set_defaults(func=cmd_nodes)
