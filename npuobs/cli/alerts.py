"""``npuobs alerts``: generate alerting artifacts from an SLO spec, and check them with the real tools."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import DEFAULT_KEY_DIR, ENV_ROUTING_KEY, AlertmanagerOptions, RoutingKey
from npuobs.alerting.burnrate import DEFAULT_POLICY, POLICIES
from npuobs.alerting.generate import Options, ToolMissing, check, render, write
from npuobs.alerting.slo_spec import SpecError, load_spec
from npuobs.cli.errors import CliError


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
    g.add_argument("--slo", type=Path, required=True, help="SLO spec (npuobs/v1 or OpenSLO v1 YAML)")
    g.add_argument("--out", type=Path, required=True, help="output directory")
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


def _routing_key(severity: str, key_file: str) -> RoutingKey:
    key = os.environ.get(ENV_ROUTING_KEY[severity], "").strip()
    return RoutingKey(key=key) if key else RoutingKey(key_file=key_file)


def run_generate(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.slo)
        options = Options(
            policy=args.policy,
            runbook_base_url=args.runbook_base_url,
            alertmanager=AlertmanagerOptions(
                page_key=_routing_key(cv.SEVERITY_PAGE, args.routing_key_file_page),
                ticket_key=_routing_key(cv.SEVERITY_TICKET, args.routing_key_file_ticket),
                pagerduty_url=args.pagerduty_url,
            ),
        )
        files = render(spec, options)
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
