"""Helpers for the remediation tests: a Grafana annotations stand-in, webhook payloads, a served fleet."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from npuobs.instrumentation.controlserver import ControlAuth, ControlClient, ControlServer
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import Fleet, FleetConfig

TOKEN = "remediation-test-token"


class GrafanaStandIn:
    """Grafana's ``POST /api/annotations`` as the real API checks it: a bearer token, JSON with an
    integer ``time`` in ms, ``tags`` (strings) and non-empty ``text``; answers like Grafana."""

    def __init__(self, token: str = "glsa_test") -> None:
        self.token = token
        self.annotations: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/api/annotations":
                    return self._reply(404, {"message": "Not found"})
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    return self._reply(401, {"message": "Unauthorized"})
                try:
                    doc = json.loads(body)
                except ValueError:
                    return self._reply(400, {"message": "bad request data"})
                ok = (isinstance(doc, dict) and isinstance(doc.get("time"), int) and isinstance(doc.get("text"), str)
                      and doc["text"] and isinstance(doc.get("tags", []), list)
                      and all(isinstance(t, str) for t in doc.get("tags", [])))
                if not ok:
                    stand_in.rejected.append(body.decode(errors="replace"))
                    return self._reply(400, {"message": "bad request data"})
                stand_in.annotations.append(doc)
                self._reply(200, {"message": "Annotation added", "id": len(stand_in.annotations)})

            def _reply(self, code: int, doc: Any) -> None:
                raw = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def alert(name: str, fingerprint: str, starts: str = "2026-12-07T10:00:00Z", status: str = "firing",
          **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, **labels}, "annotations": {}, "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def payload(*alerts: dict[str, Any], group_key: str = '{}:{alertname="X"}') -> dict[str, Any]:
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": 0, "status": "firing",
            "receiver": "npuobs-remediate", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager", "alerts": list(alerts)}


class ServedFleet:
    """A default 2x4 fleet in virtual time (ticked by the test) behind a real control API server."""

    def __init__(self, tmp: Path, config: FleetConfig | None = None) -> None:
        self.fleet = Fleet(config or FleetConfig.default(), tmp / "sim", VirtualClock())
        self.fleet.tick()
        self.server = ControlServer(self.fleet.control, ControlAuth(token=TOKEN)).start()
        self.client = ControlClient(self.server.url, ControlAuth(token=TOKEN))

    def actions(self, kind: str) -> list[dict[str, Any]]:
        return [h for h in self.fleet.control.snapshot()["history"] if h["action"] == kind]

    def stop(self) -> None:
        self.server.stop()
