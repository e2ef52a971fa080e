"""The global tier wired on loopback: per-cluster vmagents -> VictoriaMetrics <- vmalerts -> Alertmanager -> PagerDuty.

Used by the integration test (a small fleet, fast intervals) and by ``npuobs scale`` (a fleet-size
one, 15 s intervals). Every part is the real binary: one ``vmagent`` per cluster scrapes that
cluster's synthetic nodes and remote-writes every sample with ``cluster=<name>``; single-node
VictoriaMetrics stores them. The rules run where they run when deployed (docs/scale.md, Helm
``globalTier``): the generated ``cluster-rules.yaml`` (pre-aggregations, device recordings and device
alerts, which need raw per-device series) in each cluster's own rule engine, over that cluster's
series only, and ``global-rules.yaml`` (the SLO rules over the pre-aggregations) once, globally. A
cluster here has no local TSDB (vmagent only forwards), so its rule engine is a ``vmalert`` per
cluster that reads the global engine restricted to its cluster (:func:`cluster_scoped_rules`) and
adds ``cluster=<name>`` to what it produces, as a cluster Prometheus' external label would. Every
vmalert writes its recordings back and sends alerts to a real Alertmanager running the generated
config, which pages a local receiver of the PagerDuty Events API v2 (PagerDuty itself cannot run here).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from npuobs.alerting import conventions as cv
from npuobs.alerting import globaltier
from npuobs.alerting.amconfig import AlertmanagerOptions, RoutingKey, alertmanager_config
from npuobs.alerting.generate import render
from npuobs.config import Config
from npuobs.durations import parse_duration
from npuobs.scale.replay import ReplayServer
from npuobs.stack.alertmanager import AlertmanagerServer
from npuobs.stack.pagerduty_sink import PagerDutySink
from npuobs.stack.victoriametrics import VictoriaMetricsServer, VmAgent, VmAlert

PAGE_KEY = "npuobsscalepage0000000000000page"  # PagerDuty routing keys are 32 characters
TICKET_KEY = "npuobsscaleticket00000000ticket0"
GLOBAL = "global"
"""Name of the global rule engine among :attr:`GlobalStack.vmalerts` (the others are cluster names)."""


def cluster_scoped_rules(rules_yaml: str, cluster: str) -> str:
    """``cluster-rules.yaml`` for a vmalert that evaluates it for one ``cluster`` against the global engine.

    Each group gets vmalert's ``params: {extra_label: [cluster=<name>]}``: VictoriaMetrics then adds
    ``cluster="<name>"`` to every selector of every query of the group, so the rules read that
    cluster's series only, as a cluster's own Prometheus does. Made here, at start, and not by
    ``npuobs generate``: cluster names are known when a tier is deployed, not when rules are generated,
    and ``params`` is vmalert-only (the committed file also runs in Prometheus, where the cluster's
    TSDB holds its own series only). Rules, names and expressions are unchanged.
    """
    doc: dict[str, Any] = yaml.safe_load(rules_yaml)
    for group in doc["groups"]:
        group["params"] = {"extra_label": [f"{globaltier.CLUSTER_LABEL}={cluster}"]}
    return (f"# {globaltier.CLUSTER_RULES_FILE} restricted to {globaltier.CLUSTER_LABEL}={cluster} for vmalert; "
            "written by npuobs.scale.globalstack\n" + yaml.safe_dump(doc, sort_keys=False, width=1000))


@dataclass
class GlobalStack:
    replay: ReplayServer
    vm: VictoriaMetricsServer
    agents: dict[str, VmAgent]
    vmalerts: dict[str, VmAlert]
    """Rule engines: one per cluster (key: the cluster) on its cluster-scoped rules, and :data:`GLOBAL`."""
    alertmanager: AlertmanagerServer
    sink: PagerDutySink
    rule_files: dict[str, Path]
    """Rule file of each engine in :attr:`vmalerts`."""
    _stack: contextlib.ExitStack = field(repr=False, default_factory=contextlib.ExitStack)

    @classmethod
    def start(cls, replay: ReplayServer, workdir: Path, *, scrape_interval: str = "15s",
              evaluation_interval: str = "15s", group_wait: str = "10s", spec_path: Path | None = None,
              vm_args: tuple[str, ...] = ()) -> GlobalStack:
        workdir = Path(workdir)
        rules_dir = workdir / "rules"
        rules_dir.mkdir(parents=True, exist_ok=True)
        files = render(Config.load(spec_path))
        clusters = sorted({n.cluster for n in replay.nodes.values()})
        if GLOBAL in clusters:
            raise ValueError(f"a cluster may not be named {GLOBAL!r}: the global rule engine is")
        rule_files = {GLOBAL: rules_dir / globaltier.GLOBAL_RULES_FILE}
        rule_files[GLOBAL].write_text(files[globaltier.GLOBAL_RULES_FILE], encoding="utf-8")
        for cluster in clusters:
            rule_files[cluster] = rules_dir / f"{cluster}-{globaltier.CLUSTER_RULES_FILE}"
            rule_files[cluster].write_text(cluster_scoped_rules(files[globaltier.CLUSTER_RULES_FILE], cluster),
                                           encoding="utf-8")
        stack = contextlib.ExitStack()
        try:
            sink = stack.enter_context(PagerDutySink(log_path=workdir / "pagerduty-events.jsonl").start())
            am_config = alertmanager_config(AlertmanagerOptions(
                page_key=RoutingKey(key=PAGE_KEY), ticket_key=RoutingKey(key=TICKET_KEY),
                pagerduty_url=sink.enqueue_url, group_wait=group_wait, group_interval="30s"))
            alertmanager = stack.enter_context(AlertmanagerServer.start(am_config, workdir / "alertmanager"))
            vm = stack.enter_context(VictoriaMetricsServer.start(workdir / "vm", extra_args=vm_args))
            agents = {}
            for cluster in clusters:
                agents[cluster] = stack.enter_context(VmAgent.start(
                    replay.scrape_configs(cluster, cv.DEFAULT_EXPORTER_JOB, scrape_interval), vm.write_url,
                    workdir / f"vmagent-{cluster}", cluster=cluster, scrape_interval=scrape_interval))
            vmalerts = {}
            # each cluster's rule engine runs on its own clock, as separate clusters' engines do: started
            # at once, every engine would query the one VictoriaMetrics at the same instant of each interval
            # (an artefact of this one-machine harness, not of a deployment)
            slot = parse_duration(evaluation_interval) / max(1, len(clusters))
            started = time.monotonic()
            for i, (name, path) in enumerate(rule_files.items()):
                if i:  # the global engine first, then one cluster per slot
                    time.sleep(max(0.0, started + (i - 1) * slot - time.monotonic()))
                # a cluster's engine labels what it produces with its cluster, as external_labels would
                label = [] if name == GLOBAL else [f"-external.label={globaltier.CLUSTER_LABEL}={name}"]
                vmalerts[name] = stack.enter_context(VmAlert.start(
                    [path], vm.url, workdir / f"vmalert-{name}", remote_write_url=vm.url,
                    notifier_urls=[alertmanager.url], evaluation_interval=evaluation_interval,
                    extra_args=["-remoteWrite.flushInterval=1s", *label], name=f"vmalert-{name}"))
        except BaseException:
            stack.close()
            raise
        return cls(replay, vm, agents, vmalerts, alertmanager, sink, rule_files, stack)

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts every rule engine holds (pending and firing)."""
        return [a for engine in self.vmalerts.values() for a in engine.alerts()]

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> GlobalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
