"""Live delivery across two server instances over one PostgreSQL database (issue 19; ``server/relay.py``,
``server/store/postgres/listen.py``): a follower connected to server two receives what is stored through server
one, once and in order: messages, new threads, document notices; a chain change through one judges its access on
two at once; what a lost listening connection or a lost notice missed is read from the database.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from client.threads.team import Threads
from server.context import STORAGE
from server.store.postgres import listen
from tests.helpers.members import session
from tests.helpers.pair import Pair, open_keys, wire
from tests.helpers.postgres import SyncConnection


@pytest.fixture(scope="module")
def ids(pair: Pair) -> Iterator[tuple[str, str]]:
    """The team "drafting" and its thread "live" (created through one), with bob's keys opened on two."""

    async def make() -> tuple[str, str]:
        async with session(pair.one, pair.org.alice) as s:
            threads = await Threads.open(s, "drafting")
            await threads.create("live", 0)
            return threads.team.team_id, (await threads.resolve("live")).checker.thread

    found = asyncio.run(make())
    asyncio.run(open_keys(pair.two, pair.org.bob))
    yield found


async def _post(pair: Pair, through: str, who: str, texts: list[str]) -> list[int]:
    server = pair.one if through == "one" else pair.two
    async with session(server, getattr(pair.org, who)) as s:
        threads = await Threads.open(s, "drafting")
        return [(await threads.post("live", text)).pos for text in texts]


def _listeners(url: str) -> int:
    with SyncConnection(url) as db:
        return int(db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = ?",
                              (listen.APPLICATION,)).fetchone()[0])


async def test_a_follower_on_two_gets_every_message_posted_through_either_once_in_order(
        pair: Pair, ids: tuple[str, str]) -> None:
    team, thread = ids
    async with wire(pair.two, pair.org.bob, team, {"after": {thread: 0}}) as w:
        await asyncio.gather(_post(pair, "one", "alice", [f"a{i}" for i in range(8)]),
                             _post(pair, "two", "bob", [f"b{i}" for i in range(8)]))
        await _post(pair, "one", "alice", ["last"])  # stored through one only: nothing on two stores after it
        await w.until(lambda: len(w.positions(thread)) >= 17)
        await asyncio.sleep(0.3)  # a duplicate would come now
    assert w.positions(thread) == list(range(1, 18))


async def test_a_new_thread_and_a_document_stored_through_one_reach_a_follower_on_two(
        pair: Pair, ids: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    team, _ = ids
    async with wire(pair.two, pair.org.bob, team, {"all": True, "docs": True}) as w:
        async with session(pair.one, pair.org.alice) as s:
            await (await Threads.open(s, "drafting")).create("second", 0)
        await w.until(lambda: len(w.of_type("thread")) >= 2)  # "live" from storage, "second" from one
        f = tmp_path_factory.mktemp("put") / "plan.md"
        f.write_text("the plan\n")
        put = await asyncio.to_thread(pair.org.alice.json, "put", "drafting", str(f))  # the CLI talks to one
        vid = put[0]["vid"]
        await w.until(lambda: bool(w.of_type("doc")))
    assert [d["vid"] for d in w.of_type("doc")] == [vid]
    assert w.closed is None


async def test_what_is_stored_while_the_listening_connection_is_down_is_read_after_it_reconnects(
        pair: Pair, ids: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    team, thread = ids
    # the listeners connect again only once the message is posted (was: 3 s of RETRY, which a loaded machine's post
    # could outlast: "the listeners came back too soon")
    posted = threading.Event()  # set by the test; the listeners wait on the servers' loops
    connect = listen.Listener._listen

    async def after_the_post(self: listen.Listener, take: Any) -> None:
        while not posted.is_set():
            await asyncio.sleep(0.05)
        await connect(self, take)

    with SyncConnection(pair.url) as db:
        after = int(db.execute("SELECT next_pos - 1 FROM threads WHERE thread = ?", (thread,)).fetchone()[0])
    async with wire(pair.two, pair.org.bob, team, {"after": {thread: after}}) as w, \
            session(pair.one, pair.org.alice) as s:
        threads = await Threads.open(s, "drafting")
        monkeypatch.setattr(listen.Listener, "_listen", after_the_post)  # the connections listening now stay
        with SyncConnection(pair.url) as db:
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
                       (listen.APPLICATION,))
        deadline = time.monotonic() + 30
        while _listeners(pair.url) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pos = (await threads.post("live", "while nobody listens")).pos
        assert _listeners(pair.url) == 0, "the listeners came back too soon: the test proves nothing"
        posted.set()
        await w.until(lambda: pos in w.positions(thread))
    assert w.positions(thread) == [pos] == [after + 1]


async def test_a_lost_notice_is_read_from_the_database_when_the_next_one_shows_the_gap(
        pair: Pair, ids: tuple[str, str]) -> None:
    team, thread = ids
    with SyncConnection(pair.url) as db:
        after = int(db.execute("SELECT next_pos - 1 FROM threads WHERE thread = ?", (thread,)).fetchone()[0])
    one, two = pair.one.app[STORAGE], pair.two.app[STORAGE]
    async with wire(pair.two, pair.org.bob, team, {"after": {thread: after}}) as w:
        mine = one.origin  # type: ignore[attr-defined]
        one.origin = two.origin  # type: ignore[attr-defined]  # two takes the notice for its own: skipped
        try:
            lost = await _post(pair, "one", "alice", ["lost notice"])
        finally:
            one.origin = mine  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
        assert w.positions(thread) == []  # nothing told two
        nxt = await _post(pair, "one", "alice", ["next"])
        await w.until(lambda: len(w.positions(thread)) >= 2)
    assert w.positions(thread) == lost + nxt == [after + 1, after + 2]


async def test_a_member_removed_through_one_is_cut_off_on_two_at_once(pair: Pair, ids: tuple[str, str]) -> None:
    """Nothing reaches two but the notice that links were stored (no request): its directory replays them and
    the follower's access is judged again (its periodic re-check alone would judge it on two's old directory)."""
    team, thread = ids
    async with wire(pair.two, pair.org.bob, team, {"after": {thread: 0}}) as w:
        await asyncio.to_thread(pair.org.alice.ok, "team", "remove", "drafting", "bob")  # through one
        await w.until(lambda: w.closed is not None, timeout=20)
    # The server sends the `closed` frame, then closes with 4403. Under heavy load the client sometimes sees the
    # connection end without the close frame (1006) after the `closed` frame arrived: a known gap in the close
    # handshake (docs/STATUS.md), not in the cut-off, which is what this test is for.
    assert w.closed in (4403, 1006)
    assert w.of_type("closed")[-1]["error"] == "forbidden"
