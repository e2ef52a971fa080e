"""Game-day logic without servers: the for: state machine, rule dependency levels, PagerDuty event
parsing, grading verdicts, the scenario catalogue against the generated rules, report rendering."""

from __future__ import annotations

import time
from pathlib import Path

from npuobs.alerting import conventions as cv
from npuobs.durations import parse_duration
from npuobs.gameday.grader import Delivery, Grader, SeenAlert, delivery_from_event, parse_instances
from npuobs.gameday.promeval import AlertRule, apply_for, dependency_levels, load_rules
from npuobs.gameday.record import Action
from npuobs.gameday.report import fmt_seconds, markdown_table
from npuobs.gameday.scenarios import SCENARIOS
from npuobs.simulator.faults import FAULTS
from npuobs.simulator.fleet import FleetConfig

REPO = Path(__file__).resolve().parent.parent
RULES = [REPO / "alerts" / "generated" / f for f in cv.RULE_FILES]


def _rule(for_seconds: int) -> AlertRule:
    return AlertRule("X", "x > 0", for_seconds, {"severity": "page"}, {"summary": "dev {{ $labels.device }}"}, "g")


def test_for_keeps_an_alert_pending_until_it_has_held_long_enough() -> None:
    steps = [float(t) for t in range(0, 600, 60)]
    blip = ({"__name__": "x", "device": "1"}, {60.0, 120.0})  # 2 steps: shorter than for: 2m
    lasting = ({"__name__": "x", "device": "2"}, {180.0, 240.0, 300.0, 360.0})
    out = {a.labels["device"]: a for a in apply_for(_rule(120), [blip, lasting], steps)}
    assert out["1"].fired_at is None and out["1"].resolved_at == 180.0
    assert (out["2"].active_at, out["2"].fired_at, out["2"].resolved_at) == (180.0, 300.0, 420.0)
    assert out["2"].labels == {"device": "2", "severity": "page", "alertname": "X"}
    assert out["2"].annotations["summary"] == "dev 2"


def test_for_zero_fires_at_once_and_an_alert_active_at_the_end_stays_open() -> None:
    (a,) = apply_for(_rule(0), [({"device": "0"}, {120.0})], [0.0, 60.0, 120.0])
    assert (a.active_at, a.fired_at, a.resolved_at) == (120.0, 120.0, None)


def test_generated_recording_rules_split_into_dependency_levels() -> None:
    groups, alerts = load_rules(RULES)
    levels = dependency_levels(groups)
    names = [{r["record"] for g in level for r in g["rules"]} for level in levels]
    assert len(levels) == 4  # ... cost per success -> its baseline
    assert cv.slo_error_ratio("5m") in names[0] and cv.SLO_OBJECTIVE in names[0]
    assert {cv.SLO_PERIOD_BURN_RATE, cv.TENANT_P99_SPREAD} <= names[1]
    assert cv.SLO_ERROR_BUDGET_REMAINING in names[2] and cv.SERVING_PROJECTED_UTILIZATION in names[2]
    budget = next(g for g in levels[1] if g["name"] == cv.GROUP_SLO_BUDGET)
    assert budget["interval"] == "5m"  # kept: the backfill evaluates each group at its own interval
    assert {a.name for a in alerts} >= {"NpuDeviceDown", "NpuIncorrectOutputs", "NpuAvailabilityErrorBudgetBurn"}


def test_every_scenario_expects_alerts_the_generated_rules_have_at_their_severity() -> None:
    _, alerts = load_rules(RULES)
    have = {(a.name, a.labels["severity"], a.labels["failure_mode"]) for a in alerts}
    covered = set()
    for s in SCENARIOS.values():
        for e in s.expect:
            assert (e.alertname, e.severity, e.failure_mode) in have, (s.name, e)
        covered.add(s.failure_mode)
        for step in s.steps:
            assert step.op != "inject" or step.fault in FAULTS
        models = dict(((n.name, str(i)), m) for n in FleetConfig.default().nodes for i, m in enumerate(n.devices))
        assert all(dev == "" or (node, dev) in models for node, dev in s.targets), s.name
    assert set(FAULTS) <= covered  # F1-F8 and RESET
    assert {"reset-storm", "exporter-restart", "node-loss", "driver-rollout"} <= set(SCENARIOS)


FIRING = """Labels:
 - alertname = NpuDeviceDown
 - device = 1
 - node = node-a
 - severity = page
Annotations:
 - summary = NPU 1 on node-a is down
Source: http://127.0.0.1:9090/graph
Labels:
 - alertname = NpuDeviceDown
 - device = 2
 - node = node-a
 - severity = page
Annotations:
 - summary = NPU 2 on node-a is down
Source: http://127.0.0.1:9090/graph
"""


def test_pagerduty_events_are_tied_to_alerts_through_the_instances_template() -> None:
    assert [a["device"] for a in parse_instances(FIRING)] == ["1", "2"]
    event = {"routing_key": "k" * 32, "event_action": "trigger", "dedup_key": "d",
             "payload": {"custom_details": {"firing": FIRING}},
             "links": [{"href": cv.runbook_url(cv.DEFAULT_RUNBOOK_BASE_URL, "NpuDeviceDown"), "text": "Runbook"}]}
    d = delivery_from_event(event, 5.0, {"k" * 32: cv.RECEIVER_PAGE})
    assert d.receiver == cv.RECEIVER_PAGE and d.runbook.endswith("/runbooks/NpuDeviceDown.md")
    assert d.carries({"alertname": "NpuDeviceDown", "device": "2", "node": "node-a", "severity": "page"})
    assert not d.carries({"alertname": "NpuDeviceDown", "device": "3", "node": "node-a", "severity": "page"})


def _grader() -> Grader:
    return Grader(FleetConfig.default(), {"node-b": "127.0.0.1:1"}, {})


def _alert(name: str, severity: str, fm: str, t: float = 10.0, **labels: str) -> SeenAlert:
    return SeenAlert({"alertname": name, "severity": severity, "failure_mode": fm, **labels}, {}, t, t)


def _delivery(alert: SeenAlert, receiver: str, runbook: str | None = None) -> Delivery:
    href = runbook or cv.runbook_url(cv.DEFAULT_RUNBOOK_BASE_URL, alert.alertname)
    return Delivery(20.0, "trigger", receiver, (alert.labels,), href, "d")


def test_grading_ok_missed_misrouted_and_noisy() -> None:
    f1, g = SCENARIOS["F1"], _grader()
    down = _alert("NpuDeviceDown", "page", "F1", node="node-a", device="1")
    ok = g.grade(f1, [], 0.0, 30.0, [down], [_delivery(down, cv.RECEIVER_PAGE)])
    assert ok.verdict() == "ok" and ok.detect_seconds == 20.0

    assert g.grade(f1, [], 0.0, 30.0, [], []).verdict() == "missed"
    other_device = _alert("NpuDeviceDown", "page", "F1", node="node-a", device="2")
    assert g.grade(f1, [], 0.0, 30.0, [other_device], []).verdict() == "missed"

    as_ticket = g.grade(f1, [], 0.0, 30.0, [down], [_delivery(down, cv.RECEIVER_TICKET)])
    assert as_ticket.verdict() == "misrouted" and "expected pagerduty-page" in as_ticket.expects[0].problems[0]
    bad_link = g.grade(f1, [], 0.0, 30.0, [down], [_delivery(down, cv.RECEIVER_PAGE, "http://x/runbook")])
    assert bad_link.verdict() == "misrouted"

    stray = _alert("NpuIncorrectOutputs", "page", "F8", node="node-b", device="0")
    noisy = g.grade(f1, [], 0.0, 30.0, [down, stray], [_delivery(down, cv.RECEIVER_PAGE)])
    assert noisy.verdict() == "noisy" and noisy.unexpected == [stray]
    allowed = _alert("NpuAvailabilityErrorBudgetBurn", "page", "SLO", 5.0, slo="digits-mlp-availability",
                     model="digits-mlp")
    first = g.grade(f1, [], 0.0, 30.0, [down, allowed], [_delivery(down, cv.RECEIVER_PAGE)])
    assert first.verdict() == "ok" and first.first_alert is allowed


def test_the_incident_model_scopes_what_a_drill_may_fire() -> None:
    g = _grader()
    wrong = _alert("NpuIncorrectOutputs", "page", "F8", node="node-b", device="0")  # the F5 drill's device
    assert g.explains(SCENARIOS["F5"], wrong)  # about its own device: same incident (graded as noise below)
    assert not g.explains(SCENARIOS["F3"], wrong)  # F3's device is node-b/1: another drill's alert
    burn = _alert("NpuLatencyErrorBudgetBurn", "page", "SLO", slo="digits-mlp-latency", model="digits-mlp")
    assert g.explains(SCENARIOS["F7"], burn)  # the SLO of the model the drill's device serves
    other_model = _alert("NpuLatencyErrorBudgetBurn", "page", "SLO", slo="x", model="resnet")
    assert not g.explains(SCENARIOS["F7"], other_model)
    lost = _alert("NpuDeviceAbsent", "page", "F1", node="node-b", device="2")
    assert g.explains(SCENARIOS["node-loss"], lost) and not g.explains(SCENARIOS["F1"], lost)


def _page(alert: SeenAlert, key: str, at: float = 20.0, receiver: str = cv.RECEIVER_PAGE,
          action: str = "trigger") -> Delivery:
    return Delivery(at, action, receiver, (alert.labels,),
                    cv.runbook_url(cv.DEFAULT_RUNBOOK_BASE_URL, alert.alertname), key)


def test_noise_grading_counts_incidents_not_alerts() -> None:
    g, f1 = _grader(), SCENARIOS["F1"]
    down = _alert("NpuDeviceDown", "page", "F1", node="node-a", device="1")
    errors = _alert("NpuDeviceErrorRateHigh", "page", "F1", node="node-a", device="1")
    burn = _alert("NpuAvailabilityErrorBudgetBurn", "page", "SLO", slo="digits-mlp-availability",
                  model="digits-mlp")
    # two alerts updating one incident (one dedup key): one page
    one = g.grade(f1, [], 0.0, 60.0, [down, errors], [_page(down, "k1"), _page(errors, "k1", 30.0)])
    assert (one.verdict(), one.pages_opened, one.first_page_seconds) == ("ok", 1, 20.0)
    # the SLO page as its own incident next to the device page: two pages for one cause
    two = g.grade(f1, [], 0.0, 60.0, [down, burn], [_page(down, "k1"), _page(burn, "k2", 40.0)])
    assert two.verdict() == "noisy" and two.pages_opened == 2 and "2 pages for one cause" in two.noise
    # an incident already open before the drill is not this drill's; a resolved key that triggers again is
    again = g.grade(f1, [], 0.0, 60.0, [down, burn], [_page(down, "k1"), _page(burn, "k2", 40.0)],
                    open_before=frozenset({"k2"}))
    assert again.pages_opened == 1
    reopened = g.grade(f1, [], 0.0, 60.0, [down], [_page(down, "k1"), _page(down, "k1", 30.0, action="resolve"),
                                                   _page(down, "k1", 50.0)])
    assert reopened.pages_opened == 2

    # F5 tickets by policy: a device alert paging is noise, the ticket is fine, an SLO page is allowed
    f5 = SCENARIOS["F5"]
    fallback = _alert("NpuCpuFallbackHigh", "ticket", "F5", node="node-b", device="0")
    wrong = _alert("NpuIncorrectOutputs", "page", "F8", node="node-b", device="0")
    tickets = [_page(fallback, "t1", receiver=cv.RECEIVER_TICKET)]
    assert g.grade(f5, [], 0.0, 60.0, [fallback], tickets).verdict() == "ok"
    paged = g.grade(f5, [], 0.0, 60.0, [fallback, wrong], [*tickets, _page(wrong, "p1", 30.0)])
    assert paged.verdict() == "noisy" and "paged (NpuIncorrectOutputs) for a cause the policy tickets" in paged.noise
    latency = _alert("NpuLatencyErrorBudgetBurn", "page", "SLO", slo="digits-mlp-latency", model="digits-mlp")
    slo = g.grade(f5, [], 0.0, 60.0, [fallback, latency], [*tickets, _page(latency, "p2", 30.0)])
    assert slo.verdict() == "ok" and (slo.pages_opened, slo.tickets_opened) == (1, 1)

    # inhibited alerts are reported, not graded
    errors.suppressed_at = 25.0
    shown = g.grade(f1, [], 0.0, 60.0, [down, errors], [_page(down, "k1")])
    assert shown.suppressed_names == ["NpuDeviceErrorRateHigh"]


def test_scope_by_model_and_instance() -> None:
    g = _grader()
    skew = _alert("NpuVersionMismatch", "ticket", "F6", vendor="furiosa", model="RNGD", component="driver")
    assert g.in_scope("model", SCENARIOS["driver-rollout"], skew.labels)
    assert not g.in_scope("model", SCENARIOS["F6"], skew.labels)  # F6 hits the single Gaudi2
    assert g.in_scope("instance", SCENARIOS["node-loss"], {"instance": "127.0.0.1:1"})


def test_record_actions_are_validated() -> None:
    assert Action(5, "inject", fault="F1").applies_to("node-a")
    assert not Action(5, "clear", node="node-b").applies_to("node-a")
    for bad in ({"op": "explode"}, {"op": "inject"}):
        try:
            Action(0, **bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


def test_report_helpers() -> None:
    assert [fmt_seconds(s) for s in (None, 5, 95, 3600, 5400)] == ["-", "5s", "1m35s", "1h00m", "1h30m"]
    assert markdown_table(("a", "b"), [("x|y", 1)]).splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def test_a_baseline_judged_drill_waits_for_its_baseline_history() -> None:
    """Run first or alone, the cost drill would be judged against no baseline and miss: it waits instead."""
    from types import SimpleNamespace

    from npuobs.config import Config
    from npuobs.gameday.runner import BASELINE_MARGIN_SECONDS, DrillRunner

    waits: list[float] = []
    runner = DrillRunner.__new__(DrillRunner)
    runner.stack = SimpleNamespace(config=Config.load())
    runner.options = SimpleNamespace(poll_seconds=1.0)
    runner.observer = SimpleNamespace(watch=lambda seconds, **_: waits.append(seconds))
    runner.progress = lambda _: None
    offset = parse_duration(runner.stack.config.thresholds.cost_baseline_offset)
    assert SCENARIOS["cost"].needs_baseline and not SCENARIOS["F5"].needs_baseline

    runner.started = time.time()  # a fresh stack: wait the offset plus the margin
    runner._await_baseline(SCENARIOS["cost"])
    runner._await_baseline(SCENARIOS["F5"])
    assert len(waits) == 1 and offset + BASELINE_MARGIN_SECONDS - 5 < waits[0] <= offset + BASELINE_MARGIN_SECONDS

    runner.started = time.time() - offset - BASELINE_MARGIN_SECONDS - 1  # history enough: no wait
    runner._await_baseline(SCENARIOS["cost"])
    assert len(waits) == 1
