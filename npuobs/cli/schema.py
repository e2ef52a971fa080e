"""``npuobs schema``: print the metric schema (the single source of truth) as a table or Markdown."""

from __future__ import annotations

import argparse

from npuobs import schema
from npuobs.docsgen import metrics_markdown


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("schema", help="print every metric npuobs emits (name, type, unit, labels)",
                              description="Print the metric schema: every metric npuobs emits.")
    p.add_argument("--format", choices=("table", "markdown", "names"), default="table",
                   help="table (default), markdown (what docs/metrics.md holds) or bare names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "markdown":
        print(metrics_markdown(), end="")
    elif args.format == "names":
        for m in schema.METRICS:
            print(m.name)
    else:
        print(metrics_table())
    return 0


def metrics_table() -> str:
    rows = [("NAME", "TYPE", "UNIT", "LABELS", "SERVES")]
    rows += [(m.name, m.type.value, m.unit or "-", ",".join(m.labels), ",".join(m.serves)) for m in schema.METRICS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows)
