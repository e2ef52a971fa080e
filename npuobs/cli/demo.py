"""``npuobs demo``: the whole stack on one machine, no Docker: fleet, exporters, Prometheus, Alertmanager, pages.

Runs until ``--duration`` passes or Ctrl-C, then stops every part it started (processes reaped,
ports freed). Without the Prometheus/Alertmanager binaries it runs the fleet and exporters only
and says how to install the rest.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from npuobs.cli.errors import CliError
from npuobs.cli.sim import DEFAULT_STATE_DIR, _duration
from npuobs.simulator.fleet import FleetConfig
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
    p.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR),
                   help="simulator state directory, where `npuobs sim inject` finds the fleet "
                        f"(default {DEFAULT_STATE_DIR})")
    p.add_argument("--workdir", type=Path, help="keep Prometheus/Alertmanager data and logs here (default: temporary)")
    p.add_argument("--alert-for-cap", default="30s",
                   help="cap alert `for:` durations so faults page within a minute (default 30s; 'none' keeps the "
                        "generated values)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        fleet = FleetConfig.from_yaml(args.fleet) if args.fleet else FleetConfig.default()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    cap = None if args.alert_for_cap == "none" else args.alert_for_cap
    stack = EmbeddedStack(fleet_config=fleet, timing=Timing(for_cap=cap), workdir=args.workdir,
                          state_dir=args.state_dir)
    stop = _install_signal_handlers()
    print("npuobs demo: starting simulated fleet, exporters, Prometheus, Alertmanager ...", flush=True)
    try:
        stack.start()
    except (StackError, OSError) as exc:
        stack.stop()
        raise CliError(f"demo could not start: {exc}") from None
    try:
        print(_banner(stack, cap), flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            print(_status(stack), flush=True)
            stop.wait(STATUS_EVERY_SECONDS if deadline is None else
                      max(0.0, min(STATUS_EVERY_SECONDS, deadline - time.monotonic())))
    finally:
        print("npuobs demo: stopping ...", flush=True)
        stack.stop()
        print("npuobs demo: stopped", flush=True)
    return 0


def _install_signal_handlers() -> threading.Event:
    """Ctrl-C / SIGTERM set an event the main loop waits on, so shutdown runs in one place."""
    event = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return event


def _banner(stack: EmbeddedStack, cap: str | None) -> str:
    assert stack.runner is not None
    node, device = stack.fleet_config.nodes[0].name, "0"
    lines = ["", "npuobs demo is up:"]
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
