"""Document notices on a team's live channel (server/live.py, client/sync/live.py) against the real server:
a member following them hears of another member's put with its document, number and version id; a thread
follower hears nothing of documents; a removed member's notices end with the access error; a restart is a
reconnect that asks for a full check; and the watch loop wakes on a notice."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.sync.live import DocNotice, Missed, Notice, _doc_event, doc_notices
from client.sync.watch import Hint, watch
from client.threads.team import Threads
from tests.conftest import Member, Org, ServerThread
from tests.helpers.members import Follower, session
from vault.errors import IntegrityError, PolicyDenied
from vault.wire.schemas import DocFrame


class Notices:
    """``doc_notices`` of team drafting for ``member``, iterated in a task, collecting what arrives."""

    def __init__(self, server: ServerThread, member: Member) -> None:
        self.server, self.member = server, member
        self.got: list[Notice] = []
        self.task: asyncio.Task[None] | None = None
        self.doc_ids: dict[str, str] = {}

    async def _run(self) -> None:
        async with session(self.server, self.member) as s:
            team = (await s.chains.view()).team_by_name("drafting")
            key = await s.keys.team_key(team, team.generation)
            for name in ("plan.txt", "other.txt"):
                self.doc_ids[name] = key.doc_id(name)
            async for notice in doc_notices(s, team, retry_max=0.3):
                self.got.append(notice)

    async def start(self) -> Notices:
        self.task = asyncio.ensure_future(self._run())
        await self.until(lambda: len(self.got) >= 1)
        assert self.got == [Missed()], "the first notice says the stream went live (a full check is due)"
        return self

    async def until(self, cond: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond() and time.monotonic() < deadline:
            if self.task is not None and self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        assert cond(), self.got

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def put(m: Member, path: Path, data: str) -> dict[str, Any]:
    path.write_text(data)
    out: dict[str, Any] = (await asyncio.to_thread(m.json, "put", "drafting", str(path)))[0]
    return out


def docs_of(got: list[Notice]) -> list[DocNotice]:
    return [n for n in got if isinstance(n, DocNotice)]


async def test_a_follower_hears_of_each_version_another_member_stores(org: Org, tmp_path: Path) -> None:
    alice = await Notices(org.server, org.alice).start()
    try:
        first = await put(org.bob, tmp_path / "plan.txt", "first draft")
        second = await put(org.bob, tmp_path / "plan.txt", "second draft")
        other = await put(org.bob, tmp_path / "other.txt", "another document")
        await alice.until(lambda: len(docs_of(alice.got)) >= 3)
    finally:
        await alice.close()
    plan, other_doc = alice.doc_ids["plan.txt"], alice.doc_ids["other.txt"]
    assert docs_of(alice.got) == [DocNotice(plan, 1, first["vid"]), DocNotice(plan, 2, second["vid"]),
                                  DocNotice(other_doc, 1, other["vid"])]
    assert (first["version"], second["version"]) == (1, 2)


async def test_a_thread_follower_gets_no_document_frames(org: Org, tmp_path: Path) -> None:
    org.alice.ok("thread", "create", "drafting", "talk")
    follower = await Follower(org.server, org.bob, "talk").start()  # the threads client: strict about frames
    try:
        await put(org.alice, tmp_path / "plan.txt", "a draft")
        await asyncio.to_thread(org.alice.ok, "thread", "post", "drafting", "talk", "after the put")
        await follower.wait_for(1)
    finally:
        await follower.close()
    assert [m.text for m in follower.got] == ["after the put"]
    # the same on the wire: a follower of a thread only receives no doc frame
    async with session(org.server, org.bob) as s:
        team = (await s.chains.view()).team_by_name("drafting")
        threads = await Threads.open(s, "drafting")
        talk = (await threads.resolve("talk")).checker.thread
        ws = await s.session.api.websocket(f"/api/v1/teams/{team.team_id}/live")
        try:
            await ws.send_json({"after": {talk: 1}})
            assert json.loads((await ws.receive(timeout=10)).data) == {"type": "live"}
            await put(org.alice, tmp_path / "plan.txt", "another draft")
            await asyncio.to_thread(org.alice.ok, "thread", "post", "drafting", "talk", "second")
            frames = [json.loads((await ws.receive(timeout=10)).data)]
        finally:
            await ws.close()
    assert [f["type"] for f in frames] == ["msg"], frames


async def test_a_removed_member_notices_end_with_the_access_error(org: Org, tmp_path: Path) -> None:
    bob = await Notices(org.server, org.bob).start()
    try:
        await put(org.alice, tmp_path / "plan.txt", "before the removal")
        await bob.until(lambda: len(docs_of(bob.got)) >= 1)
        await asyncio.to_thread(org.alice.ok, "team", "remove", "drafting", "bob")
        await put(org.alice, tmp_path / "plan.txt", "after the removal")
        assert bob.task is not None
        await asyncio.wait({bob.task}, timeout=20)
        assert bob.task.done(), "the notices of a removed member did not end"
        with pytest.raises(PolicyDenied, match="no longer have access"):
            bob.task.result()
    finally:
        await bob.close()
    assert len(docs_of(bob.got)) == 1, "a removed member heard of a version stored after the removal"


async def test_a_removed_member_is_told_without_waiting_for_the_teams_next_version(org: Org) -> None:
    bob = await Notices(org.server, org.bob).start()
    try:
        await asyncio.to_thread(org.alice.ok, "team", "remove", "drafting", "bob")  # nothing is stored after it
        assert bob.task is not None
        await asyncio.wait({bob.task}, timeout=20)
        assert bob.task.done(), "the notices of a removed member did not end"
        with pytest.raises(PolicyDenied, match="no longer have access"):
            bob.task.result()
    finally:
        await bob.close()


async def test_a_restart_is_a_reconnect_that_asks_for_a_full_check(org: Org, tmp_path: Path) -> None:
    alice = await Notices(org.server, org.alice).start()
    server = org.server
    try:
        server = await asyncio.to_thread(org.server.restart)  # same data, same port: the connection drops
        await alice.until(lambda: alice.got.count(Missed()) >= 2)
        stored = await put(org.bob, tmp_path / "plan.txt", "after the restart")
        await alice.until(lambda: len(docs_of(alice.got)) >= 1)
    finally:
        await alice.close()
        if server is not org.server:
            await asyncio.to_thread(server.stop)
    assert docs_of(alice.got) == [DocNotice(alice.doc_ids["plan.txt"], 1, stored["vid"])]


async def test_a_first_frame_may_ask_for_documents_only_and_bad_ones_are_refused(org: Org) -> None:
    async with session(org.server, org.alice) as s:
        team = (await s.chains.view()).team_by_name("drafting")
        for first in ({}, {"docs": "yes"}, {"docs": True, "extra": 1}):
            ws = await s.session.api.websocket(f"/api/v1/teams/{team.team_id}/live")
            try:
                await ws.send_json(first)
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.TEXT
                assert json.loads(msg.data)["type"] == "error", (first, msg.data)
            finally:
                await ws.close()
        ws = await s.session.api.websocket(f"/api/v1/teams/{team.team_id}/live")
        try:
            await ws.send_json({"docs": True})  # documents only: no thread needed
            assert json.loads((await ws.receive(timeout=10)).data) == {"type": "live"}
        finally:
            await ws.close()


async def test_the_watch_loop_wakes_on_another_members_put(org: Org, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    hints: list[Hint | None] = []

    async def run_pass(hint: Hint | None) -> list[dict[str, Any]]:
        hints.append(hint)
        return []

    stop = asyncio.Event()
    async with session(org.server, org.alice) as s:
        team = (await s.chains.view()).team_by_name("drafting")
        plan = (await s.keys.team_key(team, team.generation)).doc_id("plan.txt")
        task = asyncio.ensure_future(watch(run_pass, folder, doc_notices(s, team), lambda obj: None, stop,
                                           backstop=600))
        try:
            deadline = time.monotonic() + 20
            while not hints and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await put(org.bob, tmp_path / "plan.txt", "a draft")
            while len(hints) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    assert hints == [None, Hint(docs=frozenset({plan}))]


def test_a_frame_a_document_follower_may_not_get_is_a_protocol_violation() -> None:
    doc, vid = "ab" * 16, "cd" * 16
    assert _doc_event(json.dumps({"type": "doc", "doc": doc, "seq": 2, "vid": vid})) == DocFrame(doc, 2, vid)
    wrongs = [
        {"type": "msg", "thread": doc, "pos": 1, "record": ""},  # a thread frame: not asked for
        {"type": "doc", "doc": "../x", "seq": 2, "vid": vid},
        {"type": "doc", "doc": doc, "seq": -1, "vid": vid},
        {"type": "doc", "doc": doc, "seq": 1},
    ]
    for wrong in wrongs:
        with pytest.raises(IntegrityError, match="malformed live frame"):
            _doc_event(json.dumps(wrong))
