"""``npuobs gameday``: failure-mode drills on the embedded stack, or a virtual-time soak (``--soak 24h``).

Exit status: 0 when every scenario was detected with the expected alert, severity, receiver and
runbook (soak: when nothing paged); 1 when one was missed or misrouted (soak: any page); 2 on bad
input.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from npuobs.alerting.slo_spec import SpecError
from npuobs.cli.argtypes import duration_seconds, integer_between, number_between, seed, speed
from npuobs.cli.errors import CliError
from npuobs.config import Config
from npuobs.durations import format_duration, parse_duration
from npuobs.simulator.loadgen import LoadProfile
from npuobs.stack.proc import StackError


def register(subparsers: argparse._SubParsersAction) -> None:
    from npuobs.gameday.remediation import SCENARIOS as REMEDIATION_SCENARIOS
    from npuobs.gameday.scenarios import SCENARIOS

    p = subparsers.add_parser(
        "gameday", help="run failure-mode drills against the real stack, or a virtual-time soak",
        description="Game days: inject each failure mode into the embedded stack (simulated fleet, exporters, "
                    "real Prometheus + Alertmanager, PagerDuty sink) and grade detection, severity, routing and "
                    "runbook. --soak runs healthy diurnal load in virtual time and counts pages.")
    names = tuple(SCENARIOS) + tuple(n for n in REMEDIATION_SCENARIOS if n not in SCENARIOS)
    p.add_argument("--scenario", action="append", choices=names, metavar="NAME",
                   help="run only this scenario (repeatable; default: all). One of: " + ", ".join(SCENARIOS)
                   + "; with --remediate: " + ", ".join(REMEDIATION_SCENARIOS))
    p.add_argument("--list", action="store_true", help="list the scenarios and what each expects, then exit")
    p.add_argument("--report", type=Path, help="write the report here (.json: JSON, anything else: Markdown)")
    p.add_argument("--json", type=Path, help="also write the JSON report here")
    p.add_argument("--rules", type=Path,
                   help="directory with recording-rules.yaml, slo-alerts.yaml, device-alerts.yaml to test instead "
                        "of the rules generated from --slo")
    p.add_argument("--slo", type=Path,
                   help="SLO spec the rules are generated from (default: the packaged alerts/slo.yaml)")
    p.add_argument("--speed", type=speed, default=10.0,
                   help="drills: virtual seconds per wall second of the fleet (default 10)")
    p.add_argument("--for-cap", default="30s",
                   help="drills: cap every alert's for: at this, so a drill does not wait 15 minutes (default 30s; "
                        "'none': the generated values)")
    p.add_argument("--detect-timeout", type=duration_seconds, default=360.0,
                   help="drills: give up on a scenario's expected alerts after this long (default 6m)")
    p.add_argument("--resolve-timeout", type=duration_seconds, default=90.0,
                   help="drills: wait at most this long for alerts to resolve after clearing (default 90s)")
    p.add_argument("--warmup", type=duration_seconds, default=30.0,
                   help="drills: let the stack run this long before the first drill (default 30s)")
    p.add_argument("--strict", action="store_true", help="drills: unexpected alerts fail the scenario too")
    p.add_argument("--remediate", action="store_true",
                   help="run the remediation scenarios with npuobs remediate off (dry-run) and on, side by side "
                        "(docs/remediation.md)")
    p.add_argument("--window", type=duration_seconds, default=120.0,
                   help="--remediate: how long each run watches before clearing (default 2m)")
    p.add_argument("--workdir", type=Path, help="keep the stack's or soak's files here (default: a temp dir)")
    soak = p.add_argument_group("soak (virtual time)")
    soak.add_argument("--soak", type=duration_seconds, metavar="DURATION",
                      help="run a soak of this much virtual time (e.g. 24h) instead of drills")
    soak.add_argument("--noise", action="store_true",
                      help="add brief background blips that must not page (device offline 20s, 1 min of heat ...)")
    soak.add_argument("--blips-per-hour", type=number_between(0, 3600), default=0.5,
                      help="blip rate with --noise (default 0.5)")
    soak.add_argument("--rate", type=number_between(0, 1e6), help="mean requests/s per device (default 150)")
    soak.add_argument("--tick", type=number_between(0.01, 60), default=1.0,
                      help="simulator tick, virtual seconds; must divide --scrape-interval (default 1; 10 runs "
                           "~20%% faster, with load, heat and faults changing only once per tick)")
    soak.add_argument("--scrape-interval", type=duration_seconds, default=30.0,
                      help="virtual scrape interval (default 30s)")
    soak.add_argument("--eval-interval", type=duration_seconds, default=60.0,
                      help="rule evaluation interval (default 1m)")
    soak.add_argument("--seed", type=seed, default=0, help="simulator and blip seed (default 0)")
    soak.add_argument("--workers", type=integer_between(1, 64), default=2,
                      help="simulator processes, one node each (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    if args.soak is not None:
        return _soak(args)
    if args.remediate:
        return _remediate(args)
    return _drills(args)


def _list() -> int:
    from npuobs.gameday.report import text_table
    from npuobs.gameday.scenarios import SCENARIOS

    rows = [(s.name, s.title, ", ".join(f"{e.alertname}/{e.severity}" for e in s.expect) or "(none: must stay quiet)")
            for s in SCENARIOS.values()]
    print(text_table(("scenario", "what", "expected alerts"), rows))
    return 0


def _write(args: argparse.Namespace, markdown: str, doc: dict) -> None:
    from npuobs.gameday.report import write_report

    if args.report:
        write_report(args.report, markdown, doc)
    if args.json:
        write_report(args.json.with_suffix(".json"), markdown, doc)


def _soak(args: argparse.Namespace) -> int:
    from npuobs.gameday.report import soak_json, soak_markdown, soak_text
    from npuobs.gameday.soak import SoakOptions, run_soak

    defaults = SoakOptions()
    if args.tick <= 0 or args.scrape_interval % args.tick:
        raise CliError(f"--scrape-interval must be a multiple of --tick ({args.tick:g}s)")
    load = defaults.fleet.load
    if args.rate is not None:
        load = LoadProfile(load.kind, args.rate, load.tenant_weights)
    fleet = replace(defaults.fleet, load=load, seed=args.seed, tick_seconds=args.tick)
    options = SoakOptions(duration=args.soak, fleet=fleet, scrape_interval=args.scrape_interval,
                          eval_interval=args.eval_interval, noise=args.noise, blips_per_hour=args.blips_per_hour,
                          workers=args.workers, rules_dir=args.rules, config=_config(args))
    print(f"npuobs gameday: soaking {format_duration(int(args.soak))} of virtual time (this takes minutes) ...",
          file=sys.stderr, flush=True)
    try:
        result = run_soak(options, args.workdir, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (StackError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(soak_text(result))
    doc, markdown = soak_json(result), soak_markdown(result)
    if args.remediate:
        from npuobs.gameday.remediation import soak_remediation

        doc["remediation"] = rem = soak_remediation(result.pages + result.tickets)
        line = (f"\nRemediation (policy rules, {rem['policy']}): {rem['actions']} actions for "
                f"{rem['fired_alerts']} fired alerts.\n")
        sys.stdout.write(line)
        markdown += line
    _write(args, markdown, doc)
    return 1 if result.pages else 0


def _remediate(args: argparse.Namespace) -> int:
    from npuobs.gameday.remediation import (
        SCENARIOS,
        RemediationOptions,
        remediation_json,
        remediation_markdown,
        run_remediation_gameday,
    )

    names = args.scenario or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise CliError(f"--remediate runs {', '.join(SCENARIOS)}; not: {', '.join(unknown)}")
    for_cap = "10s" if args.for_cap == "30s" else args.for_cap  # 30s is the drills' default; remediation: 10s
    try:
        parse_duration(for_cap)
    except ValueError as exc:
        raise CliError(f"--for-cap: {exc}") from None
    options = RemediationOptions(speed=args.speed, for_cap=for_cap, window_seconds=args.window,
                                 warmup_seconds=args.warmup)
    try:
        outcomes, wall = run_remediation_gameday(names, options, args.workdir,
                                                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (StackError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    markdown = remediation_markdown(outcomes, options, wall)
    sys.stdout.write(markdown)
    _write(args, markdown, remediation_json(outcomes, options, wall))
    return 0 if all(o.verdict == "ok" for o in outcomes) else 1


def _drills(args: argparse.Namespace) -> int:
    from npuobs.gameday.report import gameday_json, gameday_markdown, gameday_text
    from npuobs.gameday.runner import DrillOptions, run_drills
    from npuobs.gameday.scenarios import SCENARIOS

    names = args.scenario or list(SCENARIOS)
    for_cap = None if args.for_cap.lower() == "none" else args.for_cap
    try:
        if for_cap is not None:
            parse_duration(for_cap)
    except ValueError as exc:
        raise CliError(f"--for-cap: {exc}") from None
    options = DrillOptions(speed=args.speed, for_cap=for_cap, detect_timeout=args.detect_timeout,
                           resolve_timeout=args.resolve_timeout, warmup_seconds=args.warmup, rules_dir=args.rules,
                           config=_config(args))
    try:
        result = run_drills([SCENARIOS[n] for n in names], options, args.workdir,
                            progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (StackError, FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(gameday_text(result, args.strict))
    _write(args, gameday_markdown(result, args.strict), gameday_json(result, args.strict))
    return 0 if result.passed(strict=args.strict) else 1


def _config(args: argparse.Namespace) -> Config:
    """The config the game day's rules come from: ``--slo`` or the packaged spec."""
    try:
        return Config.load(args.slo)
    except SpecError as exc:
        raise CliError(str(exc)) from None
