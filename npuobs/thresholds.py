"""Thresholds shared by the alert generator and the dashboards (one config, kubernetes-mixin style).

A dashboard's red line and the alert that pages are the same number, read from here, so they
cannot drift. Values come from the NPU SRE guide (e.g. CPU fallback < 5 %) and the simulated
devices' physical limits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    # F2: alert when temperature comes within this many degrees of the throttle threshold
    temperature_margin_celsius: float = 5.0
    # F2: throttled for longer than this is a ticket (short blips are normal)
    throttle_for: str = "5m"
    # F2: "near the limit" must wait longer than throttle_for, so a die that goes on to throttle opens the
    # throttling ticket first and that ticket's inhibition folds the prediction into it
    temperature_near_limit_for: str = "10m"
    # F3: accuracy delta vs the FP32 reference above this is out of budget
    accuracy_delta_max_ratio: float = 0.02
    # F3: ... for this long (the delta is a per-canary-run gauge, so minutes are plenty)
    accuracy_delta_for: str = "5m"
    # F8: golden-output mismatches per canary check above this pages as incorrect outputs (1 in 200)
    golden_mismatch_max_ratio: float = 0.005
    # F8: ... on a device with CPU fallback active, whose host FP32 path is not bit-identical to the INT8
    # device path and flips borderline canary images (1 in 360 measured); below it the fallback tickets
    golden_mismatch_fallback_max_ratio: float = 0.01
    # F5: host (CPU-fallback) share of ops above this alerts (SRE guide: < 5 %)
    cpu_fallback_max_ratio: float = 0.05
    # F5: ... for this long before it tickets
    cpu_fallback_for: str = "5m"
    # F7: per-tenant p99 latency spread (max/min across tenants on one device) above this
    tenant_latency_spread_max: float = 2.0
    # F7: ... and only when the slowest tenant's p99 exceeds this (a spread of fast latencies is noise)
    tenant_latency_p99_floor_seconds: float = 0.025
    # F7: ... for this long (a p99 over 5m: a one-minute flood keeps the spread up for minutes)
    noisy_neighbour_for: str = "8m"
    # device errors per second: the dashboards' red line (the alert judges errors per request, below)
    device_error_rate_max_per_second: float = 0.01
    # device errors (corrected ECC excluded) per inference request above this pages as a high error rate:
    # per request, so one reset's burst of failed queued requests is noise at any load
    device_error_max_ratio: float = 0.01
    # resets within 1h at or above this count are a reset storm
    resets_per_hour_max: float = 3.0
    # capacity: serving devices that would run above this utilization if the lost devices' share of the
    # recent load moved onto them page (headroom for p99 queueing; a policy number, overridable)
    capacity_max_utilization_ratio: float = 0.8
    # capacity: how far back the demand (busy devices) is remembered, so a lost node's load still counts
    capacity_demand_lookback: str = "15m"
    # capacity: a device that served a model within this window is expected to serve it
    capacity_inventory_lookback: str = "1h"
    # utilization band the SRE guide calls typical; above the high mark latency suffers
    utilization_high_ratio: float = 0.9
    # memory above this share of capacity is close to OOM
    memory_high_ratio: float = 0.9
    # latency SLI threshold (seconds); must be a bucket edge of schema.LATENCY_BUCKETS
    latency_slo_seconds: float = 0.1
    # cost: what a device-hour costs, a host CPU core-hour, a kWh (cost per successful inference)
    device_hour_cost: float = 1.0
    host_cpu_core_hour_cost: float = 0.05
    energy_kwh_cost: float = 0.15
    # cost: host CPU power per busy core (CPU-fallback ops burn host energy the device does not report)
    host_cpu_watts_per_core: float = 15.0
    # cost: energy or cost per successful inference above this multiple of its own baseline tickets
    cost_anomaly_ratio: float = 1.15
    # cost: the baseline: the mean over this window, ending cost_baseline_offset ago (a step change, not drift)
    cost_baseline_window: str = "30m"
    cost_baseline_offset: str = "10m"
    cost_anomaly_for: str = "5m"
    # F6: distinct versions side by side for longer than this is a stuck rollout, not an upgrade in flight
    version_mismatch_for: str = "1h"
    # F6: a version outside the fleet's allowed list is never "in flight": ticket within the 10-minute
    # ticket target (a restart that briefly reports an old version rides through)
    version_not_allowed_for: str = "5m"
    # the synthetic golden-check tenant: measured by the accuracy SLI, kept out of the user-facing
    # availability/latency SLIs and the per-tenant latency spread
    canary_tenant: str = "canary"


DEFAULT = Thresholds()
