"""Evaluate the real generated rules over recorded (backfilled) data with real Prometheus tooling.

Prometheus evaluates rules only at wall-clock "now", so a recording of virtual time is evaluated
the way ``promtool`` backfills rules, one step further:

1. ``promtool tsdb create-blocks-from openmetrics`` turns the recording into TSDB blocks;
2. a real Prometheus is started on that TSDB (no scrape jobs, so nothing else lands in it);
3. ``promtool tsdb create-blocks-from rules`` backfills the recording rules by asking that
   Prometheus' query API at every evaluation step. Rules that read other recording rules need those
   series first, so rules go in dependency levels, and Prometheus restarts on the new blocks after
   each level (it loads blocks at start);
4. every alerting rule's expression is evaluated with ``query_range`` at the evaluation steps, and
   its ``for:`` applied to the result exactly as the rule manager does (pending from the first step
   a series appears, firing once it has stayed ``for`` long, inactive at the first step it is gone).

Nothing here evaluates PromQL itself; the only logic of its own is the ``for:`` state machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from npuobs.binaries import find_binary
from npuobs.durations import parse_duration
from npuobs.stack.proc import StackError
from npuobs.stack.prometheus import PrometheusServer

MAX_POINTS = 10_000  # Prometheus refuses range queries of more than 11,000 points per series
_RECORD_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_TEMPLATE_RE = re.compile(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule as read from a rule file."""

    name: str
    expr: str
    for_seconds: int
    labels: dict[str, str]
    annotations: dict[str, str]
    group: str


@dataclass(frozen=True)
class AlertInterval:
    """One alert instance's life: pending from ``active_at``, firing from ``fired_at`` (None: it went
    away while pending), inactive from ``resolved_at`` (None: still active at the end)."""

    alertname: str
    labels: dict[str, str]  # the alert's full label set (series labels + rule labels), alertname included
    annotations: dict[str, str]  # $labels templates expanded; $value left as written
    active_at: float
    fired_at: float | None
    resolved_at: float | None

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def as_dict(self) -> dict[str, Any]:
        return {"alertname": self.alertname, "labels": self.labels, "annotations": self.annotations,
                "active_at": self.active_at, "fired_at": self.fired_at, "resolved_at": self.resolved_at}


def load_rules(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[AlertRule]]:
    """(recording-rule groups as written, alerting rules) of the given rule files."""
    recording_groups: list[dict[str, Any]] = []
    alerts: list[AlertRule] = []
    for path in paths:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            records = [r for r in group.get("rules", []) if "record" in r]
            if records:
                recording_groups.append({**group, "rules": records})
            for r in group.get("rules", []):
                if "alert" in r:
                    alerts.append(AlertRule(r["alert"], r["expr"], parse_duration(r["for"]) if "for" in r else 0,
                                            dict(r.get("labels") or {}), dict(r.get("annotations") or {}),
                                            group["name"]))
    return recording_groups, alerts


def dependency_levels(groups: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Recording-rule groups split into levels: level n reads only raw series and levels < n.

    Group names and intervals are kept, so every rule is backfilled at the interval it runs at.
    """
    exprs: dict[str, list[str]] = {}
    for g in groups:
        for r in g["rules"]:
            exprs.setdefault(r["record"], []).append(r["expr"])
    memo: dict[str, int] = {}

    def level(name: str, seen: tuple[str, ...]) -> int:
        if name in seen:
            raise ValueError(f"recording rules form a cycle: {' -> '.join((*seen, name))}")
        if name not in memo:
            deps = {n for e in exprs[name] for n in _RECORD_NAME_RE.findall(e) if n in exprs and n != name}
            memo[name] = 1 + max((level(d, (*seen, name)) for d in deps), default=-1)
        return memo[name]

    for name in exprs:
        level(name, ())
    out = []
    for n in range(max(memo.values(), default=-1) + 1):
        out.append([{**g, "rules": [r for r in g["rules"] if memo[r["record"]] == n]}
                    for g in groups if any(memo[r["record"]] == n for r in g["rules"])])
    return out


def expand_labels(template: str, labels: dict[str, str]) -> str:
    """``{{ $labels.x }}`` replaced by the label's value, as the rule manager would for annotations."""
    return _TEMPLATE_RE.sub(lambda m: labels.get(m.group(1), ""), template)


def apply_for(rule: AlertRule, series: Iterable[tuple[dict[str, str], set[float]]],
              steps: Sequence[float]) -> list[AlertInterval]:
    """The rule manager's ``for:`` handling over the evaluation ``steps`` (see the module docstring).

    ``series`` are the expression's result series with the steps at which each had a value.
    """
    out = []
    for metric, present in series:
        labels = {k: v for k, v in metric.items() if k != "__name__"}
        labels.update(rule.labels)
        labels["alertname"] = rule.name
        annotations = {k: expand_labels(v, labels) for k, v in rule.annotations.items()}
        active: float | None = None
        fired: float | None = None
        for t in steps:
            if t in present:
                if active is None:
                    active = t
                if fired is None and t - active >= rule.for_seconds:
                    fired = t
            elif active is not None:
                out.append(AlertInterval(rule.name, labels, annotations, active, fired, t))
                active = fired = None
        if active is not None:
            out.append(AlertInterval(rule.name, labels, annotations, active, fired, None))
    return out


@dataclass
class TsdbEvaluator:
    """A TSDB built from recordings, a Prometheus on it, and rule evaluation over a time range."""

    workdir: Path
    rule_files: Sequence[Path]
    eval_interval: float = 60.0
    prometheus: PrometheusServer | None = None

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        promtool = find_binary("promtool")
        if promtool is None:
            raise StackError("promtool not found on PATH (apt-get install -y prometheus)")
        self.promtool = promtool

    @property
    def data_dir(self) -> Path:
        return self.workdir / "prometheus" / "data"

    def _promtool(self, *args: str) -> None:
        result = subprocess.run([self.promtool, *args], capture_output=True, text=True,  # noqa: S603
                                timeout=1800, check=False)
        if result.returncode != 0:
            raise StackError(f"promtool {' '.join(args[:3])} failed ({result.returncode}): "
                             f"{(result.stderr or result.stdout).strip()[-2000:]}")

    def backfill(self, files: Iterable[Path]) -> None:
        """Turn OpenMetrics files into blocks in the TSDB (before :meth:`start`)."""
        for path in files:
            self._promtool("tsdb", "create-blocks-from", "openmetrics", "--quiet", str(path), str(self.data_dir))

    def start(self) -> PrometheusServer:
        """(Re)start Prometheus on the TSDB, so it loads every block written so far."""
        if self.prometheus is not None:
            self.prometheus.stop()
        config = {"global": {"evaluation_interval": f"{self.eval_interval:g}s"}}
        self.prometheus = PrometheusServer.start(config, self.workdir / "prometheus",
                                                 extra_args=["--query.timeout=10m", "--query.lookback-delta=5m"])
        return self.prometheus

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus = None

    def backfill_rules(self, start: float, end: float) -> int:
        """Backfill every recording rule over [start, end], level by level; returns the level count."""
        groups, _ = load_rules(self.rule_files)
        levels = dependency_levels(groups)
        for n, level in enumerate(levels):
            prom = self.prometheus or self.start()
            rules_path = self.workdir / f"recording-level-{n}.yaml"
            rules_path.write_text(yaml.safe_dump({"groups": level}, sort_keys=False))
            out = self.workdir / f"rule-blocks-{n}"
            shutil.rmtree(out, ignore_errors=True)
            self._promtool("tsdb", "create-blocks-from", "rules", "--quiet", f"--url={prom.url}",
                           f"--start={int(start)}", f"--end={int(end)}", f"--output-dir={out}",
                           f"--eval-interval={self.eval_interval:g}s", str(rules_path))
            for block in out.iterdir() if out.is_dir() else ():
                shutil.move(str(block), self.data_dir / block.name)
            self.start()
        return len(levels)

    def steps(self, start: float, end: float) -> list[float]:
        """Evaluation timestamps in [start, end], on the evaluation interval's grid."""
        first = start - start % self.eval_interval
        first += self.eval_interval if first < start else 0
        n = int((end - first) // self.eval_interval) + 1
        return [first + i * self.eval_interval for i in range(max(n, 0))]

    def evaluate(self, rule: AlertRule, start: float, end: float) -> list[AlertInterval]:
        """The rule's alert instances over [start, end] (query_range at every evaluation step)."""
        prom = self.prometheus or self.start()
        steps = self.steps(start, end)
        series: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], set[float]]] = {}
        for i in range(0, len(steps), MAX_POINTS):
            chunk = steps[i:i + MAX_POINTS]
            for s in prom.query_range(rule.expr, chunk[0], chunk[-1], self.eval_interval):
                key = tuple(sorted(s["metric"].items()))
                entry = series.setdefault(key, (dict(s["metric"]), set()))
                entry[1].update(float(t) for t, _ in s["values"])
        return apply_for(rule, series.values(), steps)

    def evaluate_all(self, start: float, end: float) -> list[AlertInterval]:
        """Every alerting rule of the rule files over [start, end], sorted by activation time."""
        _, rules = load_rules(self.rule_files)
        out = [a for rule in rules for a in self.evaluate(rule, start, end)]
        return sorted(out, key=lambda a: (a.active_at, a.alertname, sorted(a.labels.items())))
