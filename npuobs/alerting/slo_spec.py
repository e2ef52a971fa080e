"""SLO spec files: loading and validation with errors that name the file and the key.

Two input forms:

* the npuobs form (``version: npuobs/v1``, see ``alerts/slo.yaml``): per SLO a name, an SLI
  category (availability | latency | accuracy), the served model, objective (percent) and period.
  Built-in SLIs know their queries from the schema; ``queries`` overrides them with
  ``errors``/``good`` + ``total`` PromQL templates where ``{{window}}`` stands for the range.
* OpenSLO v1 documents (``apiVersion: openslo/v1``, ``kind: SLO``) with an inline
  ``ratioMetric`` over Prometheus counter selectors.

A ``fleet`` section (npuobs form only) carries device-alert settings that are deployment policy
rather than thresholds: the exporter's scrape job and the allowed driver/firmware/runtime versions.
A ``thresholds`` section overrides any value of :class:`npuobs.thresholds.Thresholds` (the numbers
alerts and dashboards share); an unknown key or a value of the wrong type is an error naming it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.durations import parse_duration
from npuobs.errors import UsageError
from npuobs.thresholds import DEFAULT as THRESHOLDS
from npuobs.thresholds import Thresholds

SPEC_VERSION = "npuobs/v1"
WINDOW = "{{window}}"
REGROUPABLE = "sum(rate("  # how the SLI queries aggregate; regrouped per device for breakdowns
VERSION_COMPONENTS = ("driver_version", "firmware_version", "runtime_version")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_LABEL_VALUE_RE = re.compile(r'^[^"\\\n]+$')
_SELECTOR_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?")
_RESERVED_LABELS = {*cv.SLO_LABELS, "severity", "failure_mode", "alertname"}


class SpecError(ValueError, UsageError):
    """An invalid spec; the message starts with ``file: key:`` so the fix is one look away."""


@dataclass(frozen=True)
class SLO:
    """One SLO, with its SLI already turned into PromQL templates (``{{window}}`` placeholders)."""

    name: str
    sli: str  # category: picks the alert name and runbook
    objective: float  # percent, 0 < objective < 100
    period: str
    total_query: str
    errors_query: str | None = None  # exactly one of errors_query / good_query is set
    good_query: str | None = None
    model: str = ""
    description: str = ""
    absent_selector: str | None = None  # a selector that must exist while the SLI is served

    @property
    def error_budget(self) -> float:
        """Allowed error ratio, rounded so 99.9 % prints as 0.001, not 0.0010000000000000009."""
        return round(1 - self.objective / 100, 12)

    def error_ratio_expr(self, window: str) -> str:
        """PromQL for the SLI error ratio over ``window``; no result (not NaN/Inf) without traffic."""
        total = self.total_query.replace(WINDOW, window)
        if self.errors_query is not None:
            return f"(\n  {self.errors_query.replace(WINDOW, window)}\n)\n/\n(\n  {total} > 0\n)"
        assert self.good_query is not None
        good = self.good_query.replace(WINDOW, window)
        return f"1 - (\n  (\n    {good}\n  )\n  /\n  (\n    {total} > 0\n  )\n)"

    def bad_by_device(self, window: str, fn: str = "rate") -> str | None:
        """PromQL for the SLI's bad events per device over ``window`` (``fn``: ``rate`` per second,
        ``increase`` as counts), or None when the SLI queries are not ``sum(rate(...))`` and cannot be
        regrouped. Answers "whose budget is this" for the burn alerts and ``npuobs slo report``."""
        queries = [q for q in (self.total_query, self.errors_query, self.good_query) if q is not None]
        if not all(REGROUPABLE in q for q in queries):
            return None

        def regroup(query: str) -> str:
            return query.replace(WINDOW, window).replace(REGROUPABLE, f"sum by (node, device) ({fn}(")

        if self.errors_query is not None:
            return regroup(self.errors_query)
        assert self.good_query is not None
        total = regroup(self.total_query)
        return f"{total}\n-\n(\n  {regroup(self.good_query)}\n  or\n  {total} * 0\n)"


@dataclass(frozen=True)
class FleetPolicy:
    exporter_job: str = cv.DEFAULT_EXPORTER_JOB
    # vendor -> component (driver_version|firmware_version|runtime_version) -> allowed versions
    allowed_versions: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    service: str
    slos: tuple[SLO, ...]
    labels: dict[str, str] = field(default_factory=dict)
    fleet: FleetPolicy = field(default_factory=FleetPolicy)
    source: str = ""
    thresholds: Thresholds = THRESHOLDS  # the spec's ``thresholds:`` over the defaults


def load_spec(path: Path, thresholds: Thresholds = THRESHOLDS) -> Spec:
    """Read and validate a spec file (npuobs form, or one or more OpenSLO v1 SLO documents)."""
    where = str(path)
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d is not None]
    except OSError as exc:
        raise SpecError(f"{where}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: not valid YAML: {exc}") from None
    if not docs:
        raise SpecError(f"{where}: empty file")
    if all(isinstance(d, dict) and str(d.get("apiVersion", "")).startswith("openslo/") for d in docs):
        return _load_openslo(docs, where)
    if len(docs) != 1:
        raise SpecError(f"{where}: expected one npuobs spec document, found {len(docs)}")
    return parse_spec(docs[0], where, thresholds)


def parse_spec(doc: Any, where: str, thresholds: Thresholds = THRESHOLDS) -> Spec:
    """Validate an npuobs-form spec already parsed from YAML (its ``thresholds:`` over ``thresholds``)."""
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: top level must be a mapping")
    _no_unknown(doc, {"version", "service", "labels", "fleet", "slos", "thresholds"}, where, "")
    if doc.get("version") != SPEC_VERSION:
        raise SpecError(f"{where}: version: must be {SPEC_VERSION!r}, got {doc.get('version')!r}")
    service = _name(doc.get("service"), where, "service")
    thresholds = parse_thresholds(doc.get("thresholds", {}), where, thresholds)
    labels = _labels(doc.get("labels", {}), where, "labels")
    slos_doc = doc.get("slos")
    if not isinstance(slos_doc, list) or not slos_doc:
        raise SpecError(f"{where}: slos: must be a non-empty list")
    slos = tuple(_slo(s, where, f"slos[{i}]", thresholds) for i, s in enumerate(slos_doc))
    _unique(slos, where)
    return Spec(service, slos, labels, _fleet(doc.get("fleet", {}), where), where, thresholds)


def parse_thresholds(doc: Any, where: str, base: Thresholds = THRESHOLDS) -> Thresholds:
    """``base`` with the values of a ``thresholds:`` mapping, each checked against the field's type.

    Numbers must be numbers (not booleans or strings), a threshold whose default is a duration
    (``throttle_for: 5m``, lookbacks) a Prometheus duration, any other string a plain label value, and
    ``latency_slo_seconds`` a bucket edge of the latency histogram (the SLI counts ``le`` buckets).
    """
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: thresholds: must be a mapping of threshold name to value")
    fields = {f.name: f for f in dataclasses.fields(Thresholds)}
    _no_unknown(doc, set(fields), where, "thresholds")
    values: dict[str, Any] = {}
    for name, value in doc.items():
        key = f"thresholds.{name}"
        if fields[name].type in ("float", float):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise SpecError(f"{where}: {key}: must be a non-negative number, got {value!r}")
            value = float(value)
        elif not isinstance(value, str) or not value:
            raise SpecError(f"{where}: {key}: must be a non-empty string, got {value!r}")
        elif _is_duration(fields[name].default):
            try:
                parse_duration(value)
            except ValueError as exc:
                raise SpecError(f"{where}: {key}: {exc}") from None
        elif not _LABEL_VALUE_RE.match(value):
            raise SpecError(f"{where}: {key}: must be a label value without quotes or backslashes, got {value!r}")
        values[name] = value
    if "latency_slo_seconds" in values and values["latency_slo_seconds"] not in schema.LATENCY_BUCKETS:
        raise SpecError(f"{where}: thresholds.latency_slo_seconds: {values['latency_slo_seconds']!r} is not a bucket "
                        f"edge of npu_inference_latency_seconds ({', '.join(map(str, schema.LATENCY_BUCKETS))})")
    return dataclasses.replace(base, **values)


def _slo(doc: Any, where: str, key: str, thresholds: Thresholds) -> SLO:
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: {key}: must be a mapping")
    _no_unknown(doc, {"name", "sli", "model", "objective", "period", "description", "threshold_seconds",
                      "queries"}, where, key)
    name = _name(doc.get("name"), where, f"{key}.name")
    sli = doc.get("sli")
    if not isinstance(sli, str) or sli not in cv.SLO_BURN_ALERTS:
        raise SpecError(f"{where}: {key}.sli: must be one of {', '.join(cv.SLO_BURN_ALERTS)}, got {sli!r}")
    objective = _objective(doc.get("objective"), where, f"{key}.objective")
    period = _period(doc.get("period", "30d"), where, f"{key}.period")
    model = doc.get("model", "")
    if not isinstance(model, str):
        raise SpecError(f"{where}: {key}.model: must be a string")
    description = str(doc.get("description", ""))
    if "queries" in doc:
        if "threshold_seconds" in doc:
            raise SpecError(f"{where}: {key}.threshold_seconds: only applies to the built-in latency SLI")
        queries = _queries(doc["queries"], where, f"{key}.queries")
        return SLO(name, sli, objective, period, model=model, description=description, **queries)
    if not model:
        raise SpecError(f"{where}: {key}.model: required for a built-in SLI (the served model's name)")
    threshold = doc.get("threshold_seconds", thresholds.latency_slo_seconds)
    if "threshold_seconds" in doc and sli != "latency":
        raise SpecError(f"{where}: {key}.threshold_seconds: only applies to sli: latency")
    if sli == "latency" and threshold not in schema.LATENCY_BUCKETS:
        raise SpecError(f"{where}: {key}.threshold_seconds: {threshold!r} is not a bucket edge of "
                        f"npu_inference_latency_seconds ({', '.join(map(str, schema.LATENCY_BUCKETS))})")
    return builtin_slo(name, sli, model, objective, period, description, float(threshold), thresholds)


def builtin_slo(name: str, sli: str, model: str, objective: float, period: str, description: str,
                latency_threshold: float, thresholds: Thresholds = THRESHOLDS) -> SLO:
    """An SLO over the schema's runtime metrics for one served model.

    Error sums get ``or vector(0)``: an exporter that has never seen an error may not expose the
    error series at all, and "no error series" must read as 0 errors, not as "no data".
    Canary traffic is excluded from availability and latency (it is synthetic, and measured by the
    accuracy SLI instead).
    """
    model_sel = f'model="{model}"'
    users = f'{model_sel},tenant!="{thresholds.canary_tenant}"'
    if sli == "availability":
        metric = schema.metric("npu_inference_requests_total").name
        return SLO(name, sli, objective, period, model=model, description=description,
                   errors_query=f'(sum(rate({metric}{{{users},outcome!="success"}}[{WINDOW}])) or vector(0))',
                   total_query=f"sum(rate({metric}{{{users}}}[{WINDOW}]))",
                   absent_selector=f"{metric}{{{model_sel}}}")
    if sli == "latency":
        hist = schema.metric("npu_inference_latency_seconds").name
        le = floatToGoString(latency_threshold)
        return SLO(name, sli, objective, period, model=model, description=description,
                   good_query=f'sum(rate({hist}_bucket{{{users},le="{le}"}}[{WINDOW}]))',
                   total_query=f"sum(rate({hist}_count{{{users}}}[{WINDOW}]))",
                   absent_selector=f"{hist}_count{{{model_sel}}}")
    checks = schema.metric("npu_golden_checks_total").name
    mismatches = schema.metric("npu_golden_mismatches_total").name
    return SLO(name, sli, objective, period, model=model, description=description,
               errors_query=f"(sum(rate({mismatches}{{{model_sel}}}[{WINDOW}])) or vector(0))",
               total_query=f"sum(rate({checks}{{{model_sel}}}[{WINDOW}]))",
               absent_selector=f"{checks}{{{model_sel}}}")


def _queries(doc: Any, where: str, key: str) -> dict[str, str]:
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: {key}: must be a mapping with total and errors or good")
    _no_unknown(doc, {"errors", "good", "total"}, where, key)
    if ("errors" in doc) == ("good" in doc):
        raise SpecError(f"{where}: {key}: give exactly one of errors or good (plus total)")
    out = {}
    for part in ("errors", "good", "total"):
        if part not in doc:
            continue
        query = doc[part]
        if not isinstance(query, str) or WINDOW not in query:
            raise SpecError(f"{where}: {key}.{part}: must be a PromQL string using {WINDOW} as the range")
        out[f"{part}_query"] = query.strip()
    if "total_query" not in out:
        raise SpecError(f"{where}: {key}.total: required")
    return out


def _fleet(doc: Any, where: str) -> FleetPolicy:
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: fleet: must be a mapping")
    _no_unknown(doc, {"exporter_job", "allowed_versions"}, where, "fleet")
    job = doc.get("exporter_job", cv.DEFAULT_EXPORTER_JOB)
    if not isinstance(job, str) or not job or '"' in job:
        raise SpecError(f"{where}: fleet.exporter_job: must be a non-empty string without quotes")
    allowed_doc = doc.get("allowed_versions", {})
    if not isinstance(allowed_doc, dict):
        raise SpecError(f"{where}: fleet.allowed_versions: must map vendor -> component -> [versions]")
    allowed: dict[str, dict[str, tuple[str, ...]]] = {}
    for vendor, comps in allowed_doc.items():
        vkey = f"fleet.allowed_versions.{vendor}"
        if not isinstance(comps, dict):
            raise SpecError(f"{where}: {vkey}: must map component -> [versions]")
        _no_unknown(comps, set(VERSION_COMPONENTS), where, vkey)
        allowed[str(vendor)] = {}
        for comp, versions in comps.items():
            if not isinstance(versions, list) or not versions or not all(isinstance(v, str) and v
                                                                        for v in versions):
                raise SpecError(f"{where}: {vkey}.{comp}: must be a non-empty list of version strings")
            allowed[str(vendor)][comp] = tuple(versions)
    return FleetPolicy(job, allowed)


def _load_openslo(docs: list[dict[str, Any]], where: str) -> Spec:
    """OpenSLO v1 ``kind: SLO`` documents with an inline ratioMetric over Prometheus counters.

    The npuobs SLI category (alert name, runbook) comes from the annotation ``npuobs.io/sli``
    (default availability), the served model from ``npuobs.io/model``.
    """
    slos = []
    services = set()
    for i, doc in enumerate(docs):
        key = f"document[{i}]"
        if doc.get("apiVersion") != "openslo/v1" or doc.get("kind") != "SLO":
            raise SpecError(f"{where}: {key}: only apiVersion openslo/v1, kind SLO is supported")
        meta = _mapping(doc.get("metadata"), where, f"{key}.metadata")
        spec = _mapping(doc.get("spec"), where, f"{key}.spec")
        name = _name(meta.get("name"), where, f"{key}.metadata.name")
        annotations = _mapping(meta.get("annotations"), where, f"{key}.metadata.annotations")
        sli = annotations.get("npuobs.io/sli", "availability")
        if not isinstance(sli, str) or sli not in cv.SLO_BURN_ALERTS:
            raise SpecError(f"{where}: {key}.metadata.annotations.npuobs.io/sli: must be one of "
                            f"{', '.join(cv.SLO_BURN_ALERTS)}, got {sli!r}")
        services.add(_name(spec.get("service"), where, f"{key}.spec.service"))
        objectives = spec.get("objectives")
        if (not isinstance(objectives, list) or len(objectives) != 1 or not isinstance(objectives[0], dict)
                or "target" not in objectives[0]):
            raise SpecError(f"{where}: {key}.spec.objectives: exactly one objective with a target is "
                            "supported")
        target = objectives[0]["target"]
        if not isinstance(target, (int, float)) or isinstance(target, bool):
            raise SpecError(f"{where}: {key}.spec.objectives[0].target: must be a number in (0, 1)")
        objective = _objective(target * 100, where, f"{key}.spec.objectives[0].target")
        windows = spec.get("timeWindow") or [{}]
        if not isinstance(windows, list):
            raise SpecError(f"{where}: {key}.spec.timeWindow: must be a list")
        window = _mapping(windows[0], where, f"{key}.spec.timeWindow[0]")
        period = _period(window.get("duration", "30d"), where, f"{key}.spec.timeWindow[0].duration")
        indicator = _mapping(spec.get("indicator"), where, f"{key}.spec.indicator")
        ratio = _mapping(indicator.get("spec"), where, f"{key}.spec.indicator.spec").get("ratioMetric")
        if not isinstance(ratio, dict):
            raise SpecError(f"{where}: {key}.spec.indicator.spec.ratioMetric: required (inline ratio SLI)")
        if ratio.get("counter") is not True:
            raise SpecError(f"{where}: {key}.spec.indicator.spec.ratioMetric.counter: only counters "
                            "(counter: true) are supported")
        parts = {}
        for part in ("good", "bad", "total"):
            if part in ratio:
                selector = _openslo_query(ratio[part], where, f"{key}.spec.indicator.spec.ratioMetric.{part}")
                parts[part] = f"sum(rate({selector}[{WINDOW}]))"
        if "total" not in parts or ("good" in parts) == ("bad" in parts):
            raise SpecError(f"{where}: {key}.spec.indicator.spec.ratioMetric: needs total and one of "
                            "good/bad")
        slos.append(SLO(name, sli, objective, period, total_query=parts["total"],
                        errors_query=f"({parts['bad']} or vector(0))" if "bad" in parts else None,
                        good_query=parts.get("good"), model=str(annotations.get("npuobs.io/model", "")),
                        description=str(spec.get("description", ""))))
    if len(services) != 1:
        raise SpecError(f"{where}: all OpenSLO documents must share one spec.service, got {sorted(services)}")
    _unique(slos, where)
    return Spec(services.pop(), tuple(slos), source=where)


def _openslo_query(doc: Any, where: str, key: str) -> str:
    source = _mapping(_mapping(doc, where, key).get("metricSource"), where, f"{key}.metricSource")
    if source.get("type") != "Prometheus":
        raise SpecError(f"{where}: {key}.metricSource.type: only Prometheus is supported")
    query = _mapping(source.get("spec"), where, f"{key}.metricSource.spec").get("query")
    if not isinstance(query, str) or not _SELECTOR_RE.fullmatch(query.strip()):
        raise SpecError(f"{where}: {key}.metricSource.spec.query: must be a counter selector like "
                        f'npu_inference_requests_total{{outcome="success"}}')
    return query.strip()


def _mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    """``value`` as a mapping (absent = empty); anything else is a SpecError naming the key."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: {key}: must be a mapping, got {type(value).__name__}")
    return value


def _objective(value: Any, where: str, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SpecError(f"{where}: {key}: must be a number (percent), got {value!r}")
    if not 0 < value < 100:
        raise SpecError(f"{where}: {key}: must be > 0 and < 100 percent (100 % leaves no error budget "
                        f"and makes every burn rate infinite), got {value}")
    return float(value)


def _period(value: Any, where: str, key: str) -> str:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise SpecError(f"{where}: {key}: {exc}") from None
    if seconds < 86400:
        raise SpecError(f"{where}: {key}: must be at least 1d, got {value!r}")
    return str(value)


def _name(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise SpecError(f"{where}: {key}: must be lower-case letters, digits and dashes, got {value!r}")
    return value


def _labels(value: Any, where: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: {key}: must be a mapping of label name to value")
    for name, label_value in value.items():
        if not isinstance(name, str) or not _LABEL_RE.match(name) or name in _RESERVED_LABELS:
            raise SpecError(f"{where}: {key}.{name}: not a usable label name "
                            f"(reserved: {', '.join(sorted(_RESERVED_LABELS))})")
        if not isinstance(label_value, str):
            raise SpecError(f"{where}: {key}.{name}: value must be a string")
    return dict(value)


def _no_unknown(doc: dict[str, Any], allowed: set[str], where: str, key: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        prefix = f"{key}." if key else ""
        raise SpecError(f"{where}: {prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _unique(slos: tuple[SLO, ...] | list[SLO], where: str) -> None:
    seen: set[str] = set()
    for slo in slos:
        if slo.name in seen:
            raise SpecError(f"{where}: slos: duplicate SLO name {slo.name!r}")
        seen.add(slo.name)


def _is_duration(value: Any) -> bool:
    try:
        parse_duration(value)
    except (ValueError, TypeError):
        return False
    return True
