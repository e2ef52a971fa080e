"""SLO specs -> SLI recording rules, error-budget rules and multiwindow burn-rate alerts."""

from __future__ import annotations

from npuobs.alerting import conventions as cv
from npuobs.alerting.burnrate import BurnWindow, windows_for
from npuobs.alerting.composite import DownDevices, raw_down, slo_page_unless
from npuobs.alerting.rules import Alert, Group, Record
from npuobs.alerting.slo_spec import SLO, Spec, SpecError
from npuobs.durations import parse_duration
from npuobs.thresholds import DEFAULT as THRESHOLDS
from npuobs.thresholds import Thresholds

# The period-long rules scan the whole SLO period (30 days of samples): evaluating them every
# minute would cost more than all other rules together, and budget moves slowly.
BUDGET_INTERVAL = "5m"
TOP_DEVICES = 3  # devices a burn alert names as the largest sources of bad events
COVERAGE_BASE = "5m"  # the window whose sample count stands for "full" when measuring coverage


def coverage_record(job: str, window: str) -> Record:
    """Share of ``window`` this Prometheus holds data for: the oldest exporter target's samples over the
    window, against what a full window holds at the same scrape interval (measured over ``COVERAGE_BASE``).

    Cold start: a long burn window over ten minutes of data is a ten-minute window. Scaling the long
    window's error ratio by its coverage counts the missing history as good, so a fresh deployment's or
    a new Prometheus' first slow minutes cannot ticket (a day's window holding two slow minutes), while a
    real fast burn still pages at once (100 % errors for 5 minutes are still 8 % of an hour). Data younger
    than ``COVERAGE_BASE`` counts as ``COVERAGE_BASE`` old (conservative towards firing). Where no ``up``
    series exists (the global tier evaluates SLO rules over pre-aggregations only) the alerts read a
    missing coverage as full: no cold-start protection there, rather than no alerts.
    """
    scale = parse_duration(window) / parse_duration(COVERAGE_BASE)
    up = f'up{{job="{job}"}}'
    # samples - 1 = scrape intervals covered: the same whether a range includes its left edge or not
    return Record(cv.DATA_COVERAGE,
                  f"clamp_max(\n  (max(count_over_time({up}[{window}])) - 1)\n  /\n"
                  f"  (clamp_min(max(count_over_time({up}[{COVERAGE_BASE}])) - 1, 1) * {scale:g}),\n  1\n)",
                  {"window": window})


def slo_labels(spec: Spec, slo: SLO) -> dict[str, str]:
    labels = {"slo": slo.name, "sli": slo.sli, "service": spec.service}
    if slo.model:
        labels["model"] = slo.model
    return {**labels, **spec.labels}


def _selector(slo: SLO) -> str:
    return f'{{slo="{slo.name}"}}'


def _check_reachable(spec: Spec, slo: SLO, windows: tuple[BurnWindow, ...], policy: str) -> None:
    for w in windows:
        if w.factor * slo.error_budget >= 1:
            raise SpecError(
                f"{spec.source}: SLO {slo.name}: objective {slo.objective:g} % with policy {policy} needs an "
                f"error ratio of {w.factor:g} x {slo.error_budget:g} >= 100 % to fire its {w.severity} "
                "alert, which can never happen; raise the objective or pick another policy")


def _burn_expr(slo: SLO, windows: list[BurnWindow], down: DownDevices) -> str:
    """Each window pair: long (scaled by its data coverage) and short above the threshold; a page clause
    leaves out models with a down device (the composite ``NpuDeviceDown`` page names both instead)."""
    clauses = []
    for w in windows:
        threshold = f"({w.factor:g} * {slo.error_budget:g})"
        unless = slo_page_unless(slo, w, down) if w.severity == cv.SEVERITY_PAGE else ""
        clauses.append(f"(\n  (\n    {cv.slo_error_ratio(w.long)}{_selector(slo)}\n"
                       f'    * on () group_left () ({cv.DATA_COVERAGE}{{window="{w.long}"}} or on () vector(1))\n'
                       f"  ) > {threshold}\n  and\n"
                       f"  {cv.slo_error_ratio(w.short)}{_selector(slo)} > {threshold}{unless}\n)")
    return "\nor\n".join(clauses)


def _burn_description(slo: SLO, windows: list[BurnWindow]) -> str:
    budget_pct = f"{slo.error_budget * 100:g} %"
    pairs = " or ".join(f"{w.factor:g}x over {w.long} (confirmed over {w.short})" for w in windows)
    return (f"The {slo.sli} SLO {slo.name} ({slo.objective:g} % over {slo.period}, "
            f"error budget {budget_pct}) is burning its budget at more than {pairs}."
            + _top_devices(slo, windows[0].short)
            + " (Long windows count history this Prometheus does not hold as good: no alert from a cold start.)")


def _top_devices(slo: SLO, window: str) -> str:
    """A template sentence naming the devices with the most bad events right now, so the page itself
    says where to look (the guide's "composite" of SLO breach and device): a Prometheus template
    ``query``, expanded at each evaluation. Empty when the SLI cannot be broken down per device."""
    bad = slo.bad_by_device(window)
    if bad is None:
        return ""
    query = f"sort_desc(topk({TOP_DEVICES}, ({' '.join(bad.split())}) > 0))"
    return (f" Most bad events over {window}: {{{{ range $i, $s := query `{query}` }}}}{{{{ if $i }}}}, "
            "{{ end }}{{ $s.Labels.node }}/{{ $s.Labels.device }} ({{ printf \"%.3g\" $s.Value }}/s)"
            "{{ else }}no single device{{ end }}.")


def slo_windows(spec: Spec, policy: str) -> dict[str, tuple[BurnWindow, ...]]:
    """SLO name -> its policy's window pairs (checked reachable)."""
    out = {}
    for slo in spec.slos:
        windows = windows_for(policy, slo.period)
        _check_reachable(spec, slo, windows, policy)
        out[slo.name] = windows
    return out


def slo_groups(spec: Spec, policy: str, t: Thresholds = THRESHOLDS,
               down: DownDevices | None = None) -> tuple[Group, Group, Group]:
    """(SLI recordings, budget recordings, SLO alerts) for every SLO of the spec. ``down``: where the page
    clauses read the down devices they leave out (default: this Prometheus' raw series)."""
    down = down or raw_down(spec, t)
    all_windows = slo_windows(spec, policy)
    longs = sorted({w.long for ws in all_windows.values() for w in ws}, key=parse_duration)
    sli_rules: list[Record] = [coverage_record(spec.fleet.exporter_job, w) for w in longs]
    # the budget spent so far is judged against the whole period's allowance: with less history than the
    # period, the period's error ratio times its coverage (a fresh deployment's bad first hour is a small
    # share of a 30-day budget, not all of it)
    periods = sorted({slo.period for slo in spec.slos}, key=parse_duration)
    budget_rules: list[Record] = [coverage_record(spec.fleet.exporter_job, p) for p in periods]
    alerts: list[Alert] = []
    for slo in spec.slos:
        labels = slo_labels(spec, slo)
        windows = all_windows[slo.name]
        used = sorted({w.long for w in windows} | {w.short for w in windows}, key=parse_duration)
        sli_rules += [Record(cv.slo_error_ratio(w), slo.error_ratio_expr(w), labels) for w in used]

        sel = _selector(slo)
        budget = f"{slo.error_budget:g}"
        budget_rules += [
            Record(cv.slo_error_ratio(slo.period), slo.error_ratio_expr(slo.period), labels),
            Record(cv.SLO_OBJECTIVE, f"vector({slo.objective / 100:g})", labels),
            Record(cv.SLO_ERROR_BUDGET, f"vector({budget})", labels),
            Record(cv.SLO_CURRENT_BURN_RATE, f"{cv.slo_error_ratio(used[0])}{sel} / {budget}", labels),
            Record(cv.SLO_PERIOD_BURN_RATE, f"{cv.slo_error_ratio(slo.period)}{sel} / {budget}", labels),
            Record(cv.SLO_ERROR_BUDGET_REMAINING,
                   f"1 - {cv.SLO_PERIOD_BURN_RATE}{sel}\n"
                   f'  * on () group_left () ({cv.DATA_COVERAGE}{{window="{slo.period}"}} or on () vector(1))',
                   labels),
        ]

        name = cv.SLO_BURN_ALERTS[slo.sli]
        what = f"{{{{ $labels.model }}}} {slo.sli}" if slo.model else f"{slo.name}"
        for severity, speed in ((cv.SEVERITY_PAGE, "fast"), (cv.SEVERITY_TICKET, "steadily")):
            chosen = [w for w in windows if w.severity == severity]
            if chosen:
                alerts.append(Alert(name, _burn_expr(slo, chosen, down), severity, cv.FAILURE_MODE_SLO,
                                    f"{what} is burning its error budget {speed}",
                                    _burn_description(slo, chosen), labels={"slo": slo.name}))
        alerts.append(Alert(
            cv.ALERT_BUDGET_EXHAUSTED, f"{cv.SLO_ERROR_BUDGET_REMAINING}{sel} <= 0", cv.SEVERITY_TICKET,
            cv.FAILURE_MODE_SLO, f"{what} has spent its error budget",
            f"The {slo.sli} SLO {slo.name} has used all of its {slo.period} error budget "
            f"({slo.error_budget * 100:g} % of its events); freeze risky changes until it recovers.",
            "15m", {"slo": slo.name}))
        if slo.absent_selector:
            alerts.append(Alert(
                cv.ALERT_SLI_ABSENT, f"absent({slo.absent_selector})",
                cv.SEVERITY_TICKET, cv.FAILURE_MODE_SLO,
                f"No SLI data for {slo.name}",
                f"{slo.absent_selector} has not been scraped for 15 minutes: the {slo.sli} SLO {slo.name} "
                "cannot be measured and its burn-rate alerts cannot fire.",
                "15m", labels))
    return (Group(cv.GROUP_SLI, tuple(sli_rules)),
            Group(cv.GROUP_SLO_BUDGET, tuple(budget_rules), BUDGET_INTERVAL),
            Group(cv.GROUP_SLO_ALERTS, tuple(alerts)))
