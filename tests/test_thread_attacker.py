"""Threads when the server is the attacker: it edits its own storage between a post and a read.

The messages table is changed under the running server (rows dropped, swapped, replayed,
copied from another thread or team, headers altered, senders re-labelled, previous-message
hashes stripped, the thread rolled back). Each time the reading member's ``mvault thread
read`` (and ``follow``) must stop with one clear error line instead of showing the thread.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from client.threads.team import Threads
from server.context import HUB
from tests.conftest import Member, Org, ServerThread
from tests.helpers.members import Follower, add_members, session
from tests.helpers.worlds import World, Worlds
from vault.encoding import Fields, decode, encode
from vault.messages import LINK_SKEW, Body, Message, ThreadRecord, make_message, make_thread
from vault.teamkeys import TeamKey
from vault.wire.schemas import Posted

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    """Every test here starts from ``talk``: ``org`` is a copy of one built with it."""
    return worlds.org_then("org-talk", start_talking)


@pytest.fixture
def talk(org: Org, make_member: Any) -> tuple[Org, Member]:
    """alice and bob talk in 'plans' (alice: 1, 2; bob: 3; alice: 4); carol reads it afresh."""
    return org, make_member("carol") if org.server.restored else start_talking(org, make_member)


def start_talking(org: Org, make_member: Any) -> Member:
    [carol] = add_members(org, make_member, ["carol"], role="reader")
    org.alice.ok("thread", "create", "drafting", "plans")
    org.alice.ok("thread", "create", "drafting", "other")
    org.alice.ok("thread", "post", "drafting", "plans", "alice one")
    org.alice.ok("thread", "post", "drafting", "plans", "alice two")
    org.bob.ok("thread", "post", "drafting", "plans", "bob three")
    org.alice.ok("thread", "post", "drafting", "plans", "alice four")
    org.alice.ok("thread", "post", "drafting", "other", "elsewhere")
    return carol


def db(server: ServerThread) -> sqlite3.Connection:
    return server.db()


def thread_rows(server: ServerThread, thread: str | None = None) -> list[tuple[Any, ...]]:
    """(team, thread, pos, record) of 'plans' (the first thread with four messages) or ``thread``."""
    with db(server) as con:
        if thread is None:
            thread = con.execute("SELECT thread FROM messages GROUP BY thread HAVING COUNT(*) = 4").fetchone()[0]
        return con.execute("SELECT team, thread, pos, record FROM messages WHERE thread=? ORDER BY pos",
                           (thread,)).fetchall()


def set_record(server: ServerThread, team: str, thread: str, pos: int, record: bytes) -> None:
    with db(server) as con:
        con.execute("UPDATE messages SET record=? WHERE team=? AND thread=? AND pos=?", (record, team, thread, pos))


def rebuild(record: bytes, **header: Any) -> bytes:
    """The record with header fields replaced (the signature is kept: the server cannot sign)."""
    f = Fields(decode(record), "message")
    h = dict(Fields(decode(f.raw["header"]), "header").raw)  # type: ignore[arg-type]
    h.update(header)
    return encode({"header": encode(h), "ct": f.raw["ct"], "sig": f.raw["sig"]})  # type: ignore[dict-item]


def reader_fails(m: Member, contains: str = "") -> None:
    m.fails("thread", "read", "drafting", "plans", contains=contains)


def test_untouched_thread_reads(talk: tuple[Org, Member]) -> None:
    _, carol = talk
    assert [x["text"] for x in carol.json("thread", "read", "drafting", "plans")] == [
        "alice one", "alice two", "bob three", "alice four"]


def test_a_dropped_message_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    team, thread, _, _ = thread_rows(org.server)[1]
    with db(org.server) as con:
        con.execute("DELETE FROM messages WHERE team=? AND thread=? AND pos=2", (team, thread))
    reader_fails(carol, "dropped")


def test_a_dropped_message_another_member_had_read_is_detected(talk: tuple[Org, Member]) -> None:
    """bob's message is the last of his; alice's next one names it as seen."""
    org, carol = talk
    team, thread, _, _ = thread_rows(org.server)[2]
    with db(org.server) as con:
        con.execute("DELETE FROM messages WHERE team=? AND thread=? AND pos=3", (team, thread))
    reader_fails(carol, "another member had already read")


def test_two_reordered_messages_are_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    set_record(org.server, team, thread, 1, rows[1][3])
    set_record(org.server, team, thread, 2, rows[0][3])
    reader_fails(carol, "reordered")


def test_a_replayed_message_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    with db(org.server) as con:
        con.execute("INSERT INTO messages VALUES (?, ?, 5, 'ffffffffffffffffffffffffffffffff', 'd', 99, 0, ?)",
                    (team, thread, rows[0][3]))
        con.execute("UPDATE threads SET next_pos=6 WHERE team=? AND thread=?", (team, thread))
    reader_fails(carol, "replayed")


def test_a_replay_after_the_reader_saw_the_thread_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    carol.ok("thread", "read", "drafting", "plans")  # carol's cache now holds all four
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    with db(org.server) as con:
        con.execute("INSERT INTO messages VALUES (?, ?, 5, 'ffffffffffffffffffffffffffffffff', 'd', 99, 0, ?)",
                    (team, thread, rows[1][3]))
        con.execute("UPDATE threads SET next_pos=6 WHERE team=? AND thread=?", (team, thread))
    reader_fails(carol, "replayed")


def test_a_message_from_another_thread_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    with db(org.server) as con:
        elsewhere = con.execute("SELECT record FROM messages WHERE thread != ?", (thread,)).fetchone()[0]
    set_record(org.server, team, thread, 4, elsewhere)
    reader_fails(carol, "another thread")


def test_a_message_from_another_team_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    org.alice.ok("team", "create", "secret-team", "--kind", "program")
    org.alice.ok("thread", "create", "secret-team", "plans")
    org.alice.ok("thread", "post", "secret-team", "plans", "not for drafting")
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    with db(org.server) as con:
        foreign = con.execute("SELECT record FROM messages WHERE team != ?", (team,)).fetchone()[0]
    set_record(org.server, team, thread, 4, foreign)
    reader_fails(carol, "another thread or team")


@pytest.mark.parametrize("change", [
    pytest.param(lambda r: rebuild(r, time=Fields(decode(Fields(decode(r), "m").raw["header"]), "h").raw["time"] + 1),
                 id="time"),
    pytest.param(lambda r: rebuild(r, gen=2), id="generation"),
    pytest.param(lambda r: rebuild(r, team_seq=1), id="team-state"),
    pytest.param(lambda r: r[:40] + bytes([r[40] ^ 1]) + r[41:], id="bit-flip-in-header"),
    pytest.param(lambda r: r[:-70] + bytes([r[-70] ^ 1]) + r[-69:], id="bit-flip-in-ciphertext"),
])
def test_an_altered_header_or_body_is_detected(talk: tuple[Org, Member], change: Callable[[bytes], bytes]) -> None:
    org, carol = talk
    team, thread, _, record = thread_rows(org.server)[1]
    set_record(org.server, team, thread, 2, change(record))
    reader_fails(carol)


def test_a_relabelled_sender_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    rows = thread_rows(org.server)
    bob = Message.parse(rows[2][3]).header
    team, thread, _, record = rows[1]
    set_record(org.server, team, thread, 2, rebuild(record, sender=bob.sender, device=bob.device))
    reader_fails(carol)


def test_stripped_previous_message_hashes_are_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    rows = thread_rows(org.server)
    team, thread, _, record = rows[3]  # alice four: names alice two as previous and bob three as seen
    h = Message.parse(record).header
    assert h.prev is not None and h.seen
    set_record(org.server, team, thread, 4, rebuild(record, seen=[]))
    reader_fails(carol)
    set_record(org.server, team, thread, 4, rebuild(record, seq=1, prev=None, prev_time=0))
    reader_fails(carol)


def test_a_thread_rolled_back_after_a_read_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    carol.ok("thread", "read", "drafting", "plans")
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    with db(org.server) as con:
        con.execute("DELETE FROM messages WHERE team=? AND thread=? AND pos=4", (team, thread))
        con.execute("UPDATE threads SET next_pos=4 WHERE team=? AND thread=?", (team, thread))
    reader_fails(carol, "rolled")


def test_own_messages_withheld_are_detected(talk: tuple[Org, Member]) -> None:
    """bob's only message vanishes with its sender record: bob's next post notices."""
    org, _ = talk
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    with db(org.server) as con:
        [device] = con.execute("SELECT device FROM messages WHERE team=? AND thread=? AND pos=3",
                               (team, thread)).fetchone()
        con.execute("DELETE FROM messages WHERE team=? AND thread=? AND pos=3", (team, thread))
        con.execute("DELETE FROM thread_senders WHERE team=? AND thread=? AND device=?", (team, thread, device))
    org.bob.fails("thread", "post", "drafting", "plans", "hello?", contains="withheld")


def test_a_swapped_thread_record_is_detected(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    carol.ok("thread", "read", "drafting", "plans")
    rows = thread_rows(org.server)
    team, thread = rows[0][0], rows[0][1]
    with db(org.server) as con:
        other = con.execute("SELECT record FROM threads WHERE team=? AND thread != ?", (team, thread)).fetchone()[0]
        con.execute("UPDATE threads SET record=? WHERE team=? AND thread=?", (other, team, thread))
    reader_fails(carol, "record")


async def test_a_follower_detects_a_live_message_from_another_thread(talk: tuple[Org, Member]) -> None:
    """The server forges a live delivery: a follower stops instead of showing it."""
    org, carol = talk
    f = await Follower(org.server, carol, "plans").start()
    try:
        await f.wait_for(4)
        hub = org.server.app[HUB]
        rows = thread_rows(org.server)
        team, thread = rows[0][0], rows[0][1]
        with db(org.server) as con:
            elsewhere = con.execute("SELECT record FROM messages WHERE thread != ?", (thread,)).fetchone()[0]
        item = {"type": "msg", "thread": thread, "pos": 5, "record": base64.b64encode(elsewhere).decode()}
        assert org.server._loop is not None
        org.server._loop.call_soon_threadsafe(hub.publish, team, item)
        assert f.task is not None
        with pytest.raises(Exception, match="another thread"):
            await asyncio.wait_for(f.task, 20)
        assert [m.text for m in f.got] == ["alice one", "alice two", "bob three", "alice four"]
    finally:
        f.stop.set()


async def test_a_removed_members_old_key_message_spliced_in_after_the_rotation_is_detected(
        talk: tuple[Org, Member]) -> None:
    """bob signs a message under generation 1 while still a member; after his removal and the
    rotation, the server (colluding with him) stores it at the end of the thread."""
    org, carol = talk
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        ct = await threads.resolve("plans")
        key = await s.keys.team_key(threads.team, threads.team.generation)
        last = ct.checker.senders[s.session.device.device_id]
        late = make_message(key, Body("signed before, stored after my removal"), thread=ct.checker.thread,
                            rec=ct.checker.rec, team_seq=threads.team.seq, sender=s.session.me, device=s.session.device,
                            seq=last.seq + 1,
                            prev=last.id, prev_time=last.time, seen=ct.checker.newest_seen(s.session.device.device_id),
                            time=int(time.time()) + 5)
    org.alice.ok("team", "remove", "drafting", "bob")
    org.alice.ok("thread", "post", "drafting", "plans", "after the removal")
    assert [m["gen"] for m in carol.json("thread", "read", "drafting", "plans")][-1] == 2
    rows = thread_rows(org.server, Message.parse(late.raw).header.thread)
    team, thread, pos = rows[0][0], rows[0][1], rows[-1][2] + 1
    with db(org.server) as con:
        con.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (team, thread, pos, late.id, late.header.device, late.header.seq, late.header.time, late.raw))
        con.execute("UPDATE threads SET next_pos=? WHERE team=? AND thread=?", (pos + 1, team, thread))
    reader_fails(carol, "older than a message before it")


async def test_a_message_acknowledged_but_never_stored_is_detected(talk: tuple[Org, Member]) -> None:
    """The server answers 201 for bob's post but drops it: bob's next command notices, and bob
    never signs a second message under the same number."""
    org, _ = talk
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        real_post = s.session.api.post
        sent: list[Message] = []

        async def swallow(path: str, body: Any, answer: Any = None) -> Any:
            if path.endswith("/messages"):
                m = Message.parse(body.message)
                sent.append(m)
                return Posted(m.id, 99)  # acknowledged, never stored
            return await real_post(path, body, answer)

        s.session.api.post = swallow  # type: ignore[method-assign]
        await threads.post("plans", "two: do NOT sign the contract")
        s.session.api.post = real_post  # type: ignore[method-assign]
        with pytest.raises(Exception, match="acknowledged one of our messages but does not serve it"):
            await threads.post("plans", "three")
    # The cache remembers it across runs too.
    org.bob.fails("thread", "read", "drafting", "plans", contains="does not serve it")
    assert len(sent) == 1


def inject(server: ServerThread, thread: str, m: Message) -> None:
    with db(server) as con:
        team, pos = con.execute("SELECT team, next_pos FROM threads WHERE thread=?", (thread,)).fetchone()
        con.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (team, thread, pos, m.id, m.header.device, m.header.seq, m.header.time, m.raw))
        con.execute("UPDATE threads SET next_pos=? WHERE thread=?", (pos + 1, thread))


async def test_a_removed_members_message_dated_after_the_removal_is_detected(talk: tuple[Org, Member]) -> None:
    """Colluding with the server, removed bob signs messages naming the team state before his
    removal: in an idle thread (dated well after the removal) and in a thread created after it."""
    org, carol = talk
    org.alice.ok("thread", "create", "drafting", "idle")
    org.alice.ok("thread", "post", "drafting", "idle", "before the removal")
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        idle_ct = await threads.resolve("idle")
        idle, idle_rec = idle_ct.checker.thread, idle_ct.checker.rec
        key, old_seq, me, device = await s.keys.team_key(threads.team,
                                                         1), threads.team.seq, s.session.me, s.session.device
    org.alice.ok("team", "remove", "drafting", "bob")
    org.alice.ok("thread", "create", "drafting", "after-removal")
    fresh = next(t["thread"] for t in org.alice.json("thread", "ls", "drafting") if t["name"] == "after-removal")
    with db(org.server) as con:
        fresh_rec = ThreadRecord.parse(con.execute("SELECT record FROM threads WHERE thread=?",
                                                   (fresh,)).fetchone()[0]).ref
    late = make_message(key, Body("bob, removed, writes later"), thread=idle, rec=idle_rec, team_seq=old_seq, sender=me,
                        device=device, seq=1, prev=None, prev_time=0, seen=[],
                        time=int(time.time()) + LINK_SKEW + 120)
    inject(org.server, idle, late)
    carol.fails("thread", "read", "drafting", "idle", contains="could not post then")
    first = make_message(key, Body("bob, removed, writes first"), thread=fresh, rec=fresh_rec, team_seq=old_seq,
                         sender=me,
                         device=device, seq=1, prev=None, prev_time=0, seen=[], time=int(time.time()))
    inject(org.server, fresh, first)
    carol.fails("thread", "read", "drafting", "after-removal", contains="older than")


async def test_a_second_record_with_a_shorter_expiry_is_detected_by_a_new_reader(talk: tuple[Org, Member]) -> None:
    """bob signs another record for 'plans' with a short expiry (the client itself refuses to,
    the thread exists); the server shows it to carol, who never read the thread."""
    org, carol = talk
    org.bob.fails("thread", "create", "drafting", "plans", "--expire", "1h", contains="already exists")
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        key = await s.keys.team_key(threads.team, threads.team.generation)
        short = make_thread(key, "plans", team_seq=threads.team.seq, expire=3600, creator=s.session.me,
                            device=s.session.device,
                            time=int(time.time()))
    with db(org.server) as con:
        con.execute("UPDATE threads SET record=?, expire=3600 WHERE thread=?", (short.raw, short.thread))
    reader_fails(carol, "another record of this thread")


async def test_a_message_its_sender_wrote_broken_does_not_stop_the_thread(talk: tuple[Org, Member]) -> None:
    """bob (a writer) posts a signed message whose ciphertext is garbage: readers show it as
    unreadable and go on; the thread stays usable for everyone."""
    org, carol = talk
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        ct = await threads.resolve("plans")
        last = ct.checker.senders[s.session.device.device_id]
        wrong = TeamKey(threads.team.team_id, threads.team.generation, b"\x07" * 32)  # not the team's key
        m = make_message(wrong, Body("garbage for everyone"), thread=ct.checker.thread, rec=ct.checker.rec,
                         team_seq=threads.team.seq, sender=s.session.me, device=s.session.device, seq=last.seq + 1,
                         prev=last.id,
                         prev_time=last.time, seen=[], time=int(time.time()))
        await s.session.api.post(f"{threads.base}/{ct.checker.thread}/messages",
                                 {"message": base64.b64encode(m.raw).decode()})
    org.alice.ok("thread", "post", "drafting", "plans", "still here")
    texts = [x["text"] for x in carol.json("thread", "read", "drafting", "plans")]
    assert texts[4].startswith("[unreadable") and texts[5] == "still here"


def test_a_bad_thread_record_does_not_hide_the_other_threads(talk: tuple[Org, Member]) -> None:
    org, carol = talk
    rows = thread_rows(org.server)
    with db(org.server) as con:
        con.execute("INSERT INTO threads VALUES (?, ?, ?, 0, 0, 1, 0)", (rows[0][0], "ab" * 16, b"not a record"))
    r = carol.run("thread", "ls", "drafting", "--json")
    assert r.code == 0 and "cannot be shown" in r.err
    assert sorted(t["name"] for t in r.json()) == ["other", "plans"]
