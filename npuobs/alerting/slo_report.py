"""SLO report from a live Prometheus: attainment, error budget left, burn rates, who burned it.

Everything is read from the recording rules the alert generator writes (names in
``npuobs.alerting.conventions``): the SLOs themselves come from ``npuobs:slo_objective:ratio``, the
burn rate per window from ``npuobs:slo_errors_per_request:ratio_rate<window>`` divided by
``npuobs:slo_error_budget:ratio``. The SLO spec is read only for what recording rules do not hold:
the period's error ratio when ``--period`` differs from the recorded one, and the per-device
breakdown (the SLI queries, regrouped ``by (node, device)``), which answers "whose budget is this".

Failure modes come from two places: the request outcomes behind availability errors (``error`` is
a failing device, ``oom`` memory exhaustion, ``rejected`` an overloaded queue) and the device alerts
that fired in the period (``ALERTS``, kept by the Prometheus that evaluated them).
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any

from npuobs.alerting import conventions as cv
from npuobs.alerting.slo_spec import REGROUPABLE, SLO, WINDOW, Spec
from npuobs.durations import parse_duration
from npuobs.gameday.tables import markdown_table, text_table
from npuobs.promapi import PrometheusAPI

OUTCOME_FAILURE_MODES = {"error": "F1 device errors", "oom": "F4 memory OOM", "rejected": "queue full (F2/F7 load)"}
TOP = 3


class PrometheusClient(PrometheusAPI):
    """Instant queries pinned to one evaluation time (None: Prometheus' now), so a report is consistent."""

    def __init__(self, url: str, at: float | None = None, timeout: float = 30.0) -> None:
        super().__init__(url, timeout)
        self.at = at

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        return super().query(promql, self.at if at is None else at)

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


@dataclass
class Contributor:
    what: str  # "node-a/1" or a failure mode
    events: float  # bad events in the period
    share: float  # of all bad events of the SLO


@dataclass
class SloStatus:
    slo: str
    sli: str
    model: str
    objective: float  # ratio, 0.999
    period: str
    error_ratio: float | None  # over the period; None = no traffic
    burn_rates: dict[str, float | None]  # window -> error ratio / budget
    devices: list[Contributor] = field(default_factory=list)
    failure_modes: list[Contributor] = field(default_factory=list)

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 12)

    @property
    def attainment(self) -> float | None:
        return None if self.error_ratio is None else 1 - self.error_ratio

    @property
    def budget_remaining(self) -> float | None:
        return None if self.error_ratio is None else 1 - self.error_ratio / self.budget

    def as_dict(self) -> dict[str, Any]:
        return {"slo": self.slo, "sli": self.sli, "model": self.model, "objective": self.objective,
                "period": self.period, "error_ratio": self.error_ratio, "attainment": self.attainment,
                "error_budget_remaining": self.budget_remaining, "burn_rates": self.burn_rates,
                "top_devices": [c.__dict__ for c in self.devices],
                "top_failure_modes": [c.__dict__ for c in self.failure_modes]}


def _by_device(prom: PrometheusClient, promql: str) -> dict[tuple[str, str], float]:
    return {(r["metric"].get("node", ""), r["metric"].get("device", "")): float(r["value"][1])
            for r in prom.query(promql)}


def _top(counts: dict[str, float]) -> list[Contributor]:
    total = sum(v for v in counts.values() if v > 0)
    ranked = sorted(((k, v) for k, v in counts.items() if v > 0), key=lambda kv: -kv[1])[:TOP]
    return [Contributor(k, v, v / total) for k, v in ranked]


def _devices(prom: PrometheusClient, slo: SLO, period: str) -> list[Contributor]:
    query = slo.bad_by_device(period, "increase")
    if query is None:
        return []
    return _top({f"{n}/{d}": v for (n, d), v in _by_device(prom, query).items()})


def _failure_modes(prom: PrometheusClient, slo: SLO, period: str) -> list[Contributor]:
    counts: dict[str, float] = {}
    if slo.sli == "availability" and slo.errors_query is not None and "outcome!=" in slo.errors_query:
        query = slo.errors_query.replace(WINDOW, period).replace(REGROUPABLE, "sum by (outcome) (increase(")
        for r in prom.query(query):
            outcome = r["metric"].get("outcome", "")
            counts[OUTCOME_FAILURE_MODES.get(outcome, outcome)] = float(r["value"][1])
        return _top(counts)
    # other SLIs: how long each failure mode's device alerts fired in the period (minutes)
    query = (f'sum by (failure_mode) (count_over_time(ALERTS{{alertstate="firing",'
             f'failure_mode!~"{cv.FAILURE_MODE_SLO}|{cv.FAILURE_MODE_SELF}"}}[{period}]))')
    for r in prom.query(query):
        counts[r["metric"].get("failure_mode", "")] = float(r["value"][1])
    return _top(counts)


def collect(prom: PrometheusClient, spec: Spec, period: str | None = None) -> list[SloStatus]:
    """Status of every SLO Prometheus has objective recordings for (spec order first)."""
    objectives = {r["metric"].get("slo", ""): r for r in prom.query(cv.SLO_OBJECTIVE)}
    windows: dict[str, dict[str, float]] = {}
    for r in prom.query(f'{{__name__=~"{re.escape(cv.SLO_ERROR_RATIO_PREFIX)}.+"}}'):
        window = r["metric"]["__name__"][len(cv.SLO_ERROR_RATIO_PREFIX):]
        windows.setdefault(r["metric"].get("slo", ""), {})[window] = float(r["value"][1])
    by_name = {s.name: s for s in spec.slos}
    out = []
    for name in [n for n in by_name if n in objectives] + sorted(n for n in objectives if n not in by_name):
        labels = objectives[name]["metric"]
        objective = float(objectives[name]["value"][1])
        budget = round(1 - objective, 12)
        slo = by_name.get(name)
        chosen = period or (slo.period if slo else "30d")
        recorded = windows.get(name, {})
        ratio = recorded.get(chosen)
        if ratio is None and slo is not None:
            ratio = prom.scalar(slo.error_ratio_expr(chosen))
        burns = {w: (v / budget if budget else None)
                 for w, v in sorted(recorded.items(), key=lambda kv: parse_duration(kv[0]))
                 if parse_duration(w) < parse_duration(chosen)}
        status = SloStatus(name, labels.get("sli", slo.sli if slo else ""), labels.get("model", ""), objective,
                           chosen, ratio, burns)
        if slo is not None:
            status.devices = _devices(prom, slo, chosen)
            status.failure_modes = _failure_modes(prom, slo, chosen)
        out.append(status)
    return out


# -- rendering -------------------------------------------------------------------------------------------

def _pct(v: float | None, digits: int = 3) -> str:
    return "no data" if v is None else f"{v * 100:.{digits}f} %"


def _burns(s: SloStatus) -> str:
    return " ".join(f"{w}={'-' if v is None else f'{v:.2f}x'}" for w, v in s.burn_rates.items()) or "-"


def _contributors(cs: list[Contributor]) -> str:
    return ", ".join(f"{c.what} {c.share:.0%}" for c in cs) or "none"


def _rows(statuses: list[SloStatus]) -> list[list[str]]:
    return [[s.slo, s.sli, f"{s.objective * 100:g} %", s.period, _pct(s.attainment), _pct(s.budget_remaining, 1),
             _burns(s), _contributors(s.devices), _contributors(s.failure_modes)] for s in statuses]


HEADER = ("SLO", "SLI", "objective", "period", "attainment", "budget left", "burn rate by window",
          "top devices", "top failure modes")


def render_table(statuses: list[SloStatus], at: float | None) -> str:
    when = "now" if at is None else datetime.datetime.fromtimestamp(at, datetime.timezone.utc).isoformat()
    return f"SLO report at {when}\n\n" + text_table(HEADER, _rows(statuses)) + "\n"


def render_markdown(statuses: list[SloStatus], at: float | None) -> str:
    when = "now" if at is None else datetime.datetime.fromtimestamp(at, datetime.timezone.utc).isoformat()
    notes = ("Burn rate = error ratio over the window / error budget (1x spends the budget exactly over the period). "
             "Top devices: share of the SLO's bad events; top failure modes: share of bad events by request outcome "
             "(availability) or of device-alert firing time (other SLIs).")
    return f"## SLO report ({when})\n\n" + markdown_table(HEADER, _rows(statuses)) + f"\n\n{notes}\n"


def render_json(statuses: list[SloStatus], at: float | None) -> str:
    return json.dumps({"at": at, "slos": [s.as_dict() for s in statuses]}, indent=1) + "\n"
