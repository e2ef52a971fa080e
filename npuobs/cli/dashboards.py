"""``npuobs dashboards``: generate (and check) the Grafana dashboards; snapshot them from live Prometheus."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from npuobs import resources
from npuobs.alerting import conventions as cv
from npuobs.alerting.burnrate import DEFAULT_POLICY, POLICIES
from npuobs.alerting.slo_spec import SpecError
from npuobs.cli.argtypes import http_url, number_between, output_dir
from npuobs.cli.errors import CliError
from npuobs.config import Config
from npuobs.dashboards.generate import render, stale, write
from npuobs.dashboards.panels import DASHBOARDS
from npuobs.dashboards.validate import schema_problems, structural_problems
from npuobs.promapi import PrometheusAPI, PrometheusUnreachable


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dashboards", help="generate Grafana dashboards; render them from live Prometheus",
                              description="Executive, on-call and debug Grafana dashboards built from the metric "
                                          "schema, the shared thresholds and the SLO spec.")
    sub = p.add_subparsers(dest="dashboards_command", metavar="ACTION", required=True)

    g = sub.add_parser("generate", help="write the dashboard JSON and Grafana provisioning files",
                       description="Write executive.json, oncall.json, debug.json and provisioning/ (datasource "
                                   "and dashboard provider) into --out. With --check, write nothing: compare with "
                                   "what --out holds, validate against Grafana's dashboard schema, exit 1 on any "
                                   "difference or problem.")
    g.add_argument("--out", type=output_dir, required=True, help="output directory (the repository keeps dashboards/)")
    g.add_argument("--check", action="store_true", help="verify --out is up to date and valid instead of writing")
    _generation_options(g)
    g.set_defaults(func=run_generate)

    s = sub.add_parser("snapshot", help="render every panel from live Prometheus data to PNG and one HTML page",
                       description="Run each panel's queries (variables at their defaults) against Prometheus over "
                                   "the last --minutes and render <dashboard>.png, per-panel PNGs and index.html "
                                   "into --out: what on-call would see, without Grafana.")
    s.add_argument("--prometheus", required=True, type=http_url, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    s.add_argument("--out", type=output_dir, required=True, help="output directory")
    s.add_argument("--minutes", type=number_between(1, 60 * 24 * 31), default=15.0,
                   help="time range ending now (default %(default)g)")
    s.add_argument("--rate-interval", default="1m",
                   help="what $__rate_interval stands for; Grafana uses 4x the scrape interval (default %(default)s)")
    s.add_argument("--from", dest="source", type=Path,
                   help="render the dashboard JSON files in this directory instead of freshly generated ones")
    s.add_argument("--dashboard", action="append", choices=[d.key for d in DASHBOARDS],
                   help="only this dashboard (repeatable; default all three)")
    _generation_options(s)
    s.set_defaults(func=run_snapshot)


def _generation_options(p: argparse.ArgumentParser) -> None:
    defaults = Config  # field defaults documented once, on the dataclass
    p.add_argument("--slo", type=Path, help="SLO spec the alerts use (default: the packaged alerts/slo.yaml)")
    p.add_argument("--policy", choices=tuple(POLICIES), default=DEFAULT_POLICY,
                   help="burn-rate policy of the alerts, for the burn-rate panels (default %(default)s)")
    p.add_argument("--runbook-base-url", default=cv.DEFAULT_RUNBOOK_BASE_URL,
                   help="runbook links are <base>/runbooks/<AlertName>.md (default %(default)s)")
    p.add_argument("--cost-per-kwh", type=number_between(0, 1e6, what="a price"),
                   help="default energy price in the executive dashboard (default: the SLO spec's "
                        "thresholds.energy_kwh_cost, which the cost-anomaly alert uses)")
    p.add_argument("--cost-per-device-hour", type=number_between(0, 1e6, what="a price"),
                   help="default price of one NPU-hour in the executive dashboard (default: the SLO spec's "
                        "thresholds.device_hour_cost, which the cost-anomaly alert uses)")
    p.add_argument("--currency-unit", default=defaults.currency_unit,
                   help="Grafana currency unit of the cost panel (default %(default)s)")
    p.add_argument("--prometheus-url", default=defaults.prometheus_url,
                   help="URL Grafana reaches Prometheus at, for the provisioned datasource (default %(default)s)")
    p.add_argument("--scrape-interval", default=defaults.scrape_interval,
                   help="Prometheus scrape interval, the datasource's timeInterval (default %(default)s)")
    p.add_argument("--tempo-url", default=defaults.tempo_url,
                   help="URL Grafana reaches Tempo at, for the provisioned trace datasource (default %(default)s)")
    p.add_argument("--trace-url",
                   help="URL of one trace with {trace_id} where the ID goes, for exemplar trace links "
                        "(default: Grafana Explore on the provisioned Tempo datasource)")


def _options(args: argparse.Namespace) -> Config:
    extra = {"trace_url": args.trace_url} if args.trace_url else {}
    if args.trace_url is not None and "{trace_id}" not in args.trace_url:
        raise CliError("--trace-url must contain {trace_id} where the exemplar's trace ID goes")
    try:
        return Config.load(args.slo, policy=args.policy, runbook_base_url=args.runbook_base_url,
                           cost_per_kwh=args.cost_per_kwh, cost_per_device_hour=args.cost_per_device_hour,
                           currency_unit=args.currency_unit, prometheus_url=args.prometheus_url,
                           scrape_interval=args.scrape_interval, tempo_url=args.tempo_url, **extra)
    except SpecError as exc:
        raise CliError(str(exc)) from None


def run_generate(args: argparse.Namespace) -> int:
    files = render(_options(args))
    boards = [json.loads(files[ref.filename]) for ref in DASHBOARDS]
    problems = structural_problems(boards, resources.runbook_dir())
    if args.check:
        try:
            problems += [f"{b['uid']}: {p}" for b in boards for p in schema_problems(b)]
        except ModuleNotFoundError as exc:
            raise CliError(f"--check validates against Grafana's schema and needs {exc.name}, an optional part: "
                           "pip install 'npuobs[validate]'") from None
        outdated = stale(files, args.out)
        for name in outdated:
            print(f"stale: {args.out / name} (run `npuobs dashboards generate --out {args.out}`)")
        for problem in problems:
            print(f"invalid: {problem}")
        if not outdated and not problems:
            print(f"ok: {len(files)} files in {args.out} are up to date and valid")
        return 1 if outdated or problems else 0
    if problems:
        raise CliError("generated dashboards are invalid:\n  " + "\n  ".join(problems))
    for path in write(files, args.out):
        print(path)
    return 0


def run_snapshot(args: argparse.Namespace) -> int:
    try:
        from npuobs.dashboards.snapshot import Settings, snapshot
    except ModuleNotFoundError as exc:
        raise CliError(f"dashboards snapshot draws with {exc.name}, an optional part: "
                       "pip install 'npuobs[snapshot]'") from None
    keys = args.dashboard or [d.key for d in DASHBOARDS]
    if args.source:
        missing = [k for k in keys if not (args.source / f"{k}.json").is_file()]
        if missing:
            raise CliError(f"{args.source}: no {', '.join(f'{k}.json' for k in missing)}")
        boards = [json.loads((args.source / f"{k}.json").read_text(encoding="utf-8")) for k in keys]
    else:
        files = render(_options(args))
        boards = [json.loads(files[f"{k}.json"]) for k in keys]
    if args.minutes <= 0:
        raise CliError("--minutes must be positive")
    try:
        written = snapshot(PrometheusAPI(args.prometheus), boards, args.out,
                           Settings(minutes=args.minutes, rate_interval=args.rate_interval))
    except PrometheusUnreachable as exc:
        raise CliError(str(exc)) from None
    print(f"{len(written)} files; open {written[-1]}", file=sys.stdout)
    return 0
