"""The composite device-down alert: one page naming the device *and* the SLO it hurts, or a ticket when
spare capacity absorbed the loss (the NPU SRE guide: "composite alerts combining device-down and SLO breach").

Why one composite alert instead of two pages joined by labels: the SLO burn alert is fleet-wide (no
device label), so no Alertmanager inhibition can tie it to the device that causes it, and the two would
open two PagerDuty incidents. Instead

* ``NpuDeviceDown`` (page) fires for a device that is down (or was, within the burn alert's short window)
  while an SLO of the model it served burns at a page-level rate over that short window. It carries the
  device labels and the SLO's (``slo``, ``sli``), and its value is the burn rate;
* ``NpuDeviceDown`` (ticket) fires for a device that is down while no SLO it serves burns: spare capacity;
* the SLO's own page excludes (``unless``) models with such a down device, in PromQL rather than by
  inhibition, so it can never open its incident first (inhibition only works once the source fires).

Using only the short window is deliberate: the down device is the significance the long window otherwise
provides, so the composite pages within a minute or two of a device failing (the 1-hour window alone
needs ~7 minutes for one dead device in eight). Every SLO page the ``unless`` removes is replaced by a
composite page, because an SLO page implies its short window burns above the same threshold.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.alerting.burnrate import BurnWindow
from npuobs.alerting.rules import Alert
from npuobs.alerting.slo_spec import SLO, Spec
from npuobs.durations import parse_duration
from npuobs.thresholds import Thresholds

DOWN_FOR = "2m"  # the ticket: down this long with no SLO hurt (a 20-second blip is not worth a ticket)
DownDevices = Callable[[str], str]
"""Window -> PromQL of the devices down within it with the model they served (labels cluster, node, device,
vendor, model; value 1). Where the composite reads that from differs per tier: raw per-device series in one
Prometheus (:func:`down_serving`), a per-cluster record at the global tier (``globaltier``)."""

COMPOSITE_FOR = "1m"  # the page: the short window already confirms the burn; one minute rules out a flap
DEVICE = "cluster, node, device"
ON_DEVICE = "NPU {{ $labels.device }} ({{ $labels.vendor }}) on node {{ $labels.node }}"


def serving(job: str, lookback: str | None) -> str:
    """(cluster, node, device, model) for every device that served a model within ``lookback`` (None: that
    is scraped serving it now): which SLOs a device's loss can hurt. Read from the per-device canary series
    (every profile keeps its device label) and, where they carry one (the debug profile), the request
    counters."""
    out = []
    for name in ("npu_golden_mismatches_total", "npu_inference_requests_total"):
        series = f'{schema.metric(name).name}{{job="{job}",device!=""}}'
        if lookback:
            series = f"last_over_time({series}[{lookback}])"
        out.append(f"group by ({DEVICE}, model) ({series})")
    return f"({out[0]} or {out[1]})"


def down_serving(job: str, window: str, lookback: str) -> str:
    """Devices down now or at any time within ``window``, with the model they served (value 1)."""
    up = schema.metric("npu_device_up").name
    return (f'group by ({DEVICE}, vendor, model) (\n'
            f'  (min_over_time({up}{{job="{job}"}}[{window}]) == 0)\n'
            f'  * on ({DEVICE}) group_right (vendor)\n'
            f'  {serving(job, lookback)}\n)')


def raw_down(spec: Spec, t: Thresholds) -> DownDevices:
    """:func:`down_serving` over this Prometheus' own raw series: the default everywhere but the global tier."""
    return lambda window: down_serving(spec.fleet.exporter_job, window, t.capacity_inventory_lookback)


def page_short_windows(spec: Spec, windows: dict[str, tuple[BurnWindow, ...]]) -> list[str]:
    """The short windows of every page window pair of an SLO tied to a model: the windows a composite clause
    (and the SLO page's ``unless``) asks "down within" for."""
    shorts = {w.short for slo in spec.slos if slo.model for w in windows[slo.name] if w.severity == cv.SEVERITY_PAGE}
    return sorted(shorts, key=parse_duration)


def _burning(slo: SLO, w: BurnWindow) -> str:
    return (f'{cv.slo_error_ratio(w.short)}{{slo="{slo.name}"}} / {slo.error_budget:g} > {w.factor:g}')


def _clauses(spec: Spec, windows: dict[str, tuple[BurnWindow, ...]], down: DownDevices) -> dict[str, str]:
    """SLO name -> down devices x the page-level short-window burn of that SLO (one clause per page window
    pair); SLOs without a model are left out (custom SLIs cannot be tied to devices)."""
    extra = ", ".join(("slo", "sli", "service", *spec.labels))
    out = {}
    for slo in spec.slos:
        clauses = []
        for w in windows[slo.name]:
            if w.severity != cv.SEVERITY_PAGE or not slo.model:
                continue
            down_expr = textwrap.indent(down(w.short), "  ")
            clauses.append(f"(\n{down_expr}\n  * on (model) group_left ({extra})\n  ({_burning(slo, w)})\n)")
        if clauses:
            out[slo.name] = "\nor\n".join(clauses)
    return out


def _burn_sentence(slo: SLO, short: str) -> str:
    """Template text: the SLO's burn rate over ``short`` and the share of the period's budget the last hour
    spent (error ratio over the budget, times an hour's share of the period: steady traffic assumed). Raw
    SLI queries, not recordings, so the text never lags the data by a rule-group evaluation."""
    def q(expr: str) -> str:
        return " ".join(expr.split())
    rate = q(f"({slo.error_ratio_expr(short)}) / {slo.error_budget:g}")
    share = parse_duration("1h") / parse_duration(slo.period)
    spent = q(f"({slo.error_ratio_expr('1h')}) / {slo.error_budget:g} * {share:g}")
    return (f"{{{{ with query `{rate}` }}}} at {{{{ . | first | value | printf \"%.1f\" }}}}x over {short}"
            f"{{{{ end }}}}.{{{{ with query `{spent}` }}}} The last hour spent "
            f"{{{{ . | first | value | humanizePercentage }}}} of its {slo.period} error budget.{{{{ end }}}}")


def slo_page_unless(slo: SLO, w: BurnWindow, down: DownDevices) -> str:
    """What the SLO's own page clause for ``w`` excludes: its model while a device serving it is down
    within the clause's short window (the composite pages for it instead)."""
    if not slo.model:
        return ""
    return f"\n  unless on (model)\n{textwrap.indent(down(w.short), '  ')}"


def device_down_ticket(job: str, clauses: dict[str, str] | None = None) -> Alert:
    """``NpuDeviceDown`` as a ticket: down with no SLO it serves burning (``clauses``: the composite pages
    it must not double). Without clauses (a tier that evaluates no SLO rules, e.g. the per-cluster rules
    of the global tier) every down device tickets, and the composite pages from where the SLOs are evaluated
    (Alertmanager folds the ticket under it: ``amconfig``)."""
    up = schema.metric("npu_device_up").name
    expr = f'{up}{{job="{job}"}} == 0'
    if clauses:
        either = textwrap.indent("\nor\n".join(clauses.values()), "  ")
        expr += f"\nunless on ({DEVICE})\n(\n{either}\n)"
    return Alert(
        cv.ALERT_DEVICE_DOWN, expr, cv.SEVERITY_TICKET, "F1",
        "NPU {{ $labels.device }} on {{ $labels.node }} is down (no SLO impact)",
        f"{ON_DEVICE} has not answered its backend for {DOWN_FOR}; no SLO of the model it served is burning "
        "at a page rate, so spare capacity absorbs the loss. Replace or recover it before the spare is needed.",
        DOWN_FOR)


def device_down_pages(spec: Spec, windows: dict[str, tuple[BurnWindow, ...]], down: DownDevices) -> list[Alert]:
    """The composite page per SLO tied to a model, its down devices read by ``down``: alone, where the
    ticket is evaluated elsewhere (the global tier: every cluster tickets its own down devices)."""
    return _pages(spec, windows, _clauses(spec, windows, down))


def _pages(spec: Spec, windows: dict[str, tuple[BurnWindow, ...]], clauses: dict[str, str]) -> list[Alert]:
    alerts = []
    for slo in spec.slos:
        if slo.name not in clauses:
            continue
        short = next(w.short for w in windows[slo.name] if w.severity == cv.SEVERITY_PAGE)
        alerts.append(Alert(
            cv.ALERT_DEVICE_DOWN, clauses[slo.name], cv.SEVERITY_PAGE, "F1",
            f"NPU {{{{ $labels.device }}}} on {{{{ $labels.node }}}} is down and SLO {slo.name} is burning",
            f"{ON_DEVICE} is down (or was, within the burn window) and the {slo.sli} SLO {slo.name} "
            f"({slo.objective:g} % over {slo.period}) of the model it served ({{{{ $labels.model }}}}) is "
            "burning its error budget" + _burn_sentence(slo, short)
            + " One incident: the SLO's own page is held back while this device explains it.",
            COMPOSITE_FOR, {"slo": slo.name}))
    return alerts


def device_down_alerts(spec: Spec, windows: dict[str, tuple[BurnWindow, ...]], t: Thresholds) -> list[Alert]:
    """The composite page per SLO tied to a model, and the ticket, both over this Prometheus' raw series."""
    clauses = _clauses(spec, windows, raw_down(spec, t))
    return [*_pages(spec, windows, clauses), device_down_ticket(spec.fleet.exporter_job, clauses)]
