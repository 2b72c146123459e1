"""``mvault-server config`` and the options ``run`` shares with it: where the configuration file is, and the
flags that override it (``server/config.py`` reads and checks every source)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from server.config import FLAGS, KEYS, ConfigError, Effective, env_name, load

F = TypeVar("F", bound=Callable[..., Any])


def config_options(f: F) -> F:
    """``--config FILE`` and a flag per key of ``FLAGS`` (each ``None`` when not given: the file, the environment
    or the default decides)."""
    options = [
        click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="configuration file (TOML) [default: DIR/config.toml if it exists]"),
        click.option("--host", default=None, help="address to listen on [default: 127.0.0.1]"),
        click.option("--port", default=None, type=int, help="port to listen on [default: 8443]"),
        click.option("--log-format", "log_format", type=click.Choice(["text", "json"]), default=None,
                     help="log lines as text or one JSON object each [default: text]"),
        click.option("--log-level", "log_level", type=click.Choice(["debug", "info", "warning", "error"]),
                     default=None, help="the least important records logged [default: info]"),
        click.option("--rate", "rate_per_second", type=click.FloatRange(0.1), default=None,
                     help="requests without a session per second and source address [default: 20]"),
        click.option("--burst", "rate_burst", type=click.IntRange(1), default=None,
                     help="burst of requests without a session per source address [default: 200]"),
        click.option("--public-url", "public_url", default=None, help="the https:// URL members use (written into "
                     "invites, device links and recovery keys) [default: https://HOST:PORT]"),
        click.option("--tls-cert", "tls_cert", default=None,
                     help="serve this PEM certificate chain (e.g. from a public CA) instead of the self-signed one"),
        click.option("--tls-key", "tls_key", default=None, help="the private key of --tls-cert (PEM)"),
        click.option("--behind-proxy", "behind_proxy", is_flag=True, default=None,
                     help="a reverse proxy terminates TLS: serve plain HTTP on a loopback address"),
        click.option("--pin", "pin", default=None, help="what clients pin: cert, spki or webpki (with "
                     "--behind-proxy: webpki or spki:HEX of the proxy's certificate) [default: cert, spki with "
                     "--tls-cert]"),
        click.option("--trusted-proxy", "trusted_proxies", multiple=True, default=None,
                     help="with --behind-proxy: an address or network of a proxy whose --proxy-header names the "
                     "client (repeat for several; replaces the file's and the environment's list)"),
        click.option("--proxy-header", "proxy_header", type=click.Choice(["x-forwarded-for", "forwarded"]),
                     default=None, help="the header the trusted proxies set [default: x-forwarded-for]"),
        click.option("--database", "database_url", default=None, metavar="URL",
                     help="postgresql://USER@HOST/DB: keep the data in PostgreSQL [default: SQLite in DIR]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def effective(data: Path | None, config_file: Path | None, flags: dict[str, Any]) -> Effective:
    """The checked configuration; on a bad one, one ``error:`` line and exit 1."""
    assert set(flags) <= set(FLAGS), flags
    if "trusted_proxies" in flags:  # a repeatable flag: () when not given, a list of what was given otherwise
        flags = {**flags, "trusted_proxies": list(flags["trusted_proxies"]) or None}
    try:
        return load(data, config_file, os.environ, flags)
    except ConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


@click.command("config")
@click.option("--data", "data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="data directory (its config.toml is read if it exists)")
@config_options
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def config_command(data: Path | None, config_file: Path | None, as_json: bool, **flags: Any) -> None:
    """Print the effective configuration and where each value came from."""
    eff = effective(data, config_file, flags)
    if as_json:
        click.echo(json.dumps({
            "file": str(eff.file) if eff.file is not None else None,
            "file_found": eff.file_found,
            "options": {key: {"value": eff.shown(key), "source": eff.sources[key], "env": env_name(key),
                              "flag": FLAGS.get(key)} for key in KEYS},
        }))
        return
    if eff.file is None:
        click.echo("configuration file: none (no --data or --config)")
    else:
        click.echo(f"configuration file: {eff.file}{'' if eff.file_found else ' (absent: defaults)'}")
    width = max(len(key) for key in KEYS)
    for key in KEYS:
        click.echo(f"{key:<{width}}  {json.dumps(eff.shown(key))}  ({eff.sources[key]})")
