"""Power, heat, throttling and energy of one simulated device, driven by the work it did.

Utilization is busy time over elapsed time (from the runtime, not a random number); power rises
linearly from idle to TDP with utilization and with the clock; temperature follows a first-order
thermal RC model towards ``ambient + R * P``; above the throttle threshold the clock halves until
the die cools 5 °C below it (hysteresis, like real firmware). Fault F2 raises the thermal
resistance (a failed fan or blocked airflow), which is how real devices end up throttling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from npuobs.simulator.hardware import AMBIENT_CELSIUS, DeviceModelSpec

THROTTLE_CLOCK_FACTOR = 0.5
THROTTLE_HYSTERESIS_CELSIUS = 5.0


@dataclass
class ThermalState:
    temperature_celsius: float = AMBIENT_CELSIUS
    power_watts: float = 0.0
    energy_joules: float = 0.0
    utilization: float = 0.0
    throttled: bool = False


class PhysicalModel:
    """Integrates power and temperature tick by tick for one device."""

    def __init__(self, spec: DeviceModelSpec, state: ThermalState | None = None) -> None:
        self.spec = spec
        self.state = state or ThermalState(power_watts=spec.idle_watts)
        self.cooling_factor = 1.0  # >1 means worse cooling (fault F2)

    @property
    def clock_factor(self) -> float:
        return THROTTLE_CLOCK_FACTOR if self.state.throttled else 1.0

    @property
    def clock_hz(self) -> float:
        return self.spec.clock_max_hz * self.clock_factor

    def step(self, dt: float, busy_seconds: float, powered: bool = True) -> None:
        """Advance ``dt`` seconds during which the device computed for ``busy_seconds``."""
        s = self.state
        spec = self.spec
        s.utilization = min(1.0, busy_seconds / dt) if dt > 0 else 0.0
        if powered:
            dynamic = (spec.tdp_watts - spec.idle_watts) * s.utilization * self.clock_factor
            s.power_watts = spec.idle_watts + dynamic
        else:
            s.power_watts = 0.0
        s.energy_joules += s.power_watts * dt
        steady = AMBIENT_CELSIUS + spec.thermal_resistance_c_per_w * self.cooling_factor * s.power_watts
        s.temperature_celsius = steady + (s.temperature_celsius - steady) * math.exp(-dt / spec.thermal_tau_seconds)
        if s.temperature_celsius >= spec.throttle_celsius:
            s.throttled = True
        elif s.temperature_celsius < spec.throttle_celsius - THROTTLE_HYSTERESIS_CELSIUS:
            s.throttled = False
