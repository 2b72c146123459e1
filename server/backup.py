"""``mvault-server backup`` and ``restore``: an online, consistent copy of a data directory in one archive.

Order of the copy (why it is consistent while a server serves the directory):

1. ``audit.db`` is snapshotted (SQLite's online backup API: one read transaction, so one committed state);
2. then ``vault.db``, the same way;
3. then the other top-level files (keys, certificate, configuration; never SQLite's ``-wal``/``-shm`` files);
4. then every blob the ``vault.db`` snapshot references, each hashed as it is streamed and compared with the
   SHA-256 its signed record names.

The server appends an audit event only after the change it records was committed to ``vault.db``, so a vault
snapshot taken after the audit snapshot holds every change the audit snapshot records (and maybe a few more):
the same state a crash between those two commits leaves, which the server already recovers from. The other
order would record acts whose state is missing. A blob is written (and made durable) before the version that
references it is committed, and a referenced blob is never deleted (only the blob of a refused upload, which no
version references, and unreferenced ones at start-up), so every blob of the snapshot exists; one that is
missing or does not match its record all the same stops the backup (``BackupFailed``) instead of writing an
archive that would not restore.

On PostgreSQL (``database_url``), steps 1 and 2 are one: every table read from one snapshot of the database (a
repeatable-read transaction) into ``audit.db`` and ``vault.db`` files (``server/pgdump.py``). The archive is then
an SQLite deployment's: ``restore`` makes an SQLite data directory of it, which ``mvault-server migrate`` copies
into a new PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from security.merkle import MerkleTree, leaf_hash
from server.archive import ArchiveRefused, ArchiveWriter, member_name_ok, read_archive
from server.check import CheckReport, check_data
from server.datalock import LOCK_FILE
from server.pgdump import dump
from vault.agefile import decrypting, encrypting, read_identities
from vault.bodyformat import BODY_V1, Hasher, body_hasher
from vault.envelope import Record
from vault.errors import VaultError
from vault.fileio import fsync_dir

AGE_MAGIC = b"age-encryption.org/v1\n"
DATABASES = ("audit.db", "vault.db")  # in this order: see the module's docstring


class BackupFailed(VaultError):
    """The backup could not be written; no archive was left under the target name."""


class RestoreRefused(VaultError):
    """Nothing was restored (the target directory was left as it was)."""


@dataclass
class BackupDone:
    path: Path
    files: int
    bytes: int
    manifest: dict[str, Any]
    encrypted: bool


def _snapshot(db: Path, into: Path) -> None:
    """A consistent copy of the SQLite database ``db`` (possibly in use, WAL) as one self-contained file."""
    if not db.is_file():
        raise BackupFailed(f"{db} is missing: not a Member Vault data directory")
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(into)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def audit_state(db: Path) -> dict[str, Any]:
    """The audit log's size and root and its last checkpoint, from a snapshot (not in use)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tree = MerkleTree()
        for leaf, stored in con.execute("SELECT leaf, hash FROM events ORDER BY idx"):
            tree.append(leaf_hash(bytes(leaf)) if leaf is not None else bytes(stored))
        row = con.execute("SELECT size, raw, sig FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    finally:
        con.close()
    last = None if row is None else {"size": int(row[0]), "raw": bytes(row[1]).hex(), "sig": bytes(row[2]).hex()}
    return {"size": tree.size, "root": tree.root().hex(), "checkpoint": last}


def _blobs_of(db: Path) -> Iterator[tuple[str, bytes, int]]:
    """Every (blob name, its signed body hash, its body format) the vault snapshot references."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        seen: set[str] = set()
        for blob, record in con.execute("SELECT blob, record FROM versions ORDER BY blob"):
            if blob not in seen:
                seen.add(blob)
                rec = Record.parse(bytes(record))
                yield str(blob), rec.body_hash, rec.core.body
    finally:
        con.close()


def _counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        q = {"documents": "SELECT COUNT(*) FROM (SELECT DISTINCT team, doc FROM versions)",
             "versions": "SELECT COUNT(*) FROM versions", "threads": "SELECT COUNT(*) FROM threads",
             "messages": "SELECT COUNT(*) FROM messages", "links": "SELECT COUNT(*) FROM links"}
        return {k: int(con.execute(sql).fetchone()[0]) for k, sql in q.items()}
    finally:
        con.close()


def _write(out: BinaryIO, data: Path, snaps: Path, created: int, database_url: str) -> dict[str, Any]:
    writer = ArchiveWriter(out, created)
    if database_url:
        dump(database_url, snaps)  # one snapshot of every table: the order above does not matter there
    for name in DATABASES if not database_url else ():
        _snapshot(data / name, snaps / name)
    for name in DATABASES:
        writer.add(name, snaps / name)
    for f in sorted(data.iterdir()):
        if f.is_file() and f.name not in (*DATABASES, LOCK_FILE) and member_name_ok(f.name):
            writer.add(f.name, f)
    blob_bytes = 0
    for name, body_hash, body in _blobs_of(snaps / "vault.db"):
        # format 1 signs the SHA-256 the archive computes anyway; format 2 its BLAKE3, computed on the same pass
        other = None if body == BODY_V1 else body_hasher(body)

        def matches(sha: str, name: str = name, expected: bytes = body_hash, other: Hasher | None = other) -> None:
            if (bytes.fromhex(sha) if other is None else other.digest()) != expected:
                raise BackupFailed(f"blob {name} does not match its record (run mvault-server check)")

        try:
            blob_bytes += writer.add(f"blobs/{name[:2]}/{name}", data / "blobs" / name[:2] / name, matches,
                                     None if other is None else other.update).size
        except FileNotFoundError:
            raise BackupFailed(f"blob {name}, referenced by the database, is missing (run mvault-server check)") \
                from None
    return writer.finish({"audit": audit_state(snaps / "audit.db"), "counts": _counts(snaps / "vault.db"),
                          "blob_bytes": blob_bytes})


class _Pipelined:
    """A write-only stream whose writes a worker thread passes on to ``out`` (at most ``depth`` pieces queued,
    ~8 MiB), so that reading and hashing the next piece goes on while the disk takes this one."""

    def __init__(self, out: BinaryIO, depth: int = 8) -> None:
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._out.write(item)
            except BaseException as e:  # raised in the producer by its next write, flush or close
                self._error = e
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> int:
        self._raise()
        self._queue.put(data)
        return len(data)

    def flush(self) -> None:
        """Every queued piece written (and ``out`` flushed)."""
        self._queue.join()
        self._raise()
        self._out.flush()

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join()


@contextlib.contextmanager
def _pipelined(out: BinaryIO) -> Iterator[BinaryIO]:
    sink = _Pipelined(out)
    try:
        yield sink  # type: ignore[misc]
    finally:
        sink.close()


@contextlib.contextmanager
def _written_back(fd: int, every: float = 0.5) -> Iterator[None]:
    """While the block runs, a thread fdatasyncs ``fd`` every ``every`` seconds, so that the disk writes the
    archive while the rest is still being read and hashed (instead of all of it in the final fsync)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            with contextlib.suppress(OSError):  # the final fsync, after the block, reports a real failure
                os.fdatasync(fd)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()


def backup(data: Path, to: Path, recipient: str | None = None, now: int | None = None,
           database_url: str = "") -> BackupDone:
    """Write an archive of ``data`` to ``to`` (which must not exist), age-encrypted to ``recipient`` if given;
    its rows from the PostgreSQL database at ``database_url`` if given (archived as an SQLite deployment's
    files, ``server/pgdump.py``). The archive is written under a temporary name beside ``to`` (0600), fsync'd,
    then renamed."""
    if not database_url and not (data / "vault.db").is_file():
        raise BackupFailed(f"{data} is not a Member Vault data directory (no vault.db)")
    if to.exists():
        raise BackupFailed(f"{to} exists: choose a new name (a backup is never overwritten)")
    if to.absolute().parent.resolve().is_relative_to(data.resolve()):
        raise BackupFailed(f"{to} is inside the data directory {data}: write the backup elsewhere")
    created = int(time.time()) if now is None else now
    partial = to.parent / f".{to.name}.{uuid.uuid4().hex}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with (os.fdopen(fd, "wb") as raw, _written_back(fd),
              tempfile.TemporaryDirectory(prefix=".mvault-backup-", dir=to.parent) as snaps):
            if recipient is None:
                with _pipelined(raw) as sink:
                    manifest = _write(sink, data, Path(snaps), created, database_url)
            else:
                with encrypting(raw, recipient) as sink:
                    manifest = _write(sink, data, Path(snaps), created, database_url)
            raw.flush()
            os.fsync(raw.fileno())
        if to.exists():
            raise BackupFailed(f"{to} appeared while the backup was written; it was left alone")
        os.rename(partial, to)
        fsync_dir(to.parent)
    except sqlite3.Error as e:
        raise BackupFailed(f"cannot read the databases of {data}: {e}") from None
    finally:
        partial.unlink(missing_ok=True)
    return BackupDone(to, len(manifest["files"]), to.stat().st_size, manifest, recipient is not None)


@dataclass
class RestoreDone:
    data: Path
    manifest: dict[str, Any]
    report: CheckReport


@contextlib.contextmanager
def _plain(src: BinaryIO, identity: Path | None) -> Iterator[BinaryIO]:
    if identity is None:
        yield src
    else:
        with decrypting(src, read_identities(identity)) as plain:
            yield plain


def restore(archive: Path, data: Path, identity: Path | None = None) -> RestoreDone:
    """Restore ``archive`` into ``data`` (missing or empty). Everything is written into a temporary sibling
    directory, verified (every hash, the archive's digest, age's authentication, then ``check``), and only then
    renamed to ``data``; on any failure the sibling is removed and ``data`` is left as it was."""
    if data.exists() and (not data.is_dir() or any(data.iterdir())):
        raise RestoreRefused(f"{data} exists and is not empty: restore only into a new or empty directory")
    if not archive.is_file():
        raise RestoreRefused(f"{archive} is not a file")
    if identity is None:
        with archive.open("rb") as f:
            if f.read(len(AGE_MAGIC)) == AGE_MAGIC:
                raise RestoreRefused(f"{archive} is age-encrypted: give the key file with --identity")
    data.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{data.name}.restore-", dir=data.parent))
    try:
        with archive.open("rb") as src, _plain(src, identity) as plain:
            manifest = read_archive(plain, work)
        (work / "blobs").mkdir(exist_ok=True)
        (work / "tmp").mkdir(exist_ok=True)
        report = check_data(work, grace=0)
        if report.problems:
            raise RestoreRefused(f"the restored data fails its check ({len(report.problems)} problems; the first: "
                                 f"{report.problems[0].line()})")
        if data.exists():
            data.rmdir()
        os.rename(work, data)
        fsync_dir(data.parent)
    except ArchiveRefused as e:
        raise RestoreRefused(f"archive refused, nothing restored: {e}") from None
    finally:
        if work.exists():
            _remove_tree(work)
    return RestoreDone(data, manifest, report)


def _remove_tree(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            os.rmdir(os.path.join(dirpath, name))
    os.rmdir(root)
