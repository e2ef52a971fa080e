"""A small client for Alertmanager's API v2: alerts and silences, for the stack runner and the CLI.

Like ``promapi``, two failure kinds are kept apart: ``AlertmanagerUnreachable`` (no answer, or not
an API answer) and ``AlertmanagerRequestError`` (Alertmanager rejected the request, e.g. a bad
matcher; the message is its own).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from npuobs.errors import StackError


class AlertmanagerError(StackError):
    """Base of the two failure kinds below."""


class AlertmanagerUnreachable(AlertmanagerError):
    """Alertmanager did not answer, or answered something that is not its API."""


class AlertmanagerRequestError(AlertmanagerError):
    """Alertmanager answered with an error status; the message is its own."""


@dataclass(frozen=True)
class Matcher:
    """One silence matcher: ``name="value"`` (or ``=~`` with ``regex``, ``!=``/``!~`` with ``negate``)."""

    name: str
    value: str
    regex: bool = False
    negate: bool = False

    def as_api(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.regex, "isEqual": not self.negate}

    @classmethod
    def from_api(cls, m: Mapping[str, Any]) -> Matcher:
        return cls(m["name"], m["value"], bool(m.get("isRegex")), not m.get("isEqual", True))

    def __str__(self) -> str:
        op = ("!" if self.negate else "=") + ("~" if self.regex else "=" if self.negate else "")
        return f'{self.name}{op}"{self.value}"'


class AlertmanagerAPI:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, path: str, *, method: str = "GET", params: Mapping[str, str | bool] | None = None,
                body: Any = None) -> Any:
        """The decoded JSON answer of ``method path`` (None for an empty body)."""
        query = urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v
                                        for k, v in (params or {}).items()})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}?{query}" if query else f"{self.url}{path}",
                                         data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310 - operator-given URL
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip() or exc.reason
            if exc.code in (400, 404, 422) and path.startswith("/api/v2/"):
                raise AlertmanagerRequestError(f"alertmanager {method} {path}: HTTP {exc.code}: {detail}") from exc
            raise AlertmanagerUnreachable(f"alertmanager {self.url}{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise AlertmanagerUnreachable(f"cannot reach Alertmanager at {self.url}: {exc}") from exc
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise AlertmanagerUnreachable(f"alertmanager {self.url}{path}: answer is not JSON") from exc

    def alerts(self, *, active: bool = True, silenced: bool = True, inhibited: bool = True) -> list[dict[str, Any]]:
        """Alerts held (``GET /api/v2/alerts``), each with ``labels``, ``annotations`` and ``status``."""
        params = {"active": active, "silenced": silenced, "inhibited": inhibited}
        return list(self.request("/api/v2/alerts", params=params))

    def create_silence(self, matchers: Sequence[Matcher], starts_at: datetime, ends_at: datetime, *,
                       created_by: str, comment: str) -> str:
        """Create a silence; its id."""
        body = {"matchers": [m.as_api() for m in matchers], "startsAt": starts_at.isoformat(),
                "endsAt": ends_at.isoformat(), "createdBy": created_by, "comment": comment}
        return str(self.request("/api/v2/silences", method="POST", body=body)["silenceID"])

    def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager holds (active, pending and recently expired)."""
        return list(self.request("/api/v2/silences"))

    def expire_silence(self, silence_id: str) -> None:
        self.request(f"/api/v2/silence/{urllib.parse.quote(silence_id)}", method="DELETE")
