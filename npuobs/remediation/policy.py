"""The remediation policy (``remediation.yaml``): which alert maps to which action, when, within which limits.

The shipped default (package data next to this module) is what ``npuobs remediate`` uses without
``--policy``. A policy is validated whole when loaded: an unknown key, action or placeholder is
one error naming the file and the rule, so a typo never becomes a rule that silently never fires.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from npuobs.durations import format_duration, parse_duration

# action -> what it does and the target keys it needs
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "drain": ("stop routing new requests to the device; in-flight ones finish", ("node", "device")),
    "undrain": ("route requests to the device again", ("node", "device")),
    "reset": ("restart the device's driver (down ~10 s, then a cold start)", ("node", "device")),
    "rollback": ("serve the model's previous version", ("model",)),
    "cpu_path": ("serve the model on the CPU/GPU fallback path", ("model",)),
    "accelerator_path": ("serve the model on the accelerator again", ("model",)),
    "none": ("nothing automated: a person follows the runbook", ()),
}
UNDO: dict[str, str] = {"drain": "undrain", "cpu_path": "accelerator_path"}  # what undoes what, where possible
CONDITIONS = ("previous_version", "labels", "unless")
DEFAULT_POLICY = "remediation.yaml"


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; the message names the file and the rule."""


@dataclass(frozen=True)
class Verify:
    clears: str  # PromQL; the triggering condition holds while it returns anything
    within: float  # seconds


@dataclass(frozen=True)
class Rule:
    alert: str
    action: str
    target: dict[str, str] = field(default_factory=dict)  # key -> template over alert labels
    previous_version: bool = False  # act only when the model has a version to roll back to
    labels: dict[str, str] = field(default_factory=dict)  # alert labels that must equal these (regex)
    unless: str = ""  # PromQL; the rule does not act while it returns anything (e.g. the problem is wider)
    verify: Verify | None = None
    undo: str = "none"
    manual: str = ""

    def target_for(self, labels: dict[str, str]) -> dict[str, str]:
        """The action's target filled from the alert's labels; KeyError names a missing label."""
        return {k: _fill(v, labels) for k, v in self.target.items()}

    def matches(self, labels: dict[str, str]) -> str | None:
        """Why the alert's labels do not satisfy ``labels`` conditions, or None when they do."""
        for name, pattern in self.labels.items():
            if not re.fullmatch(pattern, labels.get(name, "")):
                return f"label {name}={labels.get(name, '')!r} does not match {pattern!r}"
        return None


@dataclass(frozen=True)
class Guardrails:
    max_per_family_per_hour: int = 3
    max_per_cluster_per_hour: int = 6
    max_drained_ratio: float = 0.2
    cluster_label: str = "cluster"
    target_cooldown: float = 3600.0


@dataclass(frozen=True)
class Policy:
    enabled: bool
    guardrails: Guardrails
    rules: tuple[Rule, ...]
    source: str

    def rule_for(self, alertname: str) -> Rule | None:
        return next((r for r in self.rules if r.alert == alertname), None)

    def explain(self, alertname: str) -> str:
        """What the policy does for ``alertname``, in words (``npuobs remediate --explain``)."""
        g = self.guardrails
        rule = self.rule_for(alertname)
        mode = "enabled" if self.enabled else "dry-run: decisions are logged, nothing acts"
        lines = [f"policy: {self.source} ({mode})"]
        if rule is None:
            lines.append(f"{alertname}: no rule; the controller logs the alert as 'no_rule' and does nothing.")
            lines.append("alerts with a rule: " + ", ".join(r.alert for r in self.rules))
            return "\n".join(lines)
        what, _ = ACTIONS[rule.action]
        if rule.action == "none":
            lines.append(f"{alertname}: no automated step ({what}).")
        else:
            target = ", ".join(f"{k}={v}" for k, v in rule.target.items())
            lines.append(f"{alertname} -> {rule.action} ({target}): {what}.")
            conds = []
            if rule.previous_version:
                conds.append("the model has a previous version to roll back to")
            conds += [f"label {k} matches {v!r}" for k, v in rule.labels.items()]
            if rule.unless:
                conds.append(f"this returns nothing: {rule.unless}")
            if conds:
                lines.append("only when: " + "; ".join(conds) + ".")
            lines.append(
                "refused when: a maintenance silence in Alertmanager covers the alert or its target; "
                f"{g.max_per_family_per_hour} actions on its device family or {g.max_per_cluster_per_hour} in its "
                f"cluster (label {g.cluster_label!r}) in the last hour; the same target acted on in the last "
                f"{format_duration(g.target_cooldown)}; this alert (fingerprint + start) already handled"
                + (f"; draining it would leave more than {g.max_drained_ratio:.0%} of the model's devices drained"
                   if rule.action == "drain" else "") + ".")
            if rule.verify:
                lines.append(f"verify: within {format_duration(rule.verify.within)} this must return nothing: "
                             f"{rule.verify.clears}")
                lines.append("if it does not: " + (f"undo with {rule.undo}, " if rule.undo != "none" else
                                                   "nothing to undo, ") + "then page a person with what was tried.")
        if rule.manual:
            lines.append(f"manual fallback: {rule.manual}")
        return "\n".join(lines)


def _fill(template: str, labels: dict[str, str]) -> str:
    """``${label}`` replaced by the alert's label value (``$`` syntax: PromQL already uses braces)."""
    return string.Template(template).substitute(labels)


def _placeholders(template: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in re.finditer(r"\$(?:\{([^}]*)\}|(\w+))", template)}


def load_policy(path: Path | None = None) -> Policy:
    """The policy at ``path``, or the shipped default."""
    if path is None:
        text = resources.files("npuobs.remediation").joinpath(DEFAULT_POLICY).read_text()
        where = f"(default) npuobs/remediation/{DEFAULT_POLICY}"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise PolicyError(f"policy file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        where = str(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {where} is not valid YAML: {exc}") from None
    return parse_policy(doc, where)


def _keys(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise PolicyError(f"{where}: expected a mapping")
    unknown = set(obj) - allowed
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"allowed: {', '.join(sorted(allowed))}")
    return obj


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = float(parse_duration(str(value)))
    except ValueError:
        raise PolicyError(f"{where}: not a duration like 90s, 5m or 1h: {value!r}") from None
    if seconds <= 0:
        raise PolicyError(f"{where}: must be positive")
    return seconds


def parse_policy(doc: Any, where: str = "policy") -> Policy:
    top = _keys(doc, {"enabled", "guardrails", "rules"}, where)
    if not isinstance(top.get("enabled", False), bool):
        raise PolicyError(f"{where}: 'enabled' must be true or false")
    g = _keys(top.get("guardrails"), {"max_actions_per_hour", "max_drained_ratio", "cluster_label",
                                      "target_cooldown"}, f"{where}: guardrails")
    per_hour = _keys(g.get("max_actions_per_hour"), {"device_family", "cluster"},
                     f"{where}: guardrails.max_actions_per_hour")
    try:
        guardrails = Guardrails(int(per_hour.get("device_family", 3)), int(per_hour.get("cluster", 6)),
                                float(g.get("max_drained_ratio", 0.2)), str(g.get("cluster_label", "cluster")),
                                _seconds(g.get("target_cooldown", "1h"), f"{where}: guardrails.target_cooldown"))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PolicyError):
            raise
        raise PolicyError(f"{where}: guardrails: {exc}") from None
    if guardrails.max_per_family_per_hour < 0 or guardrails.max_per_cluster_per_hour < 0:
        raise PolicyError(f"{where}: guardrails.max_actions_per_hour: limits must be >= 0")
    if not 0 <= guardrails.max_drained_ratio <= 1:
        raise PolicyError(f"{where}: guardrails.max_drained_ratio must be between 0 and 1")
    rules = []
    seen = set()
    raw_rules = top.get("rules") or []
    if not isinstance(raw_rules, list):
        raise PolicyError(f"{where}: rules: expected a list of rules, got {type(raw_rules).__name__}")
    for i, raw in enumerate(raw_rules):
        here = f"{where}: rules[{i}]"
        r = _keys(raw, {"alert", "action", "target", "when", "verify", "undo", "manual"}, here)
        alert, action = r.get("alert"), r.get("action")
        if not isinstance(alert, str) or not alert:
            raise PolicyError(f"{here}: 'alert' (an alert name) is required")
        here = f"{where}: rule for {alert}"
        if alert in seen:
            raise PolicyError(f"{here}: a second rule for the same alert")
        seen.add(alert)
        if action not in ACTIONS:
            raise PolicyError(f"{here}: unknown action {action!r}; choose one of: {', '.join(ACTIONS)}")
        target = {str(k): str(v) for k, v in _keys(r.get("target"), set(ACTIONS[action][1]), f"{here}: target").items()}
        missing = set(ACTIONS[action][1]) - set(target)
        if missing:
            raise PolicyError(f"{here}: action {action} needs target key(s) {', '.join(sorted(missing))}")
        when = _keys(r.get("when"), set(CONDITIONS), f"{here}: when")
        if not isinstance(when.get("labels") or {}, dict):
            raise PolicyError(f"{here}: when.labels must map label names to regexes")
        labels = {str(k): str(v) for k, v in (when.get("labels") or {}).items()}
        for name, pattern in labels.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PolicyError(f"{here}: when.labels.{name}: bad regex {pattern!r}: {exc}") from None
        verify = None
        if r.get("verify") is not None:
            v = _keys(r["verify"], {"clears", "within"}, f"{here}: verify")
            if not isinstance(v.get("clears"), str) or not v["clears"].strip():
                raise PolicyError(f"{here}: verify.clears (a PromQL query) is required")
            verify = Verify(v["clears"], _seconds(v.get("within", "5m"), f"{here}: verify.within"))
        undo = str(r.get("undo", "none"))
        if undo not in ("none", UNDO.get(action, "none")):
            raise PolicyError(f"{here}: undo {undo!r} does not undo {action} "
                              f"(possible: none{', ' + UNDO[action] if action in UNDO else ''})")
        unless = when.get("unless", "")
        if not isinstance(unless, str):
            raise PolicyError(f"{here}: when.unless must be a PromQL query")
        for template in [*target.values(), verify.clears if verify else "", unless]:
            for name in _placeholders(template):
                if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
                    raise PolicyError(f"{here}: placeholder ${{{name}}} is not a label name")
        rules.append(Rule(alert, action, target, bool(when.get("previous_version", False)), labels, unless, verify,
                          undo, str(r.get("manual", ""))))
    return Policy(bool(top.get("enabled", False)), guardrails, tuple(rules), where)
