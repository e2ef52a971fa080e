"""Serving capacity per served model and cluster: devices up and healthy vs the devices that served the
model lately, the load they carry, and a page when the lost share of that load would push the rest past
the utilization the latency SLO can take.

Why the inventory is "served the model within the last hour" (``capacity_inventory_lookback``): it is
what the exporters report without any extra configuration (the runtime's request counters name the
model per device), it forgets a device an hour after it was decommissioned, and a whole lost node stays
in it while its exporter is silent (its series are gone now, not from the last hour). Why the demand is
remembered (``capacity_demand_lookback``): when a node is lost, its devices' utilization disappears with
it; the sum of busy devices before the loss is the load the survivors must carry once the load balancer
moves it. ``npuobs:serving_*`` recordings are the signal others build on (remediation checks capacity
before draining; the global tier aggregates them).
"""

from __future__ import annotations

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.alerting.composite import serving
from npuobs.alerting.rules import Alert, Group, Record
from npuobs.alerting.slo_spec import FleetPolicy
from npuobs.thresholds import Thresholds

BY = "cluster, model"


def capacity_recording_group(t: Thresholds, fleet: FleetPolicy) -> Group:
    job = fleet.exporter_job
    up, healthy = schema.metric("npu_device_up").name, schema.metric("npu_device_healthy").name
    util = schema.metric("npu_utilization_ratio").name
    now_serving = serving(job, None)
    usable = (f'({up}{{job="{job}"}} == 1\n   and on (cluster, node, device)\n'
              f'   {healthy}{{job="{job}"}} == 1)')
    return Group(cv.GROUP_CAPACITY_RECORDINGS, (
        Record(cv.SERVING_DEVICES_EXPECTED, f"count by ({BY}) (\n  {serving(job, t.capacity_inventory_lookback)}\n)"),
        Record(cv.SERVING_DEVICES_AVAILABLE,
               f"count by ({BY}) (\n  {now_serving}\n  and on (cluster, node, device)\n  {usable}\n)\n"
               f"or\n{cv.SERVING_DEVICES_EXPECTED} * 0"),
        Record(cv.SERVING_CAPACITY, f"{cv.SERVING_DEVICES_AVAILABLE}\n/\n({cv.SERVING_DEVICES_EXPECTED} > 0)"),
        Record(cv.SERVING_BUSY,
               f'sum by ({BY}) (\n  {util}{{job="{job}"}}\n  * on (cluster, node, device) group_right ()\n'
               f"  {now_serving}\n)"),
        Record(cv.SERVING_DEMAND, f"max_over_time({cv.SERVING_BUSY}[{t.capacity_demand_lookback}])"),
        # +Inf when nothing is left: the alert's comparison still holds
        Record(cv.SERVING_PROJECTED_UTILIZATION, f"{cv.SERVING_DEMAND}\n/\n{cv.SERVING_DEVICES_AVAILABLE}"),
    ))


def capacity_alerts(t: Thresholds) -> list[Alert]:
    limit = f"{t.capacity_max_utilization_ratio:g}"
    return [Alert(
        cv.ALERT_CAPACITY_LOW,
        f"{cv.SERVING_PROJECTED_UTILIZATION} > {limit}\nand on ({BY})\n"
        f"{cv.SERVING_DEVICES_AVAILABLE} < {cv.SERVING_DEVICES_EXPECTED}",
        cv.SEVERITY_PAGE, cv.FAILURE_MODE_CAPACITY,
        "{{ $labels.model }} lost serving capacity it needs{{ if $labels.cluster }} in {{ $labels.cluster }}"
        "{{ end }}",
        "Devices serving {{ $labels.model }} were lost (available / expected: "
        "{{ with printf \"" + cv.SERVING_CAPACITY + "{model='%s'}\" $labels.model | query }}"
        "{{ . | first | value | humanizePercentage }}{{ end }}); carrying the recent load on the rest would "
        "run them at {{ $value | humanizePercentage }} utilization, above the "
        f"{t.capacity_max_utilization_ratio:.0%} the latency SLO allows. Restore devices or add capacity "
        "before the queues build up.",
        "1m")]
