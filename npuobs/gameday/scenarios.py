"""The game-day catalogue: what each drill does to the fleet and which alert must answer, how loudly.

Expectations are the alerting policy of ``docs/alerting.md`` written as data: the alert that must
reach a human, its severity (so its PagerDuty receiver) and its failure-mode label. There is no list
of other alerts a drill may fire: what else may fire is what the incident model says belongs to the
same incident (``grader.Grader.explains``): alerts about the drill's own devices, node or exporter,
and the SLO and capacity alerts of the model those devices serve. Noise is graded too: a drill fails
when its one cause opens more than one page, or when a cause the policy tickets pages through an
alert other than an SLO burn (users hurt now is always a page).

Every drill hits its own device of the default 2 x 4 fleet, so alerts still winding down from one
drill (a reset counts for an hour) never look like the next drill's. ``scope`` says how an alert is
tied to its drill: by ``node`` + ``device``, by ``vendor`` + ``model`` (fleet-wide version skew), by
the exporter's ``instance``, or not at all (SLO and capacity alerts carry no device).
"""

from __future__ import annotations

from dataclasses import dataclass

from npuobs.alerting import conventions as cv

PAGE, TICKET = cv.SEVERITY_PAGE, cv.SEVERITY_TICKET
SCOPES = ("device", "model", "instance", "node", "fleet")
SLO_ALERTS = (*cv.SLO_BURN_ALERTS.values(), cv.ALERT_BUDGET_EXHAUSTED, cv.ALERT_SLI_ABSENT)
MODEL_ALERTS = (*SLO_ALERTS, cv.ALERT_CAPACITY_LOW)  # about the served model: no device, no node


@dataclass(frozen=True)
class Expect:
    """An alert the drill must produce: name, severity (hence receiver), failure mode, scope."""

    alertname: str
    severity: str
    failure_mode: str
    scope: str = "device"

    @property
    def receiver(self) -> str:
        return cv.RECEIVER_PAGE if self.severity == PAGE else cv.RECEIVER_TICKET


@dataclass(frozen=True)
class Step:
    """One thing a drill does. ``inject``: a simulator fault on ``targets`` (``repeat`` times, ``every``
    virtual seconds apart); ``restart_exporter``/``stop_exporter``: the node's exporter."""

    op: str
    fault: str = ""
    duration: float | None = None  # virtual seconds; None = until the drill clears it
    reason: str = ""
    repeat: int = 1
    every: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    failure_mode: str
    targets: tuple[tuple[str, str], ...]  # (node, device); device "" = the whole node
    steps: tuple[Step, ...]
    expect: tuple[Expect, ...]
    quiet_seconds: float = 0.0  # a drill that expects nothing watches this long for noise
    # judged against its own baseline (thresholds.cost_baseline_offset ago): the drill waits until the
    # stack holds that much history plus a few minutes, whatever ran before it
    needs_baseline: bool = False

    @property
    def policy(self) -> str:
        """page when the policy pages this cause, ticket when it only tickets, none when nothing may fire."""
        if any(e.severity == PAGE for e in self.expect):
            return PAGE
        return TICKET if self.expect else "none"

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for n, _ in self.targets))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("F1", "device offline: requests to it fail", "F1", (("node-a", "1"),), (Step("inject", "F1"),),
       (Expect("NpuDeviceDown", PAGE, "F1"),)),
    Scenario("F2", "thermal throttle: cooling fails, clocks halve", "F2", (("node-a", "0"),), (Step("inject", "F2"),),
       (Expect("NpuThermalThrottling", TICKET, "F2"),)),
    Scenario("F3", "quantization accuracy loss: corrupted INT8 scales", "F3", (("node-b", "1"),),
       (Step("inject", "F3"),),
       # wrong scales change a third of the outputs: the accuracy SLO may page (users get wrong answers),
       # NpuIncorrectOutputs may not (its accuracy delta is over budget: quantization loss, not a bug)
       (Expect("NpuAccuracyDeltaHigh", TICKET, "F3"),)),
    Scenario("F4", "memory OOM: a leak fills device memory", "F4", (("node-a", "3"),), (Step("inject", "F4"),),
       (Expect("NpuOutOfMemory", TICKET, "F4"),)),
    Scenario("F5", "unsupported op: CPU fallback", "F5", (("node-b", "0"),), (Step("inject", "F5"),),
       # the host runs the op in FP32 on dequantized data, not bit-identical to the device's INT8 path:
       # borderline canary images flip (1 in 360), under the mismatch tolerance: no NpuIncorrectOutputs page
       (Expect("NpuCpuFallbackHigh", TICKET, "F5"),)),
    Scenario("F6", "driver/firmware mismatch on one device", "F6", (("node-b", "2"),), (Step("inject", "F6"),),
       (Expect("NpuVersionNotAllowed", TICKET, "F6"),)),
    Scenario("F7", "noisy neighbour: one tenant floods a shared device", "F7", (("node-a", "2"),),
       # the standard exporter profile keeps latency per node, not per device: the ticket names the node
       (Step("inject", "F7"),), (Expect("NpuNoisyNeighbour", TICKET, "F7", "node"),)),
    Scenario("F8", "firmware bug: sporadic wrong outputs", "F8", (("node-b", "3"),), (Step("inject", "F8"),),
       (Expect("NpuIncorrectOutputs", PAGE, "F8"),)),
    Scenario("RESET", "one device reset (driver)", "RESET", (("node-a", "1"),),
       (Step("inject", "RESET", duration=10.0, reason="driver"),),
       # a reset fails what was queued on the device: ~10 errors, noise per request (no error-rate page)
       (Expect("NpuDeviceResets", TICKET, "RESET"),)),
    Scenario("reset-storm", "device reset storm: 3 watchdog resets in a minute", "RESET", (("node-b", "1"),),
       (Step("inject", "RESET", duration=10.0, reason="watchdog", repeat=3, every=20.0),),
       (Expect("NpuDeviceResets", PAGE, "RESET"),)),
    Scenario("exporter-restart", "exporter restart: counters persist, nothing may alert", "SELF", (("node-a", ""),),
       (Step("restart_exporter"),), (), quiet_seconds=60.0),
    Scenario("node-loss", "node loss: the node's exporter stops answering", "SELF", (("node-b", ""),),
       # four of eight NPUs gone with their load: the capacity page; the exporter's ticket names the node
       (Step("stop_exporter"),), (Expect(cv.ALERT_CAPACITY_LOW, PAGE, cv.FAILURE_MODE_CAPACITY, "fleet"),
                                  Expect("NpuExporterDown", TICKET, cv.FAILURE_MODE_SELF, "instance"))),
    Scenario("driver-rollout", "driver rollout mismatching half the fleet", "F6",
       (("node-a", "0"), ("node-a", "2"), ("node-b", "0"), ("node-b", "2")), (Step("inject", "F6"),),
       (Expect("NpuVersionNotAllowed", TICKET, "F6"), Expect("NpuVersionMismatch", TICKET, "F6", "model"))),
    # the last drill: CPU fallback on every device of node-a (cost is judged per node and model: the standard
    # profile counts requests per node), whose earlier drills are long cleared; the baseline is the minutes
    # before it (run alone or first, the drill waits for them). Each device's fallback tickets too (same
    # node: the same incident).
    Scenario("cost", "sustained CPU fallback at constant load: energy per inference up a fifth", cv.FAILURE_MODE_COST,
       tuple(("node-a", str(d)) for d in range(4)), (Step("inject", "F5"),),
       (Expect(cv.ALERT_COST_ANOMALY, TICKET, cv.FAILURE_MODE_COST, "node"),), needs_baseline=True),
)}
