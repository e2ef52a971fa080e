"""Record a simulated fleet as Prometheus would have scraped it, in virtual time, as OpenMetrics files.

Why not scrape a live exporter: a 24-hour soak must finish in minutes, so nothing here waits for
wall time. The fleet runs as fast as the CPU allows; at every virtual scrape interval each node's
state is read through the ``sim`` backend and rendered by the exporter's own family builders (the same
pure snapshot -> families code ``npuobs exporter`` serves), with the target labels a scrape adds
(``job``, ``instance``), a timestamp, and Prometheus' synthetic ``up`` series.

Nodes are independent (every device draws from its own seeded RNG), so each node runs in its own
process: the recording of a 2-node fleet takes half the wall time on two cores, with the very same
samples as one process would produce.

Output is one OpenMetrics file per node and per 2-hour window aligned like TSDB blocks:
``promtool tsdb create-blocks-from openmetrics`` reads its input once per block it writes, so
pre-split files keep the backfill linear in the recording's length.

What a recording cannot express: OpenMetrics text has no staleness markers, so a target that stops
answering keeps its series visible for Prometheus' 5-minute lookback instead of going stale at
once (``up`` turns 0 at the first failed scrape as usual).
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import IO

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest

from npuobs import __version__
from npuobs.alerting import conventions as cv
from npuobs.devices.base import Snapshot, SourceResult
from npuobs.devices.sim import SimBackend
from npuobs.devices.source import SourceHealth
from npuobs.durations import format_duration
from npuobs.exporter.families import Inputs
from npuobs.exporter.families import build as build_families
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import Fleet, FleetConfig

BLOCK_SECONDS = 7200  # promtool's default block range: one file per block keeps the backfill linear
EXPORTER_PORT = 9400  # the exporter's default port, for ``instance`` labels of recorded targets
PROGRESS_POLL_SECONDS = 5.0
OPS = ("inject", "clear", "exporter_down", "exporter_up", "node_down", "node_up")


@dataclass(frozen=True)
class Action:
    """One step of a recorded timeline, ``at`` virtual seconds after the recording starts.

    ``inject``/``clear`` go through the fleet's fault control file exactly like ``npuobs sim``;
    ``exporter_down``/``exporter_up`` make the node's scrapes fail (``up 0``, no series) while the
    devices keep working; ``node_down``/``node_up`` also freeze the node's devices (a lost host
    serves nothing; its load balancer sends the traffic elsewhere).
    """

    at: float
    op: str
    node: str = ""  # "" = every node
    device: str = ""  # "" = every device of the node(s)
    fault: str = ""
    duration: float | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown action {self.op!r}; choose one of {', '.join(OPS)}")
        if self.op == "inject" and not self.fault:
            raise ValueError("an inject action needs a fault")

    def applies_to(self, node: str) -> bool:
        return self.node in ("", node)


@dataclass(frozen=True)
class RecordOptions:
    scrape_interval: float = 30.0  # virtual seconds between two scrapes of every exporter
    job: str = cv.DEFAULT_EXPORTER_JOB
    workers: int = 2  # processes; nodes are spread over them
    start: float = field(default_factory=lambda: VirtualClock().start)  # virtual unix time of t=0


@dataclass(frozen=True)
class NodeRecording:
    """What one node's recording produced (returned from its worker process)."""

    node: str
    files: tuple[Path, ...]
    scrapes: int
    samples: int
    cpu_seconds: float


@dataclass(frozen=True)
class Recording:
    nodes: tuple[NodeRecording, ...]
    start: float
    end: float
    scrape_interval: float
    job: str
    wall_seconds: float

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(f for n in self.nodes for f in n.files)

    @property
    def samples(self) -> int:
        return sum(n.samples for n in self.nodes)


def instance_label(node: str) -> str:
    """The ``instance`` a recorded node's exporter gets (``node-a:9400``)."""
    return f"{node}:{EXPORTER_PORT}"


class _Families:
    """Adapter: prometheus_client's ``generate_latest`` wants an object with ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class NodeScraper:
    """Renders one node's exporter output at a virtual instant, as a scrape would have stored it.

    Mirrors the exporter's composition (its registered family builders; devices seen
    before and missing now reported ``up 0``), then stamps every sample with the scrape's target
    labels and timestamp. Exemplars are dropped: a backfill has no use for them.
    """

    def __init__(self, state_dir: Path, node: str, job: str) -> None:
        self.node = node
        self.backend = SimBackend(state_dir=state_dir, node=node)
        self.target = {"job": job, "instance": instance_label(node)}
        self._known: dict[str, str] = {}
        self._health = SourceHealth()

    def families(self, now: float) -> list[Metric]:
        t0 = time.perf_counter()
        snap = self.backend.sample()
        error = "; ".join(f"{part}: {m}" for part, m in sorted(snap.errors.items())) or None
        # at virtual time ``now``: the scrape's instant, not the wall clock of this replay
        self._health.record(SourceResult(self.backend.name, now, time.perf_counter() - t0, error))
        return build_families(Inputs(self.node, snap, self._health.statuses(), __version__, self._vanished(snap)))

    def _vanished(self, snap: Snapshot) -> dict[str, str]:
        present = {r.info.device for r in snap.devices}
        self._known.update({r.info.device: r.info.vendor for r in snap.devices})
        return {d: v for d, v in self._known.items() if d not in present}

    def render(self, now: float, reachable: bool) -> tuple[str, int]:
        """OpenMetrics text (no ``# EOF``) of one scrape at ``now`` and its sample count.

        An unreachable exporter yields only ``up 0``, as Prometheus records for a failed scrape.
        """
        fams = self.families(now) if reachable else []
        for fam in fams:
            fam.samples = [s._replace(labels={**s.labels, **self.target}, timestamp=now, exemplar=None)
                           for s in fam.samples]
        up = GaugeMetricFamily("up", "1 if the target was scraped successfully.", labels=list(self.target))
        up.add_metric(list(self.target.values()), 1.0 if reachable else 0.0, timestamp=now)
        fams.append(up)
        text = generate_latest(_Families(fams)).decode()
        return text[: -len("# EOF\n")], sum(len(f.samples) for f in fams)


class _WindowWriter:
    """Appends scrapes to one file per block window, closing each with ``# EOF``."""

    def __init__(self, out_dir: Path, node: str) -> None:
        self.out_dir = out_dir
        self.node = node
        self.files: list[Path] = []
        self._window: int | None = None
        self._fh: IO[str] | None = None

    def write(self, at: float, text: str) -> None:
        window = int(at // BLOCK_SECONDS)
        if window != self._window:
            self.close()
            path = self.out_dir / f"{self.node}-{window * BLOCK_SECONDS}.om"
            self._fh = path.open("w", encoding="utf-8")
            self._window = window
            self.files.append(path)
        assert self._fh is not None
        self._fh.write(text)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.write("# EOF\n")
            self._fh.close()
            self._fh = None


def record_node(config: FleetConfig, node: str, actions: Sequence[Action], duration: float, out_dir: Path,
                state_dir: Path, options: RecordOptions) -> NodeRecording:
    """Run one node of ``config`` for ``duration`` virtual seconds and write its scrapes (a worker)."""
    cpu0 = time.process_time()
    node_cfg = next(n for n in config.nodes if n.name == node)
    fleet = Fleet(replace(config, nodes=(node_cfg,)), state_dir, VirtualClock(start=options.start))
    scraper = NodeScraper(state_dir, node, options.job)
    writer = _WindowWriter(out_dir, node)
    pending = sorted((a for a in actions if a.applies_to(node)), key=lambda a: a.at)
    reachable = powered = True
    next_scrape = options.start + options.scrape_interval
    end = options.start + duration
    scrapes = samples = 0
    try:
        while fleet.clock.now < end:
            while pending and pending[0].at <= fleet.clock.elapsed:
                action = pending.pop(0)
                if action.op == "inject":
                    fleet.faults.inject(action.fault, node=node, device=action.device, now=fleet.clock.now,
                                        duration=action.duration, reason=action.reason)
                elif action.op == "clear":
                    fleet.faults.clear(kind=action.fault or None, node=node, device=action.device)
                elif action.op in ("exporter_down", "exporter_up"):
                    reachable = action.op == "exporter_up"
                else:
                    powered = reachable = action.op == "node_up"
            if powered:
                fleet.tick()
            else:
                fleet.clock.advance(config.tick_seconds)
            if fleet.clock.now >= next_scrape:
                if reachable:
                    fleet.publish()
                text, n = scraper.render(fleet.clock.now, reachable)
                writer.write(fleet.clock.now, text)
                scrapes += 1
                samples += n
                next_scrape += options.scrape_interval
    finally:
        writer.close()
    return NodeRecording(node, tuple(writer.files), scrapes, samples, time.process_time() - cpu0)


def _report_progress(results: list[AsyncResult[NodeRecording]], out_dir: Path, start: float, duration: float,
                     progress: Callable[[str], None]) -> None:
    """Until the workers finish (or one fails), say how far the slowest node got, from the block
    files it has started (a window's file opens at its first scrape), whenever that advances."""
    said = 0.0
    while not all(r.ready() for r in results):
        if any(r.ready() and not r.successful() for r in results):
            return  # the caller's get() raises the worker's error
        next(r for r in results if not r.ready()).wait(PROGRESS_POLL_SECONDS)
        reached = []
        for node in {p.name.rsplit("-", 1)[0] for p in out_dir.glob("*.om")}:
            latest = max(float(p.stem.rsplit("-", 1)[1]) for p in out_dir.glob(f"{node}-*.om"))
            reached.append(max(latest - start, 0.0))
        done = min(reached) if len(reached) == len(results) else 0.0
        if done > said:
            said = done
            progress(f"simulated {format_duration(int(done))} of {format_duration(int(duration))} "
                     f"({done / duration:.0%})")


def record(config: FleetConfig, duration: float, out_dir: Path, actions: Iterable[Action] = (),
           options: RecordOptions | None = None, progress: Callable[[str], None] = lambda _: None) -> Recording:
    """Record every node of ``config`` for ``duration`` virtual seconds into ``out_dir``.

    ``config.tick_seconds`` must divide the scrape interval, so scrapes land on ticks. ``progress``
    gets a line whenever the recording has advanced (about every block window of virtual time).
    """
    options = options or RecordOptions()
    if options.scrape_interval % config.tick_seconds:
        raise ValueError(f"scrape interval {options.scrape_interval:g}s is not a multiple of the fleet tick "
                         f"{config.tick_seconds:g}s")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a fleet resumes the timeline and counters it finds in its state dir: a recording starts afresh
    shutil.rmtree(out_dir / "state", ignore_errors=True)
    actions = tuple(actions)
    nodes = [n.name for n in config.nodes]
    jobs = [(config, node, actions, duration, out_dir, out_dir / "state" / node, options) for node in nodes]
    wall0 = time.monotonic()
    if options.workers <= 1 or len(nodes) == 1:
        results = []
        for job in jobs:
            results.append(record_node(*job))
            progress(f"recorded {job[1]} ({len(results)}/{len(jobs)} nodes)")
    else:
        # spawn, not fork: the caller may run threads (servers, samplers) that fork would copy mid-flight.
        # A Pool, not a ProcessPoolExecutor: on an error or SIGTERM here, terminate() stops the workers at
        # once instead of waiting minutes for their recordings to finish.
        pool = multiprocessing.get_context("spawn").Pool(min(options.workers, len(nodes)))
        try:
            pending = [pool.apply_async(record_node, job) for job in jobs]
            _report_progress(pending, out_dir, options.start, duration, progress)
            results = [r.get() for r in pending]
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    return Recording(tuple(results), options.start, options.start + duration, options.scrape_interval,
                     options.job, time.monotonic() - wall0)
