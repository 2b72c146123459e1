"""Team threads end to end: the real server, the real CLI and client library.

Members post and follow concurrently (two and five of them); followers receive every
message once, in an order consistent with each sender's sequence, also across a server
restart. Removal and rotation: the old generation is refused and readers who were offline
still read both sides of the rotation. Expiry deletes messages on the server and in the
clients' caches, audited. Bad input fails with one clear line and stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from client.threads.cache import Shown
from client.threads.team import Threads, _live_event
from server.context import DIRECTORY
from tests.conftest import MVAULT, PASSPHRASE, Member, Org, ServerThread, security_team
from tests.helpers.db import rows
from tests.helpers.members import Follower, add_members, session, unlock_at_first_run, unlock_here
from tests.helpers.postgres import end_to_end_backends
from vault.errors import AuthError, Conflict, IntegrityError, NotFound, PolicyDenied, VaultError
from vault.messages import MAX_TEXT, Body, make_message, make_thread
from vault.teamkeys import TeamKey
from vault.wire64 import b64

pytestmark = end_to_end_backends()  # SQLite; both with MVAULT_ALL_BACKENDS=1 (tests/conftest.py "Backends")


@pytest.fixture(autouse=True)
def _agents(org: Org) -> None:
    """alice's and bob's commands go through an unlock agent from their first (no Argon2id each: 82 of the file's
    138 CLI runs, session 21; the unlock itself: tests/test_auth.py; no test here looks at the unlock state)."""
    unlock_at_first_run(org.alice, org.bob)


def check_order(got: list[Shown], expected_texts: set[str]) -> None:
    """Each message once; each sender's messages in their sequence order; positions increase."""
    texts = [m.text for m in got]
    assert len(texts) == len(set(texts)), "a message was delivered twice"
    assert set(texts) == expected_texts
    assert [m.pos for m in got] == sorted(m.pos for m in got)
    by_device: dict[str, list[int]] = {}
    for m in got:
        by_device.setdefault(m.device, []).append(m.seq)
    for seqs in by_device.values():
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


# -- the walk-through -------------------------------------------------------------------------------


def test_walkthrough_post_read_ls_attach(org: Org, tmp_path: Path) -> None:
    a, b = org.alice, org.bob
    unlock_here(a, b)  # their commands skip Argon2id (the unlock itself: tests/test_auth.py)
    a.ok("thread", "create", "drafting", "monthly-check-in")
    r = a.json("thread", "post", "drafting", "monthly-check-in", "Draft agenda is in the vault")
    assert r["pos"] == 1
    r = b.run("thread", "post", "drafting", "monthly-check-in", "-", input="long message\nwith two lines\n")
    assert r.code == 0, r.err
    agenda = tmp_path / "agenda.md"
    agenda.write_text("1. welcome\n2. security check-in\n")
    r = a.json("thread", "post", "drafting", "monthly-check-in", "--attach", str(agenda), "see attached")
    assert r["attach"] == ["agenda.md"]
    listing = b.json("thread", "ls", "drafting")
    assert [(t["name"], t["messages"], t["unread"]) for t in listing] == [("monthly-check-in", 3, 2)]
    msgs = b.json("thread", "read", "drafting", "monthly-check-in")
    assert [m["text"] for m in msgs] == ["Draft agenda is in the vault", "long message\nwith two lines\n",
                                         "see attached"]
    assert [m["sender_name"] for m in msgs] == ["alice", "bob", "alice"]
    assert msgs[2]["attach"][0]["name"] == "agenda.md"
    # The attachment is a vault document: bob fetches exactly the attached version.
    b.ok("get", "drafting", "agenda.md", "-o", str(tmp_path / "got.md"))
    assert (tmp_path / "got.md").read_text() == agenda.read_text()
    assert msgs[2]["attach"][0]["vid"] == b.json("history", "drafting", "agenda.md")[-1]["vid"]
    # Reading marks the thread read; a document already in the vault is attached by name.
    assert b.json("thread", "ls", "drafting")[0]["unread"] == 0
    a.ok("thread", "post", "drafting", "monthly-check-in", "--attach", "agenda.md", "same agenda")
    assert b.json("thread", "ls", "drafting")[0]["unread"] == 1
    assert len(b.json("thread", "read", "drafting", "monthly-check-in", "--since", "1h")) == 4
    human = b.ok("thread", "read", "drafting", "monthly-check-in").out
    assert "alice: Draft agenda is in the vault" in human and "attached: agenda.md" in human


def test_names_and_text_never_reach_the_server_or_the_cache_in_clear(org: Org) -> None:
    canary_thread, canary_text = "canary-thread-7f3a", "canary-text-91bd"
    org.alice.ok("thread", "create", "drafting", canary_thread)
    org.alice.ok("thread", "post", "drafting", canary_thread, f"the {canary_text} is here")
    assert org.bob.json("thread", "read", "drafting", canary_thread)[0]["text"] == f"the {canary_text} is here"
    places = [org.server.data_dir, org.alice.home, org.bob.home]
    for root in places:
        for f in root.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert canary_thread.encode() not in data and canary_text.encode() not in data, f
    assert list((org.bob.home / "threads").glob("*.bin")), "bob keeps an (encrypted) cache"


async def test_two_members_post_and_follow_concurrently(org: Org) -> None:
    org.alice.ok("thread", "create", "drafting", "duo")
    followers = [await Follower(org.server, m, "duo").start() for m in (org.alice, org.bob)]
    try:
        async def poster(m: Member, n: int) -> set[str]:
            async with session(org.server, m) as s:
                threads = await Threads.open(s, "drafting")
                for i in range(n):
                    await threads.post("duo", f"{m.name} {i}")
            return {f"{m.name} {i}" for i in range(n)}

        sent = set().union(*await asyncio.gather(poster(org.alice, 15), poster(org.bob, 15)))
        for f in followers:
            await f.wait_for(30)
        await asyncio.sleep(0.3)  # nothing more arrives
        for f in followers:
            check_order(f.got, sent)
    finally:
        for f in followers:
            await f.close()


async def test_five_members_post_and_follow_concurrently(org: Org, make_member: Any) -> None:
    members = [org.alice, org.bob, *add_members(org, make_member, ["carol", "dan", "erin"])]
    org.alice.ok("thread", "create", "drafting", "five")
    followers = [await Follower(org.server, m, None if i % 2 else "five").start() for i, m in enumerate(members)]
    try:
        async def poster(m: Member, n: int) -> set[str]:
            async with session(org.server, m) as s:
                threads = await Threads.open(s, "drafting")
                for i in range(n):
                    await threads.post("five", f"{m.name} says {i}")
            return {f"{m.name} says {i}" for i in range(n)}

        sent = set().union(*await asyncio.gather(*(poster(m, 8) for m in members)))
        assert len(sent) == 40
        for f in followers:
            await f.wait_for(40)
        await asyncio.sleep(0.3)
        orders = []
        for f in followers:
            check_order(f.got, sent)
            orders.append([m.id for m in f.got])
        assert all(o == orders[0] for o in orders), "followers saw different orders"
        assert rows(org.server)[0][0] == 40
    finally:
        for f in followers:
            await f.close()


async def test_a_follower_reconnects_after_a_restart_and_gets_each_message_once(org: Org) -> None:
    org.alice.ok("thread", "create", "drafting", "resume")
    f = await Follower(org.server, org.bob, "resume").start()
    server = org.server
    try:
        async with session(server, org.alice) as s:
            threads = await Threads.open(s, "drafting")
            for i in range(3):
                await threads.post("resume", f"before {i}")
        await f.wait_for(3)
        server = await asyncio.to_thread(org.server.restart)  # the follower's connection drops; it reconnects by itself
        async with session(server, org.alice) as s:
            threads = await Threads.open(s, "drafting")
            for i in range(3):
                await threads.post("resume", f"after {i}")
        await f.wait_for(6, timeout=40)
        await f.live_again()
        await asyncio.sleep(0.3)
        check_order(f.got, {f"before {i}" for i in range(3)} | {f"after {i}" for i in range(3)})
        assert any("reconnecting" in st for st in f.states)
    finally:
        await f.close()
        server.stop()


def test_cli_follow_prints_json_lines_and_stops_on_sigterm(org: Org) -> None:
    org.alice.ok("thread", "create", "drafting", "cli-follow")
    org.alice.ok("thread", "post", "drafting", "cli-follow", "missed while away")
    p = subprocess.Popen([MVAULT, "thread", "follow", "drafting", "cli-follow", "--json"], env=org.bob.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        lines = [json.loads(p.stdout.readline()) for _ in range(2)]
        assert lines[0]["text"] == "missed while away" and lines[1] == {"state": "live"}
        org.alice.ok("thread", "post", "drafting", "cli-follow", "live one")
        live = json.loads(p.stdout.readline())
        assert live["text"] == "live one" and live["sender_name"] == "alice" and live["pos"] == 2
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    # What it showed is read: nothing unread for bob.
    assert org.bob.json("thread", "ls", "drafting")[0]["unread"] == 0


# -- removal and rotation ----------------------------------------------------------------------------


async def test_removed_member_receives_nothing_new_and_old_generation_is_refused(org: Org, make_member: Any) -> None:
    [carol] = add_members(org, make_member, ["carol"])
    org.alice.ok("thread", "create", "drafting", "rot")
    org.alice.ok("thread", "post", "drafting", "rot", "before the removal")
    assert carol.json("thread", "read", "drafting", "rot")[0]["text"] == "before the removal"  # carol's cache
    bob_follow = await Follower(org.server, org.bob, "rot").start()
    try:
        await bob_follow.wait_for(1)
        # bob prepares a message under generation 1 while still a member ...
        async with session(org.server, org.bob) as s:
            threads = await Threads.open(s, "drafting")
            ct = await threads.resolve("rot")
            key = await s.keys.team_key(threads.team, 1)
            last = ct.checker.senders.get(s.session.device.device_id)
            stale = make_message(key, Body("sent after my removal"), thread=ct.checker.thread, rec=ct.checker.rec,
                                 team_seq=threads.team.seq, sender=s.session.me, device=s.session.device, seq=1,
                                 prev=None, prev_time=0, seen=ct.checker.newest_seen(s.session.device.device_id),
                                 time=int(time.time()))
            assert last is None
            org.alice.ok("team", "remove", "drafting", "bob")  # removal rotates to generation 2
            # ... and the server refuses it: bob is no longer in the team.
            with pytest.raises((PolicyDenied, NotFound)):
                await s.session.api.post(f"/api/v1/teams/{threads.team.team_id}/threads/{ct.checker.thread}/messages",
                                         {"message": b64(stale.raw)})
        org.alice.ok("thread", "post", "drafting", "rot", "after the removal")
        await asyncio.sleep(0.5)
        assert [m.text for m in bob_follow.got] == ["before the removal"], "a removed member received a message"
    finally:
        bob_follow.stop.set()
        if bob_follow.task is not None:
            await asyncio.wait({bob_follow.task}, timeout=30)
    # bob's live connection was closed by the server with a reason, not left open.
    assert bob_follow.task is not None and bob_follow.task.done()
    with pytest.raises(PolicyDenied, match="no longer have access"):
        bob_follow.task.result()
    org.bob.fails("thread", "read", "drafting", "rot")
    # carol was offline during the rotation: she reads both generations.
    msgs = carol.json("thread", "read", "drafting", "rot")
    assert [(m["text"], m["gen"]) for m in msgs] == [("before the removal", 1), ("after the removal", 2)]
    assert rows(org.server, "SELECT COUNT(*) FROM messages")[0][0] == 2


async def post_under(server: ServerThread, m: Member, thread: str, gen: int) -> VaultError:
    """Post a well-formed message under generation ``gen`` straight to the API; the refusal."""
    async with session(server, m) as s:
        threads = await Threads.open(s, "drafting")
        ct = await threads.resolve(thread)
        key = await s.keys.team_key(threads.team, gen)
        last = ct.checker.senders.get(s.session.device.device_id)
        msg = make_message(key, Body(f"under generation {gen}"), thread=ct.checker.thread,
                            rec=ct.checker.rec, team_seq=threads.team.seq,
                           sender=s.session.me, device=s.session.device, seq=last.seq + 1 if last else 1,
                           prev=last.id if last else None, prev_time=last.time if last else 0, seen=[],
                           time=int(time.time()))
        try:
            await s.session.api.post(f"/api/v1/teams/{threads.team.team_id}/threads/{ct.checker.thread}/messages",
                                     {"message": b64(msg.raw)})
        except VaultError as e:
            # Without its traceback: holding the frames of the failed request until the end of the
            # run made CPython 3.11.7's ast.parse fail later in the session ("recursion depth mismatch").
            return e.with_traceback(None)
    raise AssertionError("the server accepted a message under an old generation")


async def test_a_current_member_posting_under_the_old_generation_is_refused(org: Org) -> None:
    org.alice.ok("thread", "create", "drafting", "oldgen")
    org.alice.ok("team", "rotate", "drafting")
    e = await post_under(org.server, org.bob, "oldgen", 1)
    assert isinstance(e, Conflict) and "generation 1 is not current" in e.message
    assert rows(org.server)[0][0] == 0


# -- expiry -----------------------------------------------------------------------------------------


def test_disappearing_messages_are_deleted_on_the_server_and_in_caches(org: Org) -> None:
    org.alice.ok("thread", "create", "drafting", "security-incident", "--expire", "1h")
    org.alice.ok("thread", "post", "drafting", "security-incident", "burn after reading")
    org.alice.ok("thread", "create", "drafting", "keep")
    org.alice.ok("thread", "post", "drafting", "keep", "stays")
    assert org.bob.json("thread", "read", "drafting", "security-incident")[0]["text"] == "burn after reading"
    # by name: `ls` orders by creation second, then name, and the two may fall in one second or two
    assert {t["name"]: t["expire"] for t in org.bob.json("thread", "ls", "drafting")} == {
        "security-incident": 3600, "keep": 0}
    org.server.advance(3600 + 5)
    org.bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(3600 + 5)
    org.alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(3600 + 5)
    # The server deletes the expired message (on the next request that reads messages) ...
    assert org.bob.json("thread", "read", "drafting", "security-incident") == []
    assert rows(org.server, "SELECT COUNT(*) FROM messages")[0][0] == 1
    # ... bob's cache no longer has it either, and the thread goes on.
    org.alice.ok("thread", "post", "drafting", "security-incident", "new incident")
    assert [m["text"] for m in org.bob.json("thread", "read", "drafting", "security-incident")] == ["new incident"]
    assert [m["text"] for m in org.bob.json("thread", "read", "drafting", "keep")] == ["stays"]
    # The deletion is an audit event: see test_thread_events_reach_the_security_team.


# -- bad input --------------------------------------------------------------------------------------


def test_bad_input_fails_clearly_and_stores_nothing(org: Org, make_member: Any) -> None:
    [rita] = add_members(org, make_member, ["rita"], role="reader")
    unlock_here(org.alice)  # her commands skip Argon2id (the unlock itself: tests/test_auth.py)
    org.alice.ok("thread", "create", "drafting", "t")
    before = rows(org.server, "SELECT COUNT(*) FROM messages")[0][0]
    org.alice.fails("thread", "post", "drafting", "t", "", contains="message is empty")
    org.alice.fails("thread", "post", "drafting", "t", "   ", contains="message is empty")
    r = org.alice.run("thread", "post", "drafting", "t", "-", input="x" * (MAX_TEXT + 1))
    assert r.code == 1 and r.err.startswith("error: ") and f"limit is {MAX_TEXT} bytes" in r.err, r.err
    org.alice.fails("thread", "post", "drafting", "no-such-thread", "hi", contains="no thread named")
    org.alice.fails("thread", "read", "drafting", "no-such-thread", contains="no thread named")
    rita.fails("thread", "post", "drafting", "t", "readers may not post", contains="may not post")
    rita.fails("thread", "create", "drafting", "mine", contains="may not create")
    org.alice.fails("thread", "create", "drafting", "t", contains="already exists")
    org.alice.fails("thread", "create", "drafting", "a/b", contains="thread name")
    org.alice.fails("thread", "create", "drafting", "x", "--expire", "soon", contains="duration")
    org.alice.fails("thread", "post", "drafting", "t", "--attach", "missing.md", "x", contains="no file or document")
    assert rows(org.server, "SELECT COUNT(*) FROM messages")[0][0] == before
    assert rows(org.server, "SELECT COUNT(*) FROM threads")[0][0] == 1
    # Exactly the limit is fine; readers read.
    r = org.alice.run("thread", "post", "drafting", "t", "-", input="y" * MAX_TEXT)
    assert r.code == 0, r.err
    assert len(rita.json("thread", "read", "drafting", "t")[0]["text"]) == MAX_TEXT


def test_outsiders_see_no_threads(org: Org, make_member: Any) -> None:
    out = make_member("outsider")
    out.ok("join", org.alice.json("invite")["invite"], "--name", "outsider")
    org.alice.ok("thread", "create", "drafting", "inner")
    out.fails("thread", "ls", "drafting")
    out.fails("thread", "read", "drafting", "inner")
    out.fails("thread", "post", "drafting", "inner", "hello")


def test_passphrase_is_needed_for_the_cache(org: Org) -> None:
    """The cache is sealed with a key from the keystore: another member's keys cannot open it."""
    org.alice.ok("thread", "create", "drafting", "c")
    org.alice.ok("thread", "post", "drafting", "c", "cached")
    org.bob.ok("thread", "read", "drafting", "c")
    org.alice.ok("thread", "read", "drafting", "c")
    [cache] = list((org.bob.home / "threads").glob("*.bin"))
    [alice_cache] = list((org.alice.home / "threads").glob("*.bin"))
    assert cache.name != alice_cache.name  # named by a keyed hash of the team id: each device its own
    alice_cache.write_bytes(cache.read_bytes())  # bob's cache copied over alice's
    org.alice.fails("thread", "read", "drafting", "c", contains="cache")
    assert PASSPHRASE  # (the keystore passphrase is the only way to the cache key)


# -- audit -----------------------------------------------------------------------------------------


def test_thread_events_reach_the_security_team(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)
    org.alice.ok("thread", "create", "drafting", "audited", "--expire", "1h")
    org.alice.ok("thread", "post", "drafting", "audited", "one")
    org.bob.ok("thread", "read", "drafting", "audited")
    org.alice.ok("team", "rotate", "drafting")
    assert isinstance(asyncio.run(post_under(org.server, org.bob, "audited", 1)), Conflict)
    org.server.advance(3600 + 5)
    for m in (org.alice, org.bob, carol):
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(3600 + 5)
    org.bob.ok("thread", "read", "drafting", "audited")  # the server purges: one msg.expire event
    events = carol.json("audit", "log")
    by_action: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_action.setdefault(e["action"], []).append(e)
    team = by_action["thread.create"][0]["res"]["team"]
    assert "retention" in by_action["thread.create"][0]["rules"]
    post = by_action["msg.post"][0]
    assert post["res"]["team"] == team and post["res"]["thread"] and post["res"]["msg"] and post["result"] == "ok"
    assert "rotate-on-removal" in post["rules"]
    assert any(e["actor_name"] == "bob" and e["detail"].get("count") == 1 for e in by_action["msg.read"])
    [expire] = by_action["msg.expire"]
    assert expire["detail"]["count"] == 1 and expire["res"]["thread"] == post["res"]["thread"]
    # The exposure report: the thread bob could read, its expiry, what was posted and what he fetched.
    exp = carol.json("audit", "exposure", "bob")
    [drafting] = [t for t in exp["teams"] if t["name"] == "drafting"]
    [th] = drafting["threads"]
    assert th["thread"] == post["res"]["thread"] and th["expire"] == 3600 and th["messages"] == 1
    assert th["fetched"] == 1 and exp["messages_fetched"] == 1
    # retention: a thread of this (program) team that keeps messages forever is a violation.
    org.alice.ok("thread", "create", "drafting", "forever")
    report = carol.run("audit", "report", "--json").json()
    [retention] = [r for r in report["rules"] if r["rule"] == "retention"]
    assert retention["status"] == "violated" and len(retention["findings"]) == 1
    assert "forever" in retention["findings"][0]["message"]
    refused = [e for e in by_action["msg.post"] if e["result"] != "ok"]
    assert refused and refused[0]["actor_name"] == "bob" and refused[0]["detail"]["error"] == "conflict"
    assert "audited" not in json.dumps(events) and "one" not in [str(v) for e in events for v in e["res"].values()]


async def test_a_follower_takes_several_messages_in_one_frame(org: Org) -> None:
    """The server sends what waited for a follower as one ``msgs`` frame; the client checks each."""
    org.alice.ok("thread", "create", "drafting", "batched")
    for i in range(3):
        org.alice.ok("thread", "post", "drafting", "batched", f"m{i}")
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        tid = await threads.thread_of("batched")
        res = await s.session.api.get(f"{threads.base}/{tid}/messages?after=0")
        items = [{"type": "msg", "thread": tid, "pos": m["pos"], "record": m["record"]} for m in res["messages"]]
        scope = {tid: await threads._cached(tid, None, None)}
        got: list[Shown] = []

        async def on_message(_tid: str, m: Shown) -> None:
            got.append(m)

        frame = _live_event(json.dumps({"type": "msgs", "items": items}))
        await threads._frame(frame, scope, False, on_message, None)
        assert [m.text for m in got] == ["m0", "m1", "m2"]
        frame = _live_event(json.dumps({"type": "msgs", "items": items[:1]}))
        await threads._frame(frame, scope, False, on_message, None)
        assert len(got) == 3  # delivered again after a reconnect: shown once
        with pytest.raises(IntegrityError, match="malformed live frame"):
            nested = _live_event(json.dumps({"type": "msgs", "items": [{"type": "msgs", "items": []}]}))
            await threads._frame(nested, scope, False, on_message, None)
        reordered = [items[1], items[0]]
        fresh = {tid: await Threads(s, threads.team)._cached(tid, None, None)}
        fresh[tid].pos, fresh[tid].checker = 0, type(fresh[tid].checker)(threads.team.team_id, tid, 0)
        with pytest.raises(IntegrityError):
            frame = _live_event(json.dumps({"type": "msgs", "items": reordered}))
            await threads._frame(frame, fresh, False, on_message, None)


@pytest.mark.parametrize("what", ["post", "create"])
async def test_a_request_whose_body_arrives_after_the_removal_is_refused(org: Org, make_member: Any,
                                                                         what: str) -> None:
    """bob starts a post (or a thread creation), is removed while its body is still arriving,
    then finishes it naming the new team state: the server judges him again and refuses."""
    [carol] = add_members(org, make_member, ["carol"], role="reader")
    org.alice.ok("thread", "create", "drafting", "rot")
    org.alice.ok("thread", "post", "drafting", "rot", "before the removal")
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        ct = await threads.resolve("rot")
        names_key = await s.keys.team_key(threads.team, threads.team.generation)
        go = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b'{"' + (b"message" if what == "post" else b"record") + b'": "'
            await go.wait()
            team = org.server.app[DIRECTORY].teams[threads.team.team_id]  # after the removal and rotation
            if what == "post":
                forged = TeamKey(team.team_id, team.generation, os.urandom(32))  # bob cannot know the new key
                raw = make_message(forged, Body("after my removal"), thread=ct.checker.thread,
                            rec=ct.checker.rec, team_seq=team.seq,
                                   sender=s.session.me, device=s.session.device, seq=1, prev=None, prev_time=0, seen=[],
                                   time=int(time.time())).raw
            else:
                raw = make_thread(names_key, "from-the-admins-urgent", team_seq=team.seq, expire=0,
                                  creator=s.session.me,
                                  device=s.session.device, time=int(time.time())).raw
            yield (b64(raw) + '"}').encode()

        path = f"{threads.base}/{ct.checker.thread}/messages" if what == "post" else threads.base
        request = asyncio.create_task(s.session.api.upload(path, body()))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(org.alice.ok, "team", "remove", "drafting", "bob")
        go.set()
        with pytest.raises((NotFound, PolicyDenied, AuthError)):
            await request
    assert rows(org.server)[0][0] == 1 and rows(org.server, "SELECT COUNT(*) FROM threads")[0][0] == 1
    assert [m["text"] for m in carol.json("thread", "read", "drafting", "rot")] == ["before the removal"]
    assert [t["name"] for t in carol.json("thread", "ls", "drafting")] == ["rot"]


async def test_a_follower_whose_session_ends_logs_in_again(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live delivery re-checks the session: when it expires the server closes with 'unauthorized',
    and the follower logs in again and goes on from where it was (nothing lost, nothing twice)."""
    org.alice.ok("thread", "create", "drafting", "long")
    org.alice.ok("thread", "post", "drafting", "long", "first")
    f = await Follower(org.server, org.bob, "long").start()
    try:
        await f.wait_for(1)
        hour = 3600 + 60  # past the 1 h session lifetime
        org.server.advance(hour)
        monkeypatch.setenv("MVAULT_TEST_CLOCK_OFFSET", str(hour))  # the in-process follower's clock too
        org.alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(hour)
        org.alice.ok("thread", "post", "drafting", "long", "after an hour")
        await f.wait_for(2)
        await f.live_again()
        assert [m.text for m in f.got] == ["first", "after an hour"]
    finally:
        await f.close()


def test_follow_and_post_from_one_home_share_the_cache(org: Org) -> None:
    """`thread follow` runs while the same member posts from another shell: neither breaks or
    rolls back the other's cache."""
    org.alice.ok("thread", "create", "drafting", "same-home")
    p = subprocess.Popen([MVAULT, "thread", "follow", "drafting", "same-home", "--json"], env=org.bob.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert json.loads(p.stdout.readline()) == {"state": "live"}
        for i in range(4):
            org.bob.ok("thread", "post", "drafting", "same-home", f"bob {i}")
            org.alice.ok("thread", "post", "drafting", "same-home", f"alice {i}")
        seen = [json.loads(p.stdout.readline())["text"] for _ in range(8)]
        assert seen == [x for i in range(4) for x in (f"bob {i}", f"alice {i}")]
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    texts = [m["text"] for m in org.bob.json("thread", "read", "drafting", "same-home")]
    assert texts == [x for i in range(4) for x in (f"bob {i}", f"alice {i}")]
    org.bob.ok("thread", "post", "drafting", "same-home", "and one more")
    assert org.alice.json("thread", "read", "drafting", "same-home")[-1]["text"] == "and one more"
