"""Entry point of the ``npuobs`` command.

Each subcommand lives in its own module under ``npuobs.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a handler taking the parsed
arguments and returning an exit code. Handlers raise ``CliError`` for bad input: ``main`` turns
it into one clear ``npuobs: error: ...`` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from npuobs import __version__
from npuobs.cli.errors import CliError

# Order is the order shown in --help.
SUBCOMMANDS = ("demo", "sim", "exporter", "schema", "alerts", "dashboards", "gameday", "slo", "devices")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npuobs",
        description="Observability and SRE toolkit for NPU fleets: simulator, exporter, alerts, dashboards.",
    )
    parser.add_argument("--version", action="version", version=f"npuobs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"npuobs.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"npuobs.cli.{name}":
                raise
            continue  # subcommand not built yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"npuobs: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("npuobs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
