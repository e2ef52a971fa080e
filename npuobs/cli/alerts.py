"""``npuobs alerts``: generate alerting artifacts from an SLO spec, and check them with the real tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from npuobs.alerting import conventions as cv
from npuobs.alerting import maintenance
from npuobs.alerting.amconfig import DEFAULT_KEY_DIR, ENV_ROUTING_KEY, AlertmanagerOptions, RoutingKey
from npuobs.alerting.burnrate import DEFAULT_POLICY, POLICIES
from npuobs.alerting.generate import ToolMissing, check, render, write
from npuobs.alerting.slo_spec import SpecError
from npuobs.amapi import AlertmanagerAPI, AlertmanagerError
from npuobs.cli.argtypes import duration_seconds, http_url, output_dir
from npuobs.cli.errors import CliError
from npuobs.config import Config
from npuobs.durations import format_duration
from npuobs.gameday.tables import text_table

T = TypeVar("T")
DEFAULT_ALERTMANAGER_URL = "http://127.0.0.1:9093"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("alerts",
                              help="generate and check Prometheus rules and the Alertmanager config",
                              description="SLO burn-rate alerts, device alerts and Alertmanager routing.")
    sub = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    g = sub.add_parser("generate",
                       help="write rules, a PrometheusRule and alertmanager.yaml from an SLO spec",
                       description="Write recording rules, SLO and device alerts, a PrometheusRule and the "
                                   "Alertmanager config. PagerDuty routing keys are read from files "
                                   f"({DEFAULT_KEY_DIR}/pagerduty-{{page,ticket}}.key) unless "
                                   f"{ENV_ROUTING_KEY['page']} / {ENV_ROUTING_KEY['ticket']} are set, "
                                   "in which case they are embedded (never commit such output).")
    g.add_argument("--slo", type=Path, help="SLO spec, npuobs/v1 or OpenSLO v1 YAML (default: the packaged "
                                            "alerts/slo.yaml)")
    g.add_argument("--out", type=output_dir, required=True, help="output directory")
    g.add_argument("--policy", choices=tuple(POLICIES), default=DEFAULT_POLICY,
                   help=f"burn-rate policy (default {DEFAULT_POLICY})")
    g.add_argument("--runbook-base-url", default=cv.DEFAULT_RUNBOOK_BASE_URL,
                   help="runbook links are <base>/runbooks/<AlertName>.md (default %(default)s)")
    g.add_argument("--pagerduty-url",
                   help="Events API v2 URL (default: PagerDuty's); point it at a local sink "
                        "for demos and tests")
    g.add_argument("--routing-key-file-page", default=f"{DEFAULT_KEY_DIR}/pagerduty-page.key",
                   help="file holding the page receiver's integration key (default %(default)s)")
    g.add_argument("--routing-key-file-ticket", default=f"{DEFAULT_KEY_DIR}/pagerduty-ticket.key",
                   help="file holding the ticket receiver's integration key (default %(default)s)")
    g.set_defaults(func=run_generate)

    c = sub.add_parser("check", help="promtool check rules + amtool check-config on a generated directory")
    c.add_argument("dir", type=Path, help="directory written by `npuobs alerts generate`")
    c.set_defaults(func=run_check)
    _register_maintenance(sub)


def _register_maintenance(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("maintenance", help="silence npuobs alerts on nodes during planned work",
                       description="Maintenance windows as Alertmanager silences: one per node, matching every "
                                   "npuobs alert (alertname=~\"Npu.+\") on that node or one of its devices. "
                                   "SLO burn alerts carry no node label and stay live: if the drained capacity "
                                   "hurts users, someone is still paged.")
    common = argparse.ArgumentParser(add_help=False)  # every action takes it, after the action's name
    common.add_argument("--alertmanager", type=http_url,
                        default=os.environ.get("NPUOBS_ALERTMANAGER_URL", DEFAULT_ALERTMANAGER_URL),
                        help="Alertmanager base URL (default $NPUOBS_ALERTMANAGER_URL or %(default)s)")
    msub = m.add_subparsers(dest="maintenance_command", metavar="ACTION", required=True)
    s = msub.add_parser("start", parents=[common], help="open a window on one or more nodes")
    s.add_argument("--node", action="append", required=True, help="node to silence (repeatable)")
    s.add_argument("--device", default="", help="only this device of the node(s)")
    s.add_argument("--duration", required=True, type=duration_seconds, help="how long, e.g. 30m, 2h")
    s.add_argument("--comment", required=True, help="why: the change ticket or the work being done")
    s.add_argument("--created-by", default=os.environ.get("USER") or "npuobs",
                   help="who (default $USER, else npuobs)")
    s.set_defaults(func=run_maintenance_start)
    ls = msub.add_parser("list", parents=[common], help="show open windows (with --all, recently expired ones too)")
    ls.add_argument("--all", action="store_true", help="include expired windows Alertmanager still holds")
    ls.set_defaults(func=run_maintenance_list)
    e = msub.add_parser("end", parents=[common], help="end windows early, by id or every open one on a node")
    e.add_argument("ids", nargs="*", help="window (silence) ids, as `start` and `list` print them")
    e.add_argument("--node", default="", help="end every open window on this node")
    e.set_defaults(func=run_maintenance_end)


def _routing_key(severity: str, key_file: str) -> RoutingKey:
    key = os.environ.get(ENV_ROUTING_KEY[severity], "").strip()
    return RoutingKey(key=key) if key else RoutingKey(key_file=key_file)


def run_generate(args: argparse.Namespace) -> int:
    try:
        config = Config.load(
            args.slo,
            policy=args.policy,
            runbook_base_url=args.runbook_base_url,
            alertmanager=AlertmanagerOptions(
                page_key=_routing_key(cv.SEVERITY_PAGE, args.routing_key_file_page),
                ticket_key=_routing_key(cv.SEVERITY_TICKET, args.routing_key_file_ticket),
                pagerduty_url=args.pagerduty_url,
            ),
        )
        files = render(config)
    except SpecError as exc:
        raise CliError(str(exc)) from None
    for path in write(files, args.out):
        print(path)
    return 0


def run_check(args: argparse.Namespace) -> int:
    missing = [f for f in (*cv.RULE_FILES, cv.ALERTMANAGER_FILE) if not (args.dir / f).is_file()]
    if missing:
        raise CliError(f"{args.dir}: missing {', '.join(missing)}; run `npuobs alerts generate` first")
    try:
        runs = check(args.dir)
    except ToolMissing as exc:
        raise CliError(str(exc)) from None
    failed = 0
    for argv, result in runs:
        ok = result.returncode == 0
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {Path(argv[0]).name} {' '.join(argv[1:])}")
        if not ok:
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
    return 1 if failed else 0


def _maintenance_call(args: argparse.Namespace, action: Callable[[AlertmanagerAPI], T]) -> T:
    try:
        return action(AlertmanagerAPI(args.alertmanager))
    except (ValueError, AlertmanagerError) as exc:
        raise CliError(str(exc)) from None


def run_maintenance_start(args: argparse.Namespace) -> int:
    ids = _maintenance_call(args, lambda api: maintenance.start(
        api, args.node, duration=timedelta(seconds=args.duration), comment=args.comment,
        created_by=args.created_by, device=args.device))
    scope = f"device {args.device} of " if args.device else ""
    how_long = format_duration(int(args.duration))
    for node, silence_id in zip(args.node, ids, strict=True):
        print(f"{silence_id}  {scope}{node}: npuobs alerts silenced for {how_long}")
    return 0


def run_maintenance_list(args: argparse.Namespace) -> int:
    found = _maintenance_call(args, lambda api: maintenance.windows(api, include_expired=args.all))
    if not found:
        print("no open npuobs maintenance windows" if not args.all else "no npuobs maintenance windows")
        return 0
    rows = [(w.id, w.node, w.device or "all", w.state, w.starts_at, w.ends_at, w.created_by, w.comment)
            for w in found]
    print(text_table(("id", "node", "device", "state", "starts", "ends", "created by", "comment"), rows))
    return 0


def run_maintenance_end(args: argparse.Namespace) -> int:
    ended = _maintenance_call(args, lambda api: maintenance.end(api, ids=args.ids, node=args.node))
    for silence_id in ended:
        print(f"{silence_id}  ended")
    if not ended:
        print(f"no open npuobs maintenance window on {args.node}")
    return 0
