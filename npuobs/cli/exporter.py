"""``npuobs exporter``: run the per-node exporter until SIGTERM/SIGINT.

Flags override the ``--config`` file key by key; a flag left out keeps the file's value (or the
default). Bad input (unknown config key, wrong type, unreadable web config, unknown backend)
is one ``npuobs: error:`` line naming the key and the file, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType

from npuobs.cli.argtypes import number_between
from npuobs.cli.errors import CliError
from npuobs.devices import registry
from npuobs.devices.base import BackendError
from npuobs.exporter import logs
from npuobs.exporter.config import (
    DEFAULT_INTERVAL,
    DEFAULT_LISTEN,
    DEFAULT_PODRESOURCES_SOCKET,
    INTERVAL_BOUNDS,
    LOG_FORMATS,
    OTLP_INTERVAL_BOUNDS,
    OTLP_PROTOCOLS,
    TIMEOUT_BOUNDS,
    ConfigError,
    ExporterConfig,
    load,
    override,
)
from npuobs.schema import DEFAULT_PROFILE, PROFILES

DESCRIPTION = ("Serve device and runtime metrics on /metrics (Prometheus text or OpenMetrics), "
               "with /healthz, /ready and a landing page at /. See docs/exporter.md.")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("exporter", help="run the per-node Prometheus/OTLP exporter", description=DESCRIPTION)
    add_arguments(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The exporter's flags (kept apart from ``register`` so tools can build the same parser)."""
    p.add_argument("--backend", choices=registry.names(), help="device backend (config key: backend)")
    p.add_argument("--config", type=Path, help="exporter YAML config; flags override its keys")
    p.add_argument("--listen", help=f"host:port to serve on (default {DEFAULT_LISTEN})")
    p.add_argument("--node", help="node name for the node label (default: $NODE_NAME or the host name; sim "
                                  "backend: the only node of --state-dir's fleet)")
    p.add_argument("--state-dir", type=Path, help="simulator state directory (sim backend)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option, repeatable (config key backend_options.KEY; the flag wins), "
                        "e.g. --option smi_format=csv; see docs/backends.md")
    p.add_argument("--interval", type=number_between(*INTERVAL_BOUNDS, what="seconds"),
                   help=f"sampling interval in seconds (default {DEFAULT_INTERVAL:g})")
    p.add_argument("--sample-timeout", type=number_between(*TIMEOUT_BOUNDS, what="seconds"),
                   help="seconds before a sample counts as hung (default 80%% of the interval)")
    p.add_argument("--web-config", type=Path, help="exporter-toolkit web config (TLS, basic auth)")
    p.add_argument("--podresources-socket", type=Path,
                   help=f"kubelet PodResources socket (default {DEFAULT_PODRESOURCES_SOCKET}; absent = off)")
    p.add_argument("--otlp-endpoint", help="push readings over OTLP to this URL (off by default)")
    p.add_argument("--otlp-protocol", choices=OTLP_PROTOCOLS, help="OTLP transport (default grpc)")
    p.add_argument("--otlp-interval", type=number_between(*OTLP_INTERVAL_BOUNDS, what="seconds"),
                   help="seconds between OTLP pushes (default 30)")
    p.add_argument("--log-format", choices=LOG_FORMATS, help="json lines (default) or text")
    p.add_argument("--profile", choices=PROFILES,
                   help=f"cardinality profile (default {DEFAULT_PROFILE.value}; config key: profile); "
                        "series per profile in docs/metrics.md")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> ExporterConfig:
    """The file's config (or defaults) with the flags that were given on top."""
    try:
        base = load(args.config) if args.config else ExporterConfig()
        options = {**base.backend_options, **_key_values(args.option)} if args.option else None
        return override(base, backend=args.backend, backend_options=options, listen=args.listen, node=args.node,
                        state_dir=args.state_dir,
                        interval=args.interval, sample_timeout=args.sample_timeout, web_config=args.web_config,
                        log_format=args.log_format, profile=args.profile, podresources_socket=args.podresources_socket,
                        otlp_endpoint=args.otlp_endpoint, otlp_protocol=args.otlp_protocol,
                        otlp_interval=args.otlp_interval)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc


def _key_values(pairs: list[str]) -> dict[str, str]:
    """``["smi_format=csv"]`` -> ``{"smi_format": "csv"}`` (``-`` in a key reads as ``_``); the
    backend's options class converts and checks the values (``ExporterConfig.check_backend``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def sim_node(config: ExporterConfig, explicit: bool) -> ExporterConfig:
    """The sim backend serves one node of a simulated fleet: when no node was named (flag, file or
    ``$NODE_NAME``) and the state directory's fleet has exactly one, that is the node; with several,
    say which exist instead of serving a node that is not there."""
    if config.backend != "sim" or explicit or config.state_dir is None:
        return config
    from npuobs.simulator.state import StateError, read_fleet

    try:
        nodes = sorted(read_fleet(config.state_dir)["nodes"])
    except StateError:
        return config  # no fleet yet: the backend reports it per scrape until one starts
    if config.node in nodes:
        return config
    if len(nodes) == 1:
        return replace(config, node=nodes[0])
    raise CliError(f"{config.state_dir} holds a fleet of {len(nodes)} nodes ({', '.join(nodes)}): "
                   "pick one with --node")


def run(args: argparse.Namespace) -> int:
    from npuobs.exporter import Exporter

    config = build_config(args)  # validates the file first: a bad one is one line
    explicit = bool(args.node or os.environ.get("NODE_NAME") or (args.config and _file_names_node(args.config)))
    config = sim_node(config, explicit)
    logs.configure(config.log_format)
    try:
        exporter = Exporter(config)
    except (BackendError, ConfigError) as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot listen on {config.listen}: {exc.strerror or exc}") from exc
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    exporter.start()
    try:
        stop.wait()
    finally:
        exporter.stop()
    return 0


def _file_names_node(path: Path) -> bool:
    """Whether the config file sets ``node`` (it is valid: ``build_config`` loaded it already)."""
    return load(path).node != ExporterConfig().node
