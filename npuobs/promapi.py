"""A small client for Prometheus' HTTP query API, shared by the stack runner, dashboards and SLO reports.

Two failure kinds matter to callers and are kept apart: ``PrometheusUnreachable`` (no answer, or
not an API answer: the whole run is off) and ``PrometheusQueryError`` (Prometheus rejected one
expression: report it on that panel or row and go on). Scalars come back wrapped like a
one-sample vector so callers handle one shape.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from npuobs.errors import StackError

Result = list[dict[str, Any]]


class PrometheusError(StackError):
    """Base of the two failure kinds below (a StackError, so stack callers catch one type)."""


class PrometheusUnreachable(PrometheusError):
    """Prometheus did not answer, or answered something that is not its API."""


class PrometheusQueryError(PrometheusError):
    """Prometheus answered with an error status (e.g. bad PromQL); the message is its own."""


class PrometheusAPI:
    def __init__(self, url: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, params: Mapping[str, str] | None = None, *, method: str = "GET") -> Any:
        """``data`` of a successful API answer at ``path``."""
        query = urllib.parse.urlencode(params or {})
        request = urllib.request.Request(f"{self.url}{path}?{query}" if query else f"{self.url}{path}",
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310 - operator-given URL
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusUnreachable(f"prometheus {self.url}{path}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PrometheusUnreachable(f"cannot reach Prometheus at {self.url}: {exc}") from exc
        if body.get("status") != "success":
            what = (params or {}).get("query", path)
            raise PrometheusQueryError(f"{body.get('errorType')}: {body.get('error')} (in {what!r})")
        return body["data"]

    @staticmethod
    def _as_list(data: dict[str, Any]) -> Result:
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query(self, promql: str, at: float | None = None) -> Result:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._as_list(self.get("/api/v1/query", params))

    def query_range(self, promql: str, start: float, end: float, step: float) -> Result:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._as_list(self.get("/api/v1/query_range", params))

    def wait_for(self, promql: str, predicate: Callable[[Result], bool] = bool, timeout: float = 30.0,
                 interval: float = 0.2) -> Result:
        """Poll ``promql`` until ``predicate(result)`` holds; return that result or raise StackError.

        Tests and stacks wait on a condition instead of sleeping; one loop serves Prometheus and every
        engine that answers its query API (VictoriaMetrics)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise StackError(f"timed out after {timeout:.1f}s waiting on {promql!r} at {self.url}; "
                                 f"last result: {result}")
            time.sleep(interval)
