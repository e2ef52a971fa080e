"""``npuobs remediate``: the Alertmanager webhook receiver that acts on the serving plane, with guardrails.

    npuobs remediate --control-url URL --control-token-file FILE --alertmanager URL --prometheus URL [--enable]
    npuobs remediate --explain NpuDeviceDown

Dry-run unless the policy says ``enabled: true`` or ``--enable`` is given. See docs/remediation.md.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from npuobs.cli.argtypes import duration_seconds, http_url
from npuobs.cli.errors import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "remediate", help="act on alerts (drain, reset, rollback, CPU path) with guardrails: an Alertmanager webhook",
        description="Alertmanager webhook receiver mapping alerts to serving-plane actions through the control API, "
                    "with a policy file and guardrails (dry-run by default, maintenance silences, hourly limits, "
                    "capacity floor, idempotency, verification). See docs/remediation.md.")
    p.add_argument("--explain", metavar="ALERT", help="print what the policy does for this alert, then exit")
    p.add_argument("--policy", type=Path, help="policy file (default: the shipped remediation.yaml)")
    p.add_argument("--enable", action="store_true", help="act (default: dry-run unless the policy enables it)")
    p.add_argument("--listen", default="127.0.0.1:9481", help="webhook listen address (default 127.0.0.1:9481)")
    p.add_argument("--control-url", type=http_url,
                   help="the serving plane's control API (e.g. npuobs sim run --control-listen)")
    p.add_argument("--control-token-file", type=Path, help="bearer token for the control API")
    p.add_argument("--control-basic-auth-file", type=Path, help="'user:password' for the control API")
    p.add_argument("--alertmanager", type=http_url,
                   help="Alertmanager URL, for maintenance silences (without it: refuse to act)")
    p.add_argument("--prometheus", type=http_url, help="Prometheus URL, for capacity, device family and verification")
    p.add_argument("--state-dir", type=Path,
                   help="private state dir (default $XDG_RUNTIME_DIR/npuobs/remediate, else under ~/.local/state)")
    p.add_argument("--audit-log", type=Path, help="JSON-lines audit log (default <state-dir>/audit.jsonl)")
    p.add_argument("--verify-interval", type=duration_seconds, default=5.0,
                   help="how often verification queries Prometheus (default 5s)")
    p.add_argument("--grafana-url", type=http_url, help="Grafana base URL: every decision becomes an annotation")
    p.add_argument("--grafana-token-file", type=Path, help="Grafana service-account token")
    p.add_argument("--grafana-dashboard-uid", help="annotate this dashboard only (default: organisation-wide)")
    p.add_argument("--pagerduty-url", type=http_url, help="PagerDuty Events API v2 enqueue URL, for notes and pages")
    p.add_argument("--routing-key-file-page", type=Path, help="PagerDuty integration key of the page service")
    p.add_argument("--routing-key-file-ticket", type=Path, help="PagerDuty integration key of the ticket service")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from npuobs.remediation.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    if args.explain:
        print(policy.explain(args.explain))
        return 0
    controller = build_controller(args, policy)
    from npuobs.remediation.webhook import WebhookServer

    try:
        server = WebhookServer(controller, args.listen).start()
    except (OSError, ValueError) as exc:
        controller.state.close()
        raise CliError(f"--listen {args.listen}: {exc}") from None
    mode = "ENABLED: acting" if controller.enabled else "dry-run (nothing acts; --enable to act)"
    print(f"npuobs remediate: webhook on {server.url}/webhook, metrics on {server.url}/metrics; {mode}; "
          f"policy {policy.source}; state in {controller.state.dir}", file=sys.stderr)
    controller.resume()
    try:
        threading.Event().wait()
    finally:
        server.stop()
        controller.stop()
        controller.state.close()
    return 0


def build_controller(args: argparse.Namespace, policy):  # noqa: ANN001, ANN201 - lazily imported types
    from npuobs.amapi import AlertmanagerAPI
    from npuobs.instrumentation.controlserver import ControlAuth, ControlAuthError, ControlClient
    from npuobs.promapi import PrometheusAPI
    from npuobs.remediation.controller import Controller
    from npuobs.remediation.notify import Grafana, NotifyError, PagerDuty, read_key_file
    from npuobs.remediation.state import StateDirError, StateStore, default_state_dir

    if not args.control_url:
        raise CliError("--control-url is required (the serving plane's control API)")
    if not args.alertmanager:
        raise CliError("--alertmanager is required: without it maintenance silences cannot be checked")
    try:
        auth = ControlAuth.from_files(args.control_token_file, args.control_basic_auth_file)
        grafana = pagerduty = None
        if args.grafana_url:
            token = read_key_file(args.grafana_token_file, "Grafana token") if args.grafana_token_file else None
            grafana = Grafana(args.grafana_url, token, args.grafana_dashboard_uid)
        if args.pagerduty_url:
            keys = {}
            if args.routing_key_file_page:
                keys["page"] = read_key_file(args.routing_key_file_page, "PagerDuty routing key")
            if args.routing_key_file_ticket:
                keys["ticket"] = read_key_file(args.routing_key_file_ticket, "PagerDuty routing key")
            if not keys:
                raise CliError("--pagerduty-url needs --routing-key-file-page and/or --routing-key-file-ticket")
            pagerduty = PagerDuty(args.pagerduty_url, keys)
        state = StateStore(args.state_dir or default_state_dir())
    except (ControlAuthError, NotifyError, StateDirError) as exc:
        raise CliError(str(exc)) from None
    return Controller(policy, state, ControlClient(args.control_url, auth), enabled=True if args.enable else None,
                      alertmanager=AlertmanagerAPI(args.alertmanager),
                      prometheus=PrometheusAPI(args.prometheus) if args.prometheus else None,
                      grafana=grafana, pagerduty=pagerduty, audit_path=args.audit_log,
                      verify_interval=args.verify_interval)
