"""The global tier wired on loopback: per-cluster vmagents -> VictoriaMetrics <- vmalert -> Alertmanager -> PagerDuty.

Used by the integration test (a small fleet, fast intervals) and by ``npuobs scale`` (a fleet-size
one, 15 s intervals). Every part is the real binary: one ``vmagent`` per cluster scrapes that
cluster's synthetic nodes and remote-writes every sample with ``cluster=<name>``; single-node
VictoriaMetrics stores them; ``vmalert`` evaluates the generated ``cluster-rules.yaml``
(pre-aggregations, device recordings and device alerts, all keeping ``cluster``) and
``global-rules.yaml`` (the SLO rules over the pre-aggregations), writes the recordings back and
sends alerts to a real Alertmanager running the generated config, which pages a local receiver
of the PagerDuty Events API v2 (PagerDuty itself cannot run here).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from npuobs.alerting import conventions as cv
from npuobs.alerting import globaltier
from npuobs.alerting.amconfig import AlertmanagerOptions, RoutingKey, alertmanager_config
from npuobs.alerting.generate import render
from npuobs.config import Config
from npuobs.scale.replay import ReplayServer
from npuobs.stack.alertmanager import AlertmanagerServer
from npuobs.stack.pagerduty_sink import PagerDutySink
from npuobs.stack.victoriametrics import VictoriaMetricsServer, VmAgent, VmAlert

PAGE_KEY = "npuobsscalepage0000000000000page"  # PagerDuty routing keys are 32 characters
TICKET_KEY = "npuobsscaleticket00000000ticket0"


@dataclass
class GlobalStack:
    replay: ReplayServer
    vm: VictoriaMetricsServer
    agents: dict[str, VmAgent]
    vmalert: VmAlert
    alertmanager: AlertmanagerServer
    sink: PagerDutySink
    rule_files: tuple[Path, ...]
    _stack: contextlib.ExitStack = field(repr=False, default_factory=contextlib.ExitStack)

    @classmethod
    def start(cls, replay: ReplayServer, workdir: Path, *, scrape_interval: str = "15s",
              evaluation_interval: str = "15s", group_wait: str = "10s", spec_path: Path | None = None,
              vm_args: tuple[str, ...] = ()) -> GlobalStack:
        workdir = Path(workdir)
        rules_dir = workdir / "rules"
        rules_dir.mkdir(parents=True, exist_ok=True)
        files = render(Config.load(spec_path))
        rule_files = []
        for name in (globaltier.CLUSTER_RULES_FILE, globaltier.GLOBAL_RULES_FILE):
            (rules_dir / name).write_text(files[name], encoding="utf-8")
            rule_files.append(rules_dir / name)
        stack = contextlib.ExitStack()
        try:
            sink = stack.enter_context(PagerDutySink(log_path=workdir / "pagerduty-events.jsonl").start())
            am_config = alertmanager_config(AlertmanagerOptions(
                page_key=RoutingKey(key=PAGE_KEY), ticket_key=RoutingKey(key=TICKET_KEY),
                pagerduty_url=sink.enqueue_url, group_wait=group_wait, group_interval="30s"))
            alertmanager = stack.enter_context(AlertmanagerServer.start(am_config, workdir / "alertmanager"))
            vm = stack.enter_context(VictoriaMetricsServer.start(workdir / "vm", extra_args=vm_args))
            clusters = sorted({n.cluster for n in replay.nodes.values()})
            agents = {}
            for cluster in clusters:
                agents[cluster] = stack.enter_context(VmAgent.start(
                    replay.scrape_configs(cluster, cv.DEFAULT_EXPORTER_JOB, scrape_interval), vm.write_url,
                    workdir / f"vmagent-{cluster}", cluster=cluster, scrape_interval=scrape_interval))
            vmalert = stack.enter_context(VmAlert.start(
                rule_files, vm.url, workdir / "vmalert", remote_write_url=vm.url,
                notifier_urls=[alertmanager.url], evaluation_interval=evaluation_interval,
                extra_args=["-remoteWrite.flushInterval=1s"]))
        except BaseException:
            stack.close()
            raise
        return cls(replay, vm, agents, vmalert, alertmanager, sink, tuple(rule_files), stack)

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> GlobalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
