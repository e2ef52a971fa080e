"""Exporter configuration, web config (TLS + basic auth against real HTTPS) and the CLI entry point."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from npuobs.cli.exporter import build_config
from npuobs.cli.main import build_parser, main
from npuobs.devices import registry
from npuobs.exporter import ConfigError, Exporter, ExporterConfig
from npuobs.exporter.config import from_dict, load, override
from npuobs.exporter.webconfig import load as load_web
from npuobs.stack import free_port, wait_http_ok

REPO_ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- config file ------------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    cfg = load(REPO_ROOT / "exporters" / "config.example.yaml")
    assert cfg.backend and cfg.interval > 0


def test_full_config_round_trip(tmp_path: Path) -> None:
    cfg = load(write(tmp_path / "c.yaml", """
backend: furiosa
listen: 0.0.0.0:9500
node: n1
state_dir: /tmp/state
interval: 2
sample_timeout: 1.5
log_format: text
backend_options: {tool_path: /opt/bin/furiosa-smi}
podresources: {socket: /run/k.sock, timeout: 0.5, resource_names: {furiosa: [furiosa.ai/rngd]}}
otlp: {endpoint: http://c:4317, protocol: grpc, interval: 10, headers: {x-token: abc}, insecure: true}
"""))
    assert cfg.listen_address() == ("0.0.0.0", 9500) and cfg.effective_sample_timeout == 1.5
    assert cfg.backend_options == {"tool_path": "/opt/bin/furiosa-smi"}
    assert cfg.backend_context() == {"node": "n1", "state_dir": Path("/tmp/state"),
                                     "child_timeout": pytest.approx(0.9 * 1.5)}
    assert cfg.podresources.resource_names == {"furiosa": ("furiosa.ai/rngd",)}
    assert cfg.otlp.headers == {"x-token": "abc"} and cfg.otlp.interval == 10.0
    # auto bounds each vendor inside the sample timeout, so a hung one fails alone; an explicit value wins
    auto = registry.build("auto", {}, context=cfg.backend_context())
    assert auto.child_timeout == pytest.approx(0.9 * 1.5)
    explicit = registry.build("auto", {"child_timeout": 0.5}, context=cfg.backend_context())
    assert explicit.child_timeout == 0.5
    # a backend takes only the context it declares: furiosa has no state_dir, sim no child_timeout
    assert registry.build("furiosa", cfg.backend_options, context=cfg.backend_context())._tool_path \
        == "/opt/bin/furiosa-smi"
    assert registry.build("sim", {}, context=cfg.backend_context()).state_dir == Path("/tmp/state")


@pytest.mark.parametrize(("text", "needle"), [
    ("intervall: 5\n", "'intervall'"),
    ("interval: five\n", "'interval' must be a number"),
    ("interval: true\n", "'interval' must be a number"),
    ("listen: 9400\n", "'listen' must be a str"),
    ("otlp: {endpont: x}\n", "'otlp.endpont'"),
    ("otlp: {interval: [1]}\n", "'otlp.interval' must be a number"),
    ("podresources: {socket: 3}\n", "'podresources.socket' must be a str"),
    ("podresources: {resource_names: {furiosa: furiosa.ai/rngd}}\n", "podresources.resource_names.furiosa"),
    ("log_format: xml\n", "log_format must be one of"),
    # backend options are checked against the backend's options class (issue 15 item 10)
    ("backend: furiosa\nbackend_options: {tool_pth: /x}\n", "backend_options: backend 'furiosa': unknown option "
                                                            "'tool_pth'; valid options: node, tool_path, timeout"),
    ("backend: furiosa\nbackend_options: {timeout: soon}\n", "option 'timeout' must be a number, got 'soon'"),
    ("backend: sim\nbackend_options: {tool_path: /x}\n", "backend 'sim': unknown option 'tool_path'"),
    ("backend: nope\n", "backend: unknown backend 'nope'"),
    ("interval: -1\n", "interval must be between 0.05 and 3600 seconds, got -1"),
    ("interval: 0.000001\n", "interval must be between 0.05 and 3600 seconds, got 1e-06"),
    ("interval: .inf\n", "interval must be between 0.05 and 3600 seconds, got inf"),
    ("listen: localhost\n", "listen must be host:port"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*missing.yaml"):
        load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(write(tmp_path / "x.yaml", "a: [b\n"))


def test_flags_override_the_file() -> None:
    base = from_dict({"backend": "sim", "interval": 5, "otlp": {"endpoint": "http://a:4317", "interval": 60}})
    cfg = override(base, interval=1.0, node="n2", otlp_interval=5.0, listen=None, podresources_socket=Path("/x"))
    assert (cfg.interval, cfg.node, cfg.otlp.interval, cfg.otlp.endpoint) == (1.0, "n2", 5.0, "http://a:4317")
    assert cfg.podresources.socket == Path("/x") and cfg.backend == "sim"


def test_cli_reports_config_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "bad.yaml", "backend: sim\nsample_timout: 3\n")
    assert main(["exporter", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'sample_timout'" in err and str(path) in err
    assert main(["exporter", "--listen", "127.0.0.1:0"]) == 2
    assert "--backend" in capsys.readouterr().err


def test_cli_rejects_a_mistyped_backend_option_in_one_line(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "opts.yaml", "backend: auto\nbackend_options: {child_timout: 2}\n")
    assert main(["exporter", "--config", str(path), "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown option 'child_timout'" in err and str(path) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("flags", "needle"), [
    (["--option", "tool_pth=/x"], "flags: backend_options: backend 'furiosa': unknown option 'tool_pth'"),
    (["--option", "timeout=soon"], "option 'timeout' must be a number, got 'soon'"),
    (["--option", "timeout"], "--option 'timeout': expected KEY=VALUE"),
])
def test_cli_option_flag_is_checked_in_one_line(flags: list[str], needle: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exporter", "--backend", "furiosa", "--listen", "127.0.0.1:0", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_cli_option_flag_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "backend: furiosa\nbackend_options: {tool_path: /a, timeout: 2}\n")
    args = build_parser(["exporter"]).parse_args(["exporter", "--config", str(path), "--option", "tool-path=/b"])
    assert build_config(args).backend_options == {"tool_path": "/b", "timeout": 2}


def test_cli_reports_a_busy_port(tmp_path: Path, sim_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Exporter(ExporterConfig(backend="sim", node="node-a", state_dir=sim_state, listen="127.0.0.1:0")) as busy:
        port = busy.server.port
        assert main(["exporter", "--backend", "sim", "--state-dir", str(sim_state), "--node", "node-a",
                     "--listen", f"127.0.0.1:{port}"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


# --- web config: TLS and basic auth -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cryptography is not installed here: openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "tls.crt", d / "tls.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _get(url: str, ctx: ssl.SSLContext | None, auth: tuple[str, str] | None = None) -> int:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5,  # noqa: S310
                                    context=ctx) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_tls_and_basic_auth(tmp_path: Path, tls_pair: tuple[Path, Path], sim_state: Path) -> None:
    cert, key = tls_pair
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")  # htpasswd style
    web = write(tmp_path / "web.yaml", f"""
tls_server_config:
  cert_file: {cert}
  key_file: {key}
basic_auth_users:
  prometheus: '{hashed}'
""")
    cfg = ExporterConfig(backend="sim", node="node-a", state_dir=sim_state, listen="127.0.0.1:0", web_config=web)
    with Exporter(cfg).start() as exp:
        assert exp.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(cert))
        metrics = f"{exp.url}/metrics"
        assert _get(metrics, ctx, ("prometheus", "s3cret")) == 200
        assert _get(metrics, ctx, ("prometheus", "s3cret")) == 200  # cached verdict
        assert _get(metrics, ctx, ("prometheus", "wrong")) == 401
        assert _get(metrics, ctx, ("mallory", "s3cret")) == 401
        assert _get(metrics, ctx) == 401
        assert _get(f"{exp.url}/", ctx) == 401
        assert _get(f"{exp.url}/healthz", ctx) == 200  # probes stay open
        with pytest.raises(urllib.error.URLError):  # the certificate is not in the default trust store
            _get(metrics, ssl.create_default_context(), ("prometheus", "s3cret"))
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to a TLS port fails
            urllib.request.urlopen(metrics.replace("https", "http"), timeout=5)  # noqa: S310


def test_example_web_config_and_web_config_errors(tmp_path: Path) -> None:
    example = load_web(REPO_ROOT / "exporters" / "web-config.example.yaml")
    assert example.basic_auth is not None and example.tls is not None
    cases = {
        "tls_server_config: {cert_file: a}\n": "'tls_server_config.key_file' is required",
        "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [x]}\n": "'tls_server_config.cipher_suites'",
        "basic_auth_users: {u: plaintext}\n": "'basic_auth_users.u' is not a bcrypt hash",
        "http_server_config: {http2: false}\n": "'http_server_config'",
        "tls_server_config: {cert_file: a, key_file: b, min_version: TLS9}\n": "min_version",
    }
    for text, needle in cases.items():
        path = write(tmp_path / "w.yaml", text)
        with pytest.raises(ConfigError) as err:
            load_web(path)
        assert needle in str(err.value) and str(path) in str(err.value)
    missing = write(tmp_path / "m.yaml", f"tls_server_config: {{cert_file: {tmp_path}/no.crt, key_file: no.key}}\n")
    with pytest.raises(ConfigError, match="no.crt"):
        Exporter(ExporterConfig(backend="sim", node="n", state_dir=tmp_path, listen="127.0.0.1:0", web_config=missing))


# --- the CLI as operators run it -----------------------------------------------------------------------


def test_cli_exporter_process_serves_and_stops_on_sigterm(tmp_path: Path, sim_state: Path) -> None:
    port = free_port()
    cfg = write(tmp_path / "c.yaml", f"backend: sim\nstate_dir: {sim_state}\ninterval: 0.5\n")
    log = tmp_path / "exporter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "npuobs.cli.main", "exporter", "--config", str(cfg),  # noqa: S603
                                 "--listen", f"127.0.0.1:{port}", "--node", "node-b"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NODE_NAME": "ignored"})
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/ready", timeout=20)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310
            body = resp.read().decode()
        assert 'node="node-b"' in body and "npu_device_up" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
    assert '"msg": "exporter started"' in log.read_text()
