"""The log order of a publication's ``audit.key`` event is the order of ``put_key``'s checks, over PostgreSQL with two
server processes (review 36, finding 3; fix36b). Review 36's own test (tests/test_review36_exploits.py) covers one
process: the key's write it holds now comes after the event, and nothing is awaited between the checks and the
event's place in the log. Over two processes the log's order is the database's: process one holds the
organization's and the team's chain locks (shared) from before its catch-up until the statement's event is durable,
so a rotation through process two waits for the event and is logged after it. Here the write of the batch holding
the statement's leaf on process one is slow (a slow disk); dave's rotation through process two must wait for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from client.audit.log import verify_log
from client.maintenance import rotate
from security.events import Leaf
from server.context import AUDIT, DIRECTORY
from tests.conftest import ServerThread, join_member, security_team
from tests.helpers.members import session
from tests.helpers.pair import Pair


@contextmanager
def statement_write_held(monkeypatch: pytest.MonkeyPatch,
                         server: ServerThread) -> Iterator[tuple[threading.Event, threading.Event]]:
    """``server``'s first write of a batch of audit leaves holding an audit-key statement waits until ``release``
    is set (``entered`` is set then); the leaf has its place in this process's queue, not yet in the database."""
    committer = server.app[AUDIT]._leaves  # type: ignore[attr-defined]
    real = committer._write
    entered, release = threading.Event(), threading.Event()

    async def slow(items: list[tuple[bytes, int]]) -> Any:
        if not entered.is_set() and any(Leaf.parse(leaf).claim is not None for leaf, _ in items):
            entered.set()
            while not release.is_set():
                await asyncio.sleep(0.05)
        return await real(items)

    with monkeypatch.context() as m:
        m.setattr(committer, "_write", slow)
        yield entered, release
    release.set()


async def test_a_rotation_through_process_two_waits_for_a_publications_event_through_one(
        pair: Pair, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """carol and dave admins of sec (designated); carol rotates sec (generation 3); her next command
    (through process one) publishes it, and while one writes the statement's event dave rotates sec through process
    two. The rotation is not stored while the event is not durable (two's team generation is still 3 a second and a
    half later), then is; dave's next command publishes generation 4; carol and dave verify clean through both
    processes. Before fix36b two stored the rotation and logged its event at once, ahead of the statement: dave's
    verify "no publication" (review 36's finding over two processes)."""
    org = pair.org
    carol = security_team(org, make_member)
    dave = join_member(org, make_member, "dave")
    org.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    org.alice.ok("team", "add", "sec", "dave", "--role", "admin")
    dave.ok("whoami")
    carol.ok("whoami")
    assert "key generation 3" in carol.ok("team", "rotate", "sec").out
    out: dict[str, Any] = {}
    async with session(pair.two, dave) as sd:
        view = await sd.chains.view(refresh=True)
        sec = view.team_by_name("sec")
        assert sec is not None and sec.generation == 3
        with statement_write_held(monkeypatch, pair.one) as (entered, release):
            publishing = threading.Thread(target=lambda: out.setdefault("carol", carol.run("whoami")))
            publishing.start()
            assert await asyncio.to_thread(entered.wait, 30)
            rotating = asyncio.create_task(rotate(sd, sec))
            await asyncio.sleep(1.5)
            stored_meanwhile = rotating.done() or pair.two.app[DIRECTORY].team(sec.team_id).generation != 3
            release.set()
            await rotating
            await asyncio.to_thread(publishing.join, 60)
    assert not stored_meanwhile
    assert "published the audit key of team sec (generation 3)" in out["carol"].err, out["carol"].err
    assert "published the audit key of team sec (generation 4)" in dave.ok("whoami").err
    org.alice.ok("team", "create", "after", "--kind", "program")
    for server in (pair.one, pair.two):
        for member in (carol, dave):
            async with session(server, member) as s:
                verified, *_ = await verify_log(s)
                assert not verified.problems, (server is pair.one, member.home.name, verified.problems)
