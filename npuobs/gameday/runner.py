"""Run drills on the embedded stack: inject, watch Prometheus and the PagerDuty sink, clear, grade.

Timing trade-off. The generated rules wait minutes (``for: 15m`` on a CPU fallback, ``1h`` on
version skew) and Prometheus counts them in wall time, so a faithful drill of all thirteen
scenarios would take hours. Two knobs shorten it, each with a cost the report states:

* ``speed``: the fleet runs N virtual seconds per wall second, so physical processes (a die heating
  up, a model reloading, the 15 s canary) happen N times sooner. Prometheus still measures wall
  time, so ``rate()`` over 5 minutes sees 5N virtual minutes: ratios are unchanged, counts per
  second are N times higher (the error-rate threshold is crossed sooner).
* ``for_cap``: every ``for:`` is capped (the embedded stack's ``Timing.for_cap``; the generator has
  no such option, and expressions stay untouched). Detection times then show the pipeline's own
  latency (scrape, evaluation, Alertmanager grouping), not the policy's deliberate patience; the
  soak (``npuobs gameday --soak``) evaluates the uncapped rules in virtual time instead.

Windows inside expressions (``increase(...[1h])``) are not shortened, so some alerts outlive a drill
by design: a reset ticket stays an hour. Resolution is watched for ``resolve_timeout`` and reported
as not seen when it takes longer; every drill uses its own device so such tails cannot be mistaken
for the next drill's alerts.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from npuobs.alerting import conventions as cv
from npuobs.amapi import AlertmanagerAPI, AlertmanagerError
from npuobs.config import Config
from npuobs.durations import parse_duration
from npuobs.gameday.grader import Delivery, Grader, ScenarioResult, SeenAlert, delivery_from_event, open_incidents
from npuobs.gameday.scenarios import Scenario
from npuobs.simulator.fleet import FleetConfig
from npuobs.stack.embedded import PAGE_KEY, TICKET_KEY, EmbeddedStack, Timing
from npuobs.stack.proc import StackError

BASELINE_MARGIN_SECONDS = 180.0  # healthy history inside the baseline window before a baseline-judged drill


@dataclass(frozen=True)
class DrillOptions:
    speed: float = 10.0
    for_cap: str | None = "30s"
    detect_timeout: float = 360.0  # a 5-minute rate window must fill past its threshold (F5: ~3.5 min)
    resolve_timeout: float = 90.0
    warmup_seconds: float = 30.0  # let rate windows fill and start-up alerts settle before the first drill
    poll_seconds: float = 1.0
    rules_dir: Path | None = None  # rule files to test instead of freshly generated ones
    config: Config | None = None  # None: the packaged SLO spec
    fleet: FleetConfig = field(default_factory=FleetConfig.default)
    timing: Timing = field(default_factory=lambda: Timing(scrape_interval="5s", evaluation_interval="5s",
                                                          group_wait="5s", group_interval="10s"))


@dataclass
class DrillStack(EmbeddedStack):
    """The embedded stack, optionally evaluating given rule files instead of the generated ones
    (how a game day tests a rule change, or proves it catches a broken rule)."""

    rules_dir: Path | None = None

    def render_alerting(self) -> dict[str, str]:
        files = super().render_alerting()
        if self.rules_dir is not None:
            for name in cv.RULE_FILES:
                files[name] = (Path(self.rules_dir) / name).read_text(encoding="utf-8")
        return files


@dataclass
class GameDayResult:
    scenarios: list[ScenarioResult]
    options: DrillOptions
    started_at: float
    wall_seconds: float

    def passed(self, strict: bool = False) -> bool:
        return all(s.verdict(strict) == "ok" for s in self.scenarios)


class Observer:
    """Polls Prometheus' alerts, Alertmanager's inhibitions and the sink's events, keeping wall-clock
    first sightings."""

    def __init__(self, stack: EmbeddedStack) -> None:
        assert stack.prometheus is not None and stack.sink is not None
        self.stack = stack
        self.am = AlertmanagerAPI(stack.alertmanager.url) if stack.alertmanager is not None else None
        self.alerts: dict[tuple[tuple[str, str], ...], SeenAlert] = {}
        self.deliveries: list[Delivery] = []
        self.receivers = {PAGE_KEY: cv.RECEIVER_PAGE, TICKET_KEY: cv.RECEIVER_TICKET}

    def poll(self) -> None:
        assert self.stack.prometheus is not None and self.stack.sink is not None
        now = time.time()
        present = set()
        for a in self.stack.prometheus.alerts():
            seen = SeenAlert(dict(a["labels"]), dict(a.get("annotations") or {}))
            key = seen.key
            present.add(key)
            current = self.alerts.get(key)
            if current is None or current.gone_at is not None:  # new, or back after going away
                self.alerts[key] = current = seen
                current.first_pending = now
            if a.get("state") == "firing" and current.first_firing is None:
                current.first_firing = now
        for key, seen in self.alerts.items():
            if key not in present and seen.gone_at is None:
                seen.gone_at = now
        self._poll_inhibited(now)
        events = self.stack.sink.events()
        self.deliveries += [delivery_from_event(e, now, self.receivers) for e in events[len(self.deliveries):]]

    def _poll_inhibited(self, now: float) -> None:
        """Mark alerts Alertmanager holds as inhibited (Prometheus' view has no such state)."""
        if self.am is None:
            return
        try:
            held = self.am.alerts(silenced=False)
        except AlertmanagerError:
            return  # a slow Alertmanager costs one sighting, not the drill
        for a in held:
            status = a.get("status") or {}
            if status.get("state") != "suppressed" or not status.get("inhibitedBy"):
                continue
            current = self.alerts.get(tuple(sorted(a["labels"].items())))
            if current is not None and current.gone_at is None and current.suppressed_at is None:
                current.suppressed_at = now

    def active(self) -> set[tuple[tuple[str, str], ...]]:
        return {k for k, a in self.alerts.items() if a.gone_at is None}

    def watch(self, seconds: float, until: Callable[[], bool] = lambda: False, poll: float = 1.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.poll()
            if until() or time.monotonic() >= deadline:
                return
            time.sleep(poll)


class DrillRunner:
    """Runs scenarios one after another on a started stack."""

    def __init__(self, stack: EmbeddedStack, options: DrillOptions,
                 progress: Callable[[str], None] = lambda _: None) -> None:
        assert stack.runner is not None
        self.stack = stack
        self.options = options
        self.progress = progress
        self.observer = Observer(stack)
        self.grader = Grader(options.fleet, dict(stack.runner.targets), self.observer.receivers)
        self.done: list[Scenario] = []
        self.started = time.time()  # the stack's history begins about here

    def run(self, scenario: Scenario) -> ScenarioResult:
        obs, o = self.observer, self.options
        self._await_baseline(scenario)
        obs.poll()
        before = obs.active()
        first_delivery = len(obs.deliveries)
        injected_at = time.time()
        self.progress(f"[{_clock(injected_at)}] {scenario.name}: {scenario.title}")
        self._apply(scenario)

        def detected() -> bool:
            mine = self._mine(before, injected_at)
            delivered = [d for d in obs.deliveries[first_delivery:] if d.action == "trigger"]
            for e in scenario.expect:
                hits = [a for a in mine if a.alertname == e.alertname and a.severity == e.severity
                        and self.grader.in_scope(e.scope, scenario, a.labels)]
                if not any(d.carries(a.labels) for a in hits for d in delivered):
                    return False
            return True

        if scenario.expect:
            obs.watch(o.detect_timeout, detected, o.poll_seconds)
        else:
            obs.watch(scenario.quiet_seconds, poll=o.poll_seconds)
        cleared_at = self._clear(scenario)
        expected_keys = {a.key for a in self._mine(before, injected_at)
                         if any(a.alertname == e.alertname for e in scenario.expect)}
        obs.watch(o.resolve_timeout, lambda: not (expected_keys & obs.active()), o.poll_seconds)
        result = self.grader.grade(scenario, list(self.done), injected_at, cleared_at,
                                   self._mine(before, injected_at), obs.deliveries[first_delivery:],
                                   open_incidents(obs.deliveries[:first_delivery]))
        self.done.append(scenario)
        self.progress(f"[{_clock(time.time())}] {scenario.name}: {result.verdict()}")
        return result

    def _await_baseline(self, scenario: Scenario) -> None:
        """Hold a baseline-judged drill until the stack holds its baseline's history (offset + a margin)."""
        if not scenario.needs_baseline:
            return
        t = self.stack.config.thresholds
        ready = self.started + parse_duration(t.cost_baseline_offset) + BASELINE_MARGIN_SECONDS
        if (wait := ready - time.time()) > 0:
            self.progress(f"[{_clock(time.time())}] {scenario.name}: waiting {wait:.0f}s until the stack holds "
                          f"{t.cost_baseline_offset} + {BASELINE_MARGIN_SECONDS:g}s of history for its baseline")
            self.observer.watch(wait, poll=self.options.poll_seconds)

    def _mine(self, before: set[tuple[tuple[str, str], ...]], since: float) -> list[SeenAlert]:
        """Alerts that were not active before the drill and fired (or were inhibited) after it began."""
        return [a for k, a in self.observer.alerts.items()
                if k not in before and ((a.first_firing is not None and a.first_firing >= since)
                                        or (a.suppressed_at is not None and a.suppressed_at >= since))]

    def _apply(self, scenario: Scenario) -> None:
        assert self.stack.runner is not None
        for step in scenario.steps:
            if step.op == "inject":
                for i in range(step.repeat):
                    if i:
                        self.observer.watch(step.every / self.options.speed, poll=self.options.poll_seconds)
                    for node, dev in scenario.targets:
                        self.stack.inject(step.fault, node=node, device=dev, duration=step.duration,
                                          reason=step.reason)
            elif step.op == "restart_exporter":
                for node in scenario.nodes:
                    self.stack.runner.restart_exporter(node)
            elif step.op == "stop_exporter":
                for node in scenario.nodes:
                    self.stack.runner.exporters[node].stop()
            else:
                raise ValueError(f"{scenario.name}: unknown step {step.op!r}")

    def _clear(self, scenario: Scenario) -> float | None:
        """Undo the drill; returns when (None when there was nothing to undo)."""
        assert self.stack.runner is not None
        ops = {s.op for s in scenario.steps}
        if ops == {"restart_exporter"}:
            return None
        if "inject" in ops:
            for node, dev in scenario.targets:
                self.stack.clear(node=node, device=dev)
        if "stop_exporter" in ops:
            for node in scenario.nodes:
                self.stack.runner.restart_exporter(node)
        return time.time()


def _clock(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def run_drills(scenarios: Sequence[Scenario], options: DrillOptions, workdir: Path | None = None,
               progress: Callable[[str], None] = lambda _: None) -> GameDayResult:
    """Start the embedded stack, warm it up, run ``scenarios`` in order, stop it."""
    own = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="npuobs-gameday-"))
    timing = replace(options.timing, for_cap=options.for_cap)
    kwargs = {"config": options.config} if options.config else {}
    stack = DrillStack(fleet_config=options.fleet, timing=timing, workdir=workdir, speed=options.speed,
                       rules_dir=options.rules_dir, **kwargs)
    started = time.time()
    try:
        stack.start()
        if stack.missing:
            raise StackError(f"{' and '.join(stack.missing)} not found on PATH; a game day needs the real "
                             "stack: apt-get install -y prometheus prometheus-alertmanager")
        assert stack.prometheus is not None and stack.runner is not None
        nodes = len(stack.runner.targets)
        stack.prometheus.wait_for(f'up{{job="{cv.DEFAULT_EXPORTER_JOB}"}} == 1', lambda r: len(r) == nodes,
                                  timeout=60)
        progress(f"stack up in {time.time() - started:.0f}s (Prometheus {stack.prometheus.url}); "
                 f"warming up {options.warmup_seconds:g}s")
        drills = DrillRunner(stack, options, progress)
        drills.observer.watch(options.warmup_seconds, poll=options.poll_seconds)
        results = [drills.run(s) for s in scenarios]
    finally:
        stack.stop()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    return GameDayResult(results, options, started, time.time() - started)
