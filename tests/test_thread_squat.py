"""A hostile writer takes a likely thread name first (issue 13).

A thread's id is a keyed hash of its name and its signed record carries the expiry its
creator chose, so mallory (a writer of the team) can create "strategy" with a 1-hour expiry
(the real conversation quietly disappears) or "incident" that keeps messages forever. She
cannot be stopped from choosing a name first; these tests hold the defence, which is
visibility: honest members always see who created a thread and its expiry, ``thread create``
of a taken name names her, and ``thread post --expect-expire`` refuses to post (and uploads
nothing) when the signed expiry is not the expected one. Real server, real CLI.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from client.threads.team import Threads
from tests.conftest import MVAULT, Member, Org
from tests.helpers.db import rows
from tests.helpers.members import add_members, session
from tests.helpers.worlds import World, Worlds
from vault.errors import Conflict


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    """Every test here starts from ``squat``: ``org`` is a copy of one built with it."""
    return worlds.org_then("org-squat", take_threads)


@pytest.fixture
def squat(org: Org, make_member: Any) -> tuple[Org, Member, str]:
    """mallory, a writer of 'drafting', took 'strategy' (1 h) and 'incident' (kept forever)."""
    mallory = make_member("mallory") if org.server.restored else take_threads(org, make_member)
    return org, mallory, mallory.json("whoami")["member"]


def take_threads(org: Org, make_member: Any) -> Member:
    [mallory] = add_members(org, make_member, ["mallory"])
    mallory.ok("thread", "create", "drafting", "strategy", "--expire", "1h")
    mallory.ok("thread", "create", "drafting", "incident")
    return mallory


def test_members_see_who_created_a_thread_and_its_expiry(squat: tuple[Org, Member, str]) -> None:
    org, _mallory, mid = squat
    bob = org.bob
    listing = {t["name"]: t for t in bob.json("thread", "ls", "drafting")}
    assert {n: (t["creator"], t["creator_name"], t["creator_role"], t["expire"]) for n, t in listing.items()} == {
        "strategy": (mid, "mallory", "writer", 3600), "incident": (mid, "mallory", "writer", 0)}
    assert all(isinstance(t["created"], int) and t["created"] > 0 for t in listing.values())
    human = bob.ok("thread", "ls", "drafting").out
    assert f"mallory ({mid[:8]})" in human  # piped: tab-separated rows, the creator in the last field

    # post: the answer names the creator and the expiry (human and JSON)
    r = bob.ok("thread", "post", "drafting", "strategy", "our plan")
    assert "posted to drafting/strategy (message 1)" in r.out
    assert f"thread strategy: created by mallory ({mid[:8]}) on " in r.out
    assert "messages disappear after 1h" in r.out
    posted = bob.json("thread", "post", "drafting", "incident", "what happened")
    assert (posted["creator"], posted["creator_name"], posted["expire"], posted["pos"]) == (mid, "mallory", 0, 1)

    # read: a header line first, even for a thread without messages; every JSON message carries it
    lines = bob.ok("thread", "read", "drafting", "strategy").out.splitlines()
    assert lines[0].startswith(f"thread strategy: created by mallory ({mid[:8]}) on ")
    assert lines[0].endswith("; messages disappear after 1h") and "bob: our plan" in lines[1]
    msgs = bob.json("thread", "read", "drafting", "incident")
    assert [(m["text"], m["creator"], m["creator_name"], m["expire"]) for m in msgs] == [
        ("what happened", mid, "mallory", 0)]
    assert msgs[0]["sender_name"] == "bob"  # the message's own keys are unchanged
    org.alice.ok("thread", "create", "drafting", "quiet", "--expire", "7d")
    out = bob.ok("thread", "read", "drafting", "quiet").out.splitlines()
    assert out[0].endswith("; messages disappear after 7d") and "created by alice" in out[0]
    assert out[1] == "no messages"


def test_follow_shows_the_creator_and_expiry(squat: tuple[Org, Member, str]) -> None:
    org, mallory, mid = squat
    mallory.ok("thread", "post", "drafting", "strategy", "first")
    # human: the header is the first line, before anything arrives
    p = subprocess.Popen([MVAULT, "thread", "follow", "drafting", "strategy"], env=org.bob.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first.startswith(f"thread strategy: created by mallory ({mid[:8]}) on "), first
        assert "messages disappear after 1h" in first
        assert "mallory: first" in p.stdout.readline()
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    # --json: each message carries the thread's creator and expiry (no extra lines: a contract)
    mallory.ok("thread", "post", "drafting", "strategy", "second")
    p = subprocess.Popen([MVAULT, "thread", "follow", "drafting", "strategy", "--json"], env=org.bob.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        got = json.loads(p.stdout.readline())
        assert (got["text"], got["creator"], got["creator_name"], got["expire"]) == ("second", mid, "mallory", 3600)
        assert json.loads(p.stdout.readline()) == {"state": "live"}
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_create_of_a_taken_name_names_who_took_it(squat: tuple[Org, Member, str]) -> None:
    org, _mallory, mid = squat
    before = rows(org.server, "SELECT COUNT(*) FROM threads")[0][0]
    r = org.alice.fails("thread", "create", "drafting", "strategy", "--expire", "7d", contains="already exists")
    assert f"created by mallory ({mid[:8]})" in r.err and "messages disappear after 1h" in r.err, r.err
    assert "--expect-expire 1h" in r.err
    r = org.alice.fails("thread", "create", "drafting", "incident", "--expire", "1h", contains="already exists")
    assert "mallory" in r.err and "messages are kept (no expiry)" in r.err, r.err
    # --json: the error as one JSON object on stderr (docs/cli.md), and the facts on stdout for a script
    r = org.alice.run("thread", "create", "drafting", "strategy", "--json")
    error = json.loads(r.err)
    assert r.code == 1 and error["error"] == "conflict" and error["exit_code"] == 1, r.err
    assert error["message"].startswith("a thread named 'strategy' already exists"), r.err
    res = json.loads(r.out)
    assert (res["error"], res["name"], res["creator"], res["creator_name"], res["creator_role"], res["expire"]) == (
        "conflict", "strategy", mid, "mallory", "writer", 3600)
    assert "already exists" in res["message"] and len(res["thread"]) == 32
    assert rows(org.server, "SELECT COUNT(*) FROM threads")[0][0] == before


async def test_create_racing_the_squatter_names_her_too(squat: tuple[Org, Member, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """mallory creates the name after alice's client looked and before its record arrived: the
    server refuses alice's record, and alice's client names mallory all the same."""
    from client.threads.info import ThreadExists  # noqa: PLC0415 (the pre-fix check runs the others without it)

    org, mallory, mid = squat
    taken = Threads._taken
    calls: list[str] = []

    async def first_look_before_mallory(self: Threads, tid: str, name: str) -> None:
        calls.append(name)
        if len(calls) == 1:  # the listing alice's client saw did not have it yet
            await asyncio.to_thread(mallory.ok, "thread", "create", "drafting", name, "--expire", "2h")
            return
        await taken(self, tid, name)

    monkeypatch.setattr(Threads, "_taken", first_look_before_mallory)
    async with session(org.server, org.alice) as s:
        threads = await Threads.open(s, "drafting")
        with pytest.raises(ThreadExists) as e:
            await threads.create("agenda", 7 * 86400)
    assert calls == ["agenda", "agenda"]
    assert (e.value.info.creator, e.value.info.expire) == (mid, 7200) and "mallory" in e.value.message


def test_expect_expire_refuses_and_posts_nothing(squat: tuple[Org, Member, str], tmp_path: Path) -> None:
    org, mallory, mid = squat
    bob = org.bob
    notes = tmp_path / "notes.md"
    notes.write_text("the real plan\n")
    docs_before = rows(org.server, "SELECT COUNT(*) FROM versions")[0][0]
    r = bob.fails("thread", "post", "drafting", "strategy", "--expect-expire", "7d", "--attach", str(notes),
                  "our plan", contains="nothing was posted")
    assert "keeps messages for 1h, not for 7d" in r.err and f"mallory ({mid[:8]})" in r.err, r.err
    r = bob.fails("thread", "post", "drafting", "incident", "--expect-expire", "1d", "what happened",
                  contains="keeps messages forever, not for 1d")
    r = bob.fails("thread", "post", "drafting", "strategy", "--expect-expire", "0", "x",
                  contains="keeps messages for 1h, not forever")
    bob.fails("thread", "post", "drafting", "strategy", "--expect-expire", "soon", "x", contains="duration")
    assert rows(org.server)[0][0] == 0  # no message ...
    assert rows(org.server, "SELECT COUNT(*) FROM versions")[0][0] == docs_before  # ... and no attachment uploaded
    assert bob.json("thread", "read", "drafting", "strategy") == []
    # The expected expiry posts, in any unit that means it; without the flag nothing changes.
    assert bob.json("thread", "post", "drafting", "strategy", "--expect-expire", "60m", "ok: 1 hour")["pos"] == 1
    assert bob.json("thread", "post", "drafting", "incident", "--expect-expire", "0", "kept, as agreed")["pos"] == 1
    mallory.ok("thread", "post", "drafting", "strategy", "no flag")
    assert rows(org.server)[0][0] == 3


async def test_expect_expire_in_the_library(squat: tuple[Org, Member, str]) -> None:
    """``Threads.post(expect_expire=...)`` refuses the same way for programs using the client library."""
    org, _mallory, _mid = squat
    async with session(org.server, org.bob) as s:
        threads = await Threads.open(s, "drafting")
        with pytest.raises(Conflict, match="keeps messages for 1h, not for 2h"):
            await threads.post("strategy", "x", expect_expire=7200)
        assert (await threads.post("strategy", "y", expect_expire=3600)).pos == 1
    assert rows(org.server)[0][0] == 1


def test_a_creator_who_left_the_team_is_flagged(squat: tuple[Org, Member, str]) -> None:
    org, _mallory, mid = squat
    org.alice.ok("team", "remove", "drafting", "mallory")
    listing = {t["name"]: t for t in org.bob.json("thread", "ls", "drafting")}
    assert (listing["strategy"]["creator"], listing["strategy"]["creator_role"]) == (mid, None)
    first = org.bob.ok("thread", "read", "drafting", "strategy").out.splitlines()[0]
    assert f"created by mallory ({mid[:8]}, no longer in the team) on " in first, first
