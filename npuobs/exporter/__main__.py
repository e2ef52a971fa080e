"""``python -m npuobs.exporter``: the exporter alone, with the same flags as ``npuobs exporter``.

The full ``npuobs`` CLI builds every subcommand's parser, which imports the simulator (numpy,
scikit-learn) and the dashboard generator: ~100 MB of RSS an exporter on every node does not
need. Container images and DaemonSets should run this entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from npuobs.cli import exporter as exporter_cli
from npuobs.cli.errors import CliError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m npuobs.exporter", description=exporter_cli.DESCRIPTION)
    exporter_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"npuobs: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
