"""The wheel works where people install it: a fresh virtualenv, run from an empty directory.

Builds the wheel from a copy of the working tree (so a stale ``build/`` in the checkout cannot leak
into it), installs it with its dependencies into a new virtualenv (pip's cache makes the second
install quick), and runs the CLI's everyday commands from an empty temporary directory with no
checkout on the path. A default file read from the source tree, or an optional library imported
by default, fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, require_binary

pytestmark = pytest.mark.integration

_COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                      ".ruff_cache", ".hypothesis", "tests", "docs", "bench", "var")


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,  # noqa: S603
                          timeout=timeout, check=False)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    return output


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` directory of a fresh virtualenv with the npuobs wheel (and its dependencies) installed."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=_COPY_IGNORE)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    _ok(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "dist", source], root, env, 600))
    (wheel,) = (root / "dist").glob("npuobs-*.whl")
    _ok(_run([sys.executable, "-m", "venv", root / "venv"], root, env, 120))
    _ok(_run([root / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--prefer-binary", wheel],
             root, env, 600))
    return root / "venv" / "bin"


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    work = tmp_path / "empty"
    work.mkdir()
    return work


@pytest.fixture
def clean_env(installed: Path, tmp_path: Path) -> dict[str, str]:
    """No checkout on the path, the venv first on PATH, simulator state private to this test."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{installed}{os.pathsep}{env.get('PATH', '')}"
    env["NPUOBS_STATE_DIR"] = str(tmp_path / "state")
    return env


def test_wheel_has_no_plotting_library(installed: Path) -> None:
    """``matplotlib`` is the ``snapshot`` extra: the plain wheel must work without it."""
    probe = subprocess.run([installed / "python", "-c", "import matplotlib"], capture_output=True,  # noqa: S603
                           text=True, check=False)
    assert probe.returncode != 0


def test_alerts_and_dashboards_generate_from_empty_dir(installed: Path, empty_dir: Path,
                                                       clean_env: dict[str, str]) -> None:
    _ok(_run([installed / "npuobs", "alerts", "generate", "--out", "rules"], empty_dir, clean_env, 120))
    assert (empty_dir / "rules" / "slo-alerts.yaml").read_text(encoding="utf-8") == \
        (REPO_ROOT / "alerts" / "generated" / "slo-alerts.yaml").read_text(encoding="utf-8")
    _ok(_run([installed / "npuobs", "dashboards", "generate", "--out", "boards"], empty_dir, clean_env, 120))
    for name in ("executive.json", "oncall.json", "debug.json"):
        assert (empty_dir / "boards" / name).read_text(encoding="utf-8") == \
            (REPO_ROOT / "dashboards" / name).read_text(encoding="utf-8")
    snap = _run([installed / "npuobs", "dashboards", "snapshot", "--prometheus", "http://127.0.0.1:9",
                 "--out", "png"], empty_dir, clean_env, 120)
    assert snap.returncode == 2 and "Traceback" not in snap.stderr
    assert "pip install 'npuobs[snapshot]'" in snap.stderr


def test_devices_sim_from_empty_dir(installed: Path, empty_dir: Path, clean_env: dict[str, str]) -> None:
    state = Path(clean_env["NPUOBS_STATE_DIR"])
    sim = subprocess.Popen([installed / "npuobs", "sim", "run", "--quiet", "--state-dir", state],  # noqa: S603
                           cwd=empty_dir, env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        out = ""
        while time.monotonic() < deadline and sim.poll() is None:  # until the fleet has published its devices
            result = _run([installed / "npuobs", "devices", "--backend", "sim", "--state-dir", state], empty_dir,
                          clean_env, 60)
            assert "Traceback" not in result.stdout + result.stderr, result.stderr
            out = result.stdout
            if result.returncode == 0 and "node-a" in out and "node-b" in out:
                break
            time.sleep(1)
        assert "node-a" in out and "node-b" in out, out
    finally:
        sim.terminate()
        sim.wait(timeout=30)


@pytest.fixture
def stack_binaries() -> Iterator[None]:
    require_binary("prometheus", install="apt-get install -y prometheus")
    require_binary("alertmanager", "prometheus-alertmanager", install="apt-get install -y prometheus-alertmanager")
    yield


def test_demo_from_empty_dir(installed: Path, empty_dir: Path, clean_env: dict[str, str],
                             stack_binaries: None) -> None:
    out = _ok(_run([installed / "npuobs", "demo", "--duration", "20"], empty_dir, clean_env, 180))
    assert "npuobs demo is up" in out and "npuobs demo: stopped" in out
    assert "NOT running" not in out and re.search(r"dashboards\s+http://127\.0\.0\.1:\d+/", out)
    # a fresh state directory for this demo, named for `sim inject --state-dir`, gone when the demo stops
    state = Path(re.search(r"simulator state\s+(\S+)\s+\(new for this demo", out).group(1))
    assert state.parent == Path(clean_env["NPUOBS_STATE_DIR"]).parent and f"--state-dir {state}" in out
    assert not state.exists()


def test_gameday_from_empty_dir(installed: Path, empty_dir: Path, clean_env: dict[str, str],
                                stack_binaries: None) -> None:
    out = _ok(_run([installed / "npuobs", "gameday", "--scenario", "F1"], empty_dir, clean_env, 600))
    assert "F1" in out
