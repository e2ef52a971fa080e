"""The soak: a day of healthy (optionally noisy) diurnal load in virtual time; did anything page?

Healthy load must never page: a rule that pages on the evening peak, on a cold start or on a
20-second blip trains people to ignore pages. The soak runs the simulated fleet through 24 virtual
hours of ``diurnal`` load (``record``), lets the real Prometheus evaluate the generated rules over
it (``promeval``), and counts what reached ``firing``: pages and tickets, as alerts and as the
PagerDuty incidents Alertmanager would open (one per ``group_by`` group).

Background noise (``noise=True``) adds brief, seeded blips that real fleets see daily and that are
below every page threshold by design: a device offline for 20 s, a minute of noisy neighbour or of
heat, a single device reset. They may ticket (one reset does, on purpose); they
must not page.

SLO period rules (30-day windows) over a 24-hour soak: a window longer than the recording sees only
the recording, so ``..._ratio_rate30d`` and ``..._rate3d`` are the soak's own error ratio and budget
"remaining" is what it would be if the whole period looked like this day. That is the strict
reading (a day that burns 30 days' worth of budget ratio tickets), and it cannot page: pages come
from the 1 h and 6 h windows, which the soak covers in full after its first 6 hours.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from npuobs.alerting import conventions as cv
from npuobs.alerting.generate import render, write
from npuobs.config import Config
from npuobs.gameday.promeval import AlertInterval, TsdbEvaluator
from npuobs.gameday.record import Action, Recording, RecordOptions, record
from npuobs.simulator.fleet import FleetConfig
from npuobs.simulator.loadgen import LoadProfile

GROUP_BY = cv.INCIDENT_LABELS  # the generated Alertmanager route's group_by: one group, one incident
# (fault, seconds): each below its alert's threshold or `for:`, so none may page. Not F5: a CPU-fallback
# blip flips a canary prediction (FP32 host op vs INT8) and NpuIncorrectOutputs pages on any mismatch.
BLIPS: tuple[tuple[str, float], ...] = (("F1", 20.0), ("F7", 60.0), ("F2", 60.0), ("RESET", 10.0))


@dataclass(frozen=True)
class SoakOptions:
    duration: float = 86400.0
    fleet: FleetConfig = field(default_factory=lambda: replace(
        FleetConfig.default(), load=LoadProfile(kind="diurnal"), tick_seconds=1.0))
    scrape_interval: float = 30.0
    eval_interval: float = 60.0  # Prometheus' default evaluation_interval
    noise: bool = False
    blips_per_hour: float = 0.5
    blips: tuple[tuple[str, float], ...] = BLIPS  # (fault, virtual seconds) drawn from at random
    quiet_start: float = 1800.0  # no blip in the first 30 minutes: rate windows fill with healthy data first
    workers: int = 2
    rules_dir: Path | None = None  # None: generate from config (what `npuobs alerts generate` writes)
    config: Config = field(default_factory=Config.load)


@dataclass
class SoakResult:
    options: SoakOptions
    recording: Recording
    alerts: list[AlertInterval]
    blips: list[Action]
    stage_seconds: dict[str, float]
    workdir: Path
    evaluator: TsdbEvaluator | None = None  # still serving the soak's TSDB when run with keep=True

    def fired(self, severity: str) -> list[AlertInterval]:
        return [a for a in self.alerts if a.fired and a.severity == severity]

    @property
    def pages(self) -> list[AlertInterval]:
        return self.fired(cv.SEVERITY_PAGE)

    @property
    def tickets(self) -> list[AlertInterval]:
        return self.fired(cv.SEVERITY_TICKET)

    def incidents(self, severity: str) -> int:
        """PagerDuty incidents Alertmanager would open: distinct (group_by labels) among fired alerts."""
        return len({tuple(a.labels.get(k, "") for k in GROUP_BY) for a in self.fired(severity)})

    @property
    def pending_only(self) -> Counter[str]:
        """Alerts that went pending and cleared before their ``for:``: noise the rules absorbed."""
        return Counter(a.alertname for a in self.alerts if not a.fired)

    @property
    def wall_seconds(self) -> float:
        return sum(self.stage_seconds.values())


def blip_schedule(options: SoakOptions, seed: int) -> list[Action]:
    """Seeded background blips: Poisson arrivals at ``blips_per_hour``, random device and kind."""
    if not options.noise:
        return []
    rng = np.random.default_rng([seed, 7])
    devices = [(n.name, str(i)) for n in options.fleet.nodes for i in range(len(n.devices))]
    actions: list[Action] = []
    t = options.quiet_start
    while True:
        t += float(rng.exponential(3600.0 / options.blips_per_hour))
        if t >= options.duration - 600:
            return actions
        kind, seconds = options.blips[int(rng.integers(len(options.blips)))]
        node, dev = devices[int(rng.integers(len(devices)))]
        actions.append(Action(round(t), "inject", node=node, device=dev, fault=kind, duration=seconds,
                              reason="driver" if kind == "RESET" else ""))


def rule_files(options: SoakOptions, workdir: Path) -> list[Path]:
    """The rule files to evaluate: ``rules_dir``'s, or freshly generated from the SLO spec."""
    rules_dir = options.rules_dir
    if rules_dir is None:
        rules_dir = workdir / "rules"
        write(render(options.config), rules_dir)
    paths = [Path(rules_dir) / name for name in cv.RULE_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"rule files missing: {', '.join(missing)}")
    return paths


def run_soak(options: SoakOptions, workdir: Path | None = None, keep: bool = False,
             progress: Callable[[str], None] = lambda _: None) -> SoakResult:
    """Record, backfill, evaluate. With ``keep`` the workdir stays and its Prometheus keeps serving the
    soak's data (``result.evaluator``; the caller stops it), e.g. for ``npuobs slo report``.
    ``progress`` gets a line per stage and as the recording advances."""
    own = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="npuobs-soak-"))
    stages: dict[str, float] = {}
    blips = blip_schedule(options, options.fleet.seed)
    t0 = time.monotonic()
    rec = record(options.fleet, options.duration, workdir / "openmetrics", blips,
                 RecordOptions(scrape_interval=options.scrape_interval, workers=options.workers), progress)
    stages["simulate+render"] = time.monotonic() - t0
    evaluator = TsdbEvaluator(workdir / "tsdb", rule_files(options, workdir), options.eval_interval)
    try:
        t0 = time.monotonic()
        progress(f"backfilling {rec.samples:,} samples with promtool")
        evaluator.backfill(rec.files)
        stages["backfill"] = time.monotonic() - t0
        t0 = time.monotonic()
        progress("evaluating the recording rules over the soak with Prometheus")
        evaluator.start()
        evaluator.backfill_rules(rec.start, rec.end)
        stages["recording rules"] = time.monotonic() - t0
        t0 = time.monotonic()
        progress("evaluating the alert rules")
        alerts = evaluator.evaluate_all(rec.start, rec.end)
        stages["alert rules"] = time.monotonic() - t0
    finally:
        if not keep:
            evaluator.stop()
    if not keep:
        shutil.rmtree(workdir / "openmetrics", ignore_errors=True)
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    return SoakResult(options, rec, alerts, blips, stages, workdir, evaluator if keep else None)
