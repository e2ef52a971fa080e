"""``npuobs scale``: run the global tier at fleet size on this machine and measure it.

Synthetic nodes (:mod:`npuobs.scale.replay`) are scraped every ``interval`` by one real vmagent
per cluster and remote-written into a real VictoriaMetrics; real vmalerts evaluate the generated
rules as deployed, one per cluster on that cluster's series and one global (:mod:`npuobs.scale.globalstack`);
a real Alertmanager pages a local PagerDuty receiver. While it runs, the harness samples the engine's own metrics
and RSS, times every executive and on-call dashboard query against the global tier every 30 s,
and at the end checks that the fault injected at ``fault_node`` (F8: device 0 returns incorrect outputs) paged
through vmalert -> Alertmanager. The report is JSON for a ``.json`` path, Markdown otherwise.

What it measures, and where from:

- active series, ingested samples/s, rows rejected: VictoriaMetrics' ``/metrics``
  (``vm_cache_entries{type="storage/hour_metric_ids"}``, ``vm_rows_inserted_total``,
  ``vm_rows_ignored_total``); dropped samples add vmagent's dropped/failed remote-write counters;
- series per device: what the scrapers saw (``scrape_samples_scraped`` / devices per node), and
  the same simulated node rendered in every profile side by side;
- scrape duration p99: vmagent's ``scrape_duration_seconds`` series, over the run;
- rule evaluation time per group of each vmalert: its ``vmalert_iteration_duration_seconds`` (max quantile);
- dashboard query latency: wall time of ``/api/v1/query`` for each panel query, p50/p99;
- engine RSS (max) and bytes on disk per ingested sample.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from npuobs.config import Config
from npuobs.dashboards.promql import builtins, panel_queries, substitute, variable_defaults
from npuobs.scale.globalstack import PAGE_KEY, GlobalStack
from npuobs.scale.replay import Recording, ReplayServer, node_name, plan_nodes, record
from npuobs.schema import PROFILES, STANDARD_SERIES_PER_DEVICE_MAX, Profile
from npuobs.stack.victoriametrics import VmAlert

Progress = Callable[[str], None]
DASHBOARDS = ("executive", "oncall")
QUERY_EVERY = 30.0  # seconds between rounds of dashboard queries
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN|[+-]Inf)$')


@dataclass(frozen=True)
class ScaleOptions:
    nodes: int = 1000
    devices_per_node: int = 8
    clusters: int = 4
    profile: str = Profile.STANDARD.value
    duration: float = 600.0
    interval: float = 15.0
    fault_node: int = 917
    workdir: Path | None = None

    def validate(self) -> ScaleOptions:
        if self.nodes < 1 or self.clusters < 1 or self.clusters > self.nodes:
            raise ValueError(f"need 1 <= clusters <= nodes, got {self.clusters} clusters for {self.nodes} nodes")
        if not 1 <= self.devices_per_node <= 64:
            raise ValueError(f"devices per node must be 1..64, got {self.devices_per_node}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if not 1 <= self.interval <= 300:
            raise ValueError(f"interval must be 1s..300s, got {self.interval:g}s")
        if self.duration < 4 * self.interval:
            raise ValueError(f"duration must be at least 4 scrape intervals ({4 * self.interval:g}s)")
        if not 1 <= self.fault_node <= self.nodes:
            raise ValueError(f"fault node {self.fault_node} is not one of the {self.nodes} nodes")
        return self

    @property
    def faults(self) -> dict[int, str]:
        """Node index -> fault. The one that must page is F8 (a device returning incorrect outputs pages
        whatever the SLOs say); F2 (thermal: a ticket) and F1 (every device offline: pages only while
        its SLO burns, which one node of hundreds does not make it do) ride along."""
        out = {self.fault_node: "F8"}
        for index, kind in ((max(1, self.nodes // 3), "F2"), (max(1, 2 * self.nodes // 3), "F1")):
            out.setdefault(index, kind)
        return out


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each sample of a Prometheus text exposition (enough for VM's own /metrics)."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def _total(samples: list[tuple[str, dict[str, str], float]], name: str, **want: str) -> float:
    return sum(v for n, labels, v in samples if n == name and all(labels.get(k) == x for k, x in want.items()))


def _dropped(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    """Counters of samples an engine or agent dropped or rejected (non-zero only). Connection errors
    vmagent retries are not drops: :func:`_write_errors` reports them."""
    out: dict[str, float] = {}
    for name, _, value in samples:
        if name.endswith("_total") and re.search(r"dropped|ignored|rejected", name) \
                and re.search(r"rows|samples|packets|remotewrite|write_requests", name):
            out[name] = out.get(name, 0.0) + value
    return {k: v for k, v in out.items() if v}


def _write_errors(samples: list[tuple[str, dict[str, str], float]]) -> float:
    """Remote-write connection/request errors (retried, so not lost unless a drop counter says so)."""
    return sum(v for n, _, v in samples if n.startswith("vmagent_remotewrite_") and n.endswith("errors_total"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _dashboard_queries(interval: float) -> dict[str, str]:
    """Every executive and on-call panel query with its variables at their defaults (All)."""
    from npuobs.dashboards.generate import dashboards

    out = {}
    rate = f"{max(60, int(4 * interval))}s"
    boards = {ref.key: board for ref, board in dashboards(Config.load()).items()}
    for key in DASHBOARDS:
        board = boards[key]
        values = {**variable_defaults(board), **builtins(rate, "15m")}
        for q in panel_queries(board):
            out[f"{key}: {q.panel_title} ({q.ref_id})"] = substitute(q.expr, values)
    return out


def profile_series(recording_devices: int, progress: Progress) -> dict[str, float]:
    """Series per device of the same simulated node in every profile (one rendered snapshot each)."""
    out = {}
    for profile in PROFILES:
        rec = record(recording_devices, 1, profile, healthy=1, faults=(), progress=lambda _: None)
        out[profile] = round(rec.series_per_node[rec.healthy[0]] / recording_devices, 2)
    progress("series per device by profile (same simulated node): "
             + ", ".join(f"{p} {v:g}" for p, v in out.items()))
    return out


def run(options: ScaleOptions, progress: Progress) -> dict[str, Any]:
    """Run the scale test; returns the report (see :func:`write_report`)."""
    o = options.validate()
    started = time.monotonic()
    steps = math.ceil(o.duration / o.interval) + 8
    progress(f"recording {steps} snapshots of the simulated nodes (real exporter code, profile {o.profile})")
    recording = record(o.devices_per_node, steps, o.profile, interval=o.interval, progress=progress)
    side_by_side = profile_series(o.devices_per_node, progress)
    nodes = plan_nodes(o.nodes, o.clusters, recording, o.faults)
    fault = next(n for n in nodes if n.name == node_name(o.fault_node))
    queries = _dashboard_queries(o.interval)
    workdir = Path(o.workdir or tempfile.mkdtemp(prefix="npuobs-scale-"))
    interval = f"{o.interval:g}s"
    with ReplayServer(recording, nodes, advance_every=o.interval) as replay, \
            GlobalStack.start(replay, workdir, scrape_interval=interval, evaluation_interval=interval,
                              group_wait="10s") as stack:
        progress(f"stack up: VictoriaMetrics {stack.vm.url}, {len(stack.agents)} vmagents, "
                 f"{len(stack.vmalerts) - 1} cluster vmalerts + 1 global; {o.nodes} nodes x {o.devices_per_node} "
                 f"devices, fault {o.faults} "
                 f"(node {fault.name} in {fault.cluster}); running {o.duration:g}s")
        report = _measure(o, stack, recording, queries, progress)
        report["series_per_device_by_profile"] = side_by_side
        report["fault"] = {"node": fault.name, "cluster": fault.cluster,
                           "kind": "F8 (device 0 returns incorrect outputs)"}
        report["fault_paged"], report["fault_page"] = _fault_paged(stack, fault.name, fault.cluster)
        report["pages"] = _pages(stack)
        report["workdir"] = str(workdir)
        report["replay_scrapes"] = replay.scrapes
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    progress(f"done in {report['wall_seconds']:g}s: {report['active_series']} active series, "
             f"{report['samples_per_second']:g} samples/s, dropped {report['dropped_samples']:g}, "
             f"query p99 {report['query_p99_seconds']:.3f}s, rule eval max {report['rule_eval_max_seconds']:.3f}s "
             f"({report['rule_eval_slowest']}), "
             f"fault paged: {report['fault_paged']}")
    return report


def _measure(o: ScaleOptions, stack: GlobalStack, recording: Recording, queries: dict[str, str],
             progress: Progress) -> dict[str, Any]:
    vm_proc = psutil.Process(stack.vm.process.pid)
    procs = {"victoria-metrics": vm_proc,
             **{f"vmalert-{n}": psutil.Process(e.process.pid) for n, e in stack.vmalerts.items()},
             **{f"vmagent-{c}": psutil.Process(a.process.pid) for c, a in stack.agents.items()}}
    rss_max = {name: 0 for name in procs}
    cpu_start = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    latencies: dict[str, list[float]] = {name: [] for name in queries}
    query_errors: dict[str, str] = {}
    t_start = time.monotonic()
    end = t_start + o.duration
    warm = t_start + min(o.duration / 3, 120.0)  # ingestion rate measured after the first scrapes settle
    rows_at_warm: tuple[float, float] | None = None
    next_query, next_progress = t_start + min(QUERY_EVERY, o.duration / 2), t_start
    while (now := time.monotonic()) < end:
        for name, p in procs.items():
            rss_max[name] = max(rss_max[name], p.memory_info().rss)
        if rows_at_warm is None and now >= warm:
            rows_at_warm = (now, _total(parse_metrics(stack.vm.metrics()), "vm_rows_inserted_total"))
        if now >= next_query:
            for name, expr in queries.items():
                t0 = time.perf_counter()
                try:
                    stack.vm.query(expr)
                except Exception as exc:  # noqa: BLE001 - a rejected query is reported, the run goes on
                    query_errors[name] = str(exc)
                latencies[name].append(time.perf_counter() - t0)
            next_query = now + QUERY_EVERY
        if now >= next_progress:
            vm = parse_metrics(stack.vm.metrics())
            progress(f"[{now - t_start:5.0f}s/{o.duration:g}s] active series "
                     f"{_total(vm, 'vm_cache_entries', type='storage/hour_metric_ids'):.0f}, rows inserted "
                     f"{_total(vm, 'vm_rows_inserted_total'):.0f}, "
                     f"VM RSS {rss_max['victoria-metrics'] / 2**20:.0f} MiB, "
                     f"firing {sum(1 for a in stack.alerts() if a['state'] == 'firing')} alerts")
            next_progress = now + 60.0
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
    t_end = time.monotonic()
    vm = parse_metrics(stack.vm.metrics())
    rows = _total(vm, "vm_rows_inserted_total")
    t0, rows0 = rows_at_warm or (t_start, 0.0)
    samples_per_second = (rows - rows0) / max(1e-9, t_end - t0)
    agents = [parse_metrics(a.metrics()) for a in stack.agents.values()]
    dropped = {"victoria-metrics": _dropped(vm), **{f"vmagent-{c}": _dropped(s)
                                                   for c, s in zip(stack.agents, agents, strict=True)}}
    window = f"{int(o.duration)}s"
    scrape = stack.vm.query(f"quantile(0.99, quantile_over_time(0.99, scrape_duration_seconds[{window}]))")
    scraped = stack.vm.query(f"avg(avg_over_time(scrape_samples_scraped[{window}]))")
    up = stack.vm.query("sum(up)")
    groups = {f"vmalert-{n}": _rule_eval(e) for n, e in stack.vmalerts.items()}
    slowest = max(((s, f"{engine} {g}") for engine, by_group in groups.items() for g, s in by_group.items()),
                  default=(math.nan, ""))
    per_query = {name: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "runs": len(v)}
                 for name, v in latencies.items()}
    active = _total(vm, "vm_cache_entries", type="storage/hour_metric_ids")
    devices = o.nodes * o.devices_per_node
    per_node = float(scraped[0]["value"][1]) if scraped else math.nan
    cpu = {name: round(sum(p.cpu_times()[:2]) - cpu_start[name], 1) for name, p in procs.items()}
    disk = stack.vm.disk_bytes()
    return {
        "nodes": o.nodes, "devices": devices, "devices_per_node": o.devices_per_node, "clusters": o.clusters,
        "profile": o.profile, "duration_seconds": o.duration, "scrape_interval_seconds": o.interval,
        "active_series": int(active),
        "series_per_device": round(per_node / o.devices_per_node, 2),
        "series_per_device_budget": STANDARD_SERIES_PER_DEVICE_MAX,
        "targets_up": int(float(up[0]["value"][1])) if up else 0,
        "samples_per_second": round(samples_per_second, 1),
        "expected_samples_per_second": round(per_node * o.nodes / o.interval, 1),
        "dropped_samples": sum(sum(d.values()) for d in dropped.values()),
        "dropped_by_counter": dropped,
        "remote_write_errors_retried": sum(_write_errors(s) for s in agents),
        "scrape_p99_seconds": float(scrape[0]["value"][1]) if scrape else math.nan,
        "query_p99_seconds": max((q["p99"] for q in per_query.values()), default=math.nan),
        "query_errors": query_errors,
        "queries": per_query,
        "rule_eval_max_seconds": slowest[0],
        "rule_eval_slowest": slowest[1],
        "rule_eval_seconds_by_vmalert": groups,
        "engine_rss_bytes": rss_max["victoria-metrics"],
        "rss_bytes": rss_max,
        "cpu_seconds": cpu,
        "disk_bytes": disk,
        "disk_bytes_per_sample": round(disk / rows, 3) if rows else math.nan,
        "rows_inserted": int(rows),
        "recorded_series_per_node": dict(recording.series_per_node),
    }


def _rule_eval(engine: VmAlert) -> dict[str, float]:
    """Slowest evaluation per group of one vmalert (max over the quantiles it reports)."""
    out: dict[str, float] = {}
    for name, labels, value in parse_metrics(engine.metrics()):
        if name == "vmalert_iteration_duration_seconds" and "group" in labels and not math.isnan(value):
            out[labels["group"]] = max(out.get(labels["group"], 0.0), value)
    return {k: round(v, 4) for k, v in sorted(out.items())}


def _fault_paged(stack: GlobalStack, node: str, cluster: str) -> tuple[bool, dict[str, Any] | None]:
    """Did a page for ``node`` with its cluster reach the PagerDuty receiver through vmalert -> Alertmanager?"""
    for event in stack.sink.events(PAGE_KEY):
        firing = str(event.get("payload", {}).get("custom_details", {}).get("firing", ""))
        if event.get("event_action") == "trigger" and f"node = {node}" in firing and f"cluster = {cluster}" in firing:
            return True, {"summary": event["payload"].get("summary"), "dedup_key": event.get("dedup_key")}
    return False, None


def _pages(stack: GlobalStack) -> list[str]:
    """Every page the PagerDuty receiver got: summary and cluster, for the report."""
    out = []
    for event in stack.sink.events(PAGE_KEY):
        firing = str(event.get("payload", {}).get("custom_details", {}).get("firing", ""))
        cluster = re.search(r"cluster = (\S+)", firing)
        out.append(f"{event.get('event_action')}: {event.get('payload', {}).get('summary')} "
                   f"(cluster {cluster.group(1) if cluster else '?'})")
    return out


def write_report(report: dict[str, Any], path: Path) -> None:
    """JSON for a ``.json`` path, Markdown otherwise."""
    if path.suffix == ".json":
        path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    else:
        path.write_text(markdown(report), encoding="utf-8")


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# npuobs scale: {r['nodes']} nodes x {r['devices_per_node']} devices, {r['clusters']} clusters, "
        f"profile {r['profile']}",
        "",
        f"{r['duration_seconds']:g} s at a {r['scrape_interval_seconds']:g} s scrape interval; wall time "
        f"{r.get('wall_seconds', 0):g} s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| devices | {r['devices']} |",
        f"| targets up (end) | {r['targets_up']} |",
        f"| active series | {r['active_series']} |",
        f"| series per device (scraped) | {r['series_per_device']} (budget {r['series_per_device_budget']}) |",
        "| series per device, same node by profile | "
        + ", ".join(f"{k} {v:g}" for k, v in r.get("series_per_device_by_profile", {}).items()) + " |",
        f"| ingested samples/s | {r['samples_per_second']:g} (expected {r['expected_samples_per_second']:g}) |",
        f"| dropped or rejected samples | {r['dropped_samples']:g} |",
        f"| scrape duration p99 | {r['scrape_p99_seconds']:.4f} s |",
        f"| worst dashboard query p99 | {r['query_p99_seconds']:.3f} s |",
        f"| slowest vmalert group evaluation | {r['rule_eval_max_seconds']:.3f} s ({r['rule_eval_slowest']}) |",
        f"| VictoriaMetrics RSS (max) | {r['engine_rss_bytes'] / 2**20:.0f} MiB |",
        f"| bytes on disk per sample | {r['disk_bytes_per_sample']:g} |",
        f"| fault at {r['fault']['node']} ({r['fault']['cluster']}) paged | {r['fault_paged']} |",
        "",
        "| process | RSS max (MiB) | CPU seconds |",
        "|---|---|---|",
        *(f"| {k} | {v / 2**20:.0f} | {r['cpu_seconds'].get(k, 0):g} |" for k, v in r["rss_bytes"].items()),
        "",
        "| vmalert | group | slowest evaluation (s) |",
        "|---|---|---|",
        *(f"| {engine} | {g} | {v:g} |" for engine, by_group in r["rule_eval_seconds_by_vmalert"].items()
          for g, v in by_group.items()),
        "",
        "| dashboard query | p50 (s) | p99 (s) | runs |",
        "|---|---|---|---|",
        *(f"| {k} | {v['p50']:.3f} | {v['p99']:.3f} | {v['runs']} |" for k, v in r["queries"].items()),
        "",
    ]
    if r.get("pages"):
        lines += ["Pages received (PagerDuty receiver):", "", *(f"- {p}" for p in r["pages"]), ""]
    if r["query_errors"]:
        lines += ["Rejected queries:", "", *(f"- {k}: {v}" for k, v in r["query_errors"].items()), ""]
    if r["dropped_by_counter"]:
        lines += ["Drop counters:", "", "```", json.dumps(r["dropped_by_counter"], indent=2), "```", ""]
    return "\n".join(lines)

