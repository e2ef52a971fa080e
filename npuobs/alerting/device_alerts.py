"""The device alert catalogue: one or more alerts per failure mode of the NPU SRE guide (F1-F8),
device resets and the exporter's own health, built from the schema and the shared thresholds.

Page vs ticket follows the guide ("page when users are hurt now"): a device that is down,
vanished, erroring, silently computing wrong outputs or resetting in a storm pages; conditions
whose user impact, if any, already pages through an SLO burn-rate alert (throttling, OOM, CPU
fallback, noisy neighbours, accuracy drift) or that only threaten future trouble (temperature
near the limit, version skew, a blind exporter) are tickets. docs/alerting.md has the table.
"""

from __future__ import annotations

import re

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.alerting.composite import device_down_ticket
from npuobs.alerting.rules import Alert, Group, Record
from npuobs.alerting.slo_spec import VERSION_COMPONENTS, FleetPolicy
from npuobs.thresholds import Thresholds

PAGE, TICKET = cv.SEVERITY_PAGE, cv.SEVERITY_TICKET
DEV = "node, device, vendor"
ON_DEVICE = "NPU {{ $labels.device }} on {{ $labels.node }}"
ON_DEVICE_VENDOR = "NPU {{ $labels.device }} ({{ $labels.vendor }}) on node {{ $labels.node }}"


def m(name: str) -> str:
    """A metric name, checked against the schema at generation time."""
    return schema.metric(name).name


def _regex_alternatives(values: tuple[str, ...]) -> str:
    """An RE2 alternation matching exactly these strings, escaped for a double-quoted PromQL string."""
    return "|".join(re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\\\1", v) for v in values)


def _derived_records(t: Thresholds, fleet: bool) -> tuple[Record, ...]:
    return tuple(Record(d.name, expr, labels) for d in schema.DERIVED if d.fleet is fleet
                 for expr, labels in d.render(t.canary_tenant))


def device_recording_group(t: Thresholds) -> Group:
    """The derived series the schema declares (``schema.DERIVED``), as recording rules the alerts
    and dashboards share."""
    return Group(cv.GROUP_DEVICE_RECORDINGS, _derived_records(t, fleet=False))


def fleet_recording_group(t: Thresholds) -> Group:
    """The schema's fleet-level pre-aggregations, in a group of their own: they read every node's
    workload series, so a rule engine evaluates them beside (not after) the device recordings, and
    their evaluation time is reported on its own."""
    return Group(cv.GROUP_FLEET_RECORDINGS, _derived_records(t, fleet=True))


def with_vendor(expr: str) -> str:
    """``expr`` (by node, device, ...) with the device's ``vendor`` label from ``npu_device_info``: runtime
    series name the served model, not the vendor, and the vendor is part of the incident (PagerDuty's
    component, Alertmanager's grouping)."""
    info = f"max by (node, device, vendor) ({m('npu_device_info')})"
    # a series the info cannot name (no device label under a smaller profile) still alerts, without vendor
    return (f"(\n{expr}\n)\n* on (node, device) group_left (vendor)\n{info}\n"
            f"or\n(\n{expr}\n)\nunless on (node, device)\n{info}")


def recently_down(job: str, window: str = "5m") -> str:
    """Devices down at any time within ``window``: their errors (queued requests failing, the error rate
    that lingers in a 5-minute window after recovery) belong to the outage, not to a new incident."""
    return f'(min_over_time({m("npu_device_up")}{{job="{job}"}}[{window}]) == 0)'


def device_alert_group(t: Thresholds, fleet: FleetPolicy, device_down: list[Alert] | None = None) -> Group:
    """The per-device catalogue; ``device_down`` are the (composite) ``NpuDeviceDown`` alerts, built with
    the SLOs they join (``composite.device_down_alerts``); None: the ticket alone (a tier without SLOs)."""
    up_dev = m("npu_device_up")
    job = fleet.exporter_job
    alerts = [
        # --- F1 device offline
        *(device_down if device_down is not None else [device_down_ticket(job)]),
        Alert("NpuDeviceAbsent",
              # reported in the last hour, gone now, while its exporter is still scraped fine
              f'max_over_time({up_dev}{{job="{job}"}}[1h])\n'
              f'unless on ({DEV}) {up_dev}{{job="{job}"}}\n'
              f'unless on (instance) (up{{job="{job}"}} == 0)',
              PAGE, "F1",
              f"{ON_DEVICE} vanished from its exporter",
              f"{ON_DEVICE_VENDOR} reported within the last hour but its exporter no longer lists it "
              "(device fell off the bus, driver unloaded, or the backend lost it).",
              "2m"),
        # --- F2 thermal
        Alert("NpuThermalThrottling", f'{m("npu_throttle_reason_active")}{{reason="thermal"}} == 1',
              TICKET, "F2",
              f"{ON_DEVICE} is thermally throttled",
              f"{ON_DEVICE_VENDOR} has run below its maximum clock for thermal reasons for more than "
              f"{t.throttle_for}; tail latency rises while it lasts.",
              t.throttle_for),
        # a prediction: once the die throttles (or did within the wait) the throttling ticket owns the incident
        Alert("NpuTemperatureNearLimit",
              f"{m('npu_temperature_celsius')}\n>= on ({DEV})\n"
              f"{m('npu_temperature_throttle_threshold_celsius')} - {t.temperature_margin_celsius:g}\n"
              f"unless on (node, device)\n"
              f"max_over_time({m('npu_throttle_reason_active')}{{reason=\"thermal\"}}"
              f"[{t.temperature_near_limit_for}]) == 1",
              TICKET, "F2",
              f"{ON_DEVICE} is within {t.temperature_margin_celsius:g} °C of throttling",
              f"{ON_DEVICE_VENDOR} is at {{{{ $value }}}} °C, within {t.temperature_margin_celsius:g} °C "
              f"of its throttle threshold, for {t.temperature_near_limit_for} without throttling.",
              t.temperature_near_limit_for),
        # --- F3 quantization accuracy loss
        Alert("NpuAccuracyDeltaHigh",
              with_vendor(f"max by (node, device, model) ({m('npu_accuracy_delta_ratio')})"
                          f" > {t.accuracy_delta_max_ratio:g}"),
              TICKET, "F3",
              "{{ $labels.model }} on NPU {{ $labels.device }} of {{ $labels.node }} lost accuracy",
              "The on-device accuracy of {{ $labels.model }} on NPU {{ $labels.device }} of "
              f"{{{{ $labels.node }}}} is more than {t.accuracy_delta_max_ratio:.0%} below the FP32 "
              f"reference for {t.accuracy_delta_for}.",
              t.accuracy_delta_for),
        # --- F4 memory OOM
        Alert("NpuOutOfMemory", f"sum by ({DEV}) (increase({m('npu_oom_events_total')}[10m])) > 0",
              TICKET, "F4",
              f"{ON_DEVICE} failed device memory allocations",
              f"{ON_DEVICE_VENDOR} reported out-of-memory events in the last 10 minutes; "
              "the affected batches failed with outcome=oom."),
        # --- F5 CPU fallback
        Alert("NpuCpuFallbackHigh", f"{cv.CPU_FALLBACK_RATIO} > {t.cpu_fallback_max_ratio:g}", TICKET, "F5",
              f"{ON_DEVICE} runs too many ops on the host CPU",
              f"More than {t.cpu_fallback_max_ratio:.0%} of the graph ops on {ON_DEVICE_VENDOR} ran on the "
              f"host (CPU fallback) for {t.cpu_fallback_for}.",
              t.cpu_fallback_for),
        # --- F7 noisy neighbour
        # a spread only matters once the slowest tenant is slow in absolute terms: 2x of 5 ms is noise
        Alert("NpuNoisyNeighbour",
              with_vendor(f"{cv.TENANT_P99_SPREAD} > {t.tenant_latency_spread_max:g}\n"
                          f"and on (node, device, model)\n"
                          f"max by (node, device, model) ({cv.LATENCY_P99}{{tenant!=\"{t.canary_tenant}\"}}) "
                          f"> {t.tenant_latency_p99_floor_seconds:g}"),
              TICKET, "F7",
              f"Tenants on {ON_DEVICE} see very different latency",
              "The slowest tenant's p99 latency for {{ $labels.model }} on NPU {{ $labels.device }} of "
              f"{{{{ $labels.node }}}} is more than {t.tenant_latency_spread_max:g}x the fastest tenant's "
              f"and above {t.tenant_latency_p99_floor_seconds * 1000:g} ms for {t.noisy_neighbour_for}.",
              t.noisy_neighbour_for),
        # --- F8 firmware bug: incorrect outputs, judged as a mismatch ratio with a tolerance. Not F8:
        # mismatches of a device with CPU fallback active up to the fallback tolerance (the host's FP32 op
        # flips borderline images: NpuCpuFallbackHigh tickets it), and of a device whose accuracy delta is
        # over budget (systematic quantization loss, F3: NpuAccuracyDeltaHigh tickets, the accuracy SLO pages)
        Alert("NpuIncorrectOutputs",
              with_vendor(f"{cv.GOLDEN_MISMATCH_RATIO} > {t.golden_mismatch_max_ratio:g}\n"
                          f"unless on (node, device, model)\n"
                          f"(\n  {cv.GOLDEN_MISMATCH_RATIO} <= {t.golden_mismatch_fallback_max_ratio:g}\n"
                          f"  and on (node, device)\n  {cv.CPU_FALLBACK_RATIO} > 0\n)\n"
                          f"unless on (node, device, model)\n"
                          f"max by (node, device, model) (max_over_time({m('npu_accuracy_delta_ratio')}[5m])) "
                          f"> {t.accuracy_delta_max_ratio:g}"),
              PAGE, "F8",
              f"{ON_DEVICE} returned incorrect outputs",
              "{{ $value | humanizePercentage }} of the golden-output canary checks of {{ $labels.model }} on "
              "NPU {{ $labels.device }} ({{ $labels.vendor }}) of {{ $labels.node }} mismatched over 5 minutes "
              f"(tolerance {t.golden_mismatch_max_ratio:.1%}, {t.golden_mismatch_fallback_max_ratio:.1%} while "
              "CPU fallback runs), with its accuracy delta in budget: the device is computing wrong results."),
        # --- device resets: any reset is a ticket, a storm pages
        Alert("NpuDeviceResets",
              f"sum by ({DEV}) (increase({m('npu_resets_total')}[1h])) > 0\n"
              f"< {t.resets_per_hour_max:g}",
              TICKET, "RESET",
              f"{ON_DEVICE} was reset",
              f"{ON_DEVICE_VENDOR} reset in the last hour (fewer than {t.resets_per_hour_max:g} times: "
              "an event to explain, not a storm)."),
        Alert("NpuDeviceResets",
              f"sum by ({DEV}) (increase({m('npu_resets_total')}[1h])) >= {t.resets_per_hour_max:g}",
              PAGE, "RESET",
              f"{ON_DEVICE} is in a reset storm",
              f"{ON_DEVICE_VENDOR} reset at least {t.resets_per_hour_max:g} times in the last hour; "
              "each reset drops its queue and cold-starts its model."),
        # --- device errors (F1/F8), per request; a device that is or was just down is the outage's incident
        Alert("NpuDeviceErrorRateHigh",
              f"{cv.DEVICE_ERRORS_PER_REQUEST} > {t.device_error_max_ratio:g}\n"
              f"unless on (node, device)\n{recently_down(job)}",
              PAGE, "F1",
              f"{ON_DEVICE} reports a high error rate",
              f"{ON_DEVICE_VENDOR} reported device errors (uncorrected ECC, runtime, timeout or PCIe) for more "
              f"than {t.device_error_max_ratio:.0%} of its inference requests for 5 minutes "
              "({{ $value | humanizePercentage }} now).",
              "5m"),
    ]
    return Group(cv.GROUP_DEVICE_ALERTS, tuple(alerts))


def fleet_alert_group(t: Thresholds, fleet: FleetPolicy) -> Group:
    """F6: version skew across the fleet, and versions outside the allowed list (when one is configured)."""
    info = m("npu_device_info")
    alerts = [
        Alert("NpuVersionMismatch",
              f"count by (vendor, model) (count by (vendor, model, {comp}) ({info})) > 1",
              TICKET, "F6",
              f"{{{{ $labels.vendor }}}} {{{{ $labels.model }}}} devices run {{{{ $value }}}} different "
              f"{comp.removesuffix('_version')} versions",
              f"{{{{ $labels.vendor }}}} {{{{ $labels.model }}}} devices in the fleet have run "
              f"{{{{ $value }}}} different {comp.replace('_', ' ')}s side by side for more than "
              f"{t.version_mismatch_for}.",
              t.version_mismatch_for, {"component": comp.removesuffix("_version")})
        for comp in VERSION_COMPONENTS
    ]
    for comp in VERSION_COMPONENTS:
        selectors = [f'{info}{{vendor="{vendor}",{comp}!~"{_regex_alternatives(comps[comp])}"}}'
                     for vendor, comps in sorted(fleet.allowed_versions.items()) if comp in comps]
        if not selectors:
            continue
        label = "{{ $labels." + comp + " }}"
        alerts.append(Alert(
            "NpuVersionNotAllowed", "\nor\n".join(selectors), TICKET, "F6",
            f"{ON_DEVICE} runs {comp.replace('_', ' ')} {label}, which is not allowed",
            f"{ON_DEVICE_VENDOR} ({{{{ $labels.model }}}}) runs {comp.replace('_', ' ')} {label}, "
            "outside the fleet policy's allowed list (alerts/slo.yaml fleet.allowed_versions).",
            t.version_not_allowed_for, {"component": comp.removesuffix("_version")}))
    return Group(cv.GROUP_FLEET_ALERTS, tuple(alerts))


def exporter_alert_group(fleet: FleetPolicy) -> Group:
    job = fleet.exporter_job
    known = f'max by (instance, node) (last_over_time({m("npuobs_exporter_build_info")}{{job="{job}"}}[1h]))'
    return Group(cv.GROUP_SELF_ALERTS, (
        # the node label (from the exporter's build info, last hour) lets a lost node's alert inhibit the
        # per-device alerts of that node; an exporter never seen still alerts, without a node
        Alert(cv.ALERT_EXPORTER_DOWN,
              f'(up{{job="{job}"}} == 0)\n* on (instance) group_left (node)\n{known}\n'
              f'or\n(up{{job="{job}"}} == 0 unless on (instance) {known})',
              TICKET, cv.FAILURE_MODE_SELF,
              "npuobs exporter {{ $labels.instance }}{{ if $labels.node }} ({{ $labels.node }}){{ end }} is down",
              "Prometheus has failed to scrape the npuobs exporter at {{ $labels.instance }} for 5 minutes: "
              "the NPUs on that node are unobserved (their device and SLO alerts cannot fire).",
              "5m"),
        Alert("NpuCollectorFailing", f"{m('npuobs_collector_success')} == 0", TICKET, cv.FAILURE_MODE_SELF,
              "npuobs collector {{ $labels.collector }} on {{ $labels.node }} is failing",
              "The {{ $labels.collector }} collector of the npuobs exporter on {{ $labels.node }} has failed "
              "every sample for 10 minutes; the metrics it owns are missing or stale.",
              "10m"),
    ))
