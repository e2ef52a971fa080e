"""Exporter configuration: one YAML file, validated on load, with command-line flags on top.

A DaemonSet mounts one config file for every node, and a typo in it (``intervall: 5``) must stop
the exporter with a message naming the key and the file rather than silently running defaults.
So every key is declared here with its type; unknown keys and wrong types are errors. Flags that
the operator passes explicitly override the file (``--node`` per pod, the file for the rest).

Example (see ``exporters/config.example.yaml``)::

    backend: sim
    listen: 127.0.0.1:9400
    interval: 5
    sample_timeout: 4
    profile: standard          # cardinality profile: minimal | standard | debug (docs/metrics.md)
    backend_options: {state_dir: /var/lib/npuobs/sim}
    podresources: {socket: /var/lib/kubelet/pod-resources/kubelet.sock, timeout: 2}
    otlp: {endpoint: http://otel-collector:4317, protocol: grpc, interval: 30}
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from npuobs.devices import registry
from npuobs.devices.base import BackendError
from npuobs.errors import UsageError
from npuobs.schema import DEFAULT_PROFILE, PROFILES

DEFAULT_LISTEN = "127.0.0.1:9400"
DEFAULT_INTERVAL = 5.0
AUTO_CHILD_TIMEOUT_SHARE = 0.9  # of the sample timeout: what one vendor backend of `auto` may take
DEFAULT_PODRESOURCES_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")

# Extended-resource names each vendor's Kubernetes device plugin advertises; a container's
# devices are attributed to our devices of that vendor. Override with podresources.resource_names.
DEFAULT_RESOURCE_NAMES: Mapping[str, tuple[str, ...]] = {
    "furiosa": ("furiosa.ai/rngd", "furiosa.ai/warboy", "furiosa.ai/npu"),
    "rebellions": ("rebellions.ai/ATOM", "rebellions.ai/REBEL", "rebellions.ai/npu"),
    "aws": ("aws.amazon.com/neuron", "aws.amazon.com/neurondevice", "aws.amazon.com/neuroncore"),
    "intel": ("habana.ai/gaudi",),
    "amd": ("amd.com/gpu",),
    "nvidia": ("nvidia.com/gpu",),
    "google": ("google.com/tpu",),
}
# DRA driver names (ResourceSlice ``spec.driver``) of each vendor's published DRA driver; devices a
# claim got from one of them are attributed too. Override with podresources.driver_names.
DEFAULT_DRIVER_NAMES: Mapping[str, tuple[str, ...]] = {
    "nvidia": ("gpu.nvidia.com",),
    "amd": ("gpu.amd.com",),
    "intel": ("gaudi.intel.com",),
    "aws": ("neuron.aws.com",),
}

LOG_FORMATS = ("json", "text")
OTLP_PROTOCOLS = ("grpc", "http")


class ConfigError(ValueError, UsageError):
    """A config file or flag value is unusable; the message names the key and the file."""


def default_node() -> str:
    """``$NODE_NAME`` (set from the downward API in a DaemonSet) or this host's name."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


@dataclass(frozen=True)
class PodResourcesConfig:
    """Where the kubelet's PodResources socket is and which resource names map to which vendor."""

    socket: Path = DEFAULT_PODRESOURCES_SOCKET
    timeout: float = 2.0
    resource_names: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_RESOURCE_NAMES))
    enabled: bool = True
    driver_names: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_DRIVER_NAMES))


@dataclass(frozen=True)
class OtlpConfig:
    """Optional OTLP push of the same readings; off while ``endpoint`` is None."""

    endpoint: str | None = None
    protocol: str = "grpc"
    interval: float = 30.0
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)
    insecure: bool | None = None  # gRPC only; None = plaintext for http:// endpoints


@dataclass(frozen=True)
class ExporterConfig:
    """Everything one exporter process needs; build it directly in Python or with :func:`load`."""

    backend: str = ""  # a registry name; required (no default: the wrong backend silently exports nothing)
    listen: str = DEFAULT_LISTEN
    node: str = field(default_factory=default_node)
    state_dir: Path | None = None  # the sim backend's state tree
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    interval: float = DEFAULT_INTERVAL
    sample_timeout: float | None = None  # None = 80 % of the interval
    web_config: Path | None = None
    log_format: str = "json"
    profile: str = DEFAULT_PROFILE.value  # cardinality profile (npuobs.schema.Profile)
    podresources: PodResourcesConfig = field(default_factory=PodResourcesConfig)
    otlp: OtlpConfig = field(default_factory=OtlpConfig)

    @property
    def effective_sample_timeout(self) -> float:
        """A sample may take this long before it counts as hung (never longer than one interval)."""
        return self.sample_timeout if self.sample_timeout is not None else 0.8 * self.interval

    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen, "listen")

    def backend_context(self) -> dict[str, Any]:
        """What the exporter knows for every backend (``registry.build``'s ``context``): the node,
        the state dir and, for ``auto``, a ``child_timeout`` of 90 % of the sample timeout (a hung
        vendor then fails as its own collector within the sample, and the others still report,
        instead of the whole ``auto`` sample timing out). A backend takes only the keys its
        options declare; ``backend_options`` win."""
        return {"node": self.node, "state_dir": self.state_dir,
                "child_timeout": AUTO_CHILD_TIMEOUT_SHARE * self.effective_sample_timeout}

    def validate(self, where: str = "config") -> ExporterConfig:
        """Check cross-field constraints; returns self so construction can chain."""
        parse_listen(self.listen, f"{where}: listen")
        _bounded(self.interval, f"{where}: interval", INTERVAL_BOUNDS)
        if self.sample_timeout is not None:
            _bounded(self.sample_timeout, f"{where}: sample_timeout", TIMEOUT_BOUNDS)
        _bounded(self.podresources.timeout, f"{where}: podresources.timeout", TIMEOUT_BOUNDS)
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"{where}: log_format must be one of {', '.join(LOG_FORMATS)}, "
                              f"got {self.log_format!r}")
        if self.profile not in PROFILES:
            raise ConfigError(f"{where}: profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.otlp.protocol not in OTLP_PROTOCOLS:
            raise ConfigError(f"{where}: otlp.protocol must be one of {', '.join(OTLP_PROTOCOLS)}, "
                              f"got {self.otlp.protocol!r}")
        _bounded(self.otlp.interval, f"{where}: otlp.interval", OTLP_INTERVAL_BOUNDS)
        _bounded(self.otlp.timeout, f"{where}: otlp.timeout", TIMEOUT_BOUNDS)
        if not self.node:
            raise ConfigError(f"{where}: node must not be empty")
        return self

    def check_backend(self, where: str = "config") -> ExporterConfig:
        """Check ``backend`` names a registered backend and ``backend_options`` fit its options
        class (a typo is an error, not an ignored setting); returns self. Separate from
        :meth:`validate` because an ``Exporter`` given a ready-made backend needs no registry entry."""
        if self.backend:
            try:
                registry.entry(self.backend)
            except BackendError as exc:
                raise ConfigError(f"{where}: backend: {exc}") from None
            try:
                registry.parse_options(self.backend, self.backend_options)
            except BackendError as exc:
                raise ConfigError(f"{where}: backend_options: {exc}") from None
        return self


def parse_listen(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{what} must be host:port (e.g. {DEFAULT_LISTEN}), got {value!r}")
    return host.strip("[]"), int(port)


# Bounds on every duration the exporter takes: below the lower one a sampler or pusher spins a
# core logging errors (interval 1e-6); above the upper one timestamps overflow (interval 1e12 killed
# the sampler thread) and nobody would wait that long for a sample anyway.
INTERVAL_BOUNDS = (0.05, 3600.0)
TIMEOUT_BOUNDS = (0.01, 600.0)
OTLP_INTERVAL_BOUNDS = (0.1, 86400.0)


def _bounded(value: float, what: str, bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be between {lo:g} and {hi:g} seconds, got {value!r}")


# --- the file schema: key -> (python types accepted, converter) -------------------------------------

_NUMBER = (int, float)


def _path(v: Any) -> Path:
    return Path(v)


def _seconds(v: Any) -> float:
    return float(v)


def _str_map(v: Any, where: str) -> dict[str, str]:
    if not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ConfigError(f"{where} must map strings to strings")
    return dict(v)


def _resource_names(v: Any, where: str) -> dict[str, tuple[str, ...]]:
    out = {}
    for vendor, names in v.items():
        if not isinstance(vendor, str) or not isinstance(names, list) or \
                not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}.{vendor} must be a list of resource names (strings)")
        out[vendor] = tuple(names)
    return out


_TOP = {
    "backend": (str,), "listen": (str,), "node": (str,), "state_dir": (str,), "backend_options": (dict,),
    "interval": _NUMBER, "sample_timeout": _NUMBER, "web_config": (str,), "log_format": (str,),
    "profile": (str,), "podresources": (dict,), "otlp": (dict,),
}
_PODRESOURCES = {"socket": (str,), "timeout": _NUMBER, "resource_names": (dict,),
                 "enabled": (bool,), "driver_names": (dict,)}
_OTLP = {"endpoint": (str,), "protocol": (str,), "interval": _NUMBER, "timeout": _NUMBER,
         "headers": (dict,), "insecure": (bool,)}


def _check_section(doc: Any, allowed: dict[str, tuple[type, ...]], where: str, prefix: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the top level'} must be a mapping")
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {name!r}; allowed: {', '.join(prefix + k for k in allowed)}")
        types = allowed[key]
        # bool is an int in Python: reject `interval: true` explicitly
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = "/".join(dict.fromkeys("number" if t in _NUMBER else t.__name__ for t in types))
            raise ConfigError(f"{where}: key {name!r} must be a {names}, got {type(value).__name__} {value!r}")
    return doc


def from_dict(doc: Any, where: str = "config") -> ExporterConfig:
    """Build a config from a parsed YAML document; errors name the key and ``where`` (the file)."""
    if doc is None:
        doc = {}
    top = _check_section(doc, _TOP, where, "")
    kwargs: dict[str, Any] = {}
    for key in ("backend", "listen", "node", "log_format", "profile"):
        if key in top:
            kwargs[key] = top[key]
    for key in ("state_dir", "web_config"):
        if key in top:
            kwargs[key] = _path(top[key])
    for key in ("interval", "sample_timeout"):
        if key in top:
            kwargs[key] = _seconds(top[key])
    if "backend_options" in top:
        options = top["backend_options"]
        if not all(isinstance(k, str) for k in options):
            raise ConfigError(f"{where}: key 'backend_options' must map option names (strings) to values")
        kwargs["backend_options"] = dict(options)
    if "podresources" in top:
        pr = _check_section(top["podresources"], _PODRESOURCES, where, "podresources.")
        pr_kwargs: dict[str, Any] = {}
        if "socket" in pr:
            pr_kwargs["socket"] = _path(pr["socket"])
        if "timeout" in pr:
            pr_kwargs["timeout"] = _seconds(pr["timeout"])
        if "enabled" in pr:
            pr_kwargs["enabled"] = pr["enabled"]
        if "resource_names" in pr:
            pr_kwargs["resource_names"] = _resource_names(pr["resource_names"], f"{where}: podresources.resource_names")
        if "driver_names" in pr:
            pr_kwargs["driver_names"] = _resource_names(pr["driver_names"], f"{where}: podresources.driver_names")
        kwargs["podresources"] = PodResourcesConfig(**pr_kwargs)
    if "otlp" in top:
        ot = _check_section(top["otlp"], _OTLP, where, "otlp.")
        ot_kwargs: dict[str, Any] = {k: ot[k] for k in ("endpoint", "protocol", "insecure") if k in ot}
        for key in ("interval", "timeout"):
            if key in ot:
                ot_kwargs[key] = _seconds(ot[key])
        if "headers" in ot:
            ot_kwargs["headers"] = _str_map(ot["headers"], f"{where}: key 'otlp.headers'")
        kwargs["otlp"] = OtlpConfig(**ot_kwargs)
    return ExporterConfig(**kwargs).validate(where).check_backend(where)


def load(path: Path | str) -> ExporterConfig:
    """Read and validate a config file; a ConfigError names the file and the offending key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    return from_dict(doc, str(path))


def override(config: ExporterConfig, **flags: Any) -> ExporterConfig:
    """Apply flags the operator passed (None = not passed); nested ``otlp_*``/``podresources_*`` too."""
    top = {k: v for k, v in flags.items() if v is not None and not k.startswith(("otlp_", "podresources_"))}
    otlp = {k[5:]: v for k, v in flags.items() if v is not None and k.startswith("otlp_")}
    pods = {k[13:]: v for k, v in flags.items() if v is not None and k.startswith("podresources_")}
    if otlp:
        top["otlp"] = dataclasses.replace(config.otlp, **otlp)
    if pods:
        top["podresources"] = dataclasses.replace(config.podresources, **pods)
    return dataclasses.replace(config, **top).validate("flags").check_backend("flags")
