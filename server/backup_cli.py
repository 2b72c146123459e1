"""``mvault-server backup``, ``restore`` and ``check`` (server/backup.py, server/check.py)."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from server.backup import BackupDone, RestoreDone, backup, restore
from server.check import CheckReport, check_data
from server.config_cli import effective
from server.migrate import MigrateDone, migrate
from vault.errors import VaultError

DATA = click.Path(path_type=Path, file_okay=False)
T = TypeVar("T")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print one JSON object")
DATABASE_OPTION = click.option("--database", "database_url", default=None, metavar="URL",
                               help="the deployment's PostgreSQL database [default: as `run` finds it: "
                               "DIR/config.toml, MVAULT_DATABASE_URL; else SQLite in DIR]")


def _database(data: Path, flag: str | None) -> str:
    """The database URL ``run`` would use on ``data`` with ``--database flag`` ("" for SQLite)."""
    return effective(data if data.is_dir() else None, None, {"database_url": flag}).settings.database_url


def _fail(e: Exception) -> NoReturn:
    text = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.filename else str(e)
    click.echo("error: " + " ".join(text.split()), err=True)  # one line, whatever a library's message holds
    sys.exit(1)


def _attempt(f: Callable[[], T]) -> T:
    """``f()``, or one ``error:`` line and exit 1 when it refuses (``VaultError``) or the disk fails."""
    try:
        return f()
    except (VaultError, OSError) as e:
        _fail(e)


def _audit_line(audit: dict[str, Any]) -> str:
    cp = audit.get("checkpoint")
    return f"audit log: {audit['size']} events, root {audit['root']}" + (
        f", last checkpoint at {cp['size']}" if cp else ", no checkpoint yet")


@click.command("backup")
@click.option("--data", "data", type=DATA, required=True, help="data directory (may be in use by a server)")
@click.option("--to", "to", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="archive file to write (must not exist)")
@click.option("--age-recipient", "recipient", default=None, metavar="AGE_PUBLIC_KEY",
              help="encrypt the whole archive to this age public key (age1...)")
@DATABASE_OPTION
@JSON_OPTION
def backup_command(data: Path, to: Path, recipient: str | None, database_url: str | None, as_json: bool) -> None:
    """Write a consistent archive of DIR (online: the server may keep serving)."""
    url = _database(data, database_url)
    done: BackupDone = _attempt(lambda: backup(data, to, recipient, database_url=url))
    m = done.manifest
    if as_json:
        click.echo(json.dumps({"path": str(done.path), "files": done.files, "bytes": done.bytes,
                               "encrypted": done.encrypted, "created": m["created"], "counts": m["counts"],
                               "audit": m["audit"]}))
        return
    click.echo(f"backup written to {done.path} ({done.bytes} bytes, {done.files} files"
               + (", age-encrypted)" if done.encrypted else ", NOT encrypted: it holds the server's keys)"))
    click.echo(f"documents: {m['counts']['documents']}, versions: {m['counts']['versions']}, "
               f"threads: {m['counts']['threads']}, messages: {m['counts']['messages']}")
    click.echo(_audit_line(m["audit"]))


@click.command("restore")
@click.option("--from", "archive", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="archive written by mvault-server backup")
@click.option("--data", "data", type=DATA, required=True, help="new (or empty) data directory")
@click.option("--identity", "identity", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="AGE_KEY_FILE", help="age key file to decrypt an encrypted archive")
@JSON_OPTION
def restore_command(archive: Path, data: Path, identity: Path | None, as_json: bool) -> None:
    """Restore an archive into a new data directory, verified before anything is put in place."""
    done: RestoreDone = _attempt(lambda: restore(archive, data, identity))
    m, s = done.manifest, done.report.summary
    if as_json:
        click.echo(json.dumps({"data": str(done.data), "created": m["created"], "counts": m["counts"],
                               "audit": m["audit"], "check": s}))
        return
    taken = datetime.datetime.fromtimestamp(m["created"], datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    click.echo(f"restored {archive} into {done.data} (backup taken {taken})")
    click.echo(f"documents: {s['documents']}, versions: {s['versions']}, threads: {s['threads']}, "
               f"messages: {s['messages']}, members: {s.get('members', 0)}, teams: {s.get('teams', 0)}")
    click.echo(_audit_line(m["audit"]))
    click.echo("warning: members whose clients saw newer state than this backup will be told the server was "
               "restored from an older state; give the Security Team the audit size and root above.")


def _print_report(report: CheckReport, data: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": not report.problems, "problems": [p.as_json() for p in report.problems],
                               "repaired": report.repaired, "summary": report.summary}))
    else:
        for path in report.repaired:
            click.echo(f"removed: {path}")
        for p in report.problems:
            click.echo(p.line())
        if not report.problems:
            s = report.summary
            click.echo(f"ok: {data}: {s.get('documents', 0)} documents, {s.get('versions', 0)} versions, "
                       f"{s.get('blobs', 0)} blobs ({s.get('blob_bytes', 0)} bytes), {s.get('threads', 0)} threads, "
                       f"{s.get('messages', 0)} messages, audit log {s.get('audit_size', 0)} events, root "
                       f"{s.get('audit_root', '')}, {s.get('cosignatures', 0)} cosignatures"
                       + (f", {report.in_flight} in flight" if report.in_flight else ""))
    if report.problems:
        click.echo(f"error: {len(report.problems)} problems found in {data}", err=True)
        sys.exit(1)


@click.command("check")
@click.option("--data", "data", type=DATA, required=True, help="data directory (may be in use by a server)")
@click.option("--repair-orphans", "repair", is_flag=True,
              help="delete orphan blobs and leftover temporary files (never anything referenced)")
@DATABASE_OPTION
@JSON_OPTION
def check_command(data: Path, repair: bool, database_url: str | None, as_json: bool) -> None:
    """Check DIR: blob hashes, chains, version chains, audit log and checkpoints, orphans."""
    if not data.is_dir():
        _fail(ValueError(f"{data} is not a directory"))
    url = _database(data, database_url)
    if url and repair:
        _fail(ValueError("--repair-orphans is for SQLite deployments: on PostgreSQL, servers remove unreferenced "
                         "blobs when they start"))
    report = _attempt(lambda: check_data(data, repair, database_url=url))
    _print_report(report, data, as_json)


@click.command("migrate")
@click.option("--data", "data", type=DATA, required=True, help="data directory of a stopped SQLite deployment")
@click.option("--to", "url", required=True, metavar="postgresql://...", help="URL of an empty PostgreSQL database")
@JSON_OPTION
def migrate_command(data: Path, url: str, as_json: bool) -> None:
    """Copy a stopped SQLite deployment into an empty PostgreSQL database, proved equal on both sides."""
    done: MigrateDone = _attempt(lambda: migrate(data, url))
    s = done.summary
    if as_json:
        click.echo(json.dumps({"data": str(data), "database": done.target, **s, "blobs": done.blobs}))
        return
    click.echo(f"migrated {data} into {done.target}: proved equal on both sides")
    click.echo("rows: " + ", ".join(f"{t} {n}" for t, n in s["tables"].items()))
    cp = s["audit"]["checkpoint"]
    click.echo(f"audit log: {s['audit']['size']} events, root {s['audit']['root']}"
               + (f", last checkpoint at {cp}" if cp is not None else ", no checkpoint yet"))
    for chain, head in s["chains"].items():
        click.echo(f"chain {chain}: seq {head['seq']}, head {head['head']}")
    for doc, head in s["documents"].items():
        click.echo(f"document {doc}: version {head['seq']} {head['version']}")
    click.echo(f"blobs: {done.blobs} referenced, all present in {data / 'blobs'}")
    click.echo(f"next: mvault-server run --data {data} --database <the same URL> (never the SQLite server again "
               "on this directory)")
