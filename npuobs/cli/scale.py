"""``npuobs scale``: the global tier (VictoriaMetrics, vmagent, vmalert, Alertmanager) at fleet size.

Example (the issue's benchmark; ~15 minutes here, run it under ``nice``)::

    npuobs scale --nodes 1000 --devices-per-node 8 --clusters 4 --profile standard --duration 10m \\
        --report scale-1000.json

Progress goes to stderr; the report (JSON for ``.json``, Markdown otherwise) to ``--report`` or,
without it, Markdown on stdout. Exit status 0 when the run completed, whatever it measured; 1 when
the stack could not start; 2 on bad arguments. See docs/scale.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from npuobs.cli.argtypes import duration_seconds, integer_between
from npuobs.cli.errors import CliError
from npuobs.schema import DEFAULT_PROFILE, PROFILES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("scale", help="run the global tier at fleet size and measure it",
                              description=__doc__.split("\n\n")[0] + " Synthetic nodes replay real exporter "
                              "output; real scrapers, engine, rule evaluator and Alertmanager. See docs/scale.md.")
    p.add_argument("--nodes", type=integer_between(1, 20_000), default=1000, help="synthetic nodes (default 1000)")
    p.add_argument("--devices-per-node", type=integer_between(1, 64), default=8, help="devices per node (default 8)")
    p.add_argument("--clusters", type=integer_between(1, 100), default=4,
                   help="clusters, one vmagent each; nodes split in contiguous blocks (default 4)")
    p.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE.value,
                   help=f"exporter cardinality profile (default {DEFAULT_PROFILE.value})")
    p.add_argument("--duration", type=duration_seconds, default=600.0, help="how long to measure (default 10m)")
    p.add_argument("--interval", type=duration_seconds, default=15.0,
                   help="scrape and rule evaluation interval (default 15s)")
    p.add_argument("--fault-node", type=integer_between(1, 20_000), default=None,
                   help="node whose device 0 returns incorrect outputs (F8); it must page "
                        "(default 917, or the last node)")
    p.add_argument("--report", type=Path, help="write the report here: .json -> JSON, else Markdown")
    p.add_argument("--workdir", type=Path, help="keep the engine's data and logs here (default: a temp dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from npuobs.errors import StackError
    from npuobs.scale.harness import ScaleOptions, markdown, write_report
    from npuobs.scale.harness import run as run_scale

    fault = args.fault_node if args.fault_node is not None else min(917, args.nodes)
    try:
        options = ScaleOptions(nodes=args.nodes, devices_per_node=args.devices_per_node, clusters=args.clusters,
                               profile=args.profile, duration=args.duration, interval=args.interval,
                               fault_node=fault, workdir=args.workdir).validate()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.report is not None and not args.report.parent.is_dir():
        raise CliError(f"--report: directory {args.report.parent} does not exist")

    def progress(message: str) -> None:
        print(f"npuobs scale: {message}", file=sys.stderr, flush=True)

    try:
        report = run_scale(options, progress)
    except StackError as exc:
        print(f"npuobs scale: the stack failed: {exc}", file=sys.stderr)
        return 1
    if args.report is not None:
        write_report(report, args.report)
        progress(f"report written to {args.report}")
    else:
        print(markdown(report))
    return 0
