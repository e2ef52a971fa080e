"""Entry point of the ``npuobs`` command.

Each subcommand lives in its own module under ``npuobs.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a handler taking the parsed
arguments and returning an exit code. Handlers raise ``CliError`` (or any other ``UsageError``:
a config, SLO spec or state error) for bad input: ``main`` turns it into one clear
``npuobs: error: ...`` line and exit status 2, never a traceback; argparse's own usage errors
are one line too (``Parser``), and argument types reject out-of-bounds values (``argtypes``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import NoReturn

from npuobs import __version__
from npuobs.errors import UsageError

# name -> one-line help, in --help order. Only the invoked subcommand's module is imported: the
# others pull in numpy, scikit-learn, grafanalib or OpenTelemetry, and `npuobs sim inject` should
# answer in well under a second.
SUBCOMMAND_HELP: dict[str, str] = {
    "demo": "run the whole stack locally: fleet, exporters, Prometheus, alerts",
    "sim": "run a simulated NPU fleet and inject faults",
    "exporter": "run the per-node Prometheus/OTLP exporter",
    "schema": "print every metric npuobs emits (name, type, unit, labels)",
    "alerts": "generate and check SLO burn-rate and device alerts, Alertmanager routing",
    "dashboards": "generate Grafana dashboards; render them from live Prometheus",
    "generate": "regenerate every committed artifact (docs, rules, dashboards, deploy); --check for staleness",
    "gameday": "run failure drills on the embedded stack and grade detection and routing",
    "slo": "SLO attainment, error budget and burn-rate reports from Prometheus",
    "devices": "list devices and their readings through a backend",
    "scale": "run the global tier (VictoriaMetrics, vmagent, vmalert) at fleet size and measure it",
    "remediate": "act on alerts (drain, reset, rollback, CPU path) with guardrails: an Alertmanager webhook",
}
SUBCOMMANDS = tuple(SUBCOMMAND_HELP)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, and where to look), exit 2.

    Subcommand parsers inherit the class (``add_subparsers`` uses the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    """A message on one line: YAML/JSON parser errors span several (with a caret line); keep the words."""
    lines = [ln.strip() for ln in str(message).splitlines()]
    return " ".join(ln for ln in lines if ln and set(ln) != {"^"})


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = Parser(
        prog="npuobs",
        description="Observability and SRE toolkit for NPU fleets: simulator, exporter, alerts, dashboards.",
    )
    parser.add_argument("--version", action="version", version=f"npuobs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if a in SUBCOMMAND_HELP), None)
    for name, help_text in SUBCOMMAND_HELP.items():
        if name == chosen:
            importlib.import_module(f"npuobs.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


class Terminated(Exception):
    """SIGTERM arrived: unwind like Ctrl-C so every ``finally`` stops what the command started."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM (``kill``, systemd, a CI job's timeout) into ``Terminated`` while a command runs.

    Python's default SIGTERM ends the process at once, skipping ``finally`` blocks, and the
    Prometheus, Alertmanager and exporters a game day or soak started (each in its own process
    group, so a terminal's Ctrl-C does not hit them before an orderly stop) would be left running.
    Commands with their own handler (``demo``, ``exporter``) replace this one while they run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_unwinds():
            return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"npuobs: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("npuobs: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("npuobs: terminated, stopped what it had started", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
