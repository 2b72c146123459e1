"""Two server instances over one PostgreSQL database (issue 19; ``pair``: tests/helpers/pair.py): what used to be
held in one process's memory and so differed between processes. The audit key published through one is what two
seals to at once (a notice, ``server/relay.py``); a member's refusals recorded one by one are bounded for both
together; the quota of live connections per member counts both processes' connections (and no longer a dead
process's); a listening connection that stops reading is dropped before it fills PostgreSQL's notification queue.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest

from server.context import CONFIG, MEMBER_REFUSALS, STATE
from server.store.notices import CHANNEL
from server.store.postgres import listen
from tests.conftest import ServerThread
from tests.helpers.db import log_size
from tests.helpers.http import Http, login_as
from tests.helpers.members import SECRETS, session
from tests.helpers.pair import Pair, open_keys, wire
from tests.helpers.postgres import SyncConnection


@pytest.fixture(scope="module")
def drafting(pair: Pair) -> str:
    """The team "drafting" (bob writes there), with bob's keys opened on two."""

    async def team_id() -> str:
        async with session(pair.one, pair.org.alice) as s:
            return (await s.chains.view()).team_by_name("drafting").team_id

    asyncio.run(open_keys(pair.two, pair.org.bob))
    return asyncio.run(team_id())


def on_loop(server: ServerThread, job: Callable[[], Awaitable[None]]) -> None:
    assert server._loop is not None
    asyncio.run_coroutine_threadsafe(job(), server._loop).result(10)


def set_on_both(pair: Pair, change: Callable[[ServerThread], None]) -> None:
    for server in (pair.one, pair.two):
        async def apply(s: ServerThread = server) -> None:
            change(s)

        on_loop(server, apply)


async def until(done: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_members_refusals_recorded_one_by_one_are_bounded_for_both_processes(
        pair: Pair, drafting: str) -> None:
    """(Before the audit-key test, which gives bob the Security Team role: the audit views are his then.)"""
    per_minute, flood = 4, 24
    set_on_both(pair, lambda s: setattr(s.app[MEMBER_REFUSALS], "per_minute", per_minute))
    home, secrets = SECRETS[pair.org.bob.home]
    bob_id = home.config().member_id
    try:
        async with Http(pair.one) as h1, Http(pair.two) as h2:
            tokens = [await login_as(h, bob_id, secrets.device) for h in (h1, h2)]
            second = pair.one.clock() % 60
            if second > 45:  # all of it within one minute (one budget): both servers' clocks to the next minute's
                for server in (pair.one, pair.two):  # start (forward only; far within the links' clock skew)
                    server.advance(60 - second + 0.5)
            while pair.one.clock() % 60 > 45:  # (as before the move: no wait now)
                await asyncio.sleep(1)
            start = log_size(pair.one)
            for i in range(flood):
                h = (h1, h2)[i % 2]
                status, res = await h.call("GET", f"/api/v1/audit/teams/{drafting}/versions", token=tokens[i % 2])
                assert status == 403, res
            during = log_size(pair.one) - start
    finally:
        set_on_both(pair, lambda s: setattr(s.app[MEMBER_REFUSALS], "per_minute", s.app[CONFIG].member_refusals))
    # One budget for both: per process, each would have recorded per_minute events of its own.
    assert during == per_minute, f"{during} events of their own for {flood} refusals through two processes"


async def test_an_audit_key_published_through_one_is_sealed_to_on_two_at_once(pair: Pair, drafting: str) -> None:
    alice, bob = pair.org.alice, pair.org.bob
    alice.ok("role", "grant", "bob", "security")
    alice.ok("team", "create", "sec", "--kind", "security")
    alice.ok("team", "add", "sec", "bob", "--role", "admin")
    assert pair.two.app[STATE].key.pub is None
    bob.ok("audit", "key")  # through one (bob's home names one)
    published = pair.one.app[STATE].key
    assert published.pub is not None
    # Two adopts it from the notice (no request reaches two): its events are sealed to it from now on.
    assert await until(lambda: pair.two.app[STATE].key.pub == published.pub), "two still seals to no audit key"
    assert (pair.two.app[STATE].key.team, pair.two.app[STATE].key.gen) == (published.team, published.gen)
    async with Http(pair.two) as h:
        token = await login_as(h, pair.alice_id, pair.alice_device)
        status, res = await h.call("GET", "/api/v1/audit/key", token=token)
    assert status == 200 and base64.b64decode(res["key"]["statement"]) == published.statement


def _caps(pair: Pair, **limits: int) -> None:
    for s in (pair.one, pair.two):
        s.app[CONFIG].quota_caps = dict(limits)


async def _refused_live(server: ServerThread, token: str, team: str) -> dict[str, str]:
    fp = aiohttp.Fingerprint(bytes.fromhex(server.fingerprint))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs, cs.get(
            f"{server.url}/api/v1/teams/{team}/live",
            headers={"Authorization": f"Bearer {token}", "Connection": "Upgrade", "Upgrade": "websocket",
                     "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
        assert resp.status == 429
        return dict(await resp.json())


async def test_the_live_connection_quota_counts_both_processes(pair: Pair, drafting: str) -> None:
    bob = pair.org.bob
    home, secrets = SECRETS[bob.home]
    _caps(pair, live_followers=2)
    try:
        async with Http(pair.one) as h1:
            token = await login_as(h1, home.config().member_id, secrets.device)
        async with wire(pair.one, bob, drafting, {"all": True}), wire(pair.two, bob, drafting, {"all": True}):
            for server in (pair.one, pair.two):  # one held on each: the third is refused on either
                res = await _refused_live(server, token, drafting)
                assert res["error"] == "quota_exceeded" and "at most 2 live connections" in res["message"], res
        # Closed: free again, on either; a dead process's count (it stopped renewing) no longer counts.
        with SyncConnection(pair.url) as db:
            db.execute("INSERT INTO live_leases VALUES (?, 'a-killed-process', 5, ?)",
                       (home.config().member_id, pair.one.clock() - 1))
        async with wire(pair.two, bob, drafting, {"all": True}), wire(pair.two, bob, drafting, {"all": True}):
            await _refused_live(pair.one, token, drafting)
    finally:
        _caps(pair)


@pytest.fixture
def quick_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The listeners check the notification queue every 0.2 s and act beyond 1e-5 of it (~10 pages of 8 kB)."""
    monkeypatch.setattr(listen, "PING", 0.2)
    monkeypatch.setattr(listen, "QUEUE_LIMIT", 1e-5)
    yield


def _queue_usage(url: str) -> float:
    with SyncConnection(url) as db:
        return float(db.execute("SELECT pg_notification_queue_usage()").fetchone()[0])


async def test_a_listener_that_stops_reading_is_dropped_before_it_fills_the_queue(
        pair: Pair, drafting: str, quick_checks: None) -> None:
    import asyncpg

    # A process whose listening connection stops reading: it listens, then never leaves a transaction (a
    # backend inside a transaction takes no notices), so the queue keeps every notice sent from then on.
    hung = await asyncpg.connect(pair.url, server_settings={"application_name": listen.APPLICATION})
    try:
        await hung.execute(f"LISTEN {CHANNEL}")
        await hung.execute("BEGIN")
        await hung.execute("SELECT 1")
        pid = hung.get_server_pid()
        with SyncConnection(pair.url) as db:  # ~400 kB of notices on a channel nobody acts on
            for _ in range(50):
                db.execute("SELECT pg_notify('mvault_test_flood', repeat('x', 7900))")
        assert _queue_usage(pair.url) > 1e-5, "the queue did not back up: the test proves nothing"

        def alive() -> bool:
            with SyncConnection(pair.url) as db:
                return bool(db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ?", (pid,)).fetchone()[0])

        assert await until(lambda: not alive(), timeout=10), "the hung listener still holds the queue back"
    finally:
        hung.terminate()
    # The servers' own listeners were not dropped; live delivery through them goes on. (Counted in this pair's
    # database: the test cluster also serves other tests' servers; a backend that was ending can still be listed
    # for a moment, so the count is waited for.)
    def listening() -> int:
        with SyncConnection(pair.url) as db:
            return int(db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = ? "
                                  "AND datname = current_database()", (listen.APPLICATION,)).fetchone()[0])

    assert await until(lambda: listening() == 2, timeout=10), listening()
    async with wire(pair.two, pair.org.bob, drafting, {"docs": True}) as w:
        f = pair.one.data_dir.parent / "after.md"
        f.write_text("after the drop\n")
        await asyncio.to_thread(pair.org.alice.ok, "put", "drafting", str(f))
        await w.until(lambda: bool(w.of_type("doc")))
    assert w.of_type("doc")
