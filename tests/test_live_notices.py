"""A notice carries the record (issue 19; ``server/store/notices.py``, ``server/relay.py``): a message stored
through one ``mvault-server run`` process reaches a follower on another from the record in the ``NOTIFY`` that
announced it, without a read of the database; a message too big for a notice is read (the fallback); notices a
process missed (its listening connection dropped while it could not reconnect) are caught up from the database,
exactly once and in order; records in a notice that no server process tagged (anyone who may connect to the
database may send one) never reach a follower. Chain links appended through one are replayed by two from their
notice, without a read; a links notice that does not follow what two read makes it read. The reads are counted
by the receiving process (``/api/metrics``: ``mvault_live_relay_reads``, ``mvault_live_relayed{source}``,
``mvault_live_link_notices{how}``), which the tests read between steps.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client import admin
from client.threads.team import Threads
from server.store import notices as N
from server.store.logkey import log_seed
from server.store.postgres import listen
from server.store.records import StoredLink
from tests.conftest import Member, Org
from tests.helpers.http import Http
from tests.helpers.killable_server import ServerProcess
from tests.helpers.members import session
from tests.helpers.pair import open_keys, wire
from tests.helpers.postgres import Cluster, SyncConnection
from tests.helpers.process_pair import process_pair
from vault.logsign import notice_key, notice_tag

ORIGIN = "0123456789abcdef"  # as long as a storage's origin
KEY = bytes(range(32))
TEAM, THREAD = "ab" * 16, "cd" * 16


@dataclass
class Processes:
    one: ServerProcess
    two: ServerProcess
    org: Org
    url: str
    team: str
    thread: str


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster) -> Iterator[Processes]:
    root: Path = tmp_path_factory.mktemp("notices")
    url = pg_cluster.new_database()
    with process_pair(root, url) as (one, two, org):

        async def make() -> tuple[str, str]:
            async with session(one, org.alice) as s:  # type: ignore[arg-type]
                threads = await Threads.open(s, "drafting")
                await threads.create("carried", 0)
                return threads.team.team_id, (await threads.resolve("carried")).checker.thread

        team, thread = asyncio.run(make())
        asyncio.run(open_keys(two, org.bob))  # type: ignore[arg-type]
        yield Processes(one, two, org, url, team, thread)


async def _relay_counts(server: ServerProcess) -> tuple[float, float, float, float, float]:
    """``server``'s relay reads, the messages it relayed from notices and from reads, and the links notices it
    replayed from their links and by reads (``/api/metrics``)."""
    async with Http(server) as h:  # type: ignore[arg-type]
        status, body = await h.call("GET", "/api/metrics")
    assert status == 200
    text = body.decode()

    def value(pattern: str) -> float:
        found = re.search(rf"^{pattern} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    return (value("mvault_live_relay_reads_total"), value('mvault_live_relayed_total{source="notice"}'),
            value('mvault_live_relayed_total{source="read"}'), value('mvault_live_link_notices_total{how="notice"}'),
            value('mvault_live_link_notices_total{how="read"}'))


def _head(p: Processes) -> int:
    with SyncConnection(p.url) as db:
        return int(db.execute("SELECT next_pos - 1 FROM threads WHERE thread = ?", (p.thread,)).fetchone()[0])


async def _post(p: Processes, m: Member, texts: list[str]) -> list[int]:
    async with session(p.one, m) as s:  # type: ignore[arg-type]
        threads = await Threads.open(s, "drafting")
        return [(await threads.post("carried", text)).pos for text in texts]


def test_a_notice_carries_records_while_postgresql_takes_it_and_names_the_rest(pg_cluster: Cluster) -> None:
    small, big = b"s" * 300, b"b" * 5700  # one big record alone fits; a big and a small do not
    huge = b"h" * 6500  # base64 of 8,668 bytes: never fits
    placed = [(1, small), (2, small), (3, big), (4, huge), (5, huge), (6, small), (8, small)]
    made = N.messages_stored(ORIGIN, TEAM, THREAD, placed)
    assert [(n.first, n.last, n.records) for n in made] == [
        (1, 2, (small, small)), (3, 3, (big,)), (4, 5, None), (6, 6, (small,)), (8, 8, (small,))]
    for n in made:
        assert N.decode(N.encode(ORIGIN, n)) == (ORIGIN, n)
    many = N.messages_stored(ORIGIN, TEAM, THREAD, [(i, bytes([i]) * 100) for i in range(1, 201)])
    assert [r for n in many for r in n.records or ()] == [bytes([i]) * 100 for i in range(1, 201)]
    lengths = [len(N.encode(ORIGIN, n)) for n in many]
    assert max(lengths) <= N.BODY and min(lengths[:-1]) > N.BODY - 140  # filled, none over
    sealed = [N.seal(KEY, ORIGIN, n) for n in many]
    assert [N.read(KEY, x) for x in sealed] == [(ORIGIN, n) for n in many]
    # The limit is PostgreSQL's: a payload of PAYLOAD bytes is sent, one byte more is refused.
    with SyncConnection(pg_cluster.url("postgres")) as db:
        db.execute("SELECT pg_notify('mvault_test', ?)", (max(sealed, key=len),))
        db.execute("SELECT pg_notify('mvault_test', ?)", ("x" * N.PAYLOAD,))
        with pytest.raises(Exception, match="payload string too long"):
            db.execute("SELECT pg_notify('mvault_test', ?)", ("x" * (N.PAYLOAD + 1),))
    # A transaction's chain links ride in their notice when they fit, with the order number before them.
    links = ((41, StoredLink("m" * 32, 3, "member", b"w" * 900)), (42, StoredLink("org", 7, "org", b"o" * 50)))
    carried = N.links_stored(ORIGIN, 40, links)
    assert carried == N.LinksStored(40, links)
    assert N.read(KEY, N.seal(KEY, ORIGIN, carried)) == (ORIGIN, carried)
    assert N.links_stored(ORIGIN, 40, [(41, StoredLink("t" * 32, 1, "team", b"t" * 6000))]) == N.LinksStored()
    assert N.seal(KEY, ORIGIN, N.LinksStored()) == N.own(ORIGIN) + '"k":"c"}'  # bare: read, as before
    # A thread's record rides in its notice when it fits.
    assert N.thread_stored(ORIGIN, TEAM, THREAD, small).record == small
    assert N.thread_stored(ORIGIN, TEAM, THREAD, huge).record is None


@pytest.mark.parametrize("payload", [
    '{"o":"x","k":"m","t":"a","h":"b","p":1,"q":2,"r":["AA=="]}',  # one record for two positions
    '{"o":"x","k":"m","t":"a","h":"b","p":1,"q":1,"r":["not base64!"]}',
    '{"o":"x","k":"m","t":"a","h":"b","p":1,"q":1,"r":[7]}',
    '{"o":"x","k":"m","t":"a","h":"b","p":2,"q":1}',
    '{"o":"x","k":"t","t":"a","h":"b","r":"%%"}',
    '{"o":"x","k":"c","a":5,"l":[[5,"c",1,"team","AA=="]]}',  # not after ``a``
    '{"o":"x","k":"c","a":1,"l":[[3,"c",1,"team","AA=="],[2,"c",2,"team","AA=="]]}',  # out of order
    '{"o":"x","k":"c","a":1,"l":[[2,"c",0,"team","AA=="]]}',  # position 0
    '{"o":"x","k":"c","a":1,"l":[[2,"c",1,"folder","AA=="]]}',  # no such kind of chain
    '{"o":"x","k":"c","a":1,"l":[[2,"",1,"team","AA=="]]}',
    '{"o":"x","k":"c","a":1,"l":[[2,"c",1,"team"]]}',
    '{"o":"x","k":"c","a":1,"l":[]}',
    '{"o":"x","k":"c","l":[[2,"c",1,"team","AA=="]]}',  # no ``a``
    "[" * 7000,  # nested too deeply for the parser
])
def test_a_notice_with_bad_records_is_refused(payload: str) -> None:
    """``ValueError``: the listener treats it as a lost notice (``Resync``) and the followers read storage."""
    with pytest.raises(ValueError):
        N.decode(payload)
    with pytest.raises(ValueError):
        N.read(KEY, notice_tag(KEY, payload.encode()).hex() + payload)


def test_records_count_only_under_the_servers_tag() -> None:
    carried = N.MessagesStored(TEAM, THREAD, 1, 1, (b"record",))
    body = N.encode(ORIGIN, carried)
    other = N.encode(ORIGIN, N.MessagesStored(TEAM, THREAD, 1, 1, (b"recorX",)))
    for forged in (body, "0" * N.TAG + body, N.seal(bytes(32), ORIGIN, carried),
                   N.seal(KEY, ORIGIN, carried)[:N.TAG] + other):
        with pytest.raises(ValueError):
            N.read(KEY, forged)
    links = N.LinksStored(1, ((2, StoredLink("org", 2, "org", b"link")),))  # links as well: only tagged
    for forged in (N.encode(ORIGIN, links), N.seal(bytes(32), ORIGIN, links)):
        with pytest.raises(ValueError):
            N.read(KEY, forged)
    mine = N.own(ORIGIN)  # a process skips its own notices, tagged or not, without reading them
    assert N.sent_by(mine, N.seal(KEY, ORIGIN, carried)) and N.sent_by(mine, body)
    assert not N.sent_by(mine, N.seal(KEY, ORIGIN + "0", carried)) and not N.sent_by(N.own("x"), body)
    bare = N.MessagesStored(TEAM, THREAD, 1, 1)  # ids only: no tag needed (it only makes a process read)
    assert N.seal(KEY, ORIGIN, bare) == N.encode(ORIGIN, bare)
    assert N.read(KEY, N.encode(ORIGIN, bare)) == (ORIGIN, bare)


async def test_a_follower_on_two_gets_messages_from_the_notices_without_a_read(procs: Processes) -> None:
    after = _head(procs)
    reads0, carried0, read0, *_ = await _relay_counts(procs.two)
    async with wire(procs.two, procs.org.bob, procs.team, {"after": {procs.thread: after}}) as w:  # type: ignore[arg-type]
        await asyncio.gather(_post(procs, procs.org.alice, [f"alice {i}" for i in range(10)]),
                             _post(procs, procs.org.bob, [f"bob {i}" for i in range(10)]))
        await w.until(lambda: len(w.positions(procs.thread)) >= 20)
        await asyncio.sleep(0.3)  # a duplicate would come now
    assert w.positions(procs.thread) == list(range(after + 1, after + 21))
    reads, carried, read, *_ = await _relay_counts(procs.two)
    assert (reads - reads0, carried - carried0, read - read0) == (0, 20, 0)


async def test_a_message_too_big_for_a_notice_is_read_in_its_place(procs: Processes) -> None:
    after = _head(procs)
    reads0, carried0, read0, *_ = await _relay_counts(procs.two)
    async with wire(procs.two, procs.org.bob, procs.team, {"after": {procs.thread: after}}) as w:  # type: ignore[arg-type]
        await _post(procs, procs.org.alice, ["before", "x" * 9000, "after"])
        await w.until(lambda: len(w.positions(procs.thread)) >= 3)
        await asyncio.sleep(0.3)
    assert w.positions(procs.thread) == [after + 1, after + 2, after + 3]
    assert len(w.of_type("msg")[1]["record"]) > N.PAYLOAD
    reads, carried, read, *_ = await _relay_counts(procs.two)
    assert (reads - reads0, carried - carried0, read - read0) == (1, 2, 1)


def _listeners(url: str) -> list[int]:
    with SyncConnection(url) as db:
        # this database's only: the cluster is the worker's, and other files' server processes (one killed
        # with -9, say) may hold listening connections to their own databases a while longer
        return [int(r[0]) for r in db.execute("SELECT pid FROM pg_stat_activity WHERE application_name = ? "
                                              "AND datname = current_database()", (listen.APPLICATION,))]


async def _wait(done: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_notices_two_missed_are_caught_up_once_in_order(procs: Processes) -> None:
    """Two is stopped (SIGSTOP) while every listening connection is terminated: one listens again at once, two
    cannot; what is posted through one meanwhile is announced to one only. Once two runs again it reconnects
    and its follower reads the missed messages from the database: each once, in order, then live again."""
    after = _head(procs)
    reads0, carried0, *_ = await _relay_counts(procs.two)
    async with wire(procs.two, procs.org.bob, procs.team, {"after": {procs.thread: after}}) as w:  # type: ignore[arg-type]
        before = _listeners(procs.url)
        assert len(before) == 2
        os.kill(procs.two.pid, signal.SIGSTOP)
        try:
            with SyncConnection(procs.url) as db:
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ? "
                           "AND datname = current_database()",
                           (listen.APPLICATION,))
            await _wait(lambda: len(_listeners(procs.url)) == 1 and not set(_listeners(procs.url)) & set(before),
                        "one listens again, two does not")
            missed = await _post(procs, procs.org.alice, ["missed 1", "missed 2", "missed 3"])
            assert len(_listeners(procs.url)) == 1, "two listened again: the test proves nothing"
        finally:
            os.kill(procs.two.pid, signal.SIGCONT)
        await w.until(lambda: len(w.positions(procs.thread)) >= 3)
        await _wait(lambda: len(_listeners(procs.url)) == 2, "two listens again")
        live = await _post(procs, procs.org.alice, ["live again"])
        await w.until(lambda: len(w.positions(procs.thread)) >= 4)
        await asyncio.sleep(0.3)
    assert missed == [after + 1, after + 2, after + 3]
    assert w.positions(procs.thread) == [*missed, *live]
    reads, carried, *_ = await _relay_counts(procs.two)
    assert carried - carried0 == 1  # only "live again" came in a notice: the three were missed, and read
    assert reads == reads0  # by the follower itself (its catch-up), not by the relay


async def test_records_in_a_notice_the_server_did_not_tag_never_reach_a_follower(procs: Processes) -> None:
    """Anyone who may connect to the database may ``NOTIFY`` on the channel: a forged message at the next position
    (untagged, or tagged under another key) is refused by two, whose follower then gets the real one, once."""
    after = _head(procs)
    forged = {"o": "forger", "k": "m", "t": procs.team, "h": procs.thread, "p": after + 1, "q": after + 1,
              "r": [base64.b64encode(b"forged record").decode()]}
    body = json.dumps(forged, separators=(",", ":"))
    async with wire(procs.two, procs.org.bob, procs.team, {"after": {procs.thread: after}}) as w:  # type: ignore[arg-type]
        with SyncConnection(procs.url) as db:
            for payload in (body, notice_tag(bytes(32), body.encode()).hex() + body):
                db.execute("SELECT pg_notify(?, ?)", (N.CHANNEL, payload))
        await asyncio.sleep(0.5)
        assert w.positions(procs.thread) == []
        real = await _post(procs, procs.org.alice, ["the real one"])
        await w.until(lambda: len(w.positions(procs.thread)) >= 1)
        await asyncio.sleep(0.3)
    assert w.positions(procs.thread) == real == [after + 1]
    assert base64.b64decode(w.of_type("msg")[0]["record"]) != b"forged record"


def _links_head(url: str) -> int:
    with SyncConnection(url) as db:
        row = db.execute("SELECT max(id) FROM links").fetchone()
    assert row is not None
    return int(row[0])


async def test_links_appended_through_one_are_replayed_by_two_from_their_notice(procs: Processes) -> None:
    """A team created through one: two replays its link from the notice, without a read (on the code before,
    every links notice was a read), and serves the team. A links notice that does not follow the last link two
    read (tagged with the server's key, so not refused: made here from the data directory's seed) makes two
    read the links instead, and replay nothing that was not stored."""
    *_, notice0, read0 = await _relay_counts(procs.two)
    async with session(procs.one, procs.org.alice) as s:  # type: ignore[arg-type]
        team = await admin.create_team(s, "carried-links", "circle")
    await _wait_counts(procs.two, (notice0 + 1, read0))
    head = _links_head(procs.url)
    key = notice_key(log_seed(procs.one.data_dir / "log.key"))
    stray = N.LinksStored(head + 1000, ((head + 1001, StoredLink("org", 999, "org", b"never stored")),))
    with SyncConnection(procs.url) as db:
        db.execute("SELECT pg_notify(?, ?)", (N.CHANNEL, N.seal(key, "elsewhere", stray)))
    await _wait_counts(procs.two, (notice0 + 1, read0 + 1))
    async with session(procs.two, procs.org.alice) as s:  # type: ignore[arg-type]
        view = await s.chains.view()
    assert team.team_id in view.teams


async def _wait_counts(server: ServerProcess, want: tuple[float, float], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        *_, notice, read = await _relay_counts(server)
        if (notice, read) == want:
            return
        assert time.monotonic() < deadline and notice <= want[0] and read <= want[1], (notice, read, want)
        await asyncio.sleep(0.05)
