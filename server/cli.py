"""``mvault-server``: initialize a data directory and serve it over HTTPS."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from aiohttp import web

from server.app import open_app
from server.context import Config
from server.store.sqlite.vault import SQLiteStorage
from server.tls import fingerprint, make_certificate, server_context
from vault import __version__
from vault.errors import VaultError
from vault.heap import tune_for_streaming
from vault.invite import InviteCode
from vault.links import invite_public

DEFAULT_PORT = 8443


@dataclass
class Initialized:
    url: str
    fingerprint: str
    invite: str | None


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"https://{shown}:{port}"


async def initialize(data: Path, host: str, port: int) -> Initialized:
    """Create DIR, certificate and founder invite if missing; return how to connect."""
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    cert, key = data / "server.crt", data / "server.key"
    if not cert.exists() or not key.exists():
        make_certificate(cert, key, host)
    fp = fingerprint(cert)
    url = _url(host, port)
    storage = await SQLiteStorage.open(data)
    try:
        secret = await storage.get_meta("founder_secret")
        if secret is None:
            secret = os.urandom(32)
            await storage.set_meta("founder_secret", secret)
            await storage.set_meta("founder_invite", invite_public(secret))
        founded = any(link.kind == "org" for link in await storage.all_links())
    finally:
        await storage.close()
    invite = None if founded else InviteCode(url, fp, None, secret).encode()
    return Initialized(url, fp.hex(), invite)


def _print(info: Initialized, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"url": info.url, "fingerprint": info.fingerprint, "invite": info.invite}))
        return
    click.echo(f"Member Vault server at {info.url}")
    click.echo(f"certificate fingerprint (SHA-256): {info.fingerprint}")
    if info.invite:
        click.echo("founder invite (give it only to the founder, out of band):")
        click.echo(f"  {info.invite}")
        click.echo("the founder runs:  mvault join <invite> --name <name>")
    else:
        click.echo("organization is founded; members invite others with `mvault invite`")


@click.group()
@click.version_option(__version__, "--version", prog_name="mvault-server", message="%(prog)s %(version)s")
def main() -> None:
    """Member Vault server."""


@main.command()
@click.option("--data", "data", type=click.Path(path_type=Path), required=True, help="data directory")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def init(data: Path, host: str, port: int, as_json: bool) -> None:
    """Create the data directory, keys and certificate; print URL, fingerprint, invite."""
    try:
        _print(asyncio.run(initialize(data, host, port)), as_json)
    except (VaultError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


async def serve(data: Path, host: str, port: int, as_json: bool, rate: float | None = None,
                burst: int | None = None) -> None:
    info = await initialize(data, host, port)
    config = Config(data_dir=data)
    if rate is not None:
        config.rate_per_second = rate
    if burst is not None:
        config.rate_burst = burst
    app = await open_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=server_context(data / "server.crt", data / "server.key"))
    await site.start()
    _print(info, as_json)
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


@main.command()
@click.option("--data", "data", type=click.Path(path_type=Path), required=True, help="data directory")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="print the connection info as JSON")
@click.option("--rate", type=click.FloatRange(0.1), default=None,
              help="requests without a session per second and source address [default: 20]")
@click.option("--burst", type=click.IntRange(1), default=None,
              help="burst of requests without a session per source address [default: 200]")
def run(data: Path, host: str, port: int, as_json: bool, rate: float | None, burst: int | None) -> None:
    """Serve DIR over HTTPS (initializing an empty DIR first)."""
    import uvloop

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_for_streaming()  # upload and download pieces reused, not faulted in again for each (vault/heap.py)
    try:
        uvloop.run(serve(data, host, port, as_json, rate, burst))
    except KeyboardInterrupt:
        pass
    except (VaultError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
