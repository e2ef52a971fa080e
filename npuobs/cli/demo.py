"""``npuobs demo``: the whole stack on one machine, no Docker: fleet, exporters, Prometheus, Alertmanager, pages.

Runs until ``--duration`` passes or Ctrl-C, then stops every part it started (processes reaped,
ports freed). Without the Prometheus/Alertmanager binaries it runs the fleet and exporters only
and says how to install the rest.

Each demo gets a fresh simulator state directory (printed in the banner, where ``npuobs sim
inject --state-dir`` targets it, and removed at the end), so a fault injected into an earlier demo
is never active in the next one; ``--state-dir`` reuses a directory on purpose. The three
dashboards are served as live HTML pages drawn from the demo's Prometheus (no Grafana needed).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from npuobs.alerting.slo_spec import SpecError
from npuobs.cli.errors import CliError
from npuobs.cli.sim import DEFAULT_STATE_DIR, _duration
from npuobs.config import Config
from npuobs.dashboards.live import LiveDashboardServer, LivePages, LiveSettings
from npuobs.simulator.fleet import FleetConfig
from npuobs.simulator.state import StateError, default_state_dir, ensure_private_dir
from npuobs.stack.embedded import EmbeddedStack, Timing
from npuobs.stack.proc import StackError

STATUS_EVERY_SECONDS = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the whole stack locally: fleet, exporters, Prometheus, alerts",
                              description="Simulated fleet (2 nodes x 4 NPUs) + one exporter per node + real "
                                          "Prometheus and Alertmanager with the generated rules + a local "
                                          "PagerDuty sink. Ctrl-C stops everything.")
    p.add_argument("--duration", type=_duration, help="stop after this long (wall time, e.g. 60 or 10m)")
    p.add_argument("--fleet", type=Path, help="fleet YAML (default: the embedded 2x4 demo fleet)")
    p.add_argument("--state-dir", type=Path,
                   help="simulator state directory, where `npuobs sim inject --state-dir` finds the fleet (default: "
                        f"a new directory under {Path(DEFAULT_STATE_DIR).parent} for each demo, removed at the end)")
    p.add_argument("--workdir", type=Path, help="keep Prometheus/Alertmanager data and logs here (default: temporary)")
    p.add_argument("--slo", type=Path, help="SLO spec (with its thresholds:) the rules and dashboards come from "
                                            "(default: the packaged alerts/slo.yaml)")
    p.add_argument("--alert-for-cap", default="30s",
                   help="cap alert `for:` durations so faults page within a minute (default 30s; 'none' keeps the "
                        "generated values)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        fleet = FleetConfig.from_yaml(args.fleet) if args.fleet else FleetConfig.default()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        config = Config.load(args.slo)
    except SpecError as exc:
        raise CliError(str(exc)) from None
    cap = None if args.alert_for_cap == "none" else args.alert_for_cap
    fresh_state = args.state_dir is None
    state_dir = args.state_dir or fresh_state_dir()
    stack = EmbeddedStack(fleet_config=fleet, timing=Timing(for_cap=cap), workdir=args.workdir, state_dir=state_dir,
                          config=config)
    stop = _install_signal_handlers()
    print("npuobs demo: starting simulated fleet, exporters, Prometheus, Alertmanager ...", flush=True)
    live: LiveDashboardServer | None = None
    try:
        stack.start()
        if stack.prometheus is not None:
            live = live_dashboards(stack).start()
    except (StackError, OSError) as exc:
        stack.stop()
        if fresh_state:
            shutil.rmtree(state_dir, ignore_errors=True)
        raise CliError(f"demo could not start: {exc}") from None
    try:
        print(_banner(stack, cap, live, fresh_state), flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            print(_status(stack), flush=True)
            stop.wait(STATUS_EVERY_SECONDS if deadline is None else
                      max(0.0, min(STATUS_EVERY_SECONDS, deadline - time.monotonic())))
    finally:
        print("npuobs demo: stopping ...", flush=True)
        if live is not None:
            live.stop()
        stack.stop()
        if fresh_state:
            shutil.rmtree(state_dir, ignore_errors=True)
        print("npuobs demo: stopped", flush=True)
    return 0


def fresh_state_dir() -> Path:
    """A new private directory for this demo's simulator state, beside the default state directory."""
    try:
        parent = ensure_private_dir(default_state_dir().parent)
        return Path(tempfile.mkdtemp(prefix="demo-", dir=parent))
    except (StateError, OSError) as exc:
        raise CliError(f"cannot create the demo's state directory: {exc}") from None


def live_dashboards(stack: EmbeddedStack) -> LiveDashboardServer:
    """The three dashboards, generated from the stack's config, drawn live from its Prometheus."""
    from npuobs.dashboards.generate import dashboards
    from npuobs.durations import format_duration, parse_duration
    from npuobs.promapi import PrometheusAPI

    assert stack.prometheus is not None
    boards = {ref.key: data for ref, data in dashboards(stack.config).items()}
    rate = format_duration(4 * parse_duration(stack.timing.scrape_interval))  # Grafana: 4 scrape intervals
    return LiveDashboardServer(LivePages(PrometheusAPI(stack.prometheus.url), boards, LiveSettings(rate_interval=rate)))


def _install_signal_handlers() -> threading.Event:
    """Ctrl-C / SIGTERM set an event the main loop waits on, so shutdown runs in one place."""
    event = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return event


def _banner(stack: EmbeddedStack, cap: str | None, live: LiveDashboardServer | None = None,
            fresh_state: bool = False) -> str:
    assert stack.runner is not None
    node, device = stack.fleet_config.nodes[0].name, "0"
    lines = ["", "npuobs demo is up:"]
    if live is not None:
        lines.append(f"  dashboards       {live.url}/  (executive, on-call, debug: live from Prometheus, "
                     f"refreshed every {live.pages.settings.refresh_seconds} s)")
    for n, url in stack.runner.exporter_urls.items():
        lines.append(f"  exporter {n:<8} {url}/metrics")
    if stack.prometheus and stack.alertmanager and stack.sink:
        lines += [f"  prometheus       {stack.prometheus.url}/  (alerts: {stack.prometheus.url}/alerts)",
                  f"  alertmanager     {stack.alertmanager.url}/",
                  f"  pagerduty sink   {stack.sink.url}/  (events logged to {stack.workdir}/pagerduty-events.jsonl)"]
        if cap:
            lines.append(f"  alert `for:` durations capped at {cap} for the demo (production uses the generated ones)")
    else:
        lines += [f"  NOT running {' and '.join(stack.missing)}: exporters only.",
                  "  install them with: make setup   (or apt-get install -y prometheus prometheus-alertmanager)"]
    lines.append(f"  simulator state  {stack.state_dir}" + ("  (new for this demo, removed when it stops)"
                                                              if fresh_state else ""))
    state = "" if str(stack.state_dir) == DEFAULT_STATE_DIR else f" --state-dir {stack.state_dir}"
    lines += ["", "From another terminal:",
              f"  npuobs sim inject F1 --node {node} --device {device}{state}     # device offline: pages",
              f"  npuobs sim inject F2 --node {node} --device 1 --duration 10m{state}   # thermal throttling",
              f"  npuobs sim status{state}   |   npuobs sim clear{state}"]
    if stack.alertmanager:
        lines.append(f"  npuobs alerts maintenance start --node {node} --duration 30m --comment 'planned work' "
                     f"--alertmanager {stack.alertmanager.url}   # silence a node")
    lines += ["Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def _status(stack: EmbeddedStack) -> str:
    assert stack.runner is not None
    devices = stack.runner.fleet.devices
    up = sum(d.online for d in devices)
    parts = [time.strftime("%H:%M:%S"), f"devices up {up}/{len(devices)}"]
    if stack.prometheus is not None:
        try:
            firing = stack.prometheus.query('ALERTS{alertstate="firing"}')
            names = sorted({r["metric"]["alertname"] for r in firing})
            parts.append("firing: " + (", ".join(names) if names else "none"))
        except StackError as exc:
            parts.append(f"prometheus: {exc}")
        parts.append(f"pages {len(stack.pages())}, tickets {len(stack.tickets())}")
    return " | ".join(parts)
