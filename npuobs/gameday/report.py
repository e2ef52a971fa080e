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

from npuobs.gameday.promeval import AlertInterval
from npuobs.gameday.soak import SoakResult

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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


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
