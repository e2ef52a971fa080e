"""``npuobs slo report``: per-SLO attainment, error budget left, burn rates and top contributors."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from npuobs.alerting.slo_spec import SpecError
from npuobs.cli.argtypes import http_url
from npuobs.cli.errors import CliError
from npuobs.config import Config
from npuobs.durations import parse_duration


def _time(text: str) -> float:
    """argparse type: unix seconds or an RFC 3339 time (``2026-01-02T00:00:00Z``)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a unix time or RFC 3339 time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _period(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("slo", help="SLO reports from a Prometheus running the generated rules",
                              description="Service level objectives as Prometheus measures them.")
    sub = p.add_subparsers(dest="slo_command", metavar="ACTION", required=True)
    r = sub.add_parser("report", help="attainment, error budget left, burn rates, top devices and failure modes",
                       description="Per SLO: attainment and error budget left over the period, the burn rate over "
                                   "every recorded window, and the devices and failure modes behind the bad events.")
    r.add_argument("--prometheus", required=True, type=http_url, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    r.add_argument("--period", type=_period, help="period for attainment and budget (default: each SLO's own)")
    r.add_argument("--format", choices=("table", "markdown", "json"), default="table", help="output (default table)")
    r.add_argument("--at", type=_time, help="evaluate at this time (unix or RFC 3339; default now), e.g. the end "
                                            "of a soak")
    r.add_argument("--slo", type=Path, help="SLO spec (default: the packaged alerts/slo.yaml)")
    r.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from npuobs.alerting.slo_report import PrometheusClient, collect, render_json, render_markdown, render_table
    from npuobs.promapi import PrometheusError

    try:
        config = Config.load(args.slo)
        statuses = collect(PrometheusClient(args.prometheus, args.at), config.spec, args.period)
    except (SpecError, PrometheusError) as exc:
        raise CliError(str(exc)) from None
    if not statuses:
        raise CliError(f"{args.prometheus} has no SLO recordings (npuobs:slo_objective:ratio): does it load the "
                       "rules of `npuobs alerts generate`?")
    render = {"table": render_table, "markdown": render_markdown, "json": render_json}[args.format]
    sys.stdout.write(render(statuses, args.at))
    return 0
