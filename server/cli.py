"""``mvault-server``: initialize a data directory and serve it over HTTPS."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import msgspec
import uvloop
from aiohttp import web

from server import datalock
from server.app import open_app
from server.backup_cli import backup_command, check_command, migrate_command, restore_command
from server.config import Settings, server_config, tls_of
from server.config_cli import config_command, config_options, effective
from server.endpoint import SELF_SIGNED, Endpoint, Tls, pin_command, resolve
from server.logs import RequestLogger, configure
from server.store.backends import open_storage
from server.store.postgres.tables import holds_deployment
from server.workers import is_worker, refusal, supervise
from vault import __version__
from vault.errors import VaultError
from vault.heap import tune_for_streaming
from vault.invite import InviteCode
from vault.links import invite_public

DEFAULT_PORT = 8443
log = logging.getLogger("mvault.server")


@dataclass
class Initialized:
    url: str
    fingerprint: str
    invite: str | None
    endpoint: Endpoint


async def initialize(data: Path, host: str, port: int, public_url: str = "", tls: Tls = SELF_SIGNED,
                     database_url: str = "", collect: bool = True) -> Initialized:
    """Create DIR, certificate and founder invite (in the database at ``database_url``, if given) if missing;
    return how to connect."""
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    endpoint = resolve(data, host, port, public_url, tls)
    if database_url and (data / "vault.db").is_file() and not await holds_deployment(database_url):
        # Its start would collect the SQLite deployment's blobs as garbage (no version of this database names them).
        raise VaultError(f"{data} holds an SQLite deployment (vault.db) and the database is empty: copy it first "
                         f"with mvault-server migrate --data {data} --to <URL>")
    with datalock.alone(data) as only:  # never collect under a serving process (server/datalock.py)
        storage = await open_storage(data, database_url, collect and only)
    try:
        secret = await storage.get_meta("founder_secret")
        if secret is None:
            secret = os.urandom(32)
            await storage.set_meta("founder_secret", secret)
            await storage.set_meta("founder_invite", invite_public(secret))
        founded = any(link.kind == "org" for link in await storage.all_links())
    finally:
        await storage.close()
    pin = endpoint.pin
    invite = None if founded else InviteCode(endpoint.url, pin.value, None, secret, pin.kind).encode()
    return Initialized(endpoint.url, endpoint.fingerprint, invite, endpoint)


def _print(info: Initialized, as_json: bool) -> None:
    if info.endpoint.warning:
        click.echo(f"warning: {info.endpoint.warning}", err=True)
    if as_json:
        click.echo(json.dumps({"url": info.url, "fingerprint": info.fingerprint, "invite": info.invite,
                               "pin": str(info.endpoint.pin)}))
        return
    click.echo(f"Member Vault server at {info.url}")
    if info.fingerprint:
        click.echo(f"certificate fingerprint (SHA-256): {info.fingerprint}")
    click.echo(f"clients pin: {info.endpoint.pin}")
    if info.endpoint.warning:
        click.echo(f"WARNING: {info.endpoint.warning}")
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
@config_options
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def init(data: Path, config_file: Path | None, as_json: bool, **flags: Any) -> None:
    """Create the data directory, keys and certificate; print URL, fingerprint, invite. Reads the configuration
    as ``run`` does (file < ``MVAULT_*`` < flags)."""
    settings = effective(data, config_file, flags).settings
    try:
        _print(asyncio.run(initialize(data, settings.host, settings.port, settings.public_url, tls_of(settings),
                                      settings.database_url)), as_json)
    except (VaultError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


async def serve(data: Path, settings: Settings, as_json: bool, worker: bool = False) -> None:
    """Serve until SIGINT or SIGTERM. Whatever fails on the way up (the port is taken, the certificate does not
    load) closes what was opened before the error leaves, so the process ends (an open database's thread
    would keep it alive). ``worker``: one of ``--workers`` (server/workers.py): the port is shared
    (``SO_REUSEPORT``), nothing is collected and the parent prints how to connect."""
    tls = tls_of(settings)
    info = await initialize(data, settings.host, settings.port, settings.public_url, tls, settings.database_url,
                            collect=not worker)
    config = server_config(data, settings)
    config.public_url = info.url  # login statements must name it (server/routes/auth.py)
    config.collect_garbage = not worker
    app = await open_app(config)
    runner = web.AppRunner(app, access_log=logging.getLogger("mvault.access"), access_log_class=RequestLogger,
                           shutdown_timeout=settings.shutdown_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=info.endpoint.ssl_context(data, tls),
                           reuse_port=worker or None)
        await site.start()
        if not worker:
            _print(info, as_json)
        sys.stdout.flush()
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        log.info("started", extra={"fields": {"version": __version__, "listen": f"{host}:{settings.port}",
                                              "data_dir": str(data),
                                              "backend": "postgresql" if settings.database_url else "sqlite"}})
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
    log.info("stopped")


@main.command()
@click.option("--data", "data", type=click.Path(path_type=Path), required=True, help="data directory")
@config_options
@click.option("--json", "as_json", is_flag=True, help="print the connection info as JSON")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="server processes on the port (more than 1: PostgreSQL only)")
def run(data: Path, config_file: Path | None, as_json: bool, workers: int, **flags: Any) -> None:
    """Serve DIR over HTTPS (initializing an empty DIR first)."""
    chosen = effective(data, config_file, flags)
    settings = chosen.settings
    if settings.behind_proxy and chosen.sources["metrics_loopback"] == "default":
        # Behind the proxy every request comes from loopback: the exemption would open the metrics to anyone.
        settings = msgspec.structs.replace(settings, metrics_loopback=False)
    configure(settings.log_format, settings.log_level)
    why_not = refusal(workers, settings.database_url)
    if why_not is not None:
        click.echo(f"error: {why_not}", err=True)
        sys.exit(1)
    if workers > 1:
        sys.exit(_run_workers(data, settings, as_json, workers))
    tune_for_streaming()  # upload and download pieces reused, not faulted in again for each (vault/heap.py)
    try:
        uvloop.run(serve(data, settings, as_json, worker=is_worker()))
    except KeyboardInterrupt:
        pass
    except (VaultError, OSError, ValueError) as e:  # ValueError: a certificate that does not load
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


def _run_workers(data: Path, settings: Settings, as_json: bool, workers: int) -> int:
    """The parent of ``--workers``: initialize (and collect) once, then supervise (server/workers.py)."""
    try:
        info = asyncio.run(initialize(data, settings.host, settings.port, settings.public_url, tls_of(settings),
                                      settings.database_url))
    except (VaultError, OSError, ValueError) as e:
        click.echo(f"error: {e}", err=True)
        return 1

    def ready() -> None:
        _print(info, as_json)
        sys.stdout.flush()
        log.info("started", extra={"fields": {"version": __version__, "workers": workers, "data_dir": str(data),
                                              "backend": "postgresql"}})

    worker = [sys.executable, sys.argv[0], *sys.argv[1:]]  # this very command, as each worker
    code = supervise(worker, workers, settings.host, settings.port, ready, settings.shutdown_timeout)
    log.info("stopped")
    return code


main.add_command(config_command)
main.add_command(pin_command)
main.add_command(backup_command)
main.add_command(restore_command)
main.add_command(check_command)
main.add_command(migrate_command)


if __name__ == "__main__":
    main()
