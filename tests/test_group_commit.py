"""One group commit for every store (``server/store/commit.py``) and its one failure rule.

The committer's rule on a tiny real store (a table in a SQLite file, its batches held at a gate when a
test needs a batch in flight), then each store that uses it: vault writes (sessions, versions), thread
messages, audit leaves, and the server failing closed when an audit batch cannot be committed. Failures
are real SQLite failures (a trigger's RAISE, a deferred foreign key at COMMIT), never a mock.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiosqlite
import pytest

from security.merkle import leaf_hash, root_of
from server.messagelog import MessageLog
from server.store.commit import GroupCommitter, Refused
from server.store.records import StoredMessage, StoredThread, StoredVersion, VersionAdded
from server.store.sqlite.audit import AuditStore
from server.store.sqlite.vault import SQLiteStorage
from tests.conftest import ServerThread
from tests.helpers.api_world import found_body, newcomer, org_create
from tests.helpers.db import audit_db, log_size
from tests.helpers.http import Http, b64
from vault.auth import sign_login
from vault.errors import Conflict, ServiceUnavailable
from vault.invite import InviteCode
from vault.keys import DeviceKeys
from vault.messages import make_thread
from vault.teamkeys import TeamKey

POISON = ("CREATE TRIGGER poison BEFORE INSERT ON notes WHEN NEW.text = 'poison' "
          "BEGIN SELECT RAISE(ABORT, 'poisoned'); END")


class Notes:
    """A tiny real store: notes in a SQLite file, written through a GroupCommitter. A note named
    "refuse..." is refused by its own check; the trigger makes a batch with "poison" fail."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db, self.path = db, path
        self.gate = asyncio.Event()
        self.gate.set()
        self.writing = asyncio.Event()  # a batch is in flight (held at the gate while it is clear)
        self.commits = 0
        self.failed: list[list[str]] = []
        self.committer: GroupCommitter[str, int] = GroupCommitter(self.write, "the note", self.failed.append)

    def trace(self, statement: str) -> None:
        self.commits += statement == "COMMIT"

    async def write(self, texts: list[str]) -> list[int | Refused]:
        self.writing.set()
        await self.gate.wait()
        outcomes: list[int | Refused] = []
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            for text in texts:
                if text.startswith("refuse"):
                    outcomes.append(Refused(Conflict(f"{text}: no")))
                    continue
                async with self.db.execute("INSERT INTO notes (text) VALUES (?) RETURNING id", (text,)) as cur:
                    row = await cur.fetchone()
                assert row is not None
                outcomes.append(int(row[0]))
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        return outcomes

    def stored(self) -> list[str]:
        db = sqlite3.connect(self.path)  # another connection: only what was committed
        try:
            return [str(r[0]) for r in db.execute("SELECT text FROM notes ORDER BY id")]
        finally:
            db.close()

    async def in_flight(self, *texts: str) -> list[asyncio.Task[int]]:
        """Submit ``texts`` and wait until their batch is being written (held at the closed gate)."""
        self.gate.clear()
        self.writing.clear()
        tasks = [asyncio.ensure_future(self.committer.submit(t)) for t in texts]
        await asyncio.wait_for(self.writing.wait(), 5)
        return tasks


@pytest.fixture
async def notes(tmp_path: Path) -> AsyncIterator[Notes]:
    path = tmp_path / "notes.db"
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    await db.execute(POISON)
    n = Notes(db, path)
    await db.set_trace_callback(n.trace)
    try:
        yield n
    finally:
        n.gate.set()  # a failed test may have left a batch held
        await asyncio.wait_for(n.committer.close(), 10)
        await db.close()


async def test_concurrent_submits_share_transactions(notes: Notes) -> None:
    texts = [f"n{i}" for i in range(40)]
    ids = await asyncio.gather(*(notes.committer.submit(t) for t in texts))
    assert notes.stored() == texts and sorted(ids) == ids and len(set(ids)) == 40
    assert notes.commits == 1  # submitted in one go: one batch, one transaction
    # Submitted while a batch is in flight: they all wait for the next one.
    first = await notes.in_flight("a")
    later = [asyncio.ensure_future(notes.committer.submit(f"b{i}")) for i in range(20)]
    await asyncio.sleep(0)
    notes.gate.set()
    await asyncio.gather(*first, *later)
    assert notes.commits == 3 and notes.stored()[40:] == ["a"] + [f"b{i}" for i in range(20)]


async def test_a_refused_item_fails_alone_and_leaves_nothing(notes: Notes) -> None:
    results = await asyncio.gather(notes.committer.submit("x"), notes.committer.submit("refuse-y"),
                                   notes.committer.submit("z"), return_exceptions=True)
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert isinstance(results[1], Conflict) and str(results[1]) == "refuse-y: no"
    assert notes.stored() == ["x", "z"] and notes.commits == 1 and notes.failed == []


async def test_a_failed_transaction_fails_its_batch_and_the_queue_behind_it(
        notes: Notes, server_errors: list[logging.LogRecord]) -> None:
    await notes.committer.submit("before")
    batch = await notes.in_flight("ok-1", "poison", "ok-2")
    behind = [asyncio.ensure_future(notes.committer.submit(t)) for t in ("queued-1", "queued-2")]
    await asyncio.sleep(0)
    notes.gate.set()
    results = await asyncio.gather(*batch, *behind, return_exceptions=True)
    assert all(isinstance(r, ServiceUnavailable) for r in results), results
    assert {str(r) for r in results} == {"the server could not store the note; try again"}
    assert notes.failed == [["ok-1", "poison", "ok-2", "queued-1", "queued-2"]]  # on_failure, once, with all
    assert notes.stored() == ["before"]
    assert [(r.getMessage(), type(r.exc_info[1]) if r.exc_info else None) for r in server_errors] == [
        ("storing 3 items (the note) failed; they and 2 queued behind them get 503", sqlite3.IntegrityError)]
    assert await notes.committer.submit("after") > 0  # the committer goes on
    assert notes.stored() == ["before", "after"]


async def test_a_waiter_that_hangs_up_does_not_cancel_its_write(notes: Notes) -> None:
    (gone,) = await notes.in_flight("first")
    queued = asyncio.ensure_future(notes.committer.submit("queued"))
    await asyncio.sleep(0)
    gone.cancel()
    queued.cancel()
    await asyncio.sleep(0)
    notes.gate.set()
    await notes.committer.submit("last")  # its batch comes after both
    assert notes.stored() == ["first", "queued", "last"]


async def test_close_commits_what_is_queued_and_refuses_the_rest(notes: Notes) -> None:
    batch = await notes.in_flight("in-flight")
    queued = asyncio.ensure_future(notes.committer.submit("queued"))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(notes.committer.close())
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailable, match="^the server is shutting down; try again$"):
        await asyncio.wait_for(notes.committer.submit("late"), 5)
    assert not closing.done()
    notes.gate.set()
    await asyncio.wait_for(closing, 5)
    assert batch[0].done() and queued.done()
    assert notes.stored() == ["in-flight", "queued"]


# -- the stores ------------------------------------------------------------------------------------------

def _deferred_failure(path: Path, table: str, when: str) -> None:
    """Rows of ``table`` matching ``when`` make the transaction fail at COMMIT (a deferred foreign key)."""
    db = sqlite3.connect(path)
    try:
        db.executescript(f"""
            CREATE TABLE t_parent (id INTEGER PRIMARY KEY);
            CREATE TABLE t_child (pid INTEGER REFERENCES t_parent (id) DEFERRABLE INITIALLY DEFERRED);
            CREATE TRIGGER t_poison AFTER INSERT ON {table} WHEN {when} BEGIN INSERT INTO t_child VALUES (42); END;
        """)
    finally:
        db.close()


async def test_vault_writes_a_failed_commit_fails_the_batch_and_the_queue_with_503(
        tmp_path: Path, server_errors: list[logging.LogRecord]) -> None:
    store = await SQLiteStorage.open(tmp_path)
    try:
        _deferred_failure(tmp_path / "vault.db", "sessions", "NEW.member = 'poison'")
        await store._lock.acquire()  # another storage call is running: the first batch waits in flight
        batch = [asyncio.ensure_future(store.add_session(t, m, "d", 1e12)) for t, m in ((b"a", "m"), (b"p", "poison"))]
        await asyncio.sleep(0.01)
        behind = asyncio.ensure_future(store.add_session(b"b", "m", "d", 1e12))
        await asyncio.sleep(0.01)
        store._lock.release()
        results = await asyncio.gather(*batch, behind, return_exceptions=True)
        assert [type(r) for r in results] == [ServiceUnavailable] * 3, results
        assert len(server_errors) == 1
        db = sqlite3.connect(tmp_path / "vault.db")
        try:
            assert db.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
        finally:
            db.close()
        await store.add_session(b"later", "m", "d", 1e12)
        assert await store.session(b"later") is not None
    finally:
        await store.close()


async def test_vault_writes_a_refused_write_leaves_nothing_of_itself(tmp_path: Path) -> None:
    """A version whose row went in before its write was refused (here: the quota bookkeeping after it
    hits a constraint) is rolled back to its savepoint; the others of the batch are committed."""
    store = await SQLiteStorage.open(tmp_path)
    try:
        db = sqlite3.connect(tmp_path / "vault.db")
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON authored WHEN NEW.ref = 'bad-1' "
                   "BEGIN SELECT RAISE(ABORT, 'refused'); END")
        db.close()

        def v(doc: str) -> StoredVersion:
            return StoredVersion(f"{doc}-1", "team", doc, 1, b"record", f"{doc}-1", 0)

        results = await asyncio.gather(store.add_version(v("good"), None, 1), store.add_version(v("bad"), None, 1),
                                       return_exceptions=True)
        assert results[0] == VersionAdded() and isinstance(results[1], sqlite3.IntegrityError)
        assert [x.vid for x in await store.team_versions("team")] == ["good-1"]
        db = sqlite3.connect(tmp_path / "vault.db")
        try:
            assert db.execute("SELECT vid FROM versions").fetchall() == [("good-1",)]
        finally:
            db.close()
    finally:
        await store.close()


async def test_messages_a_failed_commit_leaves_the_heads_as_stored(tmp_path: Path,
                                                                   server_errors: list[logging.LogRecord]) -> None:
    """Posts checked against heads that counted a failed batch fail with it; the heads are read again,
    so the next post of the device follows its last stored message and gets the next stored position."""
    store = await SQLiteStorage.open(tmp_path)
    log = MessageLog(store)
    try:
        key, device = TeamKey.generate("ab" * 16, 1), DeviceKeys.generate()
        record = make_thread(key, "talk", team_seq=1, expire=0, creator="cd" * 16, device=device, time=1)
        await store.add_thread(StoredThread(key.team_id, record.thread, record.raw, 0, 1, 1), 1)
        _deferred_failure(tmp_path / "vault.db", "messages", "NEW.mid = 'poison'")

        def msg(seq: int, mid: str, dev: str = "d1") -> StoredMessage:
            return StoredMessage(key.team_id, record.thread, 0, mid, dev, seq, 1, b"message")

        assert await log.append(msg(1, "m1"), None) == 1
        await store._lock.acquire()  # the next batch waits in flight
        batch = [asyncio.ensure_future(log.append(msg(2, "poison"), "m1"))]
        await asyncio.sleep(0.01)
        behind = [asyncio.ensure_future(log.append(msg(3, "m3"), "poison")),
                  asyncio.ensure_future(log.append(msg(1, "other", "d2"), None))]
        await asyncio.sleep(0.01)
        store._lock.release()
        results = await asyncio.gather(*batch, *behind, return_exceptions=True)
        assert [type(r) for r in results] == [ServiceUnavailable] * 3, results
        assert str(results[0]) == "the server could not store the message; try again" and len(server_errors) == 1
        with pytest.raises(Conflict, match="number 1;"):  # the device's chain is what is stored
            await log.append(msg(3, "m3"), "poison")
        assert await log.append(msg(2, "m2"), "m1") == 2
        assert await log.append(msg(1, "other", "d2"), None) == 3
        assert [(m.pos, m.mid) for m in await store.messages(key.team_id, record.thread, 0, 10, 1)] == [
            (1, "m1"), (2, "m2"), (3, "other")]
    finally:
        await log.close()
        await store.close()


async def test_audit_a_failed_commit_leaves_the_tree_as_stored(tmp_path: Path,
                                                               server_errors: list[logging.LogRecord]) -> None:
    store = await AuditStore.open(tmp_path)
    try:
        db = sqlite3.connect(tmp_path / "audit.db")
        db.execute("CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.day = 777 "
                   "BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
        db.close()
        assert await asyncio.gather(*(store.append(b"leaf%d" % i, 1) for i in range(3))) == [0, 1, 2]
        async with store._write:  # the next batch waits in flight
            batch = [asyncio.ensure_future(store.append(b"bad", 777)), asyncio.ensure_future(store.append(b"x", 1))]
            await asyncio.sleep(0.01)
            behind = asyncio.ensure_future(store.append(b"y", 1))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*batch, behind, return_exceptions=True)
        assert [type(r) for r in results] == [ServiceUnavailable] * 3, results
        assert len(server_errors) == 1
        assert store.tree.size == store.committed == 3
        assert await store.append(b"leaf3", 1) == 3  # the next index is the next row
        db = sqlite3.connect(tmp_path / "audit.db")
        try:
            leaves = [bytes(r[0]) for r in db.execute("SELECT leaf FROM events ORDER BY idx")]
        finally:
            db.close()
        assert leaves == [b"leaf0", b"leaf1", b"leaf2", b"leaf3"]
        assert store.tree.root(4) == root_of([leaf_hash(x) for x in leaves])
    finally:
        await store.close()


async def test_the_server_fails_closed_when_an_audit_batch_cannot_be_committed(
        server: ServerThread, server_errors: list[logging.LogRecord]) -> None:
    """The audit store answers a failed batch with ServiceUnavailable: the recorder still takes it as an
    event it could not record (503 to everything until a restart), not as a client's error."""
    async with Http(server) as h:
        assert server.invite is not None
        t = int(server.clock())
        founder = newcomer("founder", t)
        org_link = org_create(founder, InviteCode.parse(server.invite).secret, t)
        status, res = await h.call("POST", "/api/v1/found", js=found_body(founder, org_link))
        assert status == 201, res
        size = log_size(server)
        db = audit_db(server)
        try:
            db.execute("CREATE TRIGGER poison BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
        finally:
            db.close()
        status, ch = await h.call("POST", "/api/v1/auth/challenge",  # records nothing
                                  js={"member": founder.member_id, "device": founder.device.device_id})
        assert status == 200, ch
        statement, sig = sign_login(founder.device, origin=server.url, nonce=base64.b64decode(ch["nonce"]),
                                    member=founder.member_id, time=int(server.clock()))
        login = {"statement": b64(statement), "sig": b64(sig)}
    for method, path, js in (("POST", "/api/v1/auth/login", login), ("GET", "/api/v1/info", None)):
        connector = aiohttp.TCPConnector(ssl=aiohttp.Fingerprint(bytes.fromhex(server.fingerprint)))
        async with aiohttp.ClientSession(connector=connector) as cs, \
                cs.request(method, server.url + path, json=js) as resp:
            body = await resp.json()  # the login's token is not handed out; then the server refuses everything
            assert (resp.status, body["error"]) == (503, "unavailable"), (path, body)
    assert log_size(server) == size
    assert [r.getMessage() for r in server_errors] == [
        "storing 1 items (the audit event) failed; they and 0 queued behind them get 503",
        "could not record an audit event; refusing all requests from now on"]
