"""The game-day catalogue: what each drill does to the fleet and which alert must answer, how loudly.

Expectations are the alerting policy of ``docs/alerting.md`` written as data: the alert that must
reach a human, its severity (so its PagerDuty receiver) and its failure-mode label. ``allow`` lists
what may also fire because the fault really hurts users (an SLO burning, a budget spent) or is the
same problem seen from another rule; anything else that fires during a drill is reported as
unexpected.

Every drill hits its own device of the default 2 x 4 fleet, so alerts still winding down from one
drill (a reset counts for an hour) never look like the next drill's. ``scope`` says how an alert is
tied to its drill: by ``node`` + ``device``, by ``vendor`` + ``model`` (fleet-wide version skew), by
the exporter's ``instance``, or not at all (SLO alerts carry no device).
"""

from __future__ import annotations

from dataclasses import dataclass

from npuobs.alerting import conventions as cv

PAGE, TICKET = cv.SEVERITY_PAGE, cv.SEVERITY_TICKET
SCOPES = ("device", "model", "instance", "fleet")
SLO_ALERTS = (*cv.SLO_BURN_ALERTS.values(), cv.ALERT_BUDGET_EXHAUSTED)


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
    allow: tuple[str, ...] = ()  # alert names that may fire too (any severity, any scope)
    quiet_seconds: float = 0.0  # a drill that expects nothing watches this long for noise

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", tuple(dict.fromkeys(self.allow)))  # the groups below overlap

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for n, _ in self.targets))


_ERRORS = ("NpuAvailabilityErrorBudgetBurn", cv.ALERT_BUDGET_EXHAUSTED)
_SLOW = ("NpuLatencyErrorBudgetBurn", cv.ALERT_BUDGET_EXHAUSTED)
_WRONG = ("NpuAccuracyErrorBudgetBurn", cv.ALERT_BUDGET_EXHAUSTED)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("F1", "device offline: requests to it fail", "F1", (("node-a", "1"),), (Step("inject", "F1"),),
       (Expect("NpuDeviceDown", PAGE, "F1"),), ("NpuDeviceErrorRateHigh", *_ERRORS, *_SLOW)),
    Scenario("F2", "thermal throttle: cooling fails, clocks halve", "F2", (("node-a", "0"),), (Step("inject", "F2"),),
       (Expect("NpuThermalThrottling", TICKET, "F2"),), ("NpuTemperatureNearLimit", *_SLOW)),
    Scenario("F3", "quantization accuracy loss: corrupted INT8 scales", "F3", (("node-b", "1"),),
       (Step("inject", "F3"),),
       (Expect("NpuAccuracyDeltaHigh", TICKET, "F3"),),
       # wrong scales change outputs, so the golden canary mismatches too: users get wrong answers
       ("NpuIncorrectOutputs", *_WRONG)),
    Scenario("F4", "memory OOM: a leak fills device memory", "F4", (("node-a", "3"),), (Step("inject", "F4"),),
       (Expect("NpuOutOfMemory", TICKET, "F4"),), (*_ERRORS, *_SLOW)),
    Scenario("F5", "unsupported op: CPU fallback", "F5", (("node-b", "0"),), (Step("inject", "F5"),),
       (Expect("NpuCpuFallbackHigh", TICKET, "F5"),),
       # the host runs the op in FP32 on dequantized data, not bit-identical to the device's INT8 path:
       # borderline canary images flip (1 in 360), and NpuIncorrectOutputs pages on any golden mismatch
       (*_SLOW, *_WRONG, "NpuNoisyNeighbour", "NpuIncorrectOutputs")),
    Scenario("F6", "driver/firmware mismatch on one device", "F6", (("node-b", "2"),), (Step("inject", "F6"),),
       (Expect("NpuVersionNotAllowed", TICKET, "F6"),), ("NpuVersionMismatch",)),
    Scenario("F7", "noisy neighbour: one tenant floods a shared device", "F7", (("node-a", "2"),),
       (Step("inject", "F7"),), (Expect("NpuNoisyNeighbour", TICKET, "F7"),), _SLOW),
    Scenario("F8", "firmware bug: sporadic wrong outputs", "F8", (("node-b", "3"),), (Step("inject", "F8"),),
       (Expect("NpuIncorrectOutputs", PAGE, "F8"),), _WRONG),
    Scenario("RESET", "one device reset (driver)", "RESET", (("node-a", "1"),),
       (Step("inject", "RESET", duration=10.0, reason="driver"),),
       # a reset fails what was queued on the device (runtime errors): the error rate may page too
       (Expect("NpuDeviceResets", TICKET, "RESET"),), ("NpuDeviceErrorRateHigh", *_ERRORS, *_SLOW)),
    Scenario("reset-storm", "device reset storm: 3 watchdog resets in a minute", "RESET", (("node-b", "1"),),
       (Step("inject", "RESET", duration=10.0, reason="watchdog", repeat=3, every=20.0),),
       (Expect("NpuDeviceResets", PAGE, "RESET"),), ("NpuDeviceErrorRateHigh", *_ERRORS, *_SLOW)),
    Scenario("exporter-restart", "exporter restart: counters persist, nothing may alert", "SELF", (("node-a", ""),),
       (Step("restart_exporter"),), (), quiet_seconds=60.0),
    Scenario("node-loss", "node loss: the node's exporter stops answering", "SELF", (("node-b", ""),),
       (Step("stop_exporter"),), (Expect("NpuExporterDown", TICKET, cv.FAILURE_MODE_SELF, "instance"),)),
    Scenario("driver-rollout", "driver rollout mismatching half the fleet", "F6",
       (("node-a", "0"), ("node-a", "2"), ("node-b", "0"), ("node-b", "2")), (Step("inject", "F6"),),
       (Expect("NpuVersionNotAllowed", TICKET, "F6"), Expect("NpuVersionMismatch", TICKET, "F6", "model"))),
)}
