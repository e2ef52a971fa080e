"""The remediation controller: one decision per firing alert, guardrails first, then act and verify.

For each firing alert of a webhook payload, in this order (the first that applies decides):

1. no rule for the alert -> ``no_rule``; a rule whose action is ``none`` -> ``manual``;
2. this alert (fingerprint + start time) already handled -> ``duplicate`` (also after a restart);
3. the target cannot be built from the alert's labels, or a ``when`` condition fails -> ``refused_condition``;
4. an active Alertmanager silence covers the alert, or an npuobs maintenance window its node/device
   -> ``refused_maintenance`` (Alertmanager unreachable: ``error``, nothing is done blind);
5. the same action on the same target within ``target_cooldown`` -> ``cooldown``;
6. the device family's or the cluster's hourly action budget is spent -> ``refused_rate_limit``;
7. a drain would leave more than ``max_drained_ratio`` of the model's devices drained -> ``refused_capacity``;
8. dry-run -> ``dry_run``; else the record is written ("acting"), the action called -> ``acted``
   (or ``failed``), and a verifier waits for the rule's ``verify.clears`` query to return nothing:
   ``verified``, or ``verify_failed`` after undoing (where the rule can) and paging a person.

Every decision is an audit line, ``npuobs_remediation_actions_total{action,result}``, a Grafana
annotation and (while the alert fires) a note on its PagerDuty alert.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter

from npuobs import schema
from npuobs.amapi import AlertmanagerAPI, AlertmanagerError, Matcher
from npuobs.instrumentation.controlserver import ControlAPIError, ControlClient
from npuobs.promapi import PrometheusAPI, PrometheusError
from npuobs.remediation.capacity import expected_devices
from npuobs.remediation.notify import Grafana, NotifyError, PagerDuty
from npuobs.remediation.policy import Policy, Rule
from npuobs.remediation.state import StateStore

HOUR = 3600.0
# action name in the policy -> (control API endpoint, extra fields)
_ENDPOINTS: dict[str, tuple[str, dict[str, str]]] = {
    "drain": ("drain", {}), "undrain": ("undrain", {}), "reset": ("reset", {}), "rollback": ("rollback", {}),
    "cpu_path": ("serving-path", {"path": "cpu"}), "accelerator_path": ("serving-path", {"path": "accelerator"}),
}


@dataclass
class Decision:
    alertname: str
    fingerprint: str
    action: str
    result: str  # one of schema.REMEDIATION_RESULTS
    reason: str
    target: dict[str, str] = field(default_factory=dict)
    family: str = ""
    cluster: str = ""
    at: float = 0.0

    def line(self) -> str:
        target = ",".join(f"{k}={v}" for k, v in self.target.items()) or "-"
        return f"remediate: {self.alertname} [{self.fingerprint}] {self.action} {target}: {self.result} ({self.reason})"


class Controller:
    """Decides and acts; ``handle(payload)`` is the webhook's work. Thread-safe (one lock per decision)."""

    def __init__(self, policy: Policy, state: StateStore, control: ControlClient, *, enabled: bool | None = None,
                 alertmanager: AlertmanagerAPI | None = None, prometheus: PrometheusAPI | None = None,
                 grafana: Grafana | None = None, pagerduty: PagerDuty | None = None,
                 audit_path: Path | None = None, registry: CollectorRegistry | None = None,
                 verify_interval: float = 5.0, clock: Callable[[], float] = time.time,
                 log: TextIO | None = None) -> None:
        self.policy, self.state, self.control = policy, state, control
        self.enabled = policy.enabled if enabled is None else enabled
        self.alertmanager, self.prometheus, self.grafana, self.pagerduty = alertmanager, prometheus, grafana, pagerduty
        self.audit_path = audit_path or state.dir / "audit.jsonl"
        self.registry = registry or CollectorRegistry()
        spec = schema.metric("npuobs_remediation_actions_total")
        self.actions_total = Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=self.registry)
        self.verify_interval = verify_interval
        self.clock = clock
        self.log = log if log is not None else sys.stderr
        self._decide = threading.Lock()
        self._audit_lock = threading.Lock()
        self._stop = threading.Event()
        self._verifiers: list[threading.Thread] = []

    # -- entry points ------------------------------------------------------------------------------
    def handle(self, payload: dict[str, Any]) -> list[Decision]:
        """Decide on every firing alert of a validated webhook payload (see ``webhook.validate``)."""
        out = []
        for alert in payload["alerts"]:
            if alert["status"] != "firing":
                continue
            with self._decide:
                out.append(self._decide_one(alert, payload.get("groupKey", "")))
        return out

    def resume(self) -> None:
        """After a restart: verify the actions a previous run took but had not verified. Records left
        "acting" (the run died inside the call) are verified too: whether the call reached the server is
        unknown, so it is never repeated; verification says whether the condition cleared."""
        for key, record in self.state.pending().items():
            rule = self.policy.rule_for(record.get("alertname", ""))
            if rule is None:
                continue
            self._audit(Decision(record["alertname"], record["fingerprint"], record["action"], "resumed",
                                 f"controller restarted with this action {record['status']}: verifying, not repeating",
                                 record.get("target", {}), record.get("family", ""), record.get("cluster", ""),
                                 self.clock()), count=False)
            self._start_verifier(key, rule, record)

    def stop(self) -> None:
        self._stop.set()
        for t in self._verifiers:
            t.join(timeout=10)

    # -- the decision ------------------------------------------------------------------------------
    def _decide_one(self, alert: dict[str, Any], group_key: str) -> Decision:
        labels: dict[str, str] = alert["labels"]
        name, fingerprint = labels["alertname"], alert["fingerprint"]
        key = f"{fingerprint}@{alert.get('startsAt', '')}"
        now = self.clock()
        rule = self.policy.rule_for(name)
        d = Decision(name, fingerprint, rule.action if rule else "none", "", "", at=now,
                     cluster=labels.get(self.policy.guardrails.cluster_label, "default"))
        severity = labels.get("severity", "")
        if rule is None:
            return self._finish(d, "no_rule", "no rule for this alert in the policy", group_key, severity, note=False)
        if rule.action == "none":
            return self._finish(d, "manual", f"no automated step; manual: {rule.manual}", group_key, severity)
        seen = self.state.get(key)
        if seen is not None:
            d.target = seen.get("target", {})
            return self._finish(d, "duplicate", f"alert already handled ({seen.get('status')}); not acting twice",
                                group_key, severity, note=False, annotate=False)
        try:
            d.target = rule.target_for(labels)
        except KeyError as exc:
            return self._remember(key, d, "refused_condition", f"the alert has no label {exc.args[0]!r} to target",
                                  group_key, severity)
        except ValueError as exc:
            return self._remember(key, d, "refused_condition", f"bad target template: {exc}", group_key, severity)
        d.family = self._family(labels, d.target)
        why = rule.matches(labels)
        if why:
            return self._remember(key, d, "refused_condition", why, group_key, severity)
        try:
            silence = self._maintenance(labels, d.target)
        except AlertmanagerError as exc:
            return self._remember(key, d, "error", f"cannot check maintenance silences: {exc}", group_key, severity,
                                  final=False)
        if silence:
            return self._remember(key, d, "refused_maintenance", silence, group_key, severity)
        refusal = self._limits(rule, d, now)
        if refusal:
            return self._remember(key, d, refusal[0], refusal[1], group_key, severity, final=refusal[0] != "cooldown")
        try:
            refusal = self._unless(rule, labels) or self._preconditions(rule, d)
        except (ControlAPIError, PrometheusError) as exc:
            return self._remember(key, d, "error", f"cannot check capacity/versions: {exc}", group_key, severity,
                                  final=False)
        if refusal:
            return self._remember(key, d, refusal[0], refusal[1], group_key, severity)
        if not self.enabled:
            return self._remember(key, d, "dry_run", "would act; dry-run (enable in the policy or with --enable)",
                                  group_key, severity)
        return self._act(key, rule, d, group_key, severity, labels)

    def _act(self, key: str, rule: Rule, d: Decision, group_key: str, severity: str,
             labels: dict[str, str]) -> Decision:
        record = {"alertname": d.alertname, "fingerprint": d.fingerprint, "action": d.action, "target": d.target,
                  "family": d.family, "cluster": d.cluster, "group_key": group_key, "severity": severity,
                  "labels": labels, "status": "acting", "at": d.at}
        self.state.put(key, record)  # before the call: a restart mid-call never repeats it
        try:
            answer = self._call(d.action, d.target)
        except ControlAPIError as exc:
            self.state.update(key, status="failed", reason=str(exc))
            result = self._finish(d, "failed", f"control API refused: {exc}", group_key, severity)
            self._page(d, f"automated {d.action} failed: {exc}")
            return result
        self.state.log_action({"at": d.at, "action": d.action, "target": d.target, "family": d.family,
                               "cluster": d.cluster}, d.at)
        record = self.state.update(key, status="acted")
        changed = answer.get("changed", True) if isinstance(answer, dict) else True
        result = self._finish(d, "acted", "done" + ("" if changed else " (already in that state)") +
                              (f"; verifying within {rule.verify.within:g}s" if rule.verify else ""),
                              group_key, severity)
        self._start_verifier(key, rule, record)
        return result

    # -- guardrails --------------------------------------------------------------------------------
    def _maintenance(self, labels: dict[str, str], target: dict[str, str]) -> str | None:
        """Why an active silence forbids acting (None: none does)."""
        if self.alertmanager is None:
            return None
        from npuobs.alerting.maintenance import COMMENT_PREFIX

        for s in self.alertmanager.silences():
            if s.get("status", {}).get("state") != "active":
                continue
            matchers = [Matcher.from_api(m) for m in s.get("matchers", [])]
            reason = f"maintenance silence {s.get('id')} by {s.get('createdBy', '?')}: {s.get('comment', '')}"
            if matchers and all(_matches(m, labels) for m in matchers):
                return reason
            if str(s.get("comment", "")).startswith(COMMENT_PREFIX) and target.get("node"):
                # an npuobs maintenance window on the target's node (and device) forbids acting on it
                scope = {m.name: m.value for m in matchers if not m.regex and not m.negate}
                if scope.get("node") == target["node"] and scope.get("device", target.get("device")) == \
                        target.get("device"):
                    return reason
        return None

    def _limits(self, rule: Rule, d: Decision, now: float) -> tuple[str, str] | None:
        g = self.policy.guardrails
        recent = self.state.actions_since(now - max(HOUR, g.target_cooldown))
        same = [a for a in recent if a["action"] == d.action and a["target"] == d.target
                and a["at"] >= now - g.target_cooldown]
        if same:
            return "cooldown", f"{d.action} on this target already done {now - same[-1]['at']:.0f}s ago"
        hour = [a for a in recent if a["at"] >= now - HOUR]
        family = sum(a["family"] == d.family for a in hour)
        if family >= g.max_per_family_per_hour:
            return "refused_rate_limit", (f"{family} actions on device family {d.family!r} in the last hour "
                                          f"(limit {g.max_per_family_per_hour})")
        cluster = sum(a["cluster"] == d.cluster for a in hour)
        if cluster >= g.max_per_cluster_per_hour:
            return "refused_rate_limit", (f"{cluster} actions in cluster {d.cluster!r} in the last hour "
                                          f"(limit {g.max_per_cluster_per_hour})")
        return None

    def _unless(self, rule: Rule, labels: dict[str, str]) -> tuple[str, str] | None:
        if not rule.unless:
            return None
        if self.prometheus is None:
            return "refused_condition", "the rule's 'unless' query needs --prometheus"
        rows = self.prometheus.query(_fill_query(rule.unless, labels))
        if rows:
            return "refused_condition", f"'unless' holds ({len(rows)} series): {_fill_query(rule.unless, labels)}"
        return None

    def _preconditions(self, rule: Rule, d: Decision) -> tuple[str, str] | None:
        if rule.action == "drain":
            return self._capacity(d)
        if rule.previous_version:
            models = {m["model"]: m for m in self.control.state()["models"]}
            m = models.get(d.target.get("model", ""))
            if m is None:
                return "refused_condition", f"the control API serves no model {d.target.get('model')!r}"
            if not m.get("previous"):
                return "refused_condition", f"model {m['model']} has no previous version (serving {m['version']})"
        return None

    def _capacity(self, d: Decision) -> tuple[str, str] | None:
        state = self.control.state()
        devices = {(x["node"], x["device"]): x for x in state["devices"]}
        me = devices.get((d.target["node"], d.target["device"]))
        if me is None:
            return "refused_condition", f"the control API has no device {d.target['node']}/{d.target['device']}"
        model = me["model"]
        # the model's capacity: the alerting policy's recording of its devices, or the devices the serving
        # plane has for it when that is more (a control API may front several exporters' worth, or none yet)
        serving = sum(x["model"] == model for x in devices.values())
        if self.prometheus is not None:
            serving = max(serving, expected_devices(self.prometheus, model, d.cluster,
                                                    self.policy.guardrails.cluster_label))
        drained = {k for k, x in devices.items() if x["model"] == model and x["drained"]} | \
            {(d.target["node"], d.target["device"])}
        ratio = len(drained) / max(serving, 1)
        limit = self.policy.guardrails.max_drained_ratio
        if ratio > limit:
            return "refused_capacity", (f"draining it would leave {len(drained)} of {serving} devices of model "
                                        f"{model} drained ({ratio:.0%} > {limit:.0%})")
        return None

    def _family(self, labels: dict[str, str], target: dict[str, str]) -> str:
        if labels.get("vendor"):
            return labels["vendor"]
        if self.prometheus is not None and target.get("node") and target.get("device"):
            try:
                rows = self.prometheus.query(
                    f'max by (vendor) (npu_device_info{{node="{target["node"]}",device="{target["device"]}"}})')
            except PrometheusError:
                rows = []
            if rows and rows[0]["metric"].get("vendor"):
                return rows[0]["metric"]["vendor"]
        return "unknown"

    # -- verification ------------------------------------------------------------------------------
    def _start_verifier(self, key: str, rule: Rule, record: dict[str, Any]) -> None:
        if rule.verify is None or self.prometheus is None:
            self.state.update(key, status="unverified")
            return
        t = threading.Thread(target=self._verify, args=(key, rule, record), daemon=True,
                             name=f"npuobs-remediate-verify-{record['fingerprint']}")
        self._verifiers = [v for v in self._verifiers if v.is_alive()] + [t]
        t.start()

    def _verify(self, key: str, rule: Rule, record: dict[str, Any]) -> None:
        assert rule.verify is not None and self.prometheus is not None
        query = _fill_query(rule.verify.clears, {**record.get("labels", {}), **record["target"]})
        deadline = record["at"] + rule.verify.within
        d = Decision(record["alertname"], record["fingerprint"], record["action"], "", "", record["target"],
                     record.get("family", ""), record.get("cluster", ""))
        last = "no answer yet"
        seen_true = record.get("status") != "acted" or self.clock() - record["at"] > 30
        while not self._stop.is_set():
            try:
                rows = self.prometheus.query(query)
                if not rows:
                    d.at = self.clock()
                    if not seen_true:
                        # a query that never held proves nothing (a typo, a label the exporter's profile drops)
                        self.state.update(key, status="unverified")
                        self._finish(d, "unverified", f"the verify query returned nothing even right after acting, "
                                     f"so it cannot tell whether this worked: {query}", record.get("group_key", ""),
                                     record.get("severity", ""), note=False)
                        return
                    self.state.update(key, status="verified")
                    self._finish(d, "verified", f"condition cleared {d.at - record['at']:.0f}s after acting",
                                 record.get("group_key", ""), record.get("severity", ""), note=False)
                    return
                seen_true = True
                last = f"still true: {rows[0]['metric']} = {rows[0]['value'][1]}"
            except PrometheusError as exc:
                last = f"cannot query Prometheus: {exc}"
            if self.clock() >= deadline:
                break
            self._stop.wait(self.verify_interval)
        if self._stop.is_set():
            return  # the next run resumes it
        tried = f"{record['action']} at {_iso(record['at'])}; {last}"
        undo = ""
        if rule.undo != "none":
            try:
                self._call(rule.undo, record["target"])
                undo = f"; undone with {rule.undo}"
            except ControlAPIError as exc:
                undo = f"; undo with {rule.undo} failed: {exc}"
        self.state.update(key, status="verify_failed")
        d.at = self.clock()
        self._finish(d, "verify_failed", f"condition did not clear within {rule.verify.within:g}s ({tried}){undo}; "
                     "paging a person", record.get("group_key", ""), record.get("severity", ""), note=False)
        self._page(d, f"automated remediation did not fix {d.alertname}: tried {tried}{undo}. "
                      f"Manual: {rule.manual}")

    # -- recording ---------------------------------------------------------------------------------
    def _call(self, action: str, target: dict[str, str]) -> Any:
        endpoint, extra = _ENDPOINTS[action]
        return self.control.act(endpoint, by="npuobs-remediate", **target, **extra)

    def _remember(self, key: str, d: Decision, result: str, reason: str, group_key: str, severity: str, *,
                  final: bool = True) -> Decision:
        """Record a decision that took no action; ``final`` ones make repeats of the alert duplicates
        (an error or a cooldown may be decided differently when Alertmanager re-sends it)."""
        if final:
            self.state.put(key, {"alertname": d.alertname, "fingerprint": d.fingerprint, "action": d.action,
                                 "target": d.target, "status": result, "reason": reason, "at": d.at})
        return self._finish(d, result, reason, group_key, severity)

    def _finish(self, d: Decision, result: str, reason: str, group_key: str, severity: str, *, note: bool = True,
                annotate: bool = True) -> Decision:
        d.result, d.reason = result, reason
        self._audit(d)
        if annotate and self.grafana is not None:
            try:
                self.grafana.annotate(d.at or self.clock(), d.line().removeprefix("remediate: "),
                                      [d.action, d.result, d.alertname])
            except NotifyError as exc:
                self.say(f"remediate: Grafana annotation failed: {exc}")
        if note and self.pagerduty is not None and group_key:
            try:
                self.pagerduty.note(group_key, severity, f"[npuobs remediate] {d.line().removeprefix('remediate: ')}",
                                    {k: v for k, v in asdict(d).items() if v not in ("", {}, 0.0)})
            except NotifyError as exc:
                self.say(f"remediate: PagerDuty note failed: {exc}")
        return d

    def _page(self, d: Decision, summary: str) -> None:
        if self.pagerduty is None:
            self.say(f"remediate: would page (no PagerDuty configured): {summary}")
            return
        try:
            self.pagerduty.page(d.fingerprint, summary, asdict(d))
        except NotifyError as exc:
            self.say(f"remediate: PAGE FAILED: {exc}: {summary}")

    def _audit(self, d: Decision, count: bool = True) -> None:
        if count:
            self.actions_total.labels(d.action, d.result).inc()
        entry = {"time": _iso(d.at or self.clock()), **asdict(d), "dry_run": not self.enabled}
        with self._audit_lock:
            with open(self.audit_path, "a") as f:
                f.write(json.dumps(entry) + "\n")
        self.say(d.line())

    def say(self, line: str) -> None:
        print(line, file=self.log, flush=True)


def _matches(m: Matcher, labels: dict[str, str]) -> bool:
    value = labels.get(m.name, "")
    hit = re.fullmatch(m.value, value) is not None if m.regex else value == m.value
    return hit != m.negate


def _fill_query(template: str, target: dict[str, str]) -> str:
    import string

    return string.Template(template).safe_substitute(target)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
