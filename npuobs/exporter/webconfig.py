"""TLS and basic auth from a Prometheus exporter-toolkit web-config file.

Operators already write this format for node_exporter and friends (``--web.config.file``), and
Prometheus's own ``scrape_configs`` speak it from the other side, so we read the same YAML::

    tls_server_config:
      cert_file: /etc/npuobs/tls.crt
      key_file: /etc/npuobs/tls.key
      client_ca_file: /etc/npuobs/ca.crt        # optional: mutual TLS
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...                      # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Keys of the toolkit we do not implement (cipher suites, curve preferences, HTTP/2 switches,
response headers) are rejected by name rather than ignored: silently dropping a TLS setting is
how a scrape endpoint ends up weaker than its config file says. Checked passwords are cached
(as the toolkit does) because bcrypt at cost 10 takes ~50 ms, far too slow to pay per scrape.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from npuobs.exporter.config import ConfigError

_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
                "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version")
_TOP_KEYS = ("tls_server_config", "basic_auth_users")


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None

    def context(self) -> ssl.SSLContext:
        """A server SSLContext; errors name the file that could not be loaded."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS certificate {self.cert_file} / key {self.key_file}: {exc}") from exc
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.client_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load client CA {self.client_ca_file}: {exc}") from exc
        ctx.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        return ctx


_BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD = 72  # bcrypt reads only 72 bytes; like Go's bcrypt, longer passwords never match


def _check_hash(hashed: str, user: str, where: str) -> int:
    """The hash's cost; ConfigError naming the user and the file if ``hashed`` is not a usable bcrypt hash."""
    match = _BCRYPT_HASH.fullmatch(hashed)
    if match is not None:
        try:  # the salt must decode too; hashing at cost 4 checks it in about a millisecond
            bcrypt.hashpw(b"", f"$2b$04${hashed[7:29]}".encode())
        except ValueError:
            match = None
    if match is None:
        raise ConfigError(f"{where}: key 'basic_auth_users.{user}' is not a bcrypt hash "
                          "(expected $2a$/$2b$/$2y$, a cost 04-31, then 53 characters of salt and digest; "
                          "make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)")
    return int(match["cost"])


@dataclass
class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, caching verdicts.

    An unknown user is checked against a dummy hash of the highest configured cost, and a password
    over 72 bytes against the user's own cost, so neither answers faster than a wrong password for
    a real user (response times must not reveal which user names exist).
    """

    users: dict[str, bytes]
    cost: int = 10
    _cache: dict[bytes, bool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _dummy: bytes = b""

    def __post_init__(self) -> None:
        self._dummy = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(self.cost))

    def _parse(self, header: str | None) -> tuple[str, bytes] | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password.encode("utf-8")

    def _key(self, user: str, password: bytes) -> bytes:
        # cache key: a digest of the credentials, never the password itself
        hashed = self.users.get(user, self._dummy)
        return hashlib.sha256(user.encode() + b"\0" + password + b"\0" + hashed).digest()

    def cached(self, header: str | None) -> bool | None:
        """The verdict without running bcrypt, or None when only :meth:`check` can tell."""
        creds = self._parse(header)
        if creds is None:
            return False
        with self._lock:
            return self._cache.get(self._key(*creds))

    def check(self, header: str | None) -> bool:
        creds = self._parse(header)
        if creds is None:
            return False
        user, password = creds
        key = self._key(user, password)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        hashed = self.users.get(user)
        try:
            if hashed is None or len(password) > _BCRYPT_MAX_PASSWORD:
                bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed or self._dummy)  # same time, no match
                ok = False
            else:
                ok = bcrypt.checkpw(password, hashed)
        except ValueError:  # e.g. a NUL byte bcrypt refuses: no match
            ok = False
        with self._lock:
            if len(self._cache) > 1024:  # bounded: a password-guessing client cannot grow it forever
                self._cache.clear()
            self._cache[key] = ok
        return ok


@dataclass(frozen=True)
class WebConfig:
    tls: TlsConfig | None = None
    basic_auth: BasicAuth | None = None


def load(path: Path | str) -> WebConfig:
    """Parse and validate a web-config file; ConfigError names the file and the key."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read web config {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"web config {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"web config {path} is not valid YAML: {exc}") from exc
    return from_dict(doc, str(path), base=path.parent)


def from_dict(doc: Any, where: str, base: Path = Path(".")) -> WebConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    _no_unknown(doc, _TOP_KEYS, where, "")
    tls = None
    if doc.get("tls_server_config") is not None:
        section = doc["tls_server_config"]
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: key 'tls_server_config' must be a mapping")
        _no_unknown(section, _TLS_KEYS, where, "tls_server_config.")
        for key in _TLS_KEYS:
            if key in section and not isinstance(section[key], str):
                raise ConfigError(f"{where}: key 'tls_server_config.{key}' must be a string")
        for key in ("cert_file", "key_file"):
            if not section.get(key):
                raise ConfigError(f"{where}: key 'tls_server_config.{key}' is required for TLS")
        auth_type = section.get("client_auth_type", "NoClientCert")
        if auth_type not in _CLIENT_AUTH:
            raise ConfigError(f"{where}: key 'tls_server_config.client_auth_type' must be one of "
                              f"{', '.join(_CLIENT_AUTH)}, got {auth_type!r}")
        if auth_type != "NoClientCert" and not section.get("client_ca_file"):
            raise ConfigError(f"{where}: key 'tls_server_config.client_ca_file' is required with "
                              f"client_auth_type {auth_type}")
        for key in ("min_version", "max_version"):
            if key in section and section[key] not in _TLS_VERSIONS:
                raise ConfigError(f"{where}: key 'tls_server_config.{key}' must be one of "
                                  f"{', '.join(_TLS_VERSIONS)}, got {section[key]!r}")

        def resolve(p: str | None) -> Path | None:
            return None if p is None else (base / p if not Path(p).is_absolute() else Path(p))

        tls = TlsConfig(cert_file=resolve(section["cert_file"]), key_file=resolve(section["key_file"]),  # type: ignore[arg-type]
                        client_ca_file=resolve(section.get("client_ca_file")), client_auth_type=auth_type,
                        min_version=section.get("min_version", "TLS12"), max_version=section.get("max_version"))
    auth = None
    users = doc.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items()):
            raise ConfigError(f"{where}: key 'basic_auth_users' must map user names to bcrypt hashes")
        costs = [_check_hash(hashed, user, where) for user, hashed in users.items()]
        auth = BasicAuth({u: h.encode() for u, h in users.items()}, cost=max(costs, default=10))
    return WebConfig(tls, auth)


def _no_unknown(section: dict, allowed: tuple[str, ...], where: str, prefix: str) -> None:
    for key in section:
        if key not in allowed:
            raise ConfigError(f"{where}: unsupported key {prefix + str(key)!r}; npuobs supports "
                              f"{', '.join(prefix + k for k in allowed)}")
