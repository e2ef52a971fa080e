"""One simulated NPU: hardware spec + physical model + inference runtime + fault effects + counters.

Each tick the device turns its active faults into runtime conditions, runs the runtime, feeds
the busy time into the physical model and updates its event counters. ``to_state()`` is the
typed document (``npuobs.statedoc``) the "driver" publishes; ``restore()`` continues the
cumulative counters, so resets, errors, OOMs and energy survive a restart of the simulator
just as a real driver's counters survive a restart of the exporter reading them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuobs.schema import ERROR_KINDS, RESET_REASONS
from npuobs.simulator.faults import Fault
from npuobs.simulator.hardware import DeviceModelSpec
from npuobs.simulator.model import QuantizedModel
from npuobs.simulator.physics import PhysicalModel, ThermalState
from npuobs.simulator.runtime import (
    ACTIVATION_BYTES_PER_REQUEST,
    MODEL_BYTES,
    Conditions,
    InferenceRuntime,
)
from npuobs.statedoc import Counters, DeviceState, Publisher, Sensors

CANARY_TENANT = "canary"
F2_COOLING_FACTOR = 2.6  # thermal resistance multiplier of a failed fan
F3_SCALE_FACTOR = 4.0  # calibration error of the corrupted INT8 scales
F6_ROLLBACK = "-rollback"  # suffix marking the stale firmware/driver a mismatched device runs
F8_ERROR_PROBABILITY = 0.3  # chance per tick that the firmware bug also logs a runtime error


@dataclass(frozen=True)
class Serving:
    """What the serving plane's control (``ServingControl``) imposes on the device this tick."""

    drained: bool = False  # no new requests, no canary; queued ones finish
    host_only: bool = False  # the model is switched to the CPU serving path
    model: QuantizedModel | None = None  # the served model version's weights when not the trained one


NOT_CONTROLLED = Serving()


class SimDevice:
    def __init__(self, node: str, index: int, spec: DeviceModelSpec, *, model_name: str,
                 tenants: tuple[str, ...], seed: int) -> None:
        self.node = node
        self.id = str(index)
        self.spec = spec
        self.uuid = f"sim-{node}-{index:02d}-{spec.model.lower()}"
        # under F7 the last configured tenant (the batch tenant by convention) floods the device
        self.noisy_tenant = tenants[-1]
        self.rng = np.random.default_rng([seed, index, sum(node.encode())])
        self.physics = PhysicalModel(spec)
        self.runtime = InferenceRuntime(spec, model_name, tenants + (CANARY_TENANT,), self.rng, seed,
                                        node=node, device=self.id)
        self.resets = dict.fromkeys(RESET_REASONS, 0)
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.oom_events = 0
        self.applied_resets: list[str] = []
        self.online = True
        self.leaked_bytes = 0
        self._corrupted = None
        self.versions = (spec.driver_version, spec.firmware_version, spec.runtime_version)
        self.epoch_started_at: float | None = None  # set by the fleet: restored, or the first publication

    # -- faults ------------------------------------------------------------------------------
    def _conditions(self, faults: list[Fault], now: float, serving: Serving) -> tuple[Conditions, set[str]]:
        kinds = {f.kind for f in faults}
        for f in faults:
            if f.kind == "RESET" and f.id not in self.applied_resets:
                self._reset(f.reason or "driver")
                self.applied_resets = (self.applied_resets + [f.id])[-64:]
        self.online = "F1" not in kinds and "RESET" not in kinds
        self.physics.cooling_factor = F2_COOLING_FACTOR if "F2" in kinds else 1.0
        if "F3" in kinds and self._corrupted is None:
            self._corrupted = self.runtime.k.quantized.with_corrupted_scales(F3_SCALE_FACTOR, self.rng)
        elif "F3" not in kinds:
            self._corrupted = None
        # F4: a leaked allocation takes all but a sliver of memory, so batches fail to allocate
        self.leaked_bytes = max(0, self.spec.memory_bytes - self._base_memory() - (8 << 20)) if "F4" in kinds else 0
        suffix = F6_ROLLBACK if "F6" in kinds else ""
        d, fw, rt = self.spec.driver_version, self.spec.firmware_version, self.spec.runtime_version
        self.versions = (d + suffix, fw + suffix, rt)
        cond = Conditions(
            online=self.online,
            clock_factor=self.physics.clock_factor,
            fallback="F5" in kinds,
            corrupted_model=self._corrupted or serving.model,
            corrupt_rng=self.rng if "F8" in kinds else None,
            memory_free_bytes=self.spec.memory_bytes - self._base_memory() - self.leaked_bytes,
            priority_tenant=self.noisy_tenant if "F7" in kinds else None,
            host_only=serving.host_only,
            drained=serving.drained,
        )
        return cond, kinds

    def _reset(self, reason: str) -> None:
        self.resets[reason] += 1
        self.runtime.unload()
        self.leaked_bytes = 0

    def _base_memory(self) -> int:
        loaded = MODEL_BYTES if self.runtime.loaded_at is not None else 0
        return loaded + self.runtime.queue_length * ACTIVATION_BYTES_PER_REQUEST // 4

    # -- time --------------------------------------------------------------------------------
    def step(self, t0: float, dt: float, arrivals: dict[str, np.ndarray], faults: list[Fault],
             serving: Serving | None = None) -> None:
        cond, kinds = self._conditions(faults, t0, serving or NOT_CONTROLLED)
        result = self.runtime.step(t0, dt, arrivals, cond)
        self.physics.step(dt, result.busy_seconds, powered=self.online)
        self.oom_events += result.oom_events
        if result.device_errors:
            self.errors["timeout" if "F1" in kinds else "runtime"] += result.device_errors
        if "F8" in kinds and self.rng.random() < F8_ERROR_PROBABILITY:
            self.errors["ecc_corrected"] += 1

    # -- published state ---------------------------------------------------------------------
    def to_state(self, now: float, publisher: Publisher | None = None) -> DeviceState:
        s: ThermalState = self.physics.state
        rt = self.runtime
        driver, firmware, runtime_v = self.versions
        sensors = None
        if self.online:
            sensors = Sensors(
                healthy=not self.errors["ecc_uncorrected"],
                temperature_celsius=round(s.temperature_celsius, 3),
                temperature_throttle_threshold_celsius=self.spec.throttle_celsius,
                power_watts=round(s.power_watts, 3),
                power_limit_watts=self.spec.tdp_watts,
                utilization_ratio=round(s.utilization, 4),
                memory_used_bytes=self._base_memory() + self.leaked_bytes,
                memory_total_bytes=self.spec.memory_bytes,
                clock_hertz=self.physics.clock_hz,
                clock_max_hertz=self.spec.clock_max_hz,
                # the simulated firmware only throttles for heat; other reasons are not reported
                throttle_reasons={"thermal": s.throttled},
            )
        return DeviceState(
            device=self.id, vendor=self.spec.vendor, model=self.spec.model, uuid=self.uuid,
            driver_version=driver, firmware_version=firmware, runtime_version=runtime_v,
            state="online" if self.online else "offline",
            updated_at=now,
            counters=Counters(
                energy_joules_total=s.energy_joules,
                resets_total=dict(self.resets),
                errors_total=dict(self.errors),
                oom_events_total=self.oom_events,
                ops=rt.store.ops_state(),  # recorded by the runtime, persisted like a driver counter
                applied_resets=tuple(self.applied_resets),
                epoch_started_at=self.epoch_started_at,
            ),
            runtime=rt.store.runtime_state(),
            sensors=sensors,
            publisher=publisher,
        )

    def restore(self, state: DeviceState) -> None:
        """Continue the cumulative counters of a previous run (the driver's persisted state)."""
        c = state.counters
        self.physics.state.energy_joules = c.energy_joules_total
        self.resets.update({k: v for k, v in c.resets_total.items() if k in self.resets})
        self.errors.update({k: v for k, v in c.errors_total.items() if k in self.errors})
        self.oom_events = c.oom_events_total
        self.applied_resets = list(c.applied_resets)
        if c.epoch_started_at is not None:
            self.epoch_started_at = c.epoch_started_at
        self.runtime.store.restore(state.runtime, c.ops)

    def new_epoch(self, now: float) -> None:
        """Every persisted copy of this device's counters was lost: the counters start from zero
        again, visibly. The epoch start moves to ``now`` (``npu_counters_epoch_start_timestamp_seconds``)
        and the loss counts as one driver reset, as a reloaded driver's would."""
        self.epoch_started_at = now
        self.resets["driver"] += 1
