"""AWS Inferentia/Trainium backend: ``neuron-monitor`` reports, ``neuron-ls`` inventory.

Which tool for what, and why:

* **Metrics come from ``neuron-monitor``**, the only Neuron tool that reports utilization, device
  memory and error counters. It is a long-running *streaming* tool: it prints one JSON report per
  line every ``period`` and never exits. Starting it per sample would cost a process start and a
  first collection each time, and the per-period counters (below) would be lost between runs, so the
  backend keeps one ``neuron-monitor`` running, reads its lines on a background thread, and
  ``sample()`` returns the newest report. A dead process is restarted on the next sample; a silent
  one (no report for ``3 * period``, at least ``timeout``) is killed and restarted.
* **``discover()`` runs ``neuron-ls --json-output``**: a one-shot inventory (device index, memory
  size, Neuron runtime version of attached processes) that needs no monitor.
* **``prometheus_url``**: nodes that already run AWS's ``neuron-monitor-prometheus.py`` can be read
  from its endpoint instead of a second monitor (``parse_monitor_prometheus``).

Mapping (neuron-monitor report):

* ``neuroncore_counters.neuroncores_in_use[core].neuroncore_utilization`` (%, per NeuronCore, global
  core index) -> per device: sum over the device's cores / ``neuroncore_per_device_count``. Cores no
  runtime reports on a device that has a runtime count as idle; a device with no runtime at all has
  *no* utilization (``None``): neuron-monitor says nothing about it.
* ``memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage[core]`` (bytes by
  category) summed per device -> ``memory_used_bytes``; older reports without the breakdown give the
  runtime's ``neuron_device`` total, used only when all of that runtime's cores are on one device.
  ``neuron_hardware_info.neuron_device_memory_size`` -> ``memory_total_bytes``.
* ``system_data.neuron_hw_counters``: ``mem_ecc_corrected + sram_ecc_corrected`` ->
  ``errors_total["ecc_corrected"]``, ``mem_ecc_uncorrected + sram_ecc_uncorrected`` ->
  ``ecc_uncorrected``.
* ``execution_stats.error_summary`` (all categories) -> ``runtime``; ``execution_summary.timed_out``
  -> ``timeout``, added to every device the runtime's cores are on (a runtime spanning devices
  cannot say which one failed).
* ``neuron_hardware_info`` type/version -> ``model`` (e.g. ``trainium v2``).

Counters: neuron-monitor's ECC and execution counts cover *the report's period* (AWS's own
Prometheus companion ``inc()``s a counter by them), so ``parse_monitor_report`` adds them to the
totals of the previous readings it is given, and the backend feeds every report through it.

Not reported by the Neuron tools, hence absent: temperature, power, energy, clocks, throttling,
resets, driver and firmware versions. neuron-monitor's execution counts are whole-model executions,
not graph ops, so ``npu_ops_total`` is not filled either.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from npuobs.devices import units
from npuobs.devices.autodetect import Detection
from npuobs.devices.base import BackendError, DeviceBackend, DeviceInfo, DeviceReading, Snapshot
from npuobs.devices.options import ToolOptions
from npuobs.devices.registry import register
from npuobs.devices.toolrun import fetch_url, resolve_tool, run_tool

MONITOR = "neuron-monitor"
NEURON_LS = "neuron-ls"
VENDOR = "aws"
_MAX_LINE = 16 << 20  # a generous bound for one report line; a longer line is cut and fails to parse
_MAX_SCRAPE = 16 << 20
_ECC = {"mem_ecc_corrected": "ecc_corrected", "sram_ecc_corrected": "ecc_corrected",
        "mem_ecc_uncorrected": "ecc_uncorrected", "sram_ecc_uncorrected": "ecc_uncorrected"}
_MAX_DEVICES = 1024  # far above any instance (trn2u: 64 devices); a larger count is garbage
_CORE_MEMORY_KINDS = ("constants", "model_code", "model_shared_scratchpad", "runtime_memory", "tensors")


def _fail(tool: str, problem: str) -> BackendError:
    return BackendError(f"{tool}: {problem}")


# --- the tool-independent model: what a report says, before it becomes readings --------------

@dataclass
class _Runtime:
    """One Neuron application (runtime) as neuron-monitor or its Prometheus script describes it."""

    util: dict[int, float] = field(default_factory=dict)  # global core index -> busy ratio
    core_memory: dict[int, int] = field(default_factory=dict)  # core -> device bytes
    device_memory: int | None = None  # the runtime's total device bytes (no per-core breakdown)
    errors: dict[str, int] = field(default_factory=dict)  # "runtime"/"timeout" -> count


@dataclass
class _Node:
    device_count: int | None = None
    cores_per_device: int | None = None
    memory_per_device: int | None = None
    model: str = ""
    ecc: dict[int, dict[str, int]] = field(default_factory=dict)  # device -> kind -> count
    runtimes: list[_Runtime] = field(default_factory=list)


def _assemble(tool: str, node: _Node) -> tuple[DeviceReading, ...]:
    """Per-device readings from a node description (see the module docstring for the rules)."""
    if (node.device_count or 0) > _MAX_DEVICES:
        raise _fail(tool, f"implausible device count {node.device_count}")
    devices = set(range(node.device_count or 0)) | set(node.ecc)
    cpd = node.cores_per_device
    # Without a core count (older Prometheus script) cores can only be placed on a one-device node.
    only = next(iter(devices)) if not cpd and len(devices) == 1 else None

    def device_of(core: int) -> int | None:
        return core // cpd if cpd else only

    util: dict[int, list[float]] = {}
    cores_seen: dict[int, set[int]] = {}
    memory: dict[int, int] = {}
    memory_unknown: set[int] = set()
    errors: dict[int, dict[str, int]] = {d: dict(kinds) for d, kinds in node.ecc.items()}
    for rt in node.runtimes:
        rt_devices = {d for d in map(device_of, set(rt.util) | set(rt.core_memory)) if d is not None}
        devices |= rt_devices
        for core, ratio in rt.util.items():
            d = device_of(core)
            if d is not None:
                util.setdefault(d, []).append(ratio)
                cores_seen.setdefault(d, set()).add(core)
        if rt.core_memory:
            for core, used in rt.core_memory.items():
                d = device_of(core)
                if d is not None:
                    memory[d] = memory.get(d, 0) + used
        elif rt.device_memory is not None and len(rt_devices) == 1:
            d = next(iter(rt_devices))
            memory[d] = memory.get(d, 0) + rt.device_memory
        else:
            memory_unknown |= rt_devices
        for d in rt_devices:
            for kind, count in rt.errors.items():
                errors.setdefault(d, {})[kind] = errors.get(d, {}).get(kind, 0) + count
    if not devices:
        raise _fail(tool, "no Neuron devices in the report")
    if len(devices) > _MAX_DEVICES:
        raise _fail(tool, f"implausible number of devices ({len(devices)})")

    readings = []
    for d in sorted(devices):
        ratio = None
        if d in util:
            ratio = sum(util[d]) / (cpd or len(cores_seen[d]))
        readings.append(DeviceReading(
            info=DeviceInfo(device=str(d), vendor=VENDOR, model=node.model),
            up=True,
            utilization_ratio=ratio,
            memory_used_bytes=None if d in memory_unknown else memory.get(d),
            memory_total_bytes=node.memory_per_device,
            errors_total=errors.get(d, {}),
        ))
    return tuple(readings)


# --- value checks -----------------------------------------------------------------------------

def _int(tool: str, value: Any, what: str) -> int:
    """A non-negative integer from JSON (neuron-ls also writes some as strings)."""
    if isinstance(value, str) and value.strip().isdecimal():
        try:
            value = int(value)
        except ValueError:  # beyond Python's int-from-string digit limit
            raise _fail(tool, f"{what}: implausible number {value[:20]!r}...") from None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(tool, f"{what}: expected a non-negative integer, got {value!r}")
    return value


def _ratio_from_percent(tool: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise _fail(tool, f"{what}: expected a non-negative percentage, got {value!r}")
    return value / 100.0


def _opt_int(tool: str, obj: Mapping[str, Any], key: str) -> int | None:
    return None if obj.get(key) is None else _int(tool, obj[key], key)


def _obj(tool: str, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(tool, f"{what}: expected an object, got {type(value).__name__}")
    return value


def _group(tool: str, parent: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """A metric group, or None when absent, null, or marked with a non-empty ``error``: a group
    that failed to collect says nothing, it does not say zero."""
    value = parent.get(key)
    if value is None:
        return None
    group = _obj(tool, value, key)
    return None if group.get("error") else group


# --- neuron-monitor JSON report ---------------------------------------------------------------

def parse_monitor_report(text: str, previous: Sequence[DeviceReading] = ()) -> tuple[DeviceReading, ...]:
    """Readings from one neuron-monitor JSON report (one line of its output).

    The report's ECC and execution counts are increments over its period; they are added to the
    ``errors_total`` of ``previous`` (the readings built from the preceding report) so the result
    holds running totals. Kinds only ``previous`` knows are carried over unchanged.
    """
    tool = MONITOR
    if not isinstance(text, str):
        raise _fail(tool, f"expected a JSON line, got {type(text).__name__}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _fail(tool, f"invalid JSON report: {exc}") from None
    report = _obj(tool, doc, "report")
    node = _Node()
    hw = _group(tool, report, "neuron_hardware_info")
    if hw is not None:
        node.device_count = _opt_int(tool, hw, "neuron_device_count")
        node.cores_per_device = _opt_int(tool, hw, "neuroncore_per_device_count")
        node.memory_per_device = _opt_int(tool, hw, "neuron_device_memory_size")
        kind, version = hw.get("neuron_device_type"), hw.get("neuron_device_version")
        node.model = " ".join(v for v in (kind, version) if isinstance(v, str) and v)

    system = report.get("system_data")
    counters = _group(tool, _obj(tool, system, "system_data"), "neuron_hw_counters") if system else None
    if counters is not None:
        devices = counters.get("neuron_devices")
        if not isinstance(devices, list):
            raise _fail(tool, "neuron_hw_counters.neuron_devices is not a list")
        for entry in devices:
            entry = _obj(tool, entry, "neuron_hw_counters device")
            d = _int(tool, entry.get("neuron_device_index"), "neuron_device_index")
            kinds = node.ecc.setdefault(d, {})
            for key, kind in _ECC.items():
                if key in entry:
                    kinds[kind] = kinds.get(kind, 0) + _int(tool, entry[key], f"device {d} {key}")

    runtimes = report.get("neuron_runtime_data") or []
    if not isinstance(runtimes, list):
        raise _fail(tool, "neuron_runtime_data is not a list")
    for entry in runtimes:
        entry = _obj(tool, entry, "neuron_runtime_data entry")
        if entry.get("error") or entry.get("report") is None:
            continue  # the runtime could not be read (e.g. it exited): no data, not zeros
        node.runtimes.append(_runtime_from_report(tool, _obj(tool, entry["report"], "runtime report")))
    return _accumulate(_assemble(tool, node), previous)


def _runtime_from_report(tool: str, rep: Mapping[str, Any]) -> _Runtime:
    rt = _Runtime()
    counters = _group(tool, rep, "neuroncore_counters")
    if counters is not None:
        in_use = _obj(tool, counters.get("neuroncores_in_use") or {}, "neuroncores_in_use")
        for core, data in in_use.items():
            c = _int(tool, core, "NeuronCore index")
            busy = _obj(tool, data, f"core {c}").get("neuroncore_utilization")
            if busy is not None:
                rt.util[c] = _ratio_from_percent(tool, busy, f"core {c} neuroncore_utilization")
    mem = _group(tool, rep, "memory_used")
    if mem is not None:
        used = _obj(tool, mem.get("neuron_runtime_used_bytes") or {}, "neuron_runtime_used_bytes")
        if used.get("neuron_device") is not None:
            rt.device_memory = _int(tool, used["neuron_device"], "neuron_runtime_used_bytes.neuron_device")
        breakdown = _obj(tool, used.get("usage_breakdown") or {}, "usage_breakdown")
        per_core = _obj(tool, breakdown.get("neuroncore_memory_usage") or {}, "neuroncore_memory_usage")
        for core, kinds in per_core.items():
            c = _int(tool, core, "NeuronCore index")
            kinds = _obj(tool, kinds, f"core {c} memory")
            rt.core_memory[c] = sum(_int(tool, kinds[k], f"core {c} {k}") for k in _CORE_MEMORY_KINDS
                                    if kinds.get(k) is not None)
    stats = _group(tool, rep, "execution_stats")
    if stats is not None:
        summary = _obj(tool, stats.get("error_summary") or {}, "error_summary")
        if summary:
            rt.errors["runtime"] = sum(_int(tool, v, f"error_summary.{k}") for k, v in summary.items())
        outcome = _obj(tool, stats.get("execution_summary") or {}, "execution_summary")
        if outcome.get("timed_out") is not None:
            rt.errors["timeout"] = _int(tool, outcome["timed_out"], "execution_summary.timed_out")
    return rt


def _accumulate(current: Iterable[DeviceReading], previous: Sequence[DeviceReading]
                ) -> tuple[DeviceReading, ...]:
    before = {r.info.device: r.errors_total for r in previous}
    out = []
    for r in current:
        totals = dict(before.get(r.info.device, {}))
        for kind, count in r.errors_total.items():
            totals[kind] = totals.get(kind, 0) + count
        out.append(replace(r, errors_total=totals))
    return tuple(out)


# --- neuron-monitor-prometheus.py exposition --------------------------------------------------

def parse_monitor_prometheus(text: str, *, cores_per_device: int | None = None) -> tuple[DeviceReading, ...]:
    """Readings from the ``/metrics`` page of AWS's ``neuron-monitor-prometheus.py``.

    Its counters (``hardware_ecc_events_total``, ``execution_errors_total``,
    ``execution_status_total``) are already running totals. ``neuron_hardware_info`` (newer
    scripts) gives the cores per device; ``cores_per_device`` supplies it for older ones, and on a
    one-device node no core count is needed. Unrelated families (process, python, system) are
    ignored.
    """
    tool = "neuron-monitor-prometheus"
    if not isinstance(text, str):
        raise _fail(tool, f"expected text exposition, got {type(text).__name__}")
    samples = units.prometheus_samples(text, tool)
    node = _Node(cores_per_device=cores_per_device)
    runtimes: dict[str, _Runtime] = {}
    seen = False
    for s in samples:
        labels, value = s.labels, s.value
        if not math.isfinite(value):
            raise _fail(tool, f"{s.name}: non-finite value {value!r}")
        if s.name == "neuron_hardware_info":
            seen = True
            node.device_count = _int(tool, labels.get("neuron_device_count"), "neuron_device_count")
            node.cores_per_device = _int(tool, labels.get("neuroncore_per_device_count"),
                                         "neuroncore_per_device_count")
        elif s.name == "hardware_ecc_events_total":
            seen = True
            kind = _ECC.get(labels.get("event_type", ""))
            d = _int(tool, labels.get("neuron_device_index"), "neuron_device_index")
            kinds = node.ecc.setdefault(d, {})
            if kind is not None:
                kinds[kind] = kinds.get(kind, 0) + _int(tool, value, f"device {d} ECC events")
        elif s.name == "neuroncore_utilization_ratio":
            seen = True
            rt = runtimes.setdefault(labels.get("runtime_tag", ""), _Runtime())
            c = _int(tool, labels.get("neuroncore"), "neuroncore label")
            rt.util[c] = _ratio_from_percent(tool, value * 100.0, f"core {c} utilization")
        elif s.name.startswith("neuroncore_memory_usage_") and s.name[24:] in _CORE_MEMORY_KINDS:
            seen = True
            rt = runtimes.setdefault(labels.get("runtime_tag", ""), _Runtime())
            c = _int(tool, labels.get("neuroncore"), "neuroncore label")
            rt.core_memory[c] = rt.core_memory.get(c, 0) + _int(tool, value, f"core {c} {s.name}")
        elif (s.name == "neuron_runtime_memory_used_bytes"
              and labels.get("memory_location") == "neuron_device"):
            seen = True
            rt = runtimes.setdefault(labels.get("runtime_tag", ""), _Runtime())
            rt.device_memory = _int(tool, value, "neuron_runtime_memory_used_bytes")
        elif s.name in ("execution_errors_total", "execution_status_total"):
            is_error = s.name == "execution_errors_total"
            if not is_error and labels.get("status_type") != "timed_out":
                continue
            seen = True
            rt = runtimes.setdefault(labels.get("runtime_tag", ""), _Runtime())
            kind = "runtime" if is_error else "timeout"
            rt.errors[kind] = rt.errors.get(kind, 0) + _int(tool, value, s.name)
    if not seen:
        raise _fail(tool, "no neuron-monitor metric families in the exposition")
    node.runtimes = list(runtimes.values())
    return _assemble(tool, node)


# --- neuron-ls --json-output ------------------------------------------------------------------

def parse_neuron_ls(text: str) -> tuple[DeviceReading, ...]:
    """Inventory from ``neuron-ls --json-output``: devices, memory size, runtime versions.

    ``runtime_version`` lists the distinct ``neuron_runtime_version`` of the processes using the
    device (comma-separated; empty with no process), so mixed runtimes on one node are visible.
    """
    tool = NEURON_LS
    if not isinstance(text, str):
        raise _fail(tool, f"expected JSON text, got {type(text).__name__}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _fail(tool, f"invalid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise _fail(tool, "expected a JSON list of devices")
    readings = []
    for entry in doc:
        entry = _obj(tool, entry, "device entry")
        d = _int(tool, entry.get("neuron_device"), "neuron_device")
        procs = entry.get("neuron_processes") or []
        if not isinstance(procs, list):
            raise _fail(tool, f"device {d}: neuron_processes is not a list")
        versions = sorted({p.get("neuron_runtime_version") for p in procs
                           if isinstance(p, dict) and isinstance(p.get("neuron_runtime_version"), str)
                           and p.get("neuron_runtime_version") not in ("", "NA")})
        size = entry.get("memory_size")
        readings.append(DeviceReading(
            info=DeviceInfo(device=str(d), vendor=VENDOR, model="", runtime_version=",".join(versions)),
            up=True,
            memory_total_bytes=None if size is None else _int(tool, size, f"device {d} memory_size"),
        ))
    if len({r.info.device for r in readings}) != len(readings):
        raise _fail(tool, "duplicate neuron_device indexes")
    if not readings:
        raise _fail(tool, "no Neuron devices listed")
    return tuple(readings)


# --- the streaming neuron-monitor process ----------------------------------------------------

class _MonitorStream:
    """One running ``neuron-monitor`` and a thread turning its lines into readings.

    Every line goes through ``parse_monitor_report`` with the previous readings, so the per-period
    counters keep accumulating even when ``sample()`` is called less often than reports arrive,
    and across restarts of the process.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self._argv = list(argv)
        self._cond = threading.Condition()
        self._readings: tuple[DeviceReading, ...] = ()
        self._error: BackendError | None = None
        self._since_start = 0  # reports read from the current process
        self._last_report = time.monotonic()  # or the start of the current process
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self.stop()
        try:
            self._proc = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise _fail(MONITOR, f"could not be started: {exc}") from exc
        with self._cond:
            self._since_start = 0
            self._last_report = time.monotonic()
        self._thread = threading.Thread(target=self._pump, args=(self._proc,), name="neuron-monitor",
                                        daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        stdout = proc.stdout
        while stdout is not None:
            raw = stdout.readline(_MAX_LINE)
            if not raw:
                break
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            with self._cond:
                try:
                    self._readings = parse_monitor_report(line, self._readings)
                    self._error = None
                except BackendError as exc:
                    self._error = exc
                self._since_start += 1
                self._last_report = time.monotonic()
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()  # EOF: wake a waiting sample() so it notices the exit

    def latest(self, wait: float) -> tuple[int, float, BackendError | None, tuple[DeviceReading, ...]]:
        """(reports since start, seconds since the last report, error of the last line, readings),
        after waiting up to ``wait`` seconds for a first report from a freshly started process."""
        deadline = time.monotonic() + wait
        with self._cond:
            while self._since_start == 0 and self.alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return (self._since_start, time.monotonic() - self._last_report, self._error, self._readings)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: nothing it forked survives
        except ProcessLookupError:
            pass
        proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if proc.stdout is not None:
            proc.stdout.close()


DETECTION = Detection(device_globs=("/dev/neuron[0-9]*",), tools=(MONITOR, NEURON_LS))


def detect() -> bool:
    """A Neuron host: ``/dev/neuronN`` device nodes (the neuron driver), or the Neuron tools."""
    return DETECTION.present()


@dataclass(frozen=True)
class NeuronOptions(ToolOptions):
    neuron_ls_path: str | None = None
    period: float = 5.0  # seconds between neuron-monitor reports
    prometheus_url: str | None = None  # read a neuron-monitor-prometheus.py endpoint instead


@register("neuron", options=NeuronOptions, detection=DETECTION)
class NeuronBackend(DeviceBackend):
    """Inferentia/Trainium devices; see the module docstring for the tools and their roles.

    Options: ``tool_path`` (neuron-monitor), ``neuron_ls_path``, ``period`` (seconds between
    neuron-monitor reports), ``prometheus_url`` (read a neuron-monitor-prometheus.py endpoint
    instead of running neuron-monitor).
    """

    name = "neuron"

    def __init__(self, *, node: str = "", tool_path: str | None = None, timeout: float = 5.0,
                 neuron_ls_path: str | None = None, period: float = 5.0,
                 prometheus_url: str | None = None) -> None:
        if not period > 0:
            raise BackendError(f"neuron: period must be positive, got {period!r}")
        self.node = node
        self.timeout = timeout
        self.period = period
        self._tool_path = tool_path
        self._ls_path = neuron_ls_path
        self._url = prometheus_url
        self._stream: _MonitorStream | None = None
        self._config: str | None = None

    def discover(self) -> tuple[DeviceInfo, ...]:
        tool = resolve_tool(self._ls_path or NEURON_LS)
        return tuple(r.info for r in parse_neuron_ls(run_tool([tool, "--json-output"], timeout=self.timeout)))

    def sample(self) -> Snapshot:
        if self._url is not None:
            return Snapshot.now(self.name, parse_monitor_prometheus(
                fetch_url(self._url, timeout=self.timeout, max_bytes=_MAX_SCRAPE)))
        stream = self._ensure_stream()
        reports, age, error, readings = stream.latest(wait=self.timeout)
        stale_after = max(3 * self.period, self.timeout)
        if age > stale_after:
            stream.stop()
            raise _fail(MONITOR, f"no report for {age:.1f}s; killed, restarted on the next sample")
        if reports == 0:
            if not stream.alive():
                raise _fail(MONITOR, "exited before producing a report (restarted on the next sample)")
            raise _fail(MONITOR, f"no report within {self.timeout:g}s of starting")
        if error is not None:
            raise error
        return Snapshot.now(self.name, readings)

    def _ensure_stream(self) -> _MonitorStream:
        if self._stream is None:
            if self._config is None:
                self._config = self._write_config()
            tool = resolve_tool(self._tool_path or MONITOR)
            self._stream = _MonitorStream([tool, "-c", self._config])
        if not self._stream.alive():
            self._stream.start()
        return self._stream

    def _write_config(self) -> str:
        """A neuron-monitor config asking for exactly the groups this backend maps."""
        config = {
            "period": f"{self.period:g}s",
            "neuron_runtimes": [{"tag_filter": ".*", "metrics": [
                {"type": "neuroncore_counters"}, {"type": "memory_used"}, {"type": "execution_stats"}]}],
            "system_metrics": [{"type": "neuron_hw_counters"}],
        }
        fd, path = tempfile.mkstemp(prefix="npuobs-neuron-monitor-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f)
        return path

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
        if self._config is not None:
            try:
                os.unlink(self._config)
            except FileNotFoundError:
                pass
            self._config = None
