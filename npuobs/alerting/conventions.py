"""Every name the alert generator emits, in one place (Sloth's conventions module, npuobs-prefixed).

Dashboards, runbooks and tests import these instead of spelling names out, so renaming a rule
is one edit here. Recording-rule names follow ``level:metric:operations``; the SLO ones carry the
window in the name (``..._rate5m``) and identify the SLO by labels (see ``SLO_LABELS``).
"""

from __future__ import annotations

from npuobs import schema

# --- SLO recording rules (labels: slo, sli, model, service + the spec's extra labels)
SLO_ERROR_RATIO_PREFIX = "npuobs:slo_errors_per_request:ratio_rate"
"""Error ratio of one SLI over one window, e.g. ``npuobs:slo_errors_per_request:ratio_rate5m``."""
SLO_OBJECTIVE = "npuobs:slo_objective:ratio"  # the objective, 0.999 for 99.9 %
SLO_ERROR_BUDGET = "npuobs:slo_error_budget:ratio"  # 1 - objective
SLO_ERROR_BUDGET_REMAINING = "npuobs:slo_error_budget_remaining:ratio"  # 1 = untouched, <= 0 = spent
SLO_CURRENT_BURN_RATE = "npuobs:slo_current_burn_rate:ratio"  # shortest-window error ratio / budget
SLO_PERIOD_BURN_RATE = "npuobs:slo_period_burn_rate:ratio"  # whole-period error ratio / budget
SLO_LABELS = ("slo", "sli", "model", "service")

# --- device recording rules: the derived series declared in the schema (name, labels, expression, serves)
CPU_FALLBACK_RATIO = schema.CPU_FALLBACK_RATIO.name
LATENCY_P99 = schema.LATENCY_P99.name
TENANT_P99_SPREAD = schema.TENANT_P99_SPREAD.name
DEVICE_ERROR_RATE = schema.DEVICE_ERROR_RATE.name
DISTINCT_VERSIONS = schema.DISTINCT_VERSIONS.name
DEVICE_ERRORS_PER_REQUEST = schema.DEVICE_ERRORS_PER_REQUEST.name
GOLDEN_MISMATCH_RATIO = schema.GOLDEN_MISMATCH_RATIO.name
# --- fleet pre-aggregations for the dashboards (schema.DERIVED with ``fleet``; labels: cluster + their ``by``)
NODE_LATENCY_BUCKETS = schema.NODE_LATENCY_BUCKETS.name
CLUSTER_LATENCY_BUCKETS = schema.CLUSTER_LATENCY_BUCKETS.name
CLUSTER_REQUESTS = schema.CLUSTER_REQUESTS.name
CLUSTER_SERVING_ENERGY = schema.CLUSTER_SERVING_ENERGY.name
CLUSTER_SERVING_DEVICES = schema.CLUSTER_SERVING_DEVICES.name
DEVICE_QUEUE_LENGTH = schema.DEVICE_QUEUE_LENGTH.name

# --- capacity (labels: cluster when the targets carry one, model = the served model)
SERVING_DEVICES_EXPECTED = "npuobs:serving_devices_expected:count"  # devices that served the model lately
SERVING_DEVICES_AVAILABLE = "npuobs:serving_devices_available:count"  # ... of them up, healthy, scraped
SERVING_CAPACITY = "npuobs:serving_capacity:ratio"  # available / expected
SERVING_BUSY = "npuobs:serving_busy_devices:sum"  # sum of utilization of the available devices
SERVING_DEMAND = "npuobs:serving_demand_busy_devices:max"  # busy devices, max over the demand lookback
SERVING_PROJECTED_UTILIZATION = "npuobs:serving_projected_utilization:ratio"  # demand / available devices

# --- the global tier: devices down (now or within ``window``) that served a model, per cluster; recorded by
# each cluster (labels: cluster, node, device, vendor, model, window; value 1; only down devices have series)
DOWN_SERVING = "npuobs:npu_device_down_serving:any"

# --- cost per successful inference, per device and served model (labels: node, device, vendor, model)
HOST_CPU_CORES = "npuobs:npu_host_cpu_cores:rate5m"  # host CPU cores busy with the device's fallback ops
ENERGY_PER_SUCCESS = "npuobs:npu_energy_per_success:joules_rate5m"  # device + host energy / successes
COST_PER_SUCCESS = "npuobs:npu_cost_per_success:dollars_rate5m"  # device-hour + energy + host CPU / successes
# (each with a ``<name>:baseline`` recording: its own mean over the recent past)

# --- cold start: share of a window this Prometheus holds data for (labels: window)
DATA_COVERAGE = "npuobs:data_coverage:ratio"

# --- rule groups
GROUP_SLI = "npuobs-slo-sli"
GROUP_SLO_BUDGET = "npuobs-slo-budget"
GROUP_DEVICE_RECORDINGS = "npuobs-device-recordings"
GROUP_FLEET_RECORDINGS = "npuobs-fleet-recordings"
GROUP_CAPACITY_RECORDINGS = "npuobs-capacity-recordings"
GROUP_COST_RECORDINGS = "npuobs-cost-recordings"
GROUP_SLO_ALERTS = "npuobs-slo-alerts"
GROUP_DEVICE_ALERTS = "npuobs-device-alerts"
GROUP_FLEET_ALERTS = "npuobs-fleet-alerts"
GROUP_SELF_ALERTS = "npuobs-exporter-alerts"

# --- alert labels
SEVERITY_PAGE = "page"
SEVERITY_TICKET = "ticket"
FAILURE_MODE_SLO = "SLO"
FAILURE_MODE_SELF = "SELF"
FAILURE_MODE_CAPACITY = "CAPACITY"
FAILURE_MODE_COST = "COST"

# --- SLO alert names, one per SLI category (page and ticket share the name, told apart by severity)
SLO_BURN_ALERTS = {
    "availability": "NpuAvailabilityErrorBudgetBurn",
    "latency": "NpuLatencyErrorBudgetBurn",
    "accuracy": "NpuAccuracyErrorBudgetBurn",
}
ALERT_BUDGET_EXHAUSTED = "NpuErrorBudgetExhausted"
ALERT_SLI_ABSENT = "NpuSloMetricAbsent"
# --- composite and capacity alerts
ALERT_DEVICE_DOWN = "NpuDeviceDown"  # page: down and its SLO burning; ticket: down, SLO healthy
ALERT_DEVICE_ABSENT = "NpuDeviceAbsent"
ALERT_CAPACITY_LOW = "NpuServingCapacityLow"
ALERT_EXPORTER_DOWN = "NpuExporterDown"
ALERT_COST_ANOMALY = "NpuCostPerInferenceHigh"

# --- the incident: the labels Alertmanager groups by (one group = one PagerDuty incident per receiver)
INCIDENT_LABELS = ("cluster", "service", "failure_mode", "node", "vendor", "model")

# --- output files of ``npuobs alerts generate``
RECORDING_RULES_FILE = "recording-rules.yaml"
SLO_ALERTS_FILE = "slo-alerts.yaml"
DEVICE_ALERTS_FILE = "device-alerts.yaml"
PROMETHEUS_RULE_FILE = "prometheusrule.yaml"
ALERTMANAGER_FILE = "alertmanager.yaml"
RULE_FILES = (RECORDING_RULES_FILE, SLO_ALERTS_FILE, DEVICE_ALERTS_FILE)

# --- Alertmanager receivers
RECEIVER_PAGE = "pagerduty-page"
RECEIVER_TICKET = "pagerduty-ticket"
PAGERDUTY_SEVERITY = {SEVERITY_PAGE: "critical", SEVERITY_TICKET: "warning"}

DEFAULT_RUNBOOK_BASE_URL = "https://github.com/npuobs/npuobs/blob/main"
DEFAULT_EXPORTER_JOB = "npuobs"


def slo_error_ratio(window: str) -> str:
    """Recording-rule name of the SLI error ratio over ``window`` (a Prometheus duration like ``1h``)."""
    return f"{SLO_ERROR_RATIO_PREFIX}{window}"


def runbook_url(base: str, alert: str) -> str:
    return f"{base.rstrip('/')}/runbooks/{alert}.md"
