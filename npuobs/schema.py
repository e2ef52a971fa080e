"""The metric schema: the single source of truth for every metric npuobs emits.

The exporter, the alert and recording-rule generators, the dashboards, the runbooks and
``docs/metrics.md`` all read names, units, types and labels from here, and tests fail when any
of them names a metric this module lacks. Adding a metric means adding one ``MetricSpec`` below.

Naming follows the Prometheus conventions: base units in the name (``_celsius``, ``_watts``,
``_joules_total``, ``_bytes``, ``_ratio`` in 0..1, ``_seconds``, ``_hertz``), ``_total`` only on
counters, versions on one ``*_info`` metric instead of as labels on every series (an upgrade then
churns one series per device, not all of them). Label sets are bounded: ``device`` is a per-node
index, ``tenant`` and ``model`` come from configuration, ``reason``/``kind``/``outcome`` from the
closed enumerations below.

Cardinality profiles (``npuobs exporter --profile minimal|standard|debug``): every metric says the
smallest profile that emits it and which of its labels only ``debug`` keeps (``detail_labels``);
``minimal`` and ``standard`` sum (or, for a gauge whose ``rollup`` is ``max``, take the maximum)
over those labels in the exporter. ``standard`` stays within :data:`STANDARD_SERIES_PER_DEVICE_MAX`
series per device with every series of a node counted: the latency histogram and the request
counters are kept per node, model and tenant (the SLOs exclude the canary tenant and the
noisy-neighbour spread compares tenants), not per device and tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from string import Template


class Profile(str, Enum):
    """Cardinality profiles, smallest first; each emits everything the smaller ones do."""

    MINIMAL = "minimal"  # what the generated SLO rules and device alerts read, nothing else
    STANDARD = "standard"  # + what the executive and on-call dashboards read (the default)
    DEBUG = "debug"  # + per-device/per-tenant/per-op detail and clocks, for one node's drill-down

    @property
    def rank(self) -> int:
        return list(Profile).index(self)


PROFILES: tuple[str, ...] = tuple(p.value for p in Profile)
DEFAULT_PROFILE = Profile.STANDARD
STANDARD_SERIES_PER_DEVICE_MAX = 40  # issue 18's budget: all series of a node / its devices


class MetricType(str, Enum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    INFO = "info"


# Failure modes from the NPU SRE guide; every metric says which of them (or which SLO) it serves.
FAILURE_MODES: dict[str, str] = {
    "F1": "Device offline",
    "F2": "Thermal throttle",
    "F3": "Quantization accuracy loss",
    "F4": "Memory OOM",
    "F5": "Unsupported op -> CPU fallback",
    "F6": "Driver/firmware version mismatch",
    "F7": "Noisy neighbour",
    "F8": "Firmware bug (incorrect outputs)",
    "RESET": "Device reset",
}

SLIS: dict[str, str] = {
    "availability": "successful inferences / all inferences",
    "latency": "inferences faster than the latency threshold / all inferences",
    "accuracy": "canary inferences that match the golden output / all canary inferences",
}

# Closed enumerations behind the bounded labels.
THROTTLE_REASONS = ("thermal", "power_cap", "hw_slowdown", "sw_slowdown")
RESET_REASONS = ("driver", "firmware", "thermal", "watchdog", "user")
ERROR_KINDS = ("ecc_corrected", "ecc_uncorrected", "runtime", "timeout", "pcie")
REQUEST_OUTCOMES = ("success", "error", "oom", "rejected")
OP_PLACEMENTS = ("device", "host")
# remediation (npuobs remediate): actions of the policy and what became of each decision
REMEDIATION_ACTIONS = ("drain", "undrain", "reset", "rollback", "cpu_path", "accelerator_path", "none")
REMEDIATION_RESULTS = (
    "acted", "verified", "unverified", "verify_failed", "failed", "dry_run", "duplicate", "cooldown", "no_rule",
    "manual", "refused_condition", "refused_maintenance", "refused_rate_limit", "refused_capacity", "error",
)

# Latency buckets (seconds) for the inference histogram: dense around the SLO thresholds
# (tens to hundreds of ms) so p95/p99 and "requests under threshold" are exact at those edges.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

DEVICE_LABELS = ("node", "device", "vendor")
WORKLOAD_LABELS = ("node", "device", "model", "tenant")
INFO_LABELS = (
    "node", "device", "vendor", "model", "uuid", "driver_version", "firmware_version",
    "runtime_version", "backend",
)
COLLECTOR_LABELS = ("node", "collector")


@dataclass(frozen=True)
class MetricSpec:
    """One metric: everything a generator or a test needs to know about it."""

    name: str
    type: MetricType
    unit: str  # base unit as written in the name ("celsius", "watts", ...) or "" for none
    help: str
    labels: tuple[str, ...]
    serves: tuple[str, ...]  # failure-mode ids (F1..F8, RESET), SLI names, or "self"
    grafana_unit: str = "none"  # Grafana's unit id for panels showing this metric
    profile: Profile = Profile.MINIMAL  # the smallest profile that emits this metric
    detail_labels: tuple[str, ...] = ()  # labels only the debug profile keeps (aggregated away below it)
    rollup: str = "sum"  # how a gauge is aggregated over detail_labels: "sum" or "max"

    def __post_init__(self) -> None:
        unknown = set(self.detail_labels) - set(self.labels)
        if unknown:
            raise ValueError(f"{self.name}: detail_labels {sorted(unknown)} are not among its labels")
        if self.rollup not in ("sum", "max"):
            raise ValueError(f"{self.name}: rollup must be sum or max, got {self.rollup!r}")

    def emitted_in(self, profile: Profile | str) -> bool:
        return Profile(profile).rank >= self.profile.rank

    def labels_in(self, profile: Profile | str) -> tuple[str, ...]:
        """The labels this metric's series carry under ``profile`` (schema order)."""
        if Profile(profile) is Profile.DEBUG:
            return self.labels
        return tuple(label for label in self.labels if label not in self.detail_labels)

    @property
    def sample_names(self) -> tuple[str, ...]:
        """Series names this metric produces in an exposition (histograms fan out)."""
        if self.type is MetricType.HISTOGRAM:
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _d(name: str, type_: MetricType, unit: str, help_: str, serves: tuple[str, ...],
       extra: tuple[str, ...] = (), grafana_unit: str = "none", profile: Profile = Profile.MINIMAL,
       detail: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, type_, unit, help_, DEVICE_LABELS + extra, serves, grafana_unit, profile, detail)


def _w(name: str, type_: MetricType, unit: str, help_: str, serves: tuple[str, ...],
       extra: tuple[str, ...] = (), grafana_unit: str = "none", profile: Profile = Profile.MINIMAL,
       detail: tuple[str, ...] = (), rollup: str = "sum") -> MetricSpec:
    return MetricSpec(name, type_, unit, help_, WORKLOAD_LABELS + extra, serves, grafana_unit, profile, detail,
                      rollup)


G, C, H = MetricType.GAUGE, MetricType.COUNTER, MetricType.HISTOGRAM
MIN, STD, DBG = Profile.MINIMAL, Profile.STANDARD, Profile.DEBUG

METRICS: tuple[MetricSpec, ...] = (
    # --- device: presence and identity
    _d("npu_device_up", G, "", "1 when the device answers its backend, 0 when it is known but absent or offline.",
       ("F1",)),
    _d("npu_device_healthy", G, "", "1 when the backend reports the device healthy (no fatal error state).",
       ("F1", "F8")),
    MetricSpec("npu_device_info", MetricType.INFO, "",
               "Device identity and driver/firmware/runtime versions; the value is always 1.",
               INFO_LABELS, ("F6",)),
    MetricSpec("npu_device_pod_info", MetricType.INFO, "",
               "Pod container the kubelet allocated the device to (PodResources API: device plugins, and DRA "
               "ResourceClaims named in claim, empty for device plugins); one series per container sharing "
               "the device; the value is always 1.",
               DEVICE_LABELS + ("namespace", "pod", "container", "claim"), ("F7",), profile=STD),
    # --- device: thermals and power
    _d("npu_temperature_celsius", G, "celsius", "Device (die) temperature.", ("F2",), grafana_unit="celsius"),
    _d("npu_temperature_throttle_threshold_celsius", G, "celsius",
       "Temperature at which the device starts to throttle its clocks.", ("F2",), grafana_unit="celsius"),
    _d("npu_power_watts", G, "watts", "Current board power draw.", ("F2",), grafana_unit="watt", profile=DBG),
    _d("npu_power_limit_watts", G, "watts", "Enforced board power limit.", ("F2",), grafana_unit="watt",
       profile=DBG),
    _d("npu_energy_joules_total", C, "joules", "Energy consumed by the device since the driver loaded.",
       ("availability",), grafana_unit="joule"),
    # --- device: load, memory, clocks
    _d("npu_utilization_ratio", G, "ratio", "Fraction of time the compute units were busy (0-1).",
       ("F2", "F7"), grafana_unit="percentunit"),
    _d("npu_memory_used_bytes", G, "bytes", "Device memory in use.", ("F4",), grafana_unit="bytes", profile=DBG),
    _d("npu_memory_total_bytes", G, "bytes", "Device memory capacity.", ("F4",), grafana_unit="bytes",
       profile=DBG),
    _d("npu_clock_hertz", G, "hertz", "Current compute clock.", ("F2",), grafana_unit="hertz", profile=DBG),
    _d("npu_clock_max_hertz", G, "hertz", "Maximum (unthrottled) compute clock.", ("F2",), grafana_unit="hertz",
       profile=DBG),
    _d("npu_throttled", G, "", "1 while the device runs below its maximum clock for any throttle reason.",
       ("F2",), profile=STD),
    _d("npu_throttle_reason_active", G, "", "1 while the given throttle reason is active.", ("F2",),
       extra=("reason",)),
    # --- device: op placement (CPU fallback), events
    _d("npu_ops_total", C, "", "Graph ops executed, by where they ran: on the device or on the host (CPU fallback).",
       ("F5",), extra=("placement",)),
    _d("npu_op_seconds_total", C, "seconds", "Time spent executing each op kind, by placement.", ("F5",),
       extra=("op", "placement"), grafana_unit="s", detail=("op",)),
    _d("npu_resets_total", C, "", "Device resets, by reason. Persisted by the driver across exporter restarts.",
       ("RESET",), extra=("reason",), detail=("reason",)),
    _d("npu_counters_epoch_start_timestamp_seconds", G, "seconds",
       "When the device's cumulative counters last started from zero (driver time). It changes only when "
       "the driver lost every persisted copy of its counters and started a new counter epoch; the loss "
       "also counts one driver reset.", ("RESET",), grafana_unit="dateTimeAsIso", profile=STD),
    _d("npu_errors_total", C, "", "Device errors, by kind (ECC, runtime, timeout, PCIe).", ("F1", "F8"),
       extra=("kind",)),
    _d("npu_oom_events_total", C, "", "Device memory allocation failures (out of memory).", ("F4",)),
    # --- runtime (inference server) metrics
    _w("npu_inference_latency_seconds", H, "seconds",
       "End-to-end inference latency, queue wait included.", ("latency", "F2", "F5", "F7"), grafana_unit="s",
       detail=("device",)),
    _w("npu_inference_requests_total", C, "", "Inference requests, by outcome.", ("availability", "F1", "F4"),
       extra=("outcome",), detail=("device",)),
    _w("npu_inference_queue_length", G, "", "Requests waiting in the runtime queue.", ("latency", "F7"),
       profile=STD, detail=("tenant",)),
    _w("npu_model_load_seconds", G, "seconds", "Duration of the most recent model load onto the device.",
       ("latency",), grafana_unit="s", profile=STD, detail=("device", "tenant"), rollup="max"),
    _w("npu_model_cold_starts_total", C, "", "Requests that had to wait for a model load (cold starts).",
       ("latency",), profile=STD, detail=("device", "tenant")),
    _w("npu_accuracy_delta_ratio", G, "ratio",
       "FP32-reference accuracy minus on-device accuracy on the canary set (quantization error, 0-1).",
       ("F3", "accuracy"), grafana_unit="percentunit", detail=("tenant",), rollup="max"),
    _w("npu_golden_checks_total", C, "", "Golden-output canary inferences run.", ("accuracy", "F3", "F8"),
       detail=("tenant",)),
    _w("npu_golden_mismatches_total", C, "",
       "Canary inferences whose output differed from the golden output (incorrect outputs).",
       ("accuracy", "F3", "F8"), detail=("tenant",)),
    # --- exporter self-health (node_exporter style)
    MetricSpec("npuobs_collector_success", G, "", "1 when the collector's last sample succeeded.",
               COLLECTOR_LABELS, ("self",)),
    MetricSpec("npuobs_collector_duration_seconds", G, "seconds", "Duration of the collector's last sample.",
               COLLECTOR_LABELS, ("self",), "s", STD),
    MetricSpec("npuobs_collector_last_success_timestamp_seconds", G, "seconds",
               "Unix time of the collector's last successful sample.", COLLECTOR_LABELS, ("self",), "dateTimeAsIso",
               STD),
    MetricSpec("npuobs_collector_errors_total", C, "", "Failed samples of the collector.", COLLECTOR_LABELS,
               ("self",), profile=STD),
    MetricSpec("npuobs_exporter_build_info", MetricType.INFO, "", "Exporter version; the value is always 1.",
               ("node", "version"), ("self",)),
    # --- remediation controller (npuobs remediate)
    MetricSpec("npuobs_remediation_actions_total", C, "",
               "Remediation decisions, by policy action and result (acted, verified, dry_run, refused_*, ...).",
               ("action", "result"), ("self",)),
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}


@dataclass(frozen=True)
class DerivedSeries:
    """A series computed from the metrics above by a recording rule: what alerts and panels read.

    Declared here, next to its inputs, so one module answers "where does X come from": the alert
    generator writes the recording rule from ``expr`` (``npuobs.alerting.device_alerts``), and the
    dashboards filter it by exactly ``labels`` (``npuobs.dashboards.queries``). In ``expr``, ``$by``
    stands for the ``by`` labels and ``$canary_tenant`` for that threshold (``npuobs.thresholds``);
    with ``variants``, one rule per value of ``variant_label`` is written, ``$variant`` its value.
    """

    name: str
    by: tuple[str, ...]  # the labels the rule's aggregation keeps
    expr: str
    serves: tuple[str, ...]
    help: str
    variant_label: str = ""
    variants: tuple[str, ...] = ()
    fleet: bool = False  # a fleet-level pre-aggregation the dashboards read: its own rule group

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels of the recorded series: the ``by`` labels plus the variant label, if any."""
        return self.by + ((self.variant_label,) if self.variant_label else ())

    def render(self, canary_tenant: str) -> tuple[tuple[str, dict[str, str]], ...]:
        """Each rule as (PromQL, extra static labels)."""
        values = {"by": ", ".join(self.by), "canary_tenant": canary_tenant}
        if not self.variants:
            return ((Template(self.expr).substitute(values), {}),)
        return tuple((Template(self.expr).substitute(values, variant=v), {self.variant_label: v})
                     for v in self.variants)


CPU_FALLBACK_RATIO = DerivedSeries(
    "npuobs:npu_cpu_fallback:ratio_rate5m", DEVICE_LABELS,
    # a device that never fell back may not expose the host series: read it as 0
    '(\n  sum by ($by) (rate(npu_ops_total{placement="host"}[5m]))\n'
    "  or\n  sum by ($by) (rate(npu_ops_total[5m])) * 0\n)\n/\n"
    "(\n  sum by ($by) (rate(npu_ops_total[5m])) > 0\n)",
    ("F5",), "Share of ops run on the host (CPU fallback) over 5 minutes, per device (0-1).")
LATENCY_P99 = DerivedSeries(
    "npuobs:npu_inference_latency_seconds:p99_rate5m", WORKLOAD_LABELS,
    # no traffic -> no quantile (histogram_quantile over all-zero buckets is NaN)
    "histogram_quantile(\n  0.99,\n  sum by ($by, le) (rate(npu_inference_latency_seconds_bucket[5m]))\n"
    "  and on ($by)\n  (sum by ($by) (rate(npu_inference_latency_seconds_count[5m])) > 0)\n)",
    ("latency", "F2", "F7"), "p99 inference latency over 5 minutes, per device, model and tenant (seconds).")
TENANT_P99_SPREAD = DerivedSeries(
    "npuobs:npu_tenant_latency_p99_spread:ratio", ("node", "device", "model"),
    f'max by ($by) ({LATENCY_P99.name}{{tenant!="$canary_tenant"}})\n/\n'
    f'(\n  min by ($by) ({LATENCY_P99.name}{{tenant!="$canary_tenant"}}) > 0\n)',
    ("F7",), "Slowest over fastest tenant's p99 on one device and model (canary excluded): a noisy neighbour.")
DEVICE_ERROR_RATE = DerivedSeries(
    "npuobs:npu_device_errors:rate5m", DEVICE_LABELS,
    'sum by ($by) (rate(npu_errors_total{kind!="ecc_corrected"}[5m]))',
    ("F1", "F8"), "Device errors per second over 5 minutes, corrected ECC excluded.")
DISTINCT_VERSIONS = DerivedSeries(
    "npuobs:npu_distinct_versions:count", ("vendor", "model"),
    "count by ($by) (count by ($by, ${variant}_version) (npu_device_info))",
    ("F6",), "Distinct driver/firmware/runtime versions per vendor and hardware model (> 1: version skew).",
    variant_label="component", variants=("driver", "firmware", "runtime"))

# Per request, not per second: a reset's burst of ~10 failed queued requests is noise at any load. The
# standard profile counts requests per node (the device label is debug-only), so a device's requests are its
# node's over the node's devices (the load balancer spreads them evenly); the debug profile gives the same.
DEVICE_ERRORS_PER_REQUEST = DerivedSeries(
    "npuobs:npu_device_errors_per_request:ratio_rate5m", DEVICE_LABELS,
    'sum by ($by) (rate(npu_errors_total{kind!="ecc_corrected"}[5m]))\n/ on (node) group_left ()\n'
    "(\n  sum by (node) (rate(npu_inference_requests_total[5m]))\n  / count by (node) (npu_device_up)\n  > 0\n)",
    ("F1", "F8"), "Device errors (corrected ECC excluded) per inference request over 5 minutes (0-1).")
# Mismatches keep the device in every profile, checks only in debug: every device of a node runs the same
# canary at the same cadence, so a device's checks are its node's over the node's devices serving the model.
GOLDEN_MISMATCH_RATIO = DerivedSeries(
    "npuobs:npu_golden_mismatches_per_check:ratio_rate5m", ("node", "device", "model"),
    "sum by ($by) (increase(npu_golden_mismatches_total[5m]))\n/ on (node, model) group_left ()\n"
    "(\n  sum by (node, model) (increase(npu_golden_checks_total[5m]))\n"
    "  / count by (node, model) (group by (node, device, model) (npu_golden_mismatches_total))\n  > 0\n)",
    ("F8", "F3", "accuracy"), "Golden-output canary mismatches per check over 5 minutes (0-1).")

# --- fleet-level pre-aggregations: what the executive and on-call dashboards' fleet panels read instead of
# aggregating every node's raw series per query (kubernetes-mixin's dashboards read its recording rules the same
# way). Each keeps ``cluster``, so the rule works unchanged in one Prometheus (no cluster label: empty), in a
# cluster's Prometheus and in a global vmalert over every cluster's raw series. A recording cannot use Grafana's
# $__rate_interval; AGGREGATION_WINDOW is what that resolves to at the default 15 s scrape interval (four
# scrapes, so rate() always has two samples even with one scrape missed). Level prefixes name the output
# (``npuobs_device:``, ``npuobs_node:``, ``npuobs_cluster:``), Prometheus' ``level:metric:operations``.
AGGREGATION_WINDOW = "1m"
NODE_LATENCY_BUCKETS = DerivedSeries(
    f"npuobs_node:npu_inference_latency_seconds_bucket:rate{AGGREGATION_WINDOW}", ("cluster", "node", "model"),
    "sum by ($by, le) (\n  rate(npu_inference_latency_seconds_bucket{tenant!=\"$canary_tenant\"}"
    f"[{AGGREGATION_WINDOW}])\n)",
    ("latency",), f"Latency histogram buckets of user traffic (canary excluded) per node and model, per second "
    f"over {AGGREGATION_WINDOW}: histogram_quantile input for panels that filter by node.", fleet=True)
CLUSTER_LATENCY_BUCKETS = DerivedSeries(
    f"npuobs_cluster:npu_inference_latency_seconds_bucket:rate{AGGREGATION_WINDOW}", ("cluster", "model"),
    f"sum by ($by, le) ({NODE_LATENCY_BUCKETS.name})",
    ("latency",), f"Latency histogram buckets of user traffic (canary excluded) per cluster and model, per second "
    f"over {AGGREGATION_WINDOW}: histogram_quantile input for fleet-wide panels.", fleet=True)
# Per cluster the tenant label costs nothing (a few series): panels pick user traffic (canary excluded) or
# every inference (energy and cost per inference: devices spend energy on canary checks too).
CLUSTER_REQUESTS = DerivedSeries(
    f"npuobs_cluster:npu_inference_requests:rate{AGGREGATION_WINDOW}", ("cluster", "model", "tenant", "outcome"),
    f"sum by ($by) (rate(npu_inference_requests_total[{AGGREGATION_WINDOW}]))",
    ("availability",), f"Inference requests per second over {AGGREGATION_WINDOW} per cluster, served model, tenant "
    "and outcome.", fleet=True)
# "Serving a model" = the runtime reports a queue for it on the device (the standard profile keeps the queue
# gauge per device and model), as the executive's model filter always meant. A device serving two models
# counts under both.
_SERVING = "group by (cluster, node, device, model) (npu_inference_queue_length)"
CLUSTER_SERVING_ENERGY = DerivedSeries(
    f"npuobs_cluster:npu_serving_energy_joules:rate{AGGREGATION_WINDOW}", ("cluster", "model"),
    f"sum by ($by) (\n  rate(npu_energy_joules_total[{AGGREGATION_WINDOW}])\n"
    f"  * on (cluster, node, device) group_right ()\n  {_SERVING}\n)",
    ("availability",), f"Board power (joules per second over {AGGREGATION_WINDOW}) of the devices serving each "
    "model, per cluster: energy per inference and cost per inference.", fleet=True)
CLUSTER_SERVING_DEVICES = DerivedSeries(
    "npuobs_cluster:npu_serving_devices:count", ("cluster", "model"),
    f"count by ($by) (\n  {_SERVING}\n  and on (cluster, node, device)\n  npu_device_up\n)",
    ("availability",), "Devices (up or not, idle included) serving each model, per cluster: the device-hours "
    "of cost per inference.", fleet=True)
DEVICE_QUEUE_LENGTH = DerivedSeries(
    "npuobs_device:npu_inference_queue_length:sum", ("cluster", "node", "device", "vendor", "model"),
    "sum by ($by) (\n  npu_inference_queue_length\n  * on (cluster, node, device) group_left (vendor)\n"
    "  group by (cluster, node, device, vendor) (npu_device_up)\n)",
    ("latency", "F7"), "Requests waiting in each device's runtime queue per served model, with the device's "
    "vendor: the on-call queue panel filters by vendor without a join.", fleet=True)

DERIVED: tuple[DerivedSeries, ...] = (CPU_FALLBACK_RATIO, LATENCY_P99, TENANT_P99_SPREAD, DEVICE_ERROR_RATE,
                                      DISTINCT_VERSIONS, DEVICE_ERRORS_PER_REQUEST, GOLDEN_MISMATCH_RATIO,
                                      NODE_LATENCY_BUCKETS, CLUSTER_LATENCY_BUCKETS, CLUSTER_REQUESTS,
                                      CLUSTER_SERVING_ENERGY, CLUSTER_SERVING_DEVICES, DEVICE_QUEUE_LENGTH)
DERIVED_BY_NAME: dict[str, DerivedSeries] = {d.name: d for d in DERIVED}


def metric(name: str) -> MetricSpec:
    """Look a metric up by name; a KeyError here means a caller named a metric the schema lacks."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not in the npuobs schema (npuobs/schema.py)") from None


def all_sample_names() -> frozenset[str]:
    """Every series name an exposition of the schema can contain (histogram fan-out included)."""
    return frozenset(s for m in METRICS for s in m.sample_names)


def resolve_sample_name(series: str) -> MetricSpec | None:
    """Map a series name (``x_bucket``, ``x_count`` ...) back to its metric, or None if unknown."""
    if series in BY_NAME:
        return BY_NAME[series]
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix):
            base = BY_NAME.get(series[: -len(suffix)])
            if base is not None and base.type is MetricType.HISTOGRAM:
                return base
    return None
