"""Kubernetes deployment: the rendered manifests validate offline against the Kubernetes OpenAPI
schemas (kubernetes-validate --strict), the Prometheus Operator objects against a structural
schema and promtool, and the security posture holds for the defaults and for every documented
escape hatch (privileged backend, root for the pod-resources socket)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from npuobs.alerting.slo_spec import load_spec
from npuobs.cli.main import build_parser
from npuobs.deploy import chart, sync
from npuobs.devices import registry

pytestmark = pytest.mark.integration  # real validators (kubernetes-validate, promtool)

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / sync.CHART_DIR
MANIFESTS = REPO / sync.MANIFESTS_DIR
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEFAULT_RELEASE = chart.Release()
# The chart's minimum (Chart.yaml kubeVersion), a current release, and the newest bundled schema.
K8S_VERSIONS = ("1.25.0", "1.33.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")
# Each vendor's device-plugin resource (docs/deploy.md).
RESOURCE_NAMES = {
    "furiosa": "furiosa.ai/rngd", "rebellions": "rebellions.ai/ATOM", "neuron": "aws.amazon.com/neuron",
    "gaudi": "habana.ai/gaudi", "amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu", "tpu": "google.com/tpu",
}

# Structural subsets of the Prometheus Operator v1 CRD schemas (monitoring.coreos.com), for the fields
# the chart uses; unknown fields are rejected so a typo cannot pass. kubernetes-validate bundles no CRDs.
_DURATION = {"type": "string",
             "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_SECRET_KEY = {"type": "object", "required": ["name", "key"], "additionalProperties": False,
               "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}}}
_SECRET_OR_CM = {"type": "object", "additionalProperties": False,
                 "properties": {"secret": _SECRET_KEY, "configMap": _SECRET_KEY}}
_METADATA = {"type": "object", "required": ["name", "namespace"],
             "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _STR_MAP}}
OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
            "metadata": _METADATA,
            "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                     "properties": {
                         "jobLabel": {"type": "string"},
                         "selector": {"type": "object", "additionalProperties": False,
                                      "properties": {"matchLabels": _STR_MAP}},
                         "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                             "any": {"type": "boolean"},
                             "matchNames": {"type": "array", "items": {"type": "string"}}}},
                         "endpoints": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False, "required": ["port"],
                             "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                            "interval": _DURATION, "scrapeTimeout": _DURATION,
                                            "scheme": {"enum": ["http", "https"]},
                                            "tlsConfig": {"type": "object", "additionalProperties": False,
                                                          "properties": {"ca": _SECRET_OR_CM, "cert": _SECRET_OR_CM,
                                                                         "keySecret": _SECRET_KEY,
                                                                         "serverName": {"type": "string"},
                                                                         "insecureSkipVerify": {"type": "boolean"}}},
                                            "basicAuth": {"type": "object", "additionalProperties": False,
                                                          "properties": {"username": _SECRET_KEY,
                                                                         "password": _SECRET_KEY}},
                                            # RelabelConfig (globalTier.cluster adds the cluster label)
                                            "relabelings": {"type": "array", "items": {
                                                "type": "object", "additionalProperties": False,
                                                "properties": {
                                                    "action": {"type": "string"}, "regex": {"type": "string"},
                                                    "replacement": {"type": "string"},
                                                    "separator": {"type": "string"},
                                                    "sourceLabels": {"type": "array", "items": {"type": "string"}},
                                                    "targetLabel": {"type": "string"}}}}}}}}}}},
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
                "groups": {"type": "array", "items": {
                    "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1}, "interval": _DURATION,
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["expr"], "additionalProperties": False,
                            "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                            "properties": {"record": {"type": "string"}, "alert": {"type": "string"},
                                           "expr": {"type": "string", "minLength": 1}, "for": _DURATION,
                                           "keep_firing_for": _DURATION, "labels": _STR_MAP,
                                           "annotations": _STR_MAP}}}}}}}}}},
}


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    """What `kubectl apply -k deploy/manifests` applies: the kustomization's resources, in order."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    return [(name, yaml.safe_load((MANIFESTS / name).read_text())) for name in kustomization["resources"]]


def _validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:
            jsonschema.validate(obj, OPERATOR_SCHEMAS[obj["kind"]])
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def _daemonsets(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["labels"]["npuobs.io/accelerator"]: o for o in objects if o["kind"] == "DaemonSet"}


def _render(overrides: dict[str, Any], release: chart.Release = DEFAULT_RELEASE) -> list[dict[str, Any]]:
    return [obj for _, obj in chart.render_chart(CHART, overrides, release)]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert "namespace" not in kustomization, "it would move the isolated accelerators into the restricted namespace"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")


def test_kubernetes_validate_cli_strict_accepts_the_manifests() -> None:
    """The CLI itself, once, on the files users apply (CRDs are reported as schema-less warnings)."""
    files = [str(MANIFESTS / name) for name, _ in _manifests()]
    result = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", "1.33.0",
                             *files], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout
    warned = {line.split("kind ")[1].split(" ")[0] for line in result.stdout.splitlines() if line.startswith("WARN")}
    assert warned == set(OPERATOR_KINDS)


@pytest.mark.parametrize("name", [name for name, _ in _manifests()])
def test_manifest_validates_strictly(name: str) -> None:
    _validate([yaml.safe_load((MANIFESTS / name).read_text())])


def test_strict_validation_rejects_a_misspelled_field() -> None:
    """Guard against a validator that silently accepts everything."""
    ds = _daemonsets([obj for _, obj in _manifests()])["nvidia"]
    ds["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, "1.33.0", strict=True)
    sm = next(obj for _, obj in _manifests() if obj["kind"] == "ServiceMonitor")
    sm["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sm, OPERATOR_SCHEMAS["ServiceMonitor"])


def test_prometheusrule_spec_passes_promtool(promtool_bin: str, tmp_path: Path) -> None:
    [rule] = [obj for _, obj in _manifests() if obj["kind"] == "PrometheusRule"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    result = subprocess.run([promtool_bin, "check", "rules", str(rules)],  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in (result.stdout + result.stderr).upper()


def test_default_security_posture() -> None:
    objects = [obj for _, obj in _manifests()]
    assert not [o["kind"] for o in objects if o["kind"] in ("Role", "ClusterRole", "RoleBinding",
                                                             "ClusterRoleBinding")], "the exporter needs no RBAC"
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                for o in objects if o["kind"] == "ServiceAccount"}
    assert all(sa["automountServiceAccountToken"] is False for sa in accounts.values())
    daemonsets = _daemonsets(objects)
    assert sorted(daemonsets) == sorted(RESOURCE_NAMES)
    for name, ds in daemonsets.items():
        pod = ds["spec"]["template"]["spec"]
        assert (ds["metadata"]["namespace"], pod["serviceAccountName"]) in accounts
        assert pod["automountServiceAccountToken"] is False
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{name}: {key}"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}, f"{name}: {kind}"
        host_paths = {v["name"] for v in pod["volumes"] if "hostPath" in v}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        for volume in host_paths:
            assert mounts[volume].get("readOnly") is True, f"{name}: hostPath {volume} must be read-only"
        # Pod attribution needs root (the kubelet's socket): off unless asked for.
        assert "pod-resources" not in host_paths
        assert not [a for a in container["args"] if a.startswith("--podresources-socket")]


def test_privileged_backend_is_opt_in_and_only_where_asked() -> None:
    objects = _render({"accelerators": {"neuron": {"privileged": True}}})
    _validate(objects)
    daemonsets = _daemonsets(objects)
    neuron = daemonsets.pop("neuron")["spec"]["template"]["spec"]
    sc = neuron["containers"][0]["securityContext"]
    assert sc["privileged"] is True and sc["allowPrivilegeEscalation"] is True  # the API rejects true/false
    assert sc["readOnlyRootFilesystem"] is True and neuron["securityContext"]["runAsUser"] == 0
    for ds in daemonsets.values():
        assert ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] is False


def test_pod_attribution_mounts_the_socket_read_only_as_root_without_capabilities() -> None:
    objects = _render({"podResources": {"enabled": True}})
    _validate(objects)
    for name, ds in _daemonsets(objects).items():
        pod = ds["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 0, "connect() on the root-owned kubelet.sock"
        [container] = pod["containers"]
        sc = container["securityContext"]
        assert (sc["privileged"], sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"]) == (False, False, True)
        assert sc["capabilities"] == {"drop": ["ALL"]}
        [volume] = [v for v in pod["volumes"] if v["name"] == "pod-resources"]
        assert volume["hostPath"] == {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"}
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "pod-resources"]
        assert mount == {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True}
        assert "--podresources-socket=/var/lib/kubelet/pod-resources/kubelet.sock" in container["args"], name


def test_minimal_install_one_vendor_no_operator_objects() -> None:
    release = chart.Release("fleet", "monitoring")
    objects = _render({"serviceMonitor": {"enabled": False},
                       "prometheusRule": {"enabled": False}, "exporter": {"otlp": {"endpoint": "http://otel:4317"}},
                       "accelerators": {name: {"enabled": name == "nvidia"} for name in VALUES["accelerators"]}},
                      release)
    _validate(objects)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "DaemonSet", "NetworkPolicy", "Service",
                                                  "ServiceAccount"]
    assert all(o["metadata"]["namespace"] == "monitoring" for o in objects)
    [ds] = _daemonsets(objects).values()
    assert ds["metadata"]["name"] == "fleet-nvidia"
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert "--otlp-endpoint=http://otel:4317" in container["args"]
    assert not [v for v in ds["spec"]["template"]["spec"]["volumes"] if "hostPath" in v]


def test_servicemonitor_scrapes_the_job_the_alerts_expect() -> None:
    """job = the Service's app.kubernetes.io/name label, whatever the release is called."""
    objects = _render({}, chart.Release("anything", "monitoring"))
    [sm] = [o for o in objects if o["kind"] == "ServiceMonitor"]
    services = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Service"}
    assert sorted(sm["spec"]["namespaceSelector"]["matchNames"]) == sorted(services)
    for svc in services.values():
        job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
        assert job == load_spec(REPO / sync.SLO_SPEC).fleet.exporter_job
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    for ds in _daemonsets(objects).values():
        svc = services[ds["metadata"]["namespace"]]  # every DaemonSet has a Service in its namespace
        assert svc["spec"]["selector"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("name", sorted(RESOURCE_NAMES))
def test_accelerator_scheduling_and_backend(name: str) -> None:
    acc = VALUES["accelerators"][name]
    assert acc["resourceName"] == RESOURCE_NAMES[name]
    assert acc["backend"] in registry.names()
    ds = _daemonsets([obj for _, obj in _manifests()])[name]
    pod = ds["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0] == {"matchExpressions": [{"key": "npuobs.io/accelerator", "operator": "In", "values": [name]}]}
    assert len(terms) >= 2, "a vendor feature-discovery label as well as the manual one"
    assert {"key": RESOURCE_NAMES[name], "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]["kubernetes.io/os"] == "linux"


def test_exporter_accepts_the_daemonset_arguments_and_config() -> None:
    """The args parse with the real CLI and every ConfigMap file loads as an exporter config."""
    from npuobs.exporter.config import from_dict

    objects = [obj for _, obj in _manifests()]
    config_maps = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "ConfigMap"}
    for name, ds in _daemonsets(objects).items():
        [volume] = [v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        config_map = config_maps[(ds["metadata"]["namespace"], volume["configMap"]["name"])]
        container = ds["spec"]["template"]["spec"]["containers"][0]
        args = build_parser(container["args"]).parse_args(container["args"])
        assert args.backend == VALUES["accelerators"][name]["backend"]
        assert args.config == Path(f"/etc/npuobs/{name}.yaml")
        assert f":{container['ports'][0]['containerPort']}" in args.listen
        from_dict(yaml.safe_load(config_map["data"][args.config.name]), args.config.name)


def test_image_user_and_paths_match_the_dockerfile() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    uid = VALUES["podSecurityContext"]["runAsUser"]
    assert f"USER {uid}:{VALUES['podSecurityContext']['runAsGroup']}" in dockerfile
    assert f"EXPOSE {VALUES['exporter']['port']}" in dockerfile
    for name, acc in VALUES["accelerators"].items():
        for env in acc["env"]:
            if env["name"] == "PATH":
                assert "/opt/npuobs/bin" in env["value"].split(":"), f"{name}: PATH must keep the image's venv"


# --- issue 15: Pod Security "restricted", NetworkPolicy, web config ------------------------------------------

# Volume types Pod Security "restricted" allows (https://kubernetes.io/docs/concepts/security/pod-security-standards/)
_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What Pod Security "restricted" (v1.25+) would reject in a pod spec."""
    out = [f"hostPath/other volume {v['name']}" for v in pod.get("volumes", [])
           if not set(v) - {"name"} <= _RESTRICTED_VOLUMES]
    out += [key for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    pod_sc = pod.get("securityContext", {})
    if pod_sc.get("runAsUser") == 0:
        out.append("runAsUser 0")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append("privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append("allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or set(sc.get("capabilities", {}).get("add", [])) - \
                {"NET_BIND_SERVICE"}:
            out.append("capabilities")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            out.append("runAsNonRoot")
        if sc.get("runAsUser") == 0:
            out.append("runAsUser 0")
        if (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault",
                                                                                                "Localhost"):
            out.append("seccompProfile")
        out += [f"hostPort {p['hostPort']}" for p in c.get("ports", []) if p.get("hostPort")]
    return out


def test_pod_security_restricted_with_neuron_isolated() -> None:
    """Probe: 6 of 7 DaemonSets met "restricted" and the namespace enforced "privileged" for all of them."""
    objects = [obj for _, obj in _manifests()]
    namespaces = {o["metadata"]["name"]: o["metadata"]["labels"] for o in objects if o["kind"] == "Namespace"}
    assert namespaces[sync.NAMESPACE]["pod-security.kubernetes.io/enforce"] == "restricted"
    daemonsets = _daemonsets(objects)
    for name, ds in daemonsets.items():
        level = namespaces[ds["metadata"]["namespace"]]["pod-security.kubernetes.io/enforce"]
        violations = _restricted_violations(ds["spec"]["template"]["spec"])
        if name == "neuron":
            assert violations, "the checker must see neuron's hostPath"
            assert ds["metadata"]["namespace"] == "npuobs-neuron" and level == "privileged"
        else:
            assert ds["metadata"]["namespace"] == sync.NAMESPACE and violations == [], (name, violations)
    # the exemption covers neuron's objects only
    in_isolated = sorted((o["kind"], o["metadata"]["name"]) for o in objects
                         if o["metadata"].get("namespace") == "npuobs-neuron")
    assert in_isolated == [("ConfigMap", "npuobs-neuron-config"), ("DaemonSet", "npuobs-neuron"),
                           ("NetworkPolicy", "npuobs-neuron"), ("Service", "npuobs-neuron"),
                           ("ServiceAccount", "npuobs-neuron")]
    # without its hostPath and not isolated, neuron meets "restricted" too and joins the others
    objects = _render({"accelerators": {"neuron": {"isolated": False, "hostPaths": []}}})
    neuron = _daemonsets(objects)["neuron"]
    assert neuron["metadata"]["namespace"] == sync.NAMESPACE
    assert _restricted_violations(neuron["spec"]["template"]["spec"]) == []
    assert not [o for o in objects if o["kind"] == "Namespace"]


def test_network_policy_admits_only_the_monitoring_namespace_to_the_metrics_port() -> None:
    objects = [obj for _, obj in _manifests()]
    policies = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    for name, ds in _daemonsets(objects).items():
        policy = policies[ds["metadata"]["namespace"]]["spec"]
        assert policy["podSelector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
        assert policy["policyTypes"] == ["Ingress"]
        [rule] = policy["ingress"]
        assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        [port] = ds["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert rule["ports"] == [{"port": port["name"], "protocol": "TCP"}], name
    objects = _render({"networkPolicy": {"monitoringNamespace": "obs",
                                         "extraFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}})
    _validate(objects)
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy")["spec"]
    assert policy["ingress"][0]["from"][1] == {"ipBlock": {"cidr": "10.0.0.0/8"}}
    assert not [o for o in _render({"networkPolicy": {"enabled": False}}) if o["kind"] == "NetworkPolicy"]


WEB_CONFIG_VALUES = {"webConfig": {"secretName": "npuobs-web", "serviceMonitor": {
    "tlsConfig": {"ca": {"secret": {"name": "npuobs-web", "key": "tls.crt"}}, "serverName": "npuobs"},
    "basicAuth": {"username": {"name": "scrape", "key": "user"}, "password": {"name": "scrape", "key": "pass"}}}}}


def test_web_config_from_a_secret_turns_on_tls_and_basic_auth(tmp_path: Path) -> None:
    """Probe: no way to turn on TLS/basic auth in the chart."""
    from npuobs.exporter.webconfig import load as load_web

    objects = _render(WEB_CONFIG_VALUES)
    _validate(objects)
    for name, ds in _daemonsets(objects).items():
        pod = ds["spec"]["template"]["spec"]
        [container] = pod["containers"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "web-config"]
        assert volume["secret"] == {"secretName": "npuobs-web"}
        assert {"name": "web-config", "mountPath": "/etc/npuobs/web", "readOnly": True} in container["volumeMounts"]
        args = build_parser(container["args"]).parse_args(container["args"])
        assert args.web_config == Path("/etc/npuobs/web/web-config.yml")
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["scheme"] == "HTTPS", (name, probe)
        assert _restricted_violations(pod) == [] or name == "neuron"
    [sm] = [o for o in objects if o["kind"] == "ServiceMonitor"]
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == WEB_CONFIG_VALUES["webConfig"]["serviceMonitor"]["tlsConfig"]
    assert endpoint["basicAuth"] == WEB_CONFIG_VALUES["webConfig"]["serviceMonitor"]["basicAuth"]
    # the mounted Secret's layout: web-config.yml names its files relative to itself
    (tmp_path / "web-config.yml").write_text("tls_server_config: {cert_file: tls.crt, key_file: tls.key}\n"
                                             "basic_auth_users: {prometheus: '$2y$04$"
                                             "uJ5rUuT7Ax3UUz6BqRXlcOu1W3dj0zIYb4d5QvX8tPhZ.1p1d2gKi'}\n")
    web = load_web(tmp_path / "web-config.yml")
    assert web.tls is not None and web.tls.cert_file == tmp_path / "tls.crt" and web.basic_auth is not None
    # without the Secret: plain HTTP, as before
    ds = _daemonsets(_render({}))["nvidia"]
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert "scheme" not in container["livenessProbe"]["httpGet"]
    assert not [a for a in container["args"] if a.startswith("--web-config")]
