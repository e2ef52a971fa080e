"""Host detection against a fake host root, and the "auto" backend merging real and fake backends."""

from __future__ import annotations

import shutil
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from exporterkit import wait_until
from fixturepaths import FIXTURES

from npuobs.devices import autodetect, registry
from npuobs.devices.autodetect import AutoBackend, Detection, detect, looked_for
from npuobs.devices.base import (
    BackendError,
    ChildrenFailed,
    DeviceBackend,
    DeviceInfo,
    DeviceReading,
    Histogram,
    Snapshot,
    WorkloadReading,
)
from npuobs.devices.options import ToolOptions

CAT = shutil.which("cat")  # resolved before the tests empty PATH


@pytest.fixture
def bare_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty host: its own root, an empty PATH, no loadable vendor library."""
    root = tmp_path / "host"
    (root / "dev").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("NPUOBS_HOST_ROOT", str(root))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    return root


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_nothing_on_a_bare_host(bare_host: Path) -> None:
    assert detect() == ()


@pytest.mark.parametrize("node, expected", [
    ("nvidia0", ("nvml",)),
    ("rbln3", ("rebellions",)),
    ("rngd/npu0mgmt", ("furiosa",)),
])
def test_device_nodes(bare_host: Path, node: str, expected: tuple[str, ...]) -> None:
    (bare_host / "dev" / node).parent.mkdir(parents=True, exist_ok=True)
    (bare_host / "dev" / node).touch()
    assert detect() == expected


def test_nvidiactl_alone_is_not_a_gpu(bare_host: Path) -> None:
    (bare_host / "dev" / "nvidiactl").touch()
    assert detect() == ()


def test_tools_and_libraries(bare_host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tool(bare_host.parent / "bin", "rbln-stat", "exit 0\n")
    assert detect() == ("rebellions",)
    monkeypatch.setattr("ctypes.util.find_library",
                        lambda name: "libnvidia-ml.so.1" if name == "nvidia-ml" else None)
    assert detect() == ("nvml", "rebellions")


def test_detection_iterates_the_registry(bare_host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every registry entry with a detection is asked, in registry order; a backend whose module
    cannot be imported is named with why, one without detection (sim, auto) is never detected."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.setattr(registry, "_BACKEND_MODULES", dict(registry._BACKEND_MODULES))
    registry.add_backend_module("no_such_vendor", "npuobs.devices.no_such_vendor")
    registry.register("test-late", detection=Detection(device_globs=("/dev/late0",)))(lambda **_: None)
    (bare_host / "dev" / "rbln0").touch()
    (bare_host / "dev" / "late0").touch()
    assert detect() == ("rebellions", "test-late")
    message = looked_for()
    assert "no_such_vendor: backend 'no_such_vendor' is unavailable: No module named" in message
    assert "rebellions: /dev/rbln[0-9]*, rbln-stat on PATH, rbln-smi on PATH" in message
    assert "test-late: /dev/late0" in message and "sim:" not in message and "auto:" not in message
    assert not hasattr(autodetect, "DETECTABLE")  # the registry is the one list


def test_detection_describes_itself() -> None:
    d = Detection(device_globs=("/dev/x*",), libraries=("x",), tools=("x-smi",))
    assert d.describe() == "/dev/x*, libx, x-smi on PATH"


def test_auto_with_nothing_found_says_what_it_looked_for(bare_host: Path) -> None:
    backend = registry.create("auto")
    with pytest.raises(BackendError, match=r"no accelerator found.*nvml: /dev/nvidia\[0-9\]\*, libnvidia-ml"):
        backend.sample()


# --- merging ----------------------------------------------------------------------------------


class _Fake(DeviceBackend):
    """A backend returning fixed devices, or failing, as configured."""

    def __init__(self, ids: tuple[str, ...] = ("0",), fail: str = "", hang: threading.Event | None = None,
                 **options: Any) -> None:
        self.ids, self.fail, self.closed, self.options = ids, fail, False, options
        self.hang, self.calls = hang, 0  # with ``hang``, sample() blocks until it is set

    def discover(self) -> tuple[DeviceInfo, ...]:
        return tuple(r.info for r in self.sample().devices)

    def sample(self) -> Snapshot:
        self.calls += 1
        if self.hang is not None:
            assert self.hang.wait(30), "never released"
        if self.fail:
            raise BackendError(self.fail)
        devices = tuple(DeviceReading(info=DeviceInfo(i, "sim", "fake"), up=True) for i in self.ids)
        workload = WorkloadReading(device=self.ids[0], model="m", tenant="t", latency=Histogram((), 0.0),
                                   requests_total={}, queue_length=0)
        return Snapshot.now("fake", devices, (workload,))

    def close(self) -> None:
        self.closed = True


def failures(snap: Snapshot) -> dict[str, str | None]:
    """The children of ``auto`` that failed in ``snap``, with their errors."""
    return {c.source: c.error for c in snap.children if not c.ok}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, _Fake]:
    """Register fake backends (taking a vendor tool's options) in a copy of the registry."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    made: dict[str, _Fake] = {}

    def factory(name: str, **kw: Any):  # noqa: ANN202 - returns a registry factory
        def build(**options: Any) -> _Fake:
            made[name] = _Fake(**kw, **options)
            return made[name]
        return build

    registry.register("test-auto-a", options=ToolOptions)(factory("a", ids=("0", "1")))
    registry.register("test-auto-b", options=ToolOptions)(factory("b", ids=("0",)))
    registry.register("test-auto-bad", options=ToolOptions)(factory("bad", fail="tool 'x' timed out after 5s"))
    registry.register("test-auto-hang", options=ToolOptions)(factory("hang", ids=("7",), hang=HANG))
    return made


HANG = threading.Event()  # released by the test that hangs a backend


def test_a_hung_backend_fails_alone_and_is_not_called_again_while_stuck(fakes: dict[str, _Fake]) -> None:
    backend = AutoBackend(backends=["test-auto-a", "test-auto-hang", "test-auto-b"], child_timeout=0.3)
    HANG.clear()
    try:
        snap = backend.sample()  # returns although one backend never does: the others are reported
        assert [d.info.device for d in snap.devices] == ["test-auto-a:0", "test-auto-a:1", "test-auto-b:0"]
        assert failures(snap) == {"test-auto-hang": "sample timed out after 0.3s"}
        assert [c.source for c in snap.children] == ["test-auto-a", "test-auto-hang", "test-auto-b"]
        snap = backend.sample()
        assert len(snap.devices) == 3 and fakes["a"].calls == 2
        assert failures(snap) == {"test-auto-hang": "previous sample still running (hung for more than 0.3s)"}
        assert fakes["hang"].calls == 1  # no second worker piled up behind the stuck one
    finally:
        HANG.set()
    wait_until(lambda: not backend._sources["test-auto-hang"].running)
    snap = backend.sample()  # unstuck: back in the snapshot, in detection order
    assert [d.info.device for d in snap.devices] == ["test-auto-a:0", "test-auto-a:1", "test-auto-hang:7",
                                                     "test-auto-b:0"]
    assert failures(snap) == {} and fakes["hang"].calls == 2


def test_auto_rejects_a_non_positive_child_timeout() -> None:
    with pytest.raises(BackendError, match="child_timeout must be > 0"):
        AutoBackend(backends=["sim"], child_timeout=0)


def test_auto_prefixes_ids_and_reports_the_failing_backend(fakes: dict[str, _Fake]) -> None:
    backend = registry.build("auto", {"backends": ["test-auto-a", "test-auto-bad", "test-auto-b"], "timeout": 2.0,
                                      "node": "n1"})
    snap = backend.sample()
    assert snap.backend == "auto"
    assert [d.info.device for d in snap.devices] == ["test-auto-a:0", "test-auto-a:1", "test-auto-b:0"]
    assert [w.device for w in snap.workloads] == ["test-auto-a:0", "test-auto-b:0"]
    assert failures(snap) == {"test-auto-bad": "tool 'x' timed out after 5s"}
    assert len(backend.discover()) == 3
    backend.close()
    assert fakes["a"].closed and fakes["b"].closed
    # node and timeout reach every child; a tool path is vendor-specific: auto has none to forward
    assert fakes["a"].options == {"node": "n1", "tool_path": None, "timeout": 2.0}


def test_auto_fails_only_when_every_backend_fails(fakes: dict[str, _Fake]) -> None:
    backend = AutoBackend(backends=["test-auto-bad", "no-such-backend"])
    with pytest.raises(ChildrenFailed, match="every backend failed.*timed out.*unknown backend 'no-such-") as err:
        backend.sample()
    # each child's own result rides along, so the runner reports every child failing, not only auto
    assert [(c.source, c.ok) for c in err.value.children] == [("test-auto-bad", False), ("no-such-backend", False)]


def test_auto_detects_again_while_nothing_was_found(monkeypatch: pytest.MonkeyPatch,
                                                    fakes: dict[str, _Fake]) -> None:
    answers = iter([(), ("test-auto-b",)])
    monkeypatch.setattr(autodetect, "detect", lambda: next(answers))
    monkeypatch.setattr(autodetect, "looked_for", lambda: "fake")
    backend = AutoBackend()
    with pytest.raises(BackendError, match="no accelerator found"):
        backend.sample()
    assert [d.info.device for d in backend.sample().devices] == ["test-auto-b:0"]
    assert backend.backends == ("test-auto-b",)


def test_auto_end_to_end_with_vendor_tools(bare_host: Path) -> None:
    bin_dir = bare_host.parent / "bin"
    furiosa = FIXTURES / "vendor" / "furiosa"
    _tool(bin_dir, "furiosa-smi",
          f'if [ "$1" = "info" ]; then {CAT} "{furiosa}/furiosa-smi-info-format-full-4x-rngd-fw1.7.0.txt"\n'
          f'else {CAT} "{furiosa}/furiosa-smi-status-4x-rngd.txt"; fi\n')
    _tool(bin_dir, "rbln-stat", 'echo "rbln-stat: failed to open /dev/rbln0" >&2; exit 1\n')
    backend = registry.build("auto", {"timeout": "5"})  # as `--option timeout=5` gives it
    snap = backend.sample()
    assert backend.backends == ("furiosa", "rebellions")
    assert [d.info.device for d in snap.devices] == ["furiosa:0", "furiosa:1", "furiosa:2", "furiosa:3"]
    assert "exited with code 1: rbln-stat: failed to open /dev/rbln0" in failures(snap)["rebellions"]


def test_auto_checks_child_options_when_built(fakes: dict[str, _Fake]) -> None:
    backend = registry.build("auto", {"backends": "test-auto-a,test-auto-b",
                                      "child_options": {"test-auto-b": {"tool_path": "/opt/b-smi"}}})
    backend.sample()
    assert fakes["b"].options["tool_path"] == "/opt/b-smi" and fakes["a"].options["tool_path"] is None
    with pytest.raises(BackendError, match="backend 'test-auto-b': unknown option 'tool_pth'"):
        registry.build("auto", {"child_options": {"test-auto-b": {"tool_pth": "/opt/b-smi"}}})
