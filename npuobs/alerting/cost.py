"""Cost anomalies (the NPU SRE guide's ticket case): energy and cost per successful inference, per node
and served model, against their own recent baseline.

Per node, not per model: a node burning a fifth more energy per inference is a few percent of a fleet-wide
ratio. Not per device either: the standard exporter profile counts requests per node. Energy counts the
devices' own counters plus the host CPU time of CPU-fallback ops (at ``host_cpu_watts_per_core``; a
debug-profile series, else 0), which the devices do not report. Cost is what the device-hours, that energy
and the host CPU time cost, over the successful inferences: devices failing requests at the same load cost
more per success, too.

The baseline is the series' own mean over ``cost_baseline_window`` ending ``cost_baseline_offset`` ago: it
catches a step change (sustained CPU fallback, a regressed model build, a device serving errors) within
minutes and follows the slow diurnal drift of the idle share. A same-hour-last-week baseline would also
cancel the diurnal shape but needs a week of history that neither a fresh deployment nor a game day has
(docs/alerting.md). No baseline (no history yet) means no alert.
"""

from __future__ import annotations

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.alerting.composite import serving
from npuobs.alerting.rules import Alert, Group, Record
from npuobs.alerting.slo_spec import FleetPolicy
from npuobs.thresholds import Thresholds

BY = "cluster, node, model"


def cost_recording_group(t: Thresholds, fleet: FleetPolicy) -> Group:
    job = f'job="{fleet.exporter_job}"'
    requests = schema.metric("npu_inference_requests_total").name
    energy = schema.metric("npu_energy_joules_total").name
    op_seconds = schema.metric("npu_op_seconds_total").name
    served = serving(fleet.exporter_job, None)

    def per_model(expr: str) -> str:
        """A per-device rate summed over the node's devices serving each model (device counters do not
        name the served model)."""
        return (f"sum by ({BY}) (\n  {expr}\n  * on (cluster, node, device) group_right ()\n  {served}\n)")

    device_watts = per_model(f"rate({energy}{{{job}}}[5m])")
    # host op time is a debug-profile series: without it, no host share (0), not no energy
    host = per_model(f'rate({op_seconds}{{{job},placement="host"}}[5m])')
    host_cores = f"(\n{host}\nor\n{device_watts} * 0\n)"
    devices = f"count by ({BY}) ({served})"
    success = f'(\n  sum by ({BY}) (rate({requests}{{{job},outcome="success"}}[5m])) > 0\n)'
    return Group(cv.GROUP_COST_RECORDINGS, (
        Record(cv.HOST_CPU_CORES, host_cores),
        Record(cv.ENERGY_PER_SUCCESS,
               f"(\n{device_watts}\n+ {cv.HOST_CPU_CORES} * {t.host_cpu_watts_per_core:g}\n)\n/\n{success}"),
        # $/s: the device-hours, the energy, the host cores; then per successful inference
        Record(cv.COST_PER_SUCCESS,
               f"{cv.ENERGY_PER_SUCCESS} * {t.energy_kwh_cost:g} / 3.6e6\n+\n"
               f"(\n  {cv.HOST_CPU_CORES} * {t.host_cpu_core_hour_cost:g}\n  + {devices} * {t.device_hour_cost:g}\n"
               f") / 3600\n/\n{success}"),
        *(Record(f"{name}:baseline",
                 f"avg_over_time({name}[{t.cost_baseline_window}] offset {t.cost_baseline_offset})")
          for name in (cv.ENERGY_PER_SUCCESS, cv.COST_PER_SUCCESS)),
    ))


def cost_alerts(t: Thresholds) -> list[Alert]:
    ratio = f"{t.cost_anomaly_ratio:g}"
    clauses = [f"{name} / {name}:baseline > {ratio}" for name in (cv.ENERGY_PER_SUCCESS, cv.COST_PER_SUCCESS)]
    return [Alert(
        cv.ALERT_COST_ANOMALY, f"max by ({BY}) (\n  {clauses[0]}\n  or\n  {clauses[1]}\n)",
        cv.SEVERITY_TICKET, cv.FAILURE_MODE_COST,
        "{{ $labels.model }} on {{ $labels.node }} costs more per inference",
        "Energy or cost per successful inference of {{ $labels.model }} on node {{ $labels.node }} is "
        "{{ printf \"%.2f\" $value }}x its own baseline (the "
        f"mean over {t.cost_baseline_window} ending {t.cost_baseline_offset} ago) for {t.cost_anomaly_for}; "
        f"the ticket threshold is {t.cost_anomaly_ratio:g}x. Sustained CPU fallback, a slower model build, "
        "throttling or failing requests at the same load all show here first.",
        t.cost_anomaly_for)]
