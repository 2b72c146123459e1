"""The operator's configuration: one TOML file, ``MVAULT_*`` environment variables over it, command-line
flags over both, each value checked against one typed schema (``Settings``) before the server starts.

``load`` returns the effective settings and, per key, where its value came from (``default``, the file's
path, the environment variable, the flag); a bad value is refused with a ``ConfigError`` naming the key and
its source. ``server_config`` turns the settings into the ``server.context.Config`` the application reads.
README.md ("Configuration") lists every key; a test keeps the two in step.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from security.protocols import defaults
from server.context import Config
from server.endpoint import Tls
from vault.acts import ALLOWANCE
from vault.errors import VaultError
from vault.pin import Pin, check_https_url

PIN_KINDS = ("cert", "spki", "webpki")

__all__ = ["FLAGS", "ConfigError", "Effective", "Settings", "load", "server_config", "tls_of"]

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every option an operator may set. Field order is the order ``mvault-server config`` prints."""

    host: str = "127.0.0.1"  # address to listen on
    port: Port = 8443
    public_url: str = ""  # the URL members reach the server at (empty: derived from host and port)
    database_url: str = ""  # postgresql://USER@HOST/DB: PostgreSQL instead of SQLite in the data directory
    # TLS (server/endpoint.py, docs/tls-and-moves.md): the operator's certificate, or a reverse proxy in front
    tls_cert: str = ""  # a PEM certificate chain served instead of the self-signed one (a path)
    tls_key: str = ""  # its private key (a path)
    behind_proxy: bool = False  # a reverse proxy terminates TLS: plain HTTP on a loopback address
    pin: str = ""  # what clients pin: cert, spki, webpki, or KIND:HEX behind a proxy (empty: the mode's default)
    trusted_proxies: list[str] = msgspec.field(default_factory=list)  # proxies whose client-address header counts
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"  # the header those proxies set
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_upload: Positive = 16 * 1024**3  # bytes of one document version's envelope
    session_ttl: Seconds = 3600.0
    nonce_ttl: Seconds = 60.0
    # at most half the judge's allowance (vault/acts.py): a link an honest server accepted stays valid on replay
    clock_skew: Annotated[float, msgspec.Meta(gt=0, le=ALLOWANCE / 2)] = 600.0
    purge_interval: Seconds = 30.0
    rate_per_second: Annotated[float, msgspec.Meta(ge=0.1)] = 20.0
    rate_burst: Positive = 200
    rate_sources: Positive = 10_000
    member_refusals: Positive = 10
    shutdown_timeout: Seconds = 60.0  # at a stop: how long requests in flight (an upload) may take to finish
    # slow and stalled clients (README "Slow clients"; server/context.py Config says what each does)
    keepalive_timeout: Seconds = 75.0
    body_timeout: Seconds = 60.0
    upload_min_rate: Positive = 1024  # bytes per second
    live_send_timeout: Seconds = 30.0
    live_queue_bytes: Positive = 8 * 1024 * 1024
    download_stall_timeout: Seconds = 300.0
    quota_caps: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = msgspec.field(default_factory=dict)
    metrics_token: str = ""  # a secret: `Authorization: Bearer TOKEN` on /api/metrics
    metrics_loopback: bool = True  # a loopback peer may read /api/metrics without the token


KEYS: tuple[str, ...] = Settings.__struct_fields__
SECRETS = frozenset({"metrics_token", "database_url"})  # a URL may carry a password
# The command-line flag of a key, where there is one (``mvault-server run`` and ``config``).
FLAGS: dict[str, str] = {"host": "--host", "port": "--port", "log_format": "--log-format", "log_level": "--log-level",
                         "rate_per_second": "--rate", "rate_burst": "--burst", "public_url": "--public-url",
                         "tls_cert": "--tls-cert", "tls_key": "--tls-key", "behind_proxy": "--behind-proxy",
                         "pin": "--pin", "trusted_proxies": "--trusted-proxy", "proxy_header": "--proxy-header",
                         "database_url": "--database"}
PATHS = ("tls_cert", "tls_key")  # relative to the configuration file's directory when set there
DEFAULT_FILE = "config.toml"


def env_name(key: str) -> str:
    return f"MVAULT_{key.upper()}"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the key and where it came from."""


@dataclass(frozen=True)
class Effective:
    settings: Settings
    sources: dict[str, str]  # key -> "default", the file's path, "MVAULT_X" or "--flag"
    file: Path | None  # the file read, if any
    file_found: bool

    def shown(self, key: str) -> Any:
        """A key's value as printed: a secret that is set is masked."""
        value = getattr(self.settings, key)
        if key in SECRETS and value:
            return "********"
        return value


def load(data: Path | None, file: Path | None, env: Mapping[str, str], flags: Mapping[str, Any]) -> Effective:
    """The settings from defaults < ``file`` (or ``DATA/config.toml`` if it exists) < ``MVAULT_*`` in ``env`` <
    ``flags`` (key -> value, ``None`` for a flag not given)."""
    path = file if file is not None else (data / DEFAULT_FILE if data is not None else None)
    layers: list[tuple[dict[str, Any], str]] = []
    found = False
    if path is not None and (file is not None or path.exists()):
        layers.append((_checked(_read_file(path), lambda key: f"key {key!r} in {path}", base=path.parent),
                       str(path)))
        found = True
    for key in KEYS:
        if env_name(key) in env:
            name = env_name(key)
            value = _from_env(key, env[name])
            layers.append((_checked({key: value}, _named(f"environment variable {name}"), strict=False),
                           name))
    for key, value in flags.items():
        if value is not None:
            flag = FLAGS[key]
            layers.append((_checked({key: value}, _named(f"flag {flag}")), flag))
    merged: dict[str, Any] = {}
    sources = dict.fromkeys(KEYS, "default")
    for values, source in layers:
        for key, value in values.items():
            merged[key] = value
            sources[key] = source
    settings = msgspec.convert(merged, Settings)
    if settings.trusted_proxies and not settings.behind_proxy:
        raise ConfigError(f"trusted_proxies (from {sources['trusted_proxies']}) is for a server behind a reverse "
                          f"proxy: set behind_proxy too (from {sources['behind_proxy']}: false)")
    if settings.database_url and not settings.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"database_url (from {sources['database_url']}) must be a postgresql:// URL")
    return Effective(settings, sources, path, found)


def tls_of(settings: Settings) -> Tls:
    """The TLS options of ``settings`` as ``server.endpoint`` takes them (checked together there)."""
    return Tls(Path(settings.tls_cert) if settings.tls_cert else None,
               Path(settings.tls_key) if settings.tls_key else None, settings.behind_proxy, settings.pin or None)


def server_config(data: Path, settings: Settings) -> Config:
    """The application's ``Config`` for ``data`` with the operator's settings."""
    return Config(data_dir=data, public_url=settings.public_url, database_url=settings.database_url,
                  max_upload=settings.max_upload,
                  session_ttl=settings.session_ttl, nonce_ttl=settings.nonce_ttl, clock_skew=settings.clock_skew,
                  purge_interval=settings.purge_interval, quota_caps=dict(settings.quota_caps),
                  rate_per_second=settings.rate_per_second, rate_burst=settings.rate_burst,
                  rate_sources=settings.rate_sources, member_refusals=settings.member_refusals,
                  metrics_token=settings.metrics_token, metrics_loopback=settings.metrics_loopback,
                  keepalive_timeout=settings.keepalive_timeout, body_timeout=settings.body_timeout,
                  upload_min_rate=settings.upload_min_rate, live_send_timeout=settings.live_send_timeout,
                  live_queue_bytes=settings.live_queue_bytes, download_stall_timeout=settings.download_stall_timeout,
                  trusted_proxies=tuple(ip_network(a, strict=False) for a in settings.trusted_proxies),
                  proxy_header=settings.proxy_header)


def _named(source: str) -> Callable[[str], str]:
    """Where a variable's or flag's value came from, whichever key of it is bad (it has one)."""
    return lambda _key: source


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"configuration file {path} does not exist") from e
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"configuration file {path} is not valid TOML: {e}") from e


def _from_env(key: str, raw: str) -> Any:
    """An environment variable's text: a table (``quota_caps``) in TOML's inline syntax, a list
    (``trusted_proxies``) comma-separated, anything else as text that ``_checked`` converts to the key's type
    (numbers as written, booleans true/false or 1/0)."""
    if key == "trusted_proxies":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if key != "quota_caps":
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"environment variable {env_name(key)}: not a TOML inline table "
                          f"(e.g. {{ versions_per_day = 1000 }}): {e}") from e


_FIELD = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>.*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.*)`$")


def _checked(values: dict[str, Any], where: Callable[[str], str], strict: bool = True,
             base: Path | None = None) -> dict[str, Any]:
    """``values`` (one source's keys) as the schema's types (``strict``: exactly those types, as TOML and flags
    give them; else text converts to numbers and booleans, as the environment gives it), each value checked
    (``_problem``), relative paths taken from ``base`` (the file's directory); a ``ConfigError`` naming the first
    bad key (``where(key)`` says where it came from) otherwise."""
    try:
        checked = msgspec.convert(values, Settings, strict=strict)
    except msgspec.ValidationError as e:
        m = _FIELD.match(str(e))
        assert m is not None
        text, path = m["text"], (m["path"] or "").lstrip(".")
        unknown = _UNKNOWN.match(text)
        if unknown is not None:
            key = f"{path}.{unknown['name']}" if path else unknown["name"]
            raise ConfigError(f"{where(key)}: unknown key (known keys: {', '.join(KEYS)})") from e
        key = path.removesuffix("[...]") or "?"
        raise ConfigError(f"{where(key)}: {text[:1].lower()}{text[1:]}") from e
    caps = values.get("quota_caps", {})
    known = defaults().quotas
    for name in caps:
        if name not in known:
            raise ConfigError(f"{where(f'quota_caps.{name}')}: unknown quota (known: {', '.join(sorted(known))})")
    out = {key: getattr(checked, key) for key in values}
    for key in PATHS:
        if out.get(key):
            out[key] = str((base or Path.cwd()) / out[key])  # an absolute path stays as it is
    for key, value in out.items():
        problem = _problem(key, value)
        if problem:
            raise ConfigError(f"{where(key)}: {problem}")
    return out


def _problem(key: str, value: Any) -> str:
    """What is wrong with a value of the right type (empty: nothing): a URL, a file, a pin, an address."""
    if key == "public_url" and value:
        try:
            check_https_url(value)
        except VaultError as e:
            return e.message
    if key in PATHS and value and not Path(value).is_file():
        return f"no such file: {value}"
    if key == "pin" and value:
        kind, _, digest = value.partition(":")
        if kind not in PIN_KINDS:
            return f"{value!r} is not a pin: one of {', '.join(PIN_KINDS)}, or KIND:HEX behind a proxy"
        if digest:
            try:
                Pin.parse(value)
            except VaultError as e:
                return e.message
    if key == "trusted_proxies":
        for item in value:
            try:
                ip_network(item, strict=False)
            except ValueError:
                return f"{item!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8, ::1)"
    return ""
