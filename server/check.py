"""``mvault-server check``: is a data directory whole? Read-only, while a server serves it or not.

What is checked (each failure is one ``Problem``):

- every chain replays with the server's own code (``server.directory.Directory.load``);
- every document's versions form a chain as the server accepts them (seq 1, 2, ...; each names the
  previous one as parent; the record's own team, document, seq, length and version id; the author's device
  signature, by the device active at the record's time);
- every referenced blob exists, has the record's length, and its SHA-256 is the body hash the record signs
  (the blob's name is the version id, a hash over that record: so each blob's hash matches its name); read in
  1 MiB pieces;
- the audit log: its leaves are contiguous from 0 and each stored hash is its leaf's hash; every signed
  checkpoint is signed by the server's log key (``log.key``), within the log, and its root is the log's root
  at its size (so every checkpoint is consistent with every other and the last one is the log's root there);
- every thread record and message (signatures by device keys, each sender's sequence and previous-message links)
  and every witness cosignature (signed by a Security Team member's device, per the organization chain):
  ``server/check_threads.py``;
- no orphan blob (on disk, referenced by no version) and no leftover temporary file (``tmp/``, ``.*.tmp``,
  ``.*.partial``). A serving server has, for a moment, a blob on disk that its version does not reference
  yet and the temporary file of an upload in progress: those younger than ``GRACE`` seconds are counted as
  in flight, not reported. ``repair`` (``--repair-orphans``) deletes the reported orphans and temporary
  files, each after checking once more that no version references it; never anything else.

Both databases are read in one read transaction each (``mode=ro``), so a serving server's writes are not
seen half-done. Blobs are listed before the database is read: a blob the listing missed cannot be an orphan.
On PostgreSQL (``database_url``) the rows are first read from one snapshot of the database into SQLite files
(``server/pgdump.py``) and checked by the same code; ``repair`` is refused there (``server/backup_cli.py``): its
last look before a deletion would be at the snapshot, not at what the servers commit meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from security.events import Checkpoint
from security.merkle import MerkleTree, leaf_hash
from server.check_threads import check_cosignatures, check_threads
from server.directory import Directory
from server.pgdump import dump
from server.store.sqlite.vault import SQLiteStorage
from vault.bodyformat import body_hasher, hash_name
from vault.envelope import Record
from vault.errors import VaultError
from vault.logsign import log_keypair

GRACE = 600  # seconds: an unreferenced blob or temporary file younger than this may belong to an upload in flight
CHUNK = 1 << 20


@dataclass(frozen=True)
class Problem:
    # chain | version | blob-missing | blob-corrupt | orphan | temporary | audit | missing | thread | message |
    # cosignature
    kind: str
    path: str
    detail: str

    def line(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail}


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    in_flight: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _listing(data: Path) -> tuple[dict[str, Path], list[Path]]:
    """Blobs on disk (name -> path; anything else under blobs/ counts too) and leftover temporary files."""
    blobs: dict[str, Path] = {}
    root = data / "blobs"
    if root.is_dir():
        for sub in root.iterdir():
            for f in sub.iterdir() if sub.is_dir() else [sub]:
                in_place = f.parent == root / f.name[:2]
                blobs[f.name if in_place else f.relative_to(root).as_posix()] = f  # misplaced: never a used name
    temps = sorted((data / "tmp").iterdir()) if (data / "tmp").is_dir() else []
    temps += sorted(f for f in data.iterdir() if f.name.startswith(".") and f.name.endswith((".tmp", ".partial")))
    return blobs, temps


def _body_hash(path: Path, body: int) -> tuple[int, str]:
    """The blob's length and the hash its body format signs (SHA-256 for format 1, BLAKE3 for 2), in hex."""
    h, n = body_hasher(body), 0
    with path.open("rb") as f:
        while data := f.read(CHUNK):
            h.update(data)
            n += len(data)
    return n, h.digest().hex()


async def _directory(dbs: Path, data: Path) -> Directory:
    db = await aiosqlite.connect(f"file:{dbs / 'vault.db'}?mode=ro", uri=True, isolation_level=None)
    try:
        await db.execute("BEGIN")
        return await Directory.load(SQLiteStorage(db, data))
    finally:
        await db.close()


def _versions(con: sqlite3.Connection) -> Iterator[tuple[str, str, str, int, bytes, str, int]]:
    for r in con.execute("SELECT vid, team, doc, seq, record, blob, body_len FROM versions ORDER BY team, doc, seq"):
        yield str(r[0]), str(r[1]), str(r[2]), int(r[3]), bytes(r[4]), str(r[5]), int(r[6])


def _check_versions(con: sqlite3.Connection, directory: Directory | None, report: CheckReport
                    ) -> dict[str, tuple[int, bytes, int]]:
    """Problems of every document's version chain; the referenced blobs (name -> (length, body hash, format))."""
    used: dict[str, tuple[int, bytes, int]] = {}
    prev: tuple[str, str, int, str] = ("", "", 0, "")
    docs = 0
    for vid, team, doc, seq, raw, blob, body_len in _versions(con):
        where = f"team {team} document {doc} version {seq}"
        if (team, doc) != prev[:2]:
            docs += 1
            prev = (team, doc, 0, "")
        try:
            rec = Record.parse(raw)
            core, wrong = rec.core, []
            if rec.version_id != vid or blob != vid:
                wrong.append("its id is not its record's hash")
            if (core.team, core.doc, core.seq, core.body_len) != (team, doc, seq, body_len):
                wrong.append("its record names another team, document, seq or length")
            if seq != prev[2] + 1 or core.parent != (prev[3] or None):
                wrong.append(f"it does not follow version {prev[2]} (seq or parent)")
            if directory is not None:
                rec.verify(directory.member(core.author).device_at(core.device, core.time).sign_public)
            used[blob] = (body_len, rec.body_hash, core.body)
            if wrong:
                report.problems.append(Problem("version", where, "; ".join(wrong)))
        except VaultError as e:
            report.problems.append(Problem("version", where, f"record does not verify: {e}"))
        prev = (team, doc, seq, vid)
    report.summary.update(documents=docs, versions=sum(1 for _ in con.execute("SELECT 1 FROM versions")))
    return used


def _check_blobs(data: Path, used: dict[str, tuple[int, bytes, int]], report: CheckReport) -> None:
    total = 0
    for name, (length, body_hash, body) in sorted(used.items()):
        path = data / "blobs" / name[:2] / name
        rel = path.relative_to(data).as_posix()
        try:
            size, digest = _body_hash(path, body)
        except FileNotFoundError:
            report.problems.append(Problem("blob-missing", rel, "referenced by a document version, not on disk"))
            continue
        total += size
        if size != length or digest != body_hash.hex():
            report.problems.append(Problem("blob-corrupt", rel, f"{size} bytes with {hash_name(body)} {digest}; its "
                                                                f"record signs {length} bytes with {body_hash.hex()}"))
    report.summary.update(blobs=len(used), blob_bytes=total)


def _problem(report: CheckReport) -> Callable[[str, str, str], None]:
    return lambda kind, where, detail: report.problems.append(Problem(kind, where, detail))


def _check_audit(data: Path, dbs: Path, directory: Directory | None, report: CheckReport) -> None:
    db = dbs / "audit.db"
    try:
        public, _ = log_keypair((data / "log.key").read_bytes())
    except (OSError, ValueError, VaultError) as e:
        report.problems.append(Problem("audit", "log.key", f"the log key cannot be read: {e}"))
        public = b""
    con = _ro(db)
    try:
        con.execute("BEGIN")
        tree = MerkleTree()
        for idx, stored, leaf in con.execute("SELECT idx, hash, leaf FROM events ORDER BY idx"):
            if idx != tree.size:
                report.problems.append(Problem("audit", "audit.db", f"the log has a gap at leaf {tree.size}"))
                break
            if leaf is not None and leaf_hash(bytes(leaf)) != bytes(stored):
                report.problems.append(Problem("audit", "audit.db", f"leaf {idx} does not match its stored hash"))
            tree.append(leaf_hash(bytes(leaf)) if leaf is not None else bytes(stored))
        last: Checkpoint | None = None
        for size, raw, sig in con.execute("SELECT size, raw, sig FROM checkpoints ORDER BY size"):
            try:
                cp = Checkpoint.parse(bytes(raw))
                if public:
                    cp.verify(public, bytes(sig))
            except VaultError as e:
                report.problems.append(Problem("audit", "audit.db", f"checkpoint at size {size}: {e}"))
                continue
            if cp.size != size or cp.size > tree.size:
                report.problems.append(Problem("audit", "audit.db", f"checkpoint at size {cp.size} is beyond the "
                                                                    f"log ({tree.size} events): the log was cut"))
            elif cp.root != tree.root(cp.size):
                report.problems.append(Problem("audit", "audit.db", f"checkpoint at size {cp.size}: its root is "
                                                                    "not the log's root at that size"))
            last = cp
        cosignatures = check_cosignatures(con, directory, _problem(report))
        con.execute("COMMIT")
    finally:
        con.close()
    report.summary.update(audit_size=tree.size, audit_root=tree.root().hex(),
                          checkpoint_size=None if last is None else last.size,
                          checkpoint_time=None if last is None else last.time, cosignatures=cosignatures)


def _still_unused(dbs: Path, name: str) -> bool:
    con = _ro(dbs / "vault.db")
    try:
        return con.execute("SELECT 1 FROM versions WHERE blob=? LIMIT 1", (name,)).fetchone() is None
    finally:
        con.close()


def _check_leftovers(data: Path, dbs: Path, listed: tuple[dict[str, Path], list[Path]],
                     used: dict[str, tuple[int, bytes, int]], report: CheckReport, grace: float, repair: bool) -> None:
    blobs, temps = listed
    now = time.time()
    found = [("orphan", path, name) for name, path in sorted(blobs.items()) if name not in used]
    found += [("temporary", path, "") for path in temps]
    for kind, path, name in found:
        if _age(path, now) < grace:
            report.in_flight += 1
            continue
        rel = path.relative_to(data).as_posix()
        if repair and (kind == "temporary" or _still_unused(dbs, name)):
            path.unlink(missing_ok=True)
            report.repaired.append(rel)
            continue
        report.problems.append(Problem(kind, rel, "referenced by no document version" if kind == "orphan"
                                       else "left by an interrupted write"))


def check_data(data: Path, repair: bool = False, grace: float = GRACE, database_url: str = "") -> CheckReport:
    """Check the data directory ``data`` (see the module's docstring), its rows in the PostgreSQL database at
    ``database_url`` if given: read from one snapshot into SQLite files (``server/pgdump.py``), checked as
    an SQLite deployment's."""
    if not database_url:
        report = CheckReport()
        for name in ("vault.db", "audit.db"):
            if not (data / name).is_file():
                report.problems.append(Problem("missing", name, "not in the data directory"))
        return report if report.problems else _check(data, data, repair, grace)
    with tempfile.TemporaryDirectory(prefix="mvault-check-") as rows:  # 0700
        return _check(data, Path(rows), repair, grace, database_url)


def _check(data: Path, dbs: Path, repair: bool, grace: float, database_url: str = "") -> CheckReport:
    """Check ``data`` whose databases are in ``dbs`` (or, first, dumped there from ``database_url``)."""
    report = CheckReport()
    listed = _listing(data)  # before the rows are read: see the module's docstring
    if database_url:
        dump(database_url, dbs)
    directory: Directory | None = None
    try:
        directory = asyncio.run(_directory(dbs, data))
        report.summary.update(members=len(directory.members), teams=len(directory.teams))
    except (VaultError, ValueError) as e:
        report.problems.append(Problem("chain", "vault.db", f"the chains do not replay: {e}"))
    con = _ro(dbs / "vault.db")
    try:
        con.execute("BEGIN")
        used = _check_versions(con, directory, report)
        messages = check_threads(con, directory, _problem(report))
        report.summary.update(threads=int(con.execute("SELECT COUNT(*) FROM threads").fetchone()[0]),
                              messages=messages)
        con.execute("COMMIT")
    finally:
        con.close()
    _check_blobs(data, used, report)
    _check_audit(data, dbs, directory, report)
    _check_leftovers(data, dbs, listed, used, report, grace, repair)
    report.summary.update(problems=len(report.problems), repaired=len(report.repaired), in_flight=report.in_flight)
    return report
