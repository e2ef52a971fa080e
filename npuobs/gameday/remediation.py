"""``npuobs gameday --remediate``: each scenario with remediation off (dry-run) and on, measured side by side.

The embedded stack routes every alert to an in-process ``npuobs remediate`` (the same controller and
webhook as the command) besides PagerDuty. A scenario runs twice on the same stack, on different
devices so one run's alerts (some look back 10 minutes) cannot be taken for the other's:

* **off**: the controller only logs what it would do (dry-run): the fault hurts users until the
  observation window ends, as it would while a person is being paged;
* **on**: the controller acts.

Per run: **detect** = injection -> the controller's first decision on the expected alert (scrape,
evaluation, ``for:`` as capped, Alertmanager grouping); **mitigate** = injection -> the users' harm
stops (the scenario's ``harm`` query returns nothing: failed requests, wrong answers, accuracy delta),
``None`` when it did not within the window; **budget spent** = the bad events of the window as a
share of the SLO's 30-day error budget (bad / (budget ratio x event rate x 30 d), event rate in
virtual time). Guardrail scenarios run once, with remediation on, and pass when the controller
refuses what it must refuse.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from npuobs.alerting import conventions as cv
from npuobs.alerting import maintenance
from npuobs.instrumentation.controlserver import ControlAuth, ControlClient
from npuobs.remediation.controller import Controller
from npuobs.remediation.policy import load_policy
from npuobs.remediation.state import StateStore
from npuobs.remediation.webhook import WebhookServer
from npuobs.stack.embedded import EmbeddedStack, Timing
from npuobs.stack.proc import StackError, free_port

PERIOD_SECONDS = 30 * 86400
MODEL = "digits-mlp"


@dataclass(frozen=True)
class Run:
    """Where one run hits: the device (or "" for a model-wide rollout)."""

    node: str = ""
    device: str = ""


@dataclass(frozen=True)
class RemediationScenario:
    name: str
    title: str
    fault: str  # a simulator fault, or "rollout" (a new model version with F3-style bad scales)
    alert: str  # the alert the controller acts on
    action: str  # what it should do
    sli: str  # availability | accuracy: whose budget the harm spends
    harm: str  # PromQL: users are hurt while this returns anything
    off: Run = Run()
    on: Run = Run()
    guardrail: str = ""  # capacity | maintenance: a refusal scenario (runs once, remediation on)


_FAILED = 'sum(rate(npu_inference_requests_total{outcome!="success"}[20s])) > 0'
_WRONG = 'sum(increase(npu_golden_mismatches_total[20s])) > 0'
_ACCURACY = "max(npu_accuracy_delta_ratio) > 0.02"  # only the canary records it

SCENARIOS: dict[str, RemediationScenario] = {s.name: s for s in (
    RemediationScenario("F1", "device offline -> drain", "F1", "NpuDeviceDown", "drain", "availability", _FAILED,
                        Run("node-a", "1"), Run("node-a", "0")),
    RemediationScenario("F8", "firmware bug, wrong outputs -> drain", "F8", "NpuIncorrectOutputs", "drain",
                        "accuracy", _WRONG, Run("node-b", "3"), Run("node-b", "2")),
    RemediationScenario("F3-rollout", "a rollout with a bad calibration (F3 scales) -> rollback", "rollout",
                        "NpuAccuracyDeltaHigh", "rollback", "accuracy", _ACCURACY),
    RemediationScenario("capacity-guardrail", "a second device of the model fails while one is drained",
                        "F1", "NpuDeviceDown", "drain", "availability", _FAILED,
                        on=Run("node-b", "0"), guardrail="capacity"),
    RemediationScenario("maintenance-guardrail", "a device fails on a node in a maintenance window",
                        "F1", "NpuDeviceDown", "drain", "availability", _FAILED,
                        on=Run("node-a", "3"), guardrail="maintenance"),
)}
CAPACITY_SECOND = Run("node-b", "1")  # the second failing device of the capacity scenario


@dataclass(frozen=True)
class RemediationOptions:
    speed: float = 10.0
    for_cap: str = "10s"
    window_seconds: float = 120.0  # how long each run watches the harm before clearing the fault
    settle_seconds: float = 45.0  # between runs: let the harm queries' and the policy's 1m windows empty
    warmup_seconds: float = 30.0
    timing: Timing = field(default_factory=lambda: Timing(scrape_interval="2s", evaluation_interval="2s",
                                                          group_wait="2s", group_interval="5s"))


@dataclass
class RunResult:
    detect_seconds: float | None = None
    mitigate_seconds: float | None = None
    budget_spent: float | None = None  # share of the 30-day error budget
    decisions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ScenarioOutcome:
    scenario: RemediationScenario
    off: RunResult | None
    on: RunResult
    refusal: dict[str, Any] | None = None  # guardrail scenarios: the refused decision
    verdict: str = "ok"

    def as_json(self, window: float) -> dict[str, Any]:
        s = self.scenario
        doc: dict[str, Any] = {"name": s.name, "title": s.title, "verdict": self.verdict, "window_seconds": window,
                               "remediation": {
                                   "action": s.action,
                                   "detect_seconds": _r(self.on.detect_seconds),
                                   "mitigate_seconds_off": _r(self.off.mitigate_seconds) if self.off else None,
                                   "mitigate_seconds_on": _r(self.on.mitigate_seconds),
                                   "budget_spent_off": _r(self.off.budget_spent, 6) if self.off else None,
                                   "budget_spent_on": _r(self.on.budget_spent, 6)}}
        if s.guardrail:
            doc["guardrail"] = {"kind": s.guardrail, "refused": self.refusal}
        doc["decisions"] = {"off": self.off.decisions if self.off else [], "on": self.on.decisions}
        return doc


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


class _Loop:
    """The stack plus the in-process controller; helpers to run and measure one run."""

    def __init__(self, stack: EmbeddedStack, controller: Controller, control: ControlClient,
                 options: RemediationOptions, progress: Callable[[str], None], webhook_url: str) -> None:
        self.stack, self.controller, self.control, self.o, self.progress = stack, controller, control, options, progress
        self.webhook_url = webhook_url
        assert stack.prometheus is not None
        self.prom = stack.prometheus

    def decisions_since(self, since: float) -> list[dict[str, Any]]:
        path = self.controller.audit_path
        lines = path.read_text().splitlines() if path.exists() else []
        out = []
        for line in lines:
            e = json.loads(line)
            if e["at"] >= since:
                out.append(e)
        return out

    def _spec_budget(self, sli: str) -> float | None:
        """The error budget of the ``sli`` SLO of the spec the stack's rules come from (what the recording
        rule will say once its 5-minute group has run)."""
        return next((slo.error_budget for slo in self.stack.config.spec.slos if slo.sli == sli), None)

    def wait(self, seconds: float, until: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until():
                return True
            time.sleep(1)
        return until()

    def harmed(self, harm: str) -> bool:
        return bool(self.prom.query(harm))

    def budget(self, sli: str, window: float) -> float | None:
        """Share of the 30-day budget the last ``window`` wall seconds' bad events spent."""
        w = f"{max(int(window), 1)}s"
        if sli == "availability":
            bad = f'sum(increase(npu_inference_requests_total{{outcome!="success",tenant!="canary"}}[{w}]))'
            total = f'sum(increase(npu_inference_requests_total{{tenant!="canary"}}[{w}]))'
        else:
            bad = f"sum(increase(npu_golden_mismatches_total[{w}]))"
            total = f"sum(increase(npu_golden_checks_total[{w}]))"
        ratio = self.prom.query(f'max({cv.SLO_ERROR_BUDGET}{{sli="{sli}"}})')
        b, t = self.prom.query(bad), self.prom.query(total)
        budget = float(ratio[0]["value"][1]) if ratio else self._spec_budget(sli)  # the rule may not have run yet
        if not (b and t and budget):
            return None
        bad_n, total_n = float(b[0]["value"][1]), float(t[0]["value"][1])
        rate = total_n / (window * self.o.speed)  # events per virtual second
        return bad_n / (budget * rate * PERIOD_SECONDS) if rate > 0 and budget > 0 else None

    def inject(self, s: RemediationScenario, run: Run) -> None:
        if s.fault == "rollout":
            version = f"v-bad-{int(time.time())}"
            self.control.act("rollout", by="gameday", model=MODEL, version=version,
                             attributes={"calibration": "bad"})  # type: ignore[arg-type]
        else:
            self.stack.inject(s.fault, node=run.node, device=run.device)

    def clean(self, s: RemediationScenario, runs: Sequence[Run]) -> None:
        """Undo the fault and whatever remediation did, then let the harm windows empty. The controller
        is in dry-run meanwhile: alerts still winding down must not act on the drill's own clean-up."""
        self.controller.enabled = False
        for run in runs:
            if run.node:
                self.stack.clear(node=run.node, device=run.device)
        state = self.control.state()
        for d in state["devices"]:
            if d["drained"]:
                self.control.act("undrain", by="gameday", node=d["node"], device=d["device"])
        for m in state["models"]:
            if m["attributes"].get("calibration") == "bad":
                self.control.act("rollback", by="gameday", model=m["model"])
        self.wait(self.o.window_seconds, lambda: not self.harmed(s.harm))
        time.sleep(self.o.settle_seconds)

    def measure(self, s: RemediationScenario, run: Run, enabled: bool) -> RunResult:
        self.controller.enabled = enabled
        t0 = time.time()
        self.progress(f"  {s.name} remediation {'on' if enabled else 'off'} ({run.node}/{run.device or '*'})")
        self.inject(s, run)
        result = RunResult()
        harmed_once = False
        while time.time() - t0 < self.o.window_seconds:
            mine = [e for e in self.decisions_since(t0) if e["alertname"] == s.alert
                    and (not run.node or e["target"].get("node") == run.node)]
            if result.detect_seconds is None and mine:
                result.detect_seconds = mine[0]["at"] - t0
            harmed = self.harmed(s.harm)
            harmed_once |= harmed
            if harmed_once and not harmed and result.mitigate_seconds is None:
                result.mitigate_seconds = time.time() - t0
            if result.mitigate_seconds is not None and result.detect_seconds is not None and enabled:
                break
            time.sleep(1)
        result.budget_spent = self.budget(s.sli, max(time.time() - t0, 1))
        result.decisions = [{k: e[k] for k in ("alertname", "action", "target", "result", "reason")}
                            for e in self.decisions_since(t0)]
        return result


def _guardrail(loop: _Loop, s: RemediationScenario) -> tuple[RunResult, dict[str, Any] | None]:
    """Run a refusal scenario; the refused decision (None when the guardrail did not refuse)."""
    t0 = time.time()
    assert loop.stack.alertmanager is not None
    if s.guardrail == "capacity":
        loop.controller.enabled = True
        first = loop.measure(s, s.on, True)
        t1 = time.time()
        loop.stack.inject(s.fault, node=CAPACITY_SECOND.node, device=CAPACITY_SECOND.device)
        ok = loop.wait(loop.o.window_seconds, lambda: any(
            e["alertname"] == s.alert and e["target"].get("device") == CAPACITY_SECOND.device
            and e["target"].get("node") == CAPACITY_SECOND.node for e in loop.decisions_since(t1)))
        refused = [e for e in loop.decisions_since(t1) if e["result"] == "refused_capacity"]
        first.decisions += [{k: e[k] for k in ("alertname", "action", "target", "result", "reason")}
                            for e in loop.decisions_since(t1)]
        loop.clean(s, [s.on, CAPACITY_SECOND])
        return first, (refused[0] if ok and refused else None)
    # maintenance: the window silences the alert in Alertmanager, so it never reaches the webhook; the
    # drill then delivers the firing alert as a late (or replayed) notification would: it must be refused
    loop.controller.enabled = True
    ids = maintenance.start(loop.stack.alertmanager, [s.on.node], duration=timedelta(minutes=30),
                            comment="gameday maintenance-guardrail", created_by="npuobs gameday")
    result = RunResult()
    refusal = None
    try:
        loop.stack.inject(s.fault, node=s.on.node, device=s.on.device)

        def firing() -> list[dict[str, Any]]:
            return [a for a in loop.prom.alerts() if a["labels"].get("alertname") == s.alert
                    and a["labels"].get("node") == s.on.node and a["labels"].get("device") == s.on.device
                    and a.get("state") == "firing"]

        loop.wait(loop.o.window_seconds, lambda: bool(firing()))
        result.detect_seconds = time.time() - t0 if firing() else None
        time.sleep(10)  # Alertmanager's group_wait and more: a delivery would have happened by now
        delivered = [e for e in loop.decisions_since(t0) if e["alertname"] == s.alert]
        alerts = firing()
        if alerts:
            a = alerts[0]
            labels = {k: v for k, v in a["labels"].items()}
            payload = {"version": "4", "groupKey": f'{{}}/{{alertname=~"Npu.+"}}:{{alertname="{s.alert}"}}',
                       "status": "firing", "receiver": "npuobs-remediate", "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": loop.stack.alertmanager.url,
                       "alerts": [{"status": "firing", "labels": labels, "annotations": a.get("annotations", {}),
                                   "startsAt": a.get("activeAt", ""), "endsAt": "0001-01-01T00:00:00Z",
                                   "generatorURL": "", "fingerprint": f"replay-{s.on.node}-{s.on.device}"}]}
            req = urllib.request.Request(loop.webhook_url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own loopback server
                answer = json.loads(resp.read())
            refused = [d for d in answer["decisions"] if d["result"] == "refused_maintenance"]
            refusal = {**refused[0], "silenced_in_alertmanager": not delivered} if refused else None
        result.decisions = [{k: e[k] for k in ("alertname", "action", "target", "result", "reason")}
                            for e in loop.decisions_since(t0)]
        result.budget_spent = loop.budget(s.sli, max(time.time() - t0, 1))
    finally:
        # end the fault inside the window: an alert still firing when the silence ends is delivered (and
        # rightly acted on), which is not what this drill measures
        loop.controller.enabled = False
        loop.stack.clear(node=s.on.node, device=s.on.device)
        loop.wait(loop.o.window_seconds, lambda: not [
            a for a in loop.prom.alerts() if a["labels"].get("alertname") == s.alert
            and a["labels"].get("node") == s.on.node and a["labels"].get("device") == s.on.device])
        for i in ids:
            loop.stack.alertmanager.expire_silence(i)
        loop.clean(s, [s.on])
    return result, refusal


def run_remediation_gameday(names: Sequence[str], options: RemediationOptions, workdir: Path | None = None,
                            progress: Callable[[str], None] = lambda _: None) -> tuple[list[ScenarioOutcome], float]:
    """Start the stack with the controller wired in, run the scenarios off and on; (outcomes, wall seconds)."""
    own = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="npuobs-gameday-remediate-"))
    port = free_port()
    stack = EmbeddedStack(timing=replace(options.timing, for_cap=options.for_cap), workdir=workdir / "stack",
                          speed=options.speed, remediate_url=f"http://127.0.0.1:{port}/webhook")
    started = time.time()
    server = None
    controller = None
    try:
        stack.start()
        if stack.missing:
            raise StackError(f"{' and '.join(stack.missing)} not found on PATH; apt-get install -y prometheus "
                             "prometheus-alertmanager")
        assert stack.runner is not None and stack.prometheus is not None and stack.runner.control_token_file
        control = ControlClient(stack.runner.control_url, ControlAuth.from_files(stack.runner.control_token_file))
        controller = Controller(load_policy(), StateStore(workdir / "remediate"), control, enabled=False,
                                alertmanager=stack.alertmanager, prometheus=stack.prometheus, verify_interval=2.0,
                                log=_Progress(progress))
        server = WebhookServer(controller, f"127.0.0.1:{port}").start()
        nodes = len(stack.runner.targets)
        stack.prometheus.wait_for(f'up{{job="{cv.DEFAULT_EXPORTER_JOB}"}} == 1', lambda r: len(r) == nodes, timeout=60)
        progress(f"stack up; warming up {options.warmup_seconds:g}s")
        time.sleep(options.warmup_seconds)
        loop = _Loop(stack, controller, control, options, progress, server.url + "/webhook")
        outcomes = []
        for name in names:
            s = SCENARIOS[name]
            progress(f"{s.name}: {s.title}")
            if s.guardrail:
                on, refusal = _guardrail(loop, s)
                outcomes.append(ScenarioOutcome(s, None, on, refusal, "ok" if refusal else "guardrail did not refuse"))
                continue
            off = loop.measure(s, s.off, False)
            loop.clean(s, [s.off])
            on = loop.measure(s, s.on, True)
            loop.clean(s, [s.on])
            acted = any(d["action"] == s.action and d["result"] in ("acted", "verified") for d in on.decisions)
            verdict = "ok" if acted and on.mitigate_seconds is not None else \
                f"no {s.action}" if not acted else "not mitigated"
            outcomes.append(ScenarioOutcome(s, off, on, verdict=verdict))
    finally:
        if server is not None:
            server.stop()
        if controller is not None:
            controller.stop()
            controller.state.close()
        stack.stop()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    return outcomes, time.time() - started


class _Progress:
    """The controller's per-decision lines go to the progress callback."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress

    def write(self, text: str) -> None:
        if text.strip():
            self.progress("    " + text.strip())

    def flush(self) -> None:
        pass


def _secs(x: float | None, window: float) -> str:
    return f"> {window:.0f}s (not mitigated)" if x is None else f"{x:.0f}s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.3f} %"


def remediation_markdown(outcomes: Sequence[ScenarioOutcome], options: RemediationOptions, wall: float) -> str:
    lines = ["### Game day with remediation: off (dry-run) vs on", "",
             f"Fleet speed {options.speed:g} virtual s per wall s; alert for: capped at {options.for_cap}; each run "
             f"watched {options.window_seconds:.0f} s wall ({options.window_seconds * options.speed / 60:.0f} virtual "
             f"min); wall time {wall / 60:.0f} min. Budget spent: share of the SLO's 30-day error budget.", "",
             "| scenario | action | detect | mitigate off | mitigate on | budget spent off | budget spent on | "
             "verdict |", "|---|---|---|---|---|---|---|---|"]
    w = options.window_seconds
    for o in outcomes:
        s = o.scenario
        if s.guardrail:
            refused = o.refusal["reason"] if o.refusal else "NOT REFUSED"
            lines.append(f"| {s.name} | {s.action} refused: {refused} | "
                         f"{'-' if o.on.detect_seconds is None else f'{o.on.detect_seconds:.0f}s'} | - | - | - | "
                         f"{_pct(o.on.budget_spent)} | {o.verdict} |")
            continue
        lines.append(f"| {s.name} | {s.action} | "
                     f"{'-' if o.on.detect_seconds is None else f'{o.on.detect_seconds:.0f}s'} | "
                     f"{_secs(o.off.mitigate_seconds if o.off else None, w)} | {_secs(o.on.mitigate_seconds, w)} | "
                     f"{_pct(o.off.budget_spent if o.off else None)} | {_pct(o.on.budget_spent)} | {o.verdict} |")
    return "\n".join(lines) + "\n"


def remediation_json(outcomes: Sequence[ScenarioOutcome], options: RemediationOptions, wall: float) -> dict[str, Any]:
    return {"kind": "gameday-remediation", "speed": options.speed, "for_cap": options.for_cap,
            "window_seconds": options.window_seconds, "wall_seconds": round(wall, 1),
            "passed": all(o.verdict == "ok" for o in outcomes),
            "scenarios": [o.as_json(options.window_seconds) for o in outcomes]}


def soak_remediation(fired: Sequence[Any], policy_path: Path | None = None) -> dict[str, Any]:
    """What the policy's rules would do for the alerts a soak fired (``--soak --remediate``).

    The soak evaluates recorded series in virtual time, with no serving plane to act on, so this
    applies the rules only: an alert with a rule whose action is not ``none`` counts as an action
    (before guardrails, which could only refuse more). Target: 0 on healthy load.
    """
    policy = load_policy(policy_path)
    actions = []
    for a in fired:
        rule = policy.rule_for(a.labels.get("alertname", ""))
        if rule is not None and rule.action != "none":
            actions.append({"alert": a.labels.get("alertname"), "action": rule.action,
                            "labels": {k: v for k, v in a.labels.items() if k in ("node", "device", "model")}})
    return {"policy": policy.source, "fired_alerts": len(fired), "actions": len(actions), "would_act": actions}
