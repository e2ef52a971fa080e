"""Rule objects and their Prometheus rule-file form: one place adds labels and the runbook link.

Every alert gets ``severity`` (page|ticket), ``failure_mode`` and the annotations ``summary``,
``description`` and ``runbook_url`` here (kubernetes-mixin's single pass), so no alert can ship
without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from npuobs.alerting import conventions as cv


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    failure_mode: str
    summary: str
    description: str
    for_: str = "0s"
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in (cv.SEVERITY_PAGE, cv.SEVERITY_TICKET):
            raise ValueError(f"{self.name}: severity must be page or ticket, got {self.severity!r}")

    def to_rule(self, runbook_base_url: str) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_ != "0s":
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity, "failure_mode": self.failure_mode, **self.labels}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": cv.runbook_url(runbook_base_url, self.name),
        }
        return rule


@dataclass(frozen=True)
class Record:
    name: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)

    def to_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"record": self.name, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Alert | Record, ...]
    interval: str | None = None  # None: Prometheus' global evaluation_interval

    def to_dict(self, runbook_base_url: str) -> dict[str, Any]:
        group: dict[str, Any] = {"name": self.name}
        if self.interval:
            group["interval"] = self.interval
        group["rules"] = [r.to_rule(runbook_base_url) if isinstance(r, Alert) else r.to_rule()
                          for r in self.rules]
        return group

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return tuple(r for r in self.rules if isinstance(r, Alert))


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def split_independent(group: Group) -> tuple[Group, ...]:
    """``group`` as one group per set of rules that read each other's recordings, in the original order.

    Rules of one group run one after another, each seeing the results of those before it in the same
    evaluation; groups run concurrently. Rules that do not read each other's output compute the same
    results in separate groups, and then a group takes as long as its part, not the sum of all. Each
    part is named ``<group>/<its first rule>`` (plus that rule's label values where two parts would
    share a name).
    """
    parent = list(range(len(group.rules)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    recorded = {i: r.name for i, r in enumerate(group.rules) if isinstance(r, Record)}
    for j, rule in enumerate(group.rules):
        read = set(_NAME.findall(rule.expr))
        for i, name in recorded.items():
            if i != j and name in read:
                parent[root(j)] = root(i)
    parts: dict[int, list[Alert | Record]] = {}
    for i, rule in enumerate(group.rules):
        parts.setdefault(root(i), []).append(rule)
    if len(parts) == 1:
        return (group,)
    firsts = [rules[0] for rules in parts.values()]

    def name(first: Alert | Record) -> str:
        values = "/".join(v for v in first.labels.values() if v)
        if values and sum(f.name == first.name for f in firsts) > 1:
            return f"{group.name}/{first.name}/{values}"
        return f"{group.name}/{first.name}"

    names = [name(rules[0]) for rules in parts.values()]
    # parts whose first rules share name and labels (an alert with one expression per severity) are numbered
    names = [f"{n}/{names[:i].count(n) + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    return tuple(Group(n, tuple(rules), group.interval) for n, rules in zip(names, parts.values(), strict=True))
