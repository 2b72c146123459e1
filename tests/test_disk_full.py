"""Issue 17, disk full: the server's data directory is a small tmpfs that a test fills at the moment a store
writes (the act's own row, or the audit event right after it), through the real server and the real CLI.

The client gets 507 ``insufficient_storage`` (the CLI: one line ``error: ...no space...``, exit 1), nothing
half-written is visible (no version without its blob, no blob or temporary file of a refused upload, no message
row, no half-appended audit event), and once the filler is removed the same server (no restart) stores uploads,
posts and links again and `mvault audit verify` succeeds for every member, the Security Team's included.

An act stored just before the audit log met the full disk was answered 507 but is done: its sealed event is
owed (``server/recorder.py`` ``settle``), every request is refused with 507 until the owed events are appended,
and the first request after space is freed appends them before its handler runs.
Mounting a tmpfs needs root (CAP_SYS_ADMIN): elsewhere the tests are skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from server.context import DOCUMENTS, STATE
from tests.conftest import Member, Org, ServerThread, security_team
from tests.helpers.api_world import Actor, World, docs_path, make_upload, new_doc, session, team_key
from tests.helpers.db import counts, log_size, snapshot
from tests.helpers.filler import fill
from tests.helpers.http import Http
from tests.helpers.members import unlock_here
from tests.helpers.tmpfs import server_on_tmpfs

TMPFS = 32 * 1024 * 1024


class Disk:
    """The data directory's file system, filled on cue."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.filler = data / "filler"

    def fill(self) -> None:
        """No byte left."""
        fill(self.filler)

    def free(self) -> None:
        self.filler.unlink()

    def around(self, store: Any, method: str, *, before: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        """Fill the disk once, just before ``store.method`` runs (``before``) or just after it returned."""
        real: Callable[..., Awaitable[Any]] = getattr(store, method)
        done = False

        async def filled(*args: Any, **kwargs: Any) -> Any:
            nonlocal done
            if before and not done:
                done = True
                self.fill()
            result = await real(*args, **kwargs)
            if not before and not done:
                done = True
                self.fill()
            return result

        monkeypatch.setattr(store, method, filled)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """The real server, its data directory a tmpfs of 32 MiB."""
    with server_on_tmpfs(tmp_path, TMPFS) as s:
        yield s


def actor(m: Member, monkeypatch: pytest.MonkeyPatch) -> Actor:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(m.home)
    return Actor(m, home, home.unlock(), home.config().member_id)


def refused_for_space(m: Member, *args: str) -> None:
    r = m.run(*args)
    assert r.code == 1, (args, r.code, r.err, r.out)
    assert r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1, r.err
    assert "no space left" in r.err, r.err


def blob_files(server: ServerThread) -> set[str]:
    return {p.name for p in (server.data_dir / "blobs").rglob("*") if p.is_file()}


def everything_verifies(*members: Member) -> None:
    for m in members:
        verified = m.json("audit", "verify")
        assert verified["ok"] and verified["problems"] == [], (m.name, verified)


async def test_an_act_whose_audit_event_meets_a_full_disk(org: Org, make_member: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          server_errors: list[Any]) -> None:
    """The version is stored, then the disk is full for its audit event: 507, the event is owed, every request
    is refused (507, nothing done) until space is freed; then the owed event is appended first, and the server
    goes on without a restart. The same for a chain link (an invite through the CLI). Before: the failed audit
    append made the server answer 503 to everything until it was restarted."""
    unlock_here(org.alice, org.bob)
    carol = security_team(org, make_member)
    server = org.server
    storage = server.app[DOCUMENTS]
    disk = Disk(server.data_dir)
    bob = actor(org.bob, monkeypatch)
    drafting = org.alice.json("team", "show", "drafting")["team"]
    w = World(server, bob, bob, bob, drafting=drafting)
    async with session(w, w.bob) as s, Http(server) as h:
        token = s.session.api.token
        doc = new_doc()
        up = make_upload(w, s, await team_key(s, drafting), doc, size=2000)
        events = log_size(server)
        disk.around(storage, "add_version", before=False, monkeypatch=monkeypatch)
        status, answer = await h.call("POST", docs_path(drafting, doc), token=token, data=up.data)
        assert status == 507 and answer["error"] == "insufficient_storage", answer
        assert log_size(server) == events  # no event half-appended
        assert server.app[STATE].owed, answer  # the version's event, sealed, waits for space
        # The version was stored before the disk filled, with its blob.
        assert up.vid in blob_files(server) and list((server.data_dir / "tmp").iterdir()) == []
        before = snapshot(server)
        status, answer = await h.call("GET", f"/api/v1/teams/{drafting}/docs", token=token)
        assert status == 507 and answer["error"] == "insufficient_storage", answer
        assert snapshot(server) == before and log_size(server) == events  # refused before anything is done
        disk.free()
        status, listing = await h.call("GET", f"/api/v1/teams/{drafting}/docs", token=token)
        assert status == 200 and doc in str(listing), listing
        assert log_size(server) == events + 2  # the owed doc.write, then this listing's doc.list
        assert not server.app[STATE].owed

    disk.around(storage, "append_links", before=False, monkeypatch=monkeypatch)
    refused_for_space(org.alice, "invite", "--note", "full")
    refused_for_space(org.bob, "ls", "drafting")  # still full: refused, one line, exit 1
    disk.free()
    assert any(row["note"] == "full" for row in org.alice.json("invite", "ls"))  # the link was stored
    note = tmp_path / "after.txt"
    note.write_text("space again\n")
    assert org.bob.json("put", "drafting", str(note))[0]["version"] == 1
    org.alice.ok("thread", "create", "drafting", "after")
    org.bob.ok("thread", "post", "drafting", "after", "space again")
    everything_verifies(carol, org.alice, org.bob)  # carol's check: every chain link has its event
    assert all("disk is full" in r.getMessage() for r in server_errors)  # logged for the operator, nothing else


async def test_a_post_and_a_version_that_meet_a_full_disk_are_not_stored(org: Org, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        server_errors: list[Any]) -> None:
    """The disk fills just before a thread post's transaction, and just before a version's row (its blob
    already in place): 507 each, no message row, no version row, no blob, no temporary file; then, without a
    restart, both succeed. Before: SQLite rolls a transaction back by itself on SQLITE_FULL, the store's own
    ROLLBACK then failed and hid the cause, and the post's batch answered 503, after which the failed audit
    append stopped the server until a restart."""
    unlock_here(org.alice, org.bob)
    server = org.server
    storage = server.app[DOCUMENTS]
    disk = Disk(server.data_dir)
    org.alice.ok("thread", "create", "drafting", "full")
    org.bob.ok("thread", "post", "drafting", "full", "first")
    messages = counts(server, ["messages"])

    disk.around(storage, "add_messages", before=True, monkeypatch=monkeypatch)
    refused_for_space(org.bob, "thread", "post", "drafting", "full", "lost to a full disk")
    assert counts(server, ["messages"]) == messages
    disk.free()
    org.bob.ok("thread", "post", "drafting", "full", "second")
    read = org.alice.json("thread", "read", "drafting", "full")
    assert [m["text"] for m in read] == ["first", "second"], read

    bob = actor(org.bob, monkeypatch)
    drafting = org.alice.json("team", "show", "drafting")["team"]
    w = World(server, bob, bob, bob, drafting=drafting)
    async with session(w, w.bob) as s, Http(server) as h:
        token = s.session.api.token
        doc = new_doc()
        up = make_upload(w, s, await team_key(s, drafting), doc, size=300_000)
        disk.around(storage, "add_version", before=True, monkeypatch=monkeypatch)
        versions, blobs = counts(server, ["versions"]), blob_files(server)
        status, answer = await h.call("POST", docs_path(drafting, doc), token=token, data=up.data)
        assert status == 507 and answer["error"] == "insufficient_storage", answer
        assert counts(server, ["versions"]) == versions and blob_files(server) == blobs
        assert list((server.data_dir / "tmp").iterdir()) == []
        disk.free()
        status, answer = await h.call("POST", docs_path(drafting, doc), token=token, data=up.data)
        assert status == 201 and answer == {"vid": up.vid, "seq": 1}, answer
    everything_verifies(org.alice, org.bob)
    assert all("disk is full" in r.getMessage() for r in server_errors)
