"""Catalogue of simulated device models, with figures from public spec sheets.

The physical model (power, heat, memory, clocks) and the runtime's service times read these
numbers, so a simulated RNGD looks like an RNGD on the dashboards: 150 W TDP, 48 GB HBM3, 1 GHz.
Versions are the "current" driver/firmware/runtime a healthy fleet runs; fault F6 rolls one back.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30


@dataclass(frozen=True)
class DeviceModelSpec:
    vendor: str
    model: str  # must be a key of npuobs.simulator.graph.DEVICE_OP_SETS
    memory_bytes: int
    tdp_watts: float
    idle_watts: float
    clock_max_hz: float
    throttle_celsius: float
    # Thermal model: steady-state rise = resistance * power; tau is the RC time constant.
    thermal_resistance_c_per_w: float
    thermal_tau_seconds: float
    # Runtime service-time model: fixed cost per device op launch plus cost per MAC at full clock.
    op_launch_seconds: float
    seconds_per_mac: float
    driver_version: str
    firmware_version: str
    runtime_version: str


CATALOGUE: dict[str, DeviceModelSpec] = {
    spec.model: spec
    for spec in (
        DeviceModelSpec("furiosa", "RNGD", 48 * GIB, 150.0, 35.0, 1.0e9, 95.0, 0.38, 45.0,
                        0.00035, 2.0e-9, "2025.3.0", "1.7.0", "2025.3.1"),
        DeviceModelSpec("rebellions", "ATOM", 16 * GIB, 130.0, 30.0, 1.4e9, 90.0, 0.42, 40.0,
                        0.00040, 2.4e-9, "1.2.79", "1.2.79", "0.7.2"),
        DeviceModelSpec("aws", "Inferentia2", 32 * GIB, 175.0, 40.0, 1.4e9, 92.0, 0.33, 50.0,
                        0.00030, 2.2e-9, "2.19.64", "1.13.0", "2.21.18"),
        DeviceModelSpec("intel", "Gaudi2", 96 * GIB, 600.0, 110.0, 1.65e9, 95.0, 0.10, 60.0,
                        0.00025, 1.2e-9, "1.21.1", "1.21.1", "1.21.1"),
    )
}

# Host (CPU fallback) execution: slower per element and a device<->host copy each way.
HOST_OP_SECONDS = 0.0015
HOST_SECONDS_PER_ELEMENT = 4.0e-8
AMBIENT_CELSIUS = 30.0
