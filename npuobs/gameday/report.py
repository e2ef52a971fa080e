"""Soak and game-day results as a terminal table, Markdown (for docs and tickets) and JSON (for tools).

One function per (result, format), no templates: the Markdown is what ``docs/gameday.md`` embeds and
what an SRE pastes into the game-day ticket, the JSON is what a dashboard or CI gate reads.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from npuobs.gameday.grader import SeenAlert
from npuobs.gameday.promeval import AlertInterval
from npuobs.gameday.runner import GameDayResult
from npuobs.gameday.soak import SoakResult
from npuobs.gameday.tables import markdown_table, text_table

_LABELS_SHOWN = ("node", "device", "slo", "vendor", "model", "component")


def fmt_seconds(seconds: float | None) -> str:
    """``95`` -> ``1m35s``; None -> ``-``."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def short_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={labels[k]}" for k in _LABELS_SHOWN if labels.get(k))


# -- soak -------------------------------------------------------------------------------------------------

def _soak_summary(r: SoakResult) -> list[tuple[str, str]]:
    o, rec = r.options, r.recording
    devices = sum(len(n.devices) for n in o.fleet.nodes)
    blips = Counter(b.fault for b in r.blips)
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in r.stage_seconds.items())
    return [
        ("virtual time", f"{fmt_seconds(o.duration)} from {utc(rec.start)} UTC"),
        ("fleet", f"{devices} devices on {len(o.fleet.nodes)} nodes, {o.fleet.load.kind} load, "
                  f"{o.fleet.load.rate_per_device:g} req/s per device at the mean, {o.fleet.tick_seconds:g}s ticks"),
        ("scrape / rule evaluation interval", f"{o.scrape_interval:g}s / {o.eval_interval:g}s"),
        ("samples backfilled", f"{rec.samples:,}"),
        ("wall time", f"{r.wall_seconds:.0f}s ({stages})"),
        ("background blips", (f"{len(r.blips)} (" + ", ".join(f"{k} x{v}" for k, v in sorted(blips.items())) + ")")
         if o.noise else "off"),
        ("**pages**", f"**{len(r.pages)}** alerts, {r.incidents('page')} PagerDuty incidents"),
        ("tickets", f"{len(r.tickets)} alerts, {r.incidents('ticket')} PagerDuty incidents"),
        ("tickets per day", f"{r.incidents('ticket') * 86400 / o.duration:.1f} PagerDuty incidents"),
        ("pending, never fired", ", ".join(f"{k} x{v}" for k, v in sorted(r.pending_only.items())) or "none"),
    ]


def _fired_rows(alerts: Sequence[AlertInterval], start: float) -> list[list[str]]:
    return [[a.alertname, a.severity, short_labels(a.labels), fmt_seconds(a.fired_at - start) if a.fired_at else "-",
             fmt_seconds(a.resolved_at - a.fired_at) if a.resolved_at and a.fired_at else "still firing"]
            for a in alerts]


_FIRED_HEADER = ("alert", "severity", "labels", "fired at (soak time)", "fired for")


def soak_text(r: SoakResult) -> str:
    fired = r.pages + r.tickets
    out = [f"npuobs gameday --soak: {'PASS' if not r.pages else 'FAIL'} ({len(r.pages)} pages)", "",
           text_table(("figure", "value"), [(k.strip("*"), v.replace("**", "")) for k, v in _soak_summary(r)])]
    if fired:
        out += ["", text_table(_FIRED_HEADER, _fired_rows(fired, r.recording.start))]
    return "\n".join(out) + "\n"


def soak_markdown(r: SoakResult) -> str:
    fired = r.pages + r.tickets
    out = [f"## Soak: {fmt_seconds(r.options.duration)} of {r.options.fleet.load.kind} load"
           f"{' with background blips' if r.options.noise else ''} — "
           f"{'0 pages' if not r.pages else f'{len(r.pages)} PAGES'}", "",
           markdown_table(("figure", "value"), _soak_summary(r)), ""]
    if fired:
        out += ["Alerts that fired:", "", markdown_table(_FIRED_HEADER, _fired_rows(fired, r.recording.start)), ""]
    return "\n".join(out)


def soak_json(r: SoakResult) -> dict[str, Any]:
    o = r.options
    return {
        "kind": "soak",
        "passed": not r.pages,
        "duration_seconds": o.duration,
        "start": r.recording.start,
        "scrape_interval_seconds": o.scrape_interval,
        "eval_interval_seconds": o.eval_interval,
        "samples": r.recording.samples,
        "wall_seconds": r.wall_seconds,
        "stage_seconds": r.stage_seconds,
        "noise": o.noise,
        "blips": [{"at": b.at, "fault": b.fault, "node": b.node, "device": b.device, "seconds": b.duration}
                  for b in r.blips],
        "pages": len(r.pages),
        "tickets": len(r.tickets),
        "page_incidents": r.incidents("page"),
        "ticket_incidents": r.incidents("ticket"),
        "tickets_per_day": r.incidents("ticket") * 86400 / o.duration,
        "pending_only": dict(r.pending_only),
        "fired": [a.as_dict() for a in r.pages + r.tickets],
    }


def write_report(path: Path, markdown: str, doc: dict[str, Any]) -> None:
    """``*.json`` gets the JSON document, anything else the Markdown."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    else:
        path.write_text(markdown, encoding="utf-8")


# -- game day ---------------------------------------------------------------------------------------------

_SCENARIO_HEADER = ("scenario", "injected", "first alert", "detected in", "receiver", "runbook", "resolved after clear",
                    "pages", "tickets", "first page", "suppressed", "unexpected", "verdict")
_MATRIX_HEADER = ("scenario", "expected alert", "expected severity -> receiver", "got", "verdict")


def _clock(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _scenario_rows(r: GameDayResult, strict: bool) -> list[list[str]]:
    rows = []
    for s in r.scenarios:
        first = f"{s.first_alert.alertname} ({s.first_alert.severity})" if s.first_alert else "-"
        delivered = [e.delivery for e in s.expects if e.delivery]
        receivers = ", ".join(sorted({d.receiver for d in delivered})) or "-"
        runbooks = ", ".join(sorted({d.runbook.rsplit("/", 1)[-1] for d in delivered})) or "-"
        if s.cleared_at is None:
            resolved = "n/a"
        elif not s.expects:
            resolved = "-"
        else:
            resolved = fmt_seconds(s.resolve_seconds) if s.resolve_seconds is not None \
                else f"> {fmt_seconds(r.options.resolve_timeout)}"
        unexpected = ", ".join(f"{a.alertname}/{a.severity}" for a in s.unexpected) or "none"
        verdict = s.verdict(strict) + (f" ({'; '.join(s.noise)})" if s.noise else "")
        rows.append([s.scenario.name, _clock(s.injected_at), first, fmt_seconds(s.detect_seconds), receivers,
                     runbooks, resolved, str(s.pages_opened), str(s.tickets_opened),
                     fmt_seconds(s.first_page_seconds), ", ".join(s.suppressed_names) or "none", unexpected, verdict])
    return rows


def _matrix_rows(r: GameDayResult) -> list[list[str]]:
    rows = []
    for s in r.scenarios:
        if not s.expects:
            got = "quiet" if not s.unexpected else ", ".join(a.alertname for a in s.unexpected)
            rows.append([s.scenario.name, "(none)", "-", got, "ok" if not s.unexpected else "noisy"])
        for e in s.expects:
            x = e.expect
            if e.alert is None:
                got = "nothing"
            else:
                receiver = e.delivery.receiver if e.delivery else "no PagerDuty event"
                got = f"{e.alert.alertname}/{e.alert.severity} -> {receiver}"
            verdict = e.verdict + (f" ({'; '.join(e.problems)})" if e.problems and e.alert else "")
            rows.append([s.scenario.name, x.alertname, f"{x.severity} -> {x.receiver}", got, verdict])
    return rows


def _gameday_head(r: GameDayResult, strict: bool) -> tuple[str, list[tuple[str, str]]]:
    o = r.options
    failed = [s.scenario.name for s in r.scenarios if s.verdict(strict) != "ok"]
    status = "PASS" if not failed else f"FAIL ({', '.join(failed)})"
    facts = [
        ("result", status),
        ("scenarios", str(len(r.scenarios))),
        ("wall time", fmt_seconds(r.wall_seconds)),
        ("fleet speed", f"{o.speed:g} virtual s per wall s"),
        ("alert for: cap", o.for_cap or "none (generated values)"),
        ("scrape / evaluation / group_wait / group_interval",
         f"{o.timing.scrape_interval} / {o.timing.evaluation_interval} / {o.timing.group_wait} / "
         f"{o.timing.group_interval}"),
        ("rules", str(o.rules_dir) if o.rules_dir else "generated from the SLO spec"),
    ]
    return status, facts


def gameday_text(r: GameDayResult, strict: bool = False) -> str:
    status, facts = _gameday_head(r, strict)
    return "\n".join([f"npuobs gameday: {status}", "", text_table(_SCENARIO_HEADER, _scenario_rows(r, strict)), "",
                      "coverage matrix:", text_table(_MATRIX_HEADER, _matrix_rows(r))]) + "\n"


def gameday_markdown(r: GameDayResult, strict: bool = False) -> str:
    status, facts = _gameday_head(r, strict)
    return "\n".join([f"## Game day: {status}", "", markdown_table(("figure", "value"), facts), "",
                      "### Scenarios", "", markdown_table(_SCENARIO_HEADER, _scenario_rows(r, strict)), "",
                      "### Coverage matrix", "", markdown_table(_MATRIX_HEADER, _matrix_rows(r)), ""])


def _seen(a: SeenAlert | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"labels": a.labels, "first_pending": a.first_pending, "first_firing": a.first_firing, "gone_at": a.gone_at}


def gameday_json(r: GameDayResult, strict: bool = False) -> dict[str, Any]:
    o = r.options
    return {
        "kind": "gameday",
        "passed": r.passed(strict),
        "started_at": r.started_at,
        "wall_seconds": r.wall_seconds,
        "speed": o.speed,
        "for_cap": o.for_cap,
        "scenarios": [{
            "name": s.scenario.name,
            "title": s.scenario.title,
            "failure_mode": s.scenario.failure_mode,
            "verdict": s.verdict(strict),
            "injected_at": s.injected_at,
            "cleared_at": s.cleared_at,
            "detect_seconds": s.detect_seconds,
            "resolve_seconds": s.resolve_seconds,
            "first_alert": _seen(s.first_alert),
            "pages_opened": s.pages_opened,
            "tickets_opened": s.tickets_opened,
            "first_page_seconds": s.first_page_seconds,
            "suppressed": s.suppressed_names,
            "noise": s.noise,
            "page_alerts": sorted({a.get("alertname", "") for d in s.pages for a in d.alerts}),
            "ticket_alerts": sorted({a.get("alertname", "") for d in s.tickets for a in d.alerts}),
            "expected": [{
                "alertname": e.expect.alertname, "severity": e.expect.severity, "receiver": e.expect.receiver,
                "failure_mode": e.expect.failure_mode, "verdict": e.verdict, "problems": e.problems,
                "alert": _seen(e.alert),
                "delivered_to": e.delivery.receiver if e.delivery else None,
                "delivered_at": e.delivery.at if e.delivery else None,
                "runbook": e.delivery.runbook if e.delivery else None,
                "resolve_delivered_at": e.resolved_delivery.at if e.resolved_delivery else None,
            } for e in s.expects],
            "unexpected": [_seen(a) for a in s.unexpected],
        } for s in r.scenarios],
    }
