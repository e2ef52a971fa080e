"""Where a remediation decision is announced besides the audit log: Grafana and PagerDuty.

**Grafana**: ``POST <grafana>/api/annotations`` (Grafana's HTTP API) with ``{"time": ms, "tags": [...],
"text": ..., "dashboardUID": ...}`` and a service-account token as ``Authorization: Bearer``;
without a dashboard UID the annotation is organisation-wide and shows on every dashboard whose
annotation query selects the ``npuobs-remediation`` tag (the on-call dashboard's does).

**PagerDuty**: Alertmanager's PagerDuty notifier sends each alert group as Events API v2 events with
``dedup_key`` = SHA-256 of the group key: ``<route key>:<group labels>``, the route key being the
matchers of the route and its parents (``{}/{severity="page"}`` for the generated page route). The
webhook's payload carries its own group key, whose group labels are the same (the webhook route
inherits ``group_by``), so the PagerDuty group key is its labels behind the severity's route key. A ``trigger`` with
the same routing key and dedup key while the incident is open is merged into that alert by
PagerDuty, so the note lands on the on-call's incident: its ``custom_details.remediation`` says what
was done. A note is sent only at decision time, while the alert fires (a trigger for a resolved
group would reopen the incident); a failed remediation sends its own page (dedup key
``npuobs-remediate/<fingerprint>``) saying what was tried.

Neither service runs here: tests check these wire formats against a local Grafana stand-in and the
project's PagerDuty sink, which validates events the way the Events API does.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npuobs.alerting import conventions as cv

ANNOTATION_TAG = "npuobs-remediation"
SOURCE = "npuobs-remediate"
TIMEOUT_SECONDS = 5.0


class NotifyError(Exception):
    """A notification could not be delivered (the message says where and why)."""


def _post(url: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310 - operator-given URL
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"POST {url}: HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise NotifyError(f"POST {url}: {exc}") from exc
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Grafana:
    url: str
    token: str | None = None
    dashboard_uid: str | None = None

    def annotate(self, at: float, text: str, tags: list[str]) -> Any:
        body: dict[str, Any] = {"time": int(at * 1000), "tags": [ANNOTATION_TAG, *tags], "text": text}
        if self.dashboard_uid:
            body["dashboardUID"] = self.dashboard_uid
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return _post(self.url.rstrip("/") + "/api/annotations", body, headers)


def dedup_key(group_key: str) -> str:
    """The dedup key Alertmanager's PagerDuty notifier gives the group's events."""
    return hashlib.sha256(group_key.encode()).hexdigest()


@dataclass(frozen=True)
class PagerDuty:
    """Events API v2: ``url`` is the enqueue endpoint; routing keys per alert severity."""

    url: str
    routing_keys: Mapping[str, str]  # severity (page|ticket) -> integration key
    route_keys: Mapping[str, str] = field(default_factory=lambda: {  # severity -> its Alertmanager route's key
        s: f'{{}}/{{severity="{s}"}}' for s in (cv.SEVERITY_PAGE, cv.SEVERITY_TICKET)})

    def group_key(self, webhook_group_key: str, severity: str) -> str:
        """The group key the PagerDuty route gave the alert's group, from the webhook route's."""
        cut = webhook_group_key.find("}:{")
        labels = webhook_group_key[cut + 2:] if cut >= 0 else webhook_group_key
        return f"{self.route_keys.get(severity, '{}')}:{labels}"

    def note(self, group_key: str, severity: str, summary: str, details: Mapping[str, Any]) -> None:
        """Add the remediation note to the open alert of the group (``group_key``: the webhook's)."""
        key = self.routing_keys.get(severity)
        if not key:
            raise NotifyError(f"no PagerDuty routing key for severity {severity!r}")
        _post(self.url, {
            "routing_key": key, "event_action": "trigger",
            "dedup_key": dedup_key(self.group_key(group_key, severity)),
            "payload": {"summary": summary[:1024], "source": SOURCE,
                        "severity": cv.PAGERDUTY_SEVERITY.get(severity, "warning"),
                        "custom_details": {"remediation": dict(details)}},
        })

    def page(self, fingerprint: str, summary: str, details: Mapping[str, Any]) -> None:
        """Page a person: an automated step did not work (or could not be undone)."""
        key = self.routing_keys.get(cv.SEVERITY_PAGE)
        if not key:
            raise NotifyError("no PagerDuty routing key for pages")
        _post(self.url, {
            "routing_key": key, "event_action": "trigger", "dedup_key": f"{SOURCE}/{fingerprint}",
            "payload": {"summary": summary[:1024], "source": SOURCE, "severity": "critical",
                        "custom_details": {"remediation": dict(details)}},
        })


def read_key_file(path: Path, what: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise NotifyError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if not text:
        raise NotifyError(f"{what} file {path} is empty")
    return text
