"""Where the shared vendor fixtures live, for every backend test (plus a tiny HTTP server for
backends that read a vendor exporter's ``/metrics``).

The fixtures are real tool outputs kept outside the repository (``../shared/fixtures`` next to the
checkout); ``tests/shared/fixtures`` is a byte-for-byte copy so a clone tests on its own (a test
checks the copy against the original wherever both exist); ``NPUOBS_SHARED_DIR`` points at another
``shared`` folder. Tests must never edit these files.
"""

from __future__ import annotations

import http.server
import os
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _find_fixtures() -> Path:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "shared" / "fixtures", here.parent / "shared" / "fixtures"]
    env = os.environ.get("NPUOBS_SHARED_DIR")
    if env:
        candidates.append(Path(env) / "fixtures")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "shared fixtures not found; looked in " + ", ".join(str(c) for c in candidates)
        + " (set NPUOBS_SHARED_DIR to the folder that holds fixtures/)"
    )


FIXTURES: Path = _find_fixtures()
VENDOR: Path = FIXTURES / "vendor"
NVIDIA_H100: Path = FIXTURES / "nvidia-h100"


def fixture(relative: str) -> Path:
    """Path of a fixture given relative to the fixtures root, e.g. ``"vendor/furiosa/x.txt"``."""
    path = FIXTURES / relative
    if not path.is_file():
        raise FileNotFoundError(f"fixture {relative!r} not found under {FIXTURES}")
    return path


def read_fixture(relative: str) -> str:
    """Text of a fixture (UTF-8, as the tools write it)."""
    return fixture(relative).read_text(encoding="utf-8")


@contextmanager
def serving(body: str) -> Iterator[str]:
    """Serve ``body`` over real HTTP on localhost while the block runs; yields its ``/metrics`` URL."""
    data = body.encode("utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            """Keep test output quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fake_tool(tmp_path: Path, name: str, body: str) -> str:
    """An executable Python script standing in for a vendor tool (a real subprocess, no mocks)."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)
