"""docker-compose.yml: valid for docker-compose and the compose-spec schema, and every file it mounts
exists and is checked by the real tool through the same mounts the containers see (no Docker
engine runs here, so this is as close to `docker compose up` as the tests get)."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import require_binary

from npuobs.alerting import conventions as cv
from npuobs.alerting.slo_spec import load_spec
from npuobs.cli.main import build_parser, main
from npuobs.deploy import sync
from npuobs.instrumentation.otlp import protocol_of

pytestmark = pytest.mark.integration  # real tools (docker-compose, promtool, amtool)

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# Shipped by Debian's docker-compose package (1.29), the same one CI installs.
COMPOSE_SCHEMA = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
INSTALL_COMPOSE = "apt-get install -y --no-install-recommends docker-compose"
NPUOBS_SERVICES = sorted(name for name, svc in SERVICES.items() if svc.get("build") == ".")
PD_KEY_LENGTH = 32


def _binds(service: str) -> list[tuple[Path, str]]:
    """(host path, container path) of a service's bind mounts (short syntax, relative to the file)."""
    out = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((COMPOSE_FILE.parent / source).resolve(), target))
    return out


def _container_view(service: str, root: Path) -> Path:
    """A directory laid out like the service's filesystem for its bind mounts (symlinks to the repo)."""
    for host, target in _binds(service):
        link = root / target.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(host)
    return root


def _host_path(service: str, container_path: str) -> Path:
    """The repository file a container path of a service resolves to through its bind mounts."""
    for host, target in sorted(_binds(service), key=lambda b: -len(b[1])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return host / Path(container_path).relative_to(target)
    raise AssertionError(f"{service}: nothing is mounted at {container_path}")


def _flag(service: str, name: str) -> str:
    """The value of ``--name value`` or ``--name=value`` in a service's command."""
    command = SERVICES[service]["command"]
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{service}: no {name} in its command")


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # noqa: S603


def test_docker_compose_config_is_valid() -> None:
    binary = require_binary("docker-compose", install=INSTALL_COMPOSE)
    result = _run([binary, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    if not COMPOSE_SCHEMA.is_file():
        require_binary("docker-compose", install=INSTALL_COMPOSE)  # fails under CI, skips elsewhere
        pytest.skip(f"{COMPOSE_SCHEMA} missing although docker-compose is installed")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}"
              for e in jsonschema.Draft201909Validator(schema).iter_errors(COMPOSE)]
    assert not errors, "\n".join(errors)


def test_every_bind_mount_exists() -> None:
    missing = [f"{service}: {host}" for service in SERVICES for host, _ in _binds(service) if not host.exists()]
    assert not missing, "\n".join(missing)


def test_prometheus_config_and_rules_pass_promtool(promtool_bin: str, tmp_path: Path) -> None:
    view = _container_view("prometheus", tmp_path)
    config = view / "etc/prometheus/prometheus.yml"
    result = _run([promtool_bin, "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = yaml.safe_load(config.read_text())["rule_files"]
    assert sorted(Path(f).name for f in rule_files) == sorted(cv.RULE_FILES)
    for rule_file in rule_files:  # the generated files themselves, not copies
        mounted = _host_path("prometheus", f"/etc/prometheus/{rule_file}")
        assert mounted == REPO / "alerts/generated" / Path(rule_file).name


def test_prometheus_scrapes_services_that_exist_on_their_ports() -> None:
    config = yaml.safe_load(_host_path("prometheus", "/etc/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
            for job in config["scrape_configs"]}
    exporters = sorted(s for s in NPUOBS_SERVICES if SERVICES[s]["command"][0] == "exporter")
    assert len(exporters) == 2
    exporter_job = load_spec(REPO / sync.SLO_SPEC).fleet.exporter_job
    assert sorted(jobs[exporter_job]) == sorted(f"{s}:{_flag(s, '--listen').rsplit(':', 1)[1]}" for s in exporters)
    collector = yaml.safe_load(_host_path("otel-collector", "/etc/otelcol/config.yaml").read_text())
    telemetry_port = collector["service"]["telemetry"]["metrics"]["address"].rsplit(":", 1)[1]
    assert jobs["otel-collector"] == [f"otel-collector:{telemetry_port}"]
    for targets in jobs.values():
        for target in targets:
            host = target.rsplit(":", 1)[0]
            assert host in SERVICES or host == "localhost", target
    [alertmanagers] = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_alertmanager_config_passes_amtool(amtool_bin: str, tmp_path: Path) -> None:
    view = _container_view("alertmanager", tmp_path)
    result = _run([amtool_bin, "check-config", str(view / "etc/alertmanager/alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_is_the_generators_with_the_sink_url(tmp_path: Path) -> None:
    """Same bytes as `npuobs alerts generate --pagerduty-url <sink>`, and every URL reaches the sink."""
    mounted = _host_path("alertmanager", "/etc/alertmanager/alertmanager.yml")
    assert mounted == REPO / sync.COMPOSE_ALERTMANAGER_FILE
    assert main(["alerts", "generate", "--slo", str(REPO / sync.SLO_SPEC), "--out", str(tmp_path),
                 "--pagerduty-url", sync.COMPOSE_PAGERDUTY_URL]) == 0
    assert mounted.read_text() == (tmp_path / cv.ALERTMANAGER_FILE).read_text()
    sink_listen = _flag("pagerduty-sink", "--listen")
    for receiver in yaml.safe_load(mounted.read_text())["receivers"]:
        for pd in receiver["pagerduty_configs"]:
            url = urllib.parse.urlsplit(pd["url"])
            assert (url.hostname, url.port) == ("pagerduty-sink", int(sink_listen.rsplit(":", 1)[1]))
            key = _host_path("alertmanager", pd["routing_key_file"]).read_text()
            assert len(key) == PD_KEY_LENGTH and key.isalnum(), f"{pd['routing_key_file']}: dummy 32-char key"


def _collector() -> dict[str, Any]:
    return yaml.safe_load(_host_path("otel-collector", "/etc/otelcol/config.yaml").read_text())


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_exporters_push_otlp_to_the_collector() -> None:
    collector = _collector()
    for name, pipeline in collector["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(collector[kind]), f"{name} pipeline uses an undefined {kind[:-1]}"
    for service in NPUOBS_SERVICES:
        if SERVICES[service]["command"][0] != "exporter":
            continue
        protocol = _flag(service, "--otlp-protocol")
        endpoint = urllib.parse.urlsplit(_flag(service, "--otlp-endpoint"))
        receiver = collector["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
        assert endpoint.hostname == "otel-collector" and endpoint.port == _port(receiver)


def test_simulator_traces_reach_tempo_and_grafana_reads_them() -> None:
    """sim -> collector (traces pipeline) -> Tempo <- Grafana's Tempo datasource, ports matching at each hop;
    and Prometheus stores the exemplars that link a latency bucket to its trace."""
    sim_endpoint = urllib.parse.urlsplit(SERVICES["sim"]["environment"]["NPUOBS_OTLP_TRACES_ENDPOINT"])
    collector = _collector()
    assert protocol_of(sim_endpoint.geturl()) == "grpc"
    assert (sim_endpoint.hostname, sim_endpoint.port) == (
        "otel-collector", _port(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]))
    traces = collector["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"]
    tempo = yaml.safe_load(_host_path("tempo", "/etc/tempo/tempo.yaml").read_text())
    assert _flag("tempo", "-config.file") == "/etc/tempo/tempo.yaml"
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    (exporter,) = traces["exporters"]
    assert collector["exporters"][exporter]["endpoint"] == f"tempo:{_port(tempo_grpc)}"
    for path in (tempo["storage"]["trace"]["wal"]["path"], tempo["storage"]["trace"]["local"]["path"]):
        assert any(path.startswith(t + "/") for t in SERVICES["tempo"]["tmpfs"]), f"{path}: not writable"
    provisioning = _host_path("grafana", "/etc/grafana/provisioning")
    docs = [yaml.safe_load(p.read_text()) for p in sorted(provisioning.rglob("*.y*ml"))]
    (datasource,) = [d for doc in docs for d in (doc or {}).get("datasources", []) if d["type"] == "tempo"]
    url = urllib.parse.urlsplit(datasource["url"])
    assert (url.hostname, url.port) == ("tempo", tempo["server"]["http_listen_port"])
    assert "--enable-feature=exemplar-storage" in SERVICES["prometheus"]["command"]


def test_exporters_read_the_simulators_state_read_only() -> None:
    state = _flag("sim", "--state-dir")
    sim_volume = next(v for v in SERVICES["sim"]["volumes"] if v.split(":")[1] == state)
    for service in NPUOBS_SERVICES:
        if SERVICES[service]["command"][0] == "exporter":
            assert _flag(service, "--state-dir") == state
            assert f"{sim_volume}:ro" in SERVICES[service]["volumes"]
    nodes = sorted(_flag(s, "--node") for s in NPUOBS_SERVICES if SERVICES[s]["command"][0] == "exporter")
    assert nodes == ["node-a", "node-b"]  # the demo fleet's nodes (FleetConfig.default)


def test_npuobs_commands_parse_with_the_real_cli() -> None:
    for service in NPUOBS_SERVICES:
        command = SERVICES[service]["command"]
        if "entrypoint" in SERVICES[service]:
            continue  # the PagerDuty sink: checked through its flags above
        build_parser(command).parse_args(command)


def test_npuobs_containers_are_hardened() -> None:
    for name, service in SERVICES.items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert not service.get("privileged") and service.get("network_mode") != "host", name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} must bind to loopback only"
    for name in NPUOBS_SERVICES:
        assert SERVICES[name]["read_only"] is True, name


def test_grafana_provisions_the_dashboards_and_the_prometheus_datasource() -> None:
    dashboards_dir = _host_path("grafana", "/var/lib/grafana/dashboards")
    dashboards = sorted(dashboards_dir.glob("*.json"))
    assert dashboards, f"no dashboards in {dashboards_dir}"
    for path in dashboards:
        assert json.loads(path.read_text())["uid"], path
    provisioning = _host_path("grafana", "/etc/grafana/provisioning")
    docs = [yaml.safe_load(p.read_text()) for p in sorted(provisioning.rglob("*.y*ml"))]
    providers = [p for doc in docs for p in (doc or {}).get("providers", [])]
    assert "/var/lib/grafana/dashboards" in [p["options"]["path"] for p in providers]
    datasources = [d for doc in docs for d in (doc or {}).get("datasources", []) if d["type"] == "prometheus"]
    assert datasources, "no Prometheus datasource provisioned"
    for datasource in datasources:
        url = urllib.parse.urlsplit(datasource["url"])
        assert (url.hostname, url.port) == ("prometheus", 9090), datasource["url"]


def test_third_party_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if name in NPUOBS_SERVICES:
            continue
        image, _, tag = service["image"].rpartition(":")
        assert image and any(c.isdigit() for c in tag) and tag != "latest", f"{name}: pin {service['image']}"
