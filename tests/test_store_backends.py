"""The store protocols on both backends (``backend``: SQLite, and a real PostgreSQL): every method's answers,
refusals that store nothing, and races between two stores opened on one database (as two server processes
would) that end with exactly one winner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from security.events import Checkpoint
from security.merkle import MerkleTree, leaf_hash
from server.store.backends import open_audit, open_storage
from server.store.postgres.audit import PostgresAudit
from server.store.postgres.schema import AUDIT_LOCK, lock_chain
from server.store.protocols import Storage
from server.store.records import (
    ChainMoved,
    CosigAdded,
    HeadMoved,
    LinksAppended,
    LinksMoved,
    MessagePlaced,
    MessagePost,
    SenderMoved,
    SignedCheck,
    SignerMoved,
    SlotFill,
    SlotMissing,
    SlotOpen,
    SlotRead,
    SlotsFull,
    StoredLink,
    StoredMessage,
    StoredThread,
    StoredVersion,
    TakenNonce,
    TeamMoved,
    ThreadAdded,
    ThreadExists,
    VersionAdded,
)
from server.store.sqlite.vault import SQLiteStorage
from server.usage import Allowance, OverDailyCount
from tests.helpers.postgres import Cluster
from vault.errors import ChainError
from vault.links import link_hash


@pytest.fixture
async def store(tmp_path: Path, backend: str) -> AsyncIterator[Storage]:
    s = await open_storage(tmp_path, backend)
    yield s
    await s.close()


def link(chain: str, seq: int) -> StoredLink:
    return StoredLink(chain, seq, "team" if chain != "org" else "org", f"{chain}/{seq}".encode())


def version(doc: str, seq: int, team: str = "t1") -> StoredVersion:
    return StoredVersion(f"v-{team}-{doc}-{seq}", team, doc, seq, b"record", f"v-{team}-{doc}-{seq}", 10)


async def test_meta_is_replaced_and_read_back(tmp_path: Path, backend: str) -> None:
    s = await open_storage(tmp_path, backend)
    try:
        assert await s.get_meta("k") is None
        await s.set_meta("k", b"one")
        await s.set_meta("k", b"two")
        assert await s.get_meta("k") == b"two"
    finally:
        await s.close()
    s = await open_storage(tmp_path, backend)  # durable: a second start finds it
    try:
        assert await s.get_meta("k") == b"two"
    finally:
        await s.close()


async def test_a_link_at_a_stored_position_is_refused_with_its_boxes(tmp_path: Path, backend: str) -> None:
    s = await open_storage(tmp_path, backend)
    try:
        assert await s.append_links([link("t1", 1), link("t1", 2)], [], [("t1", 1, "m", b"box")]) == LinksAppended()
        assert await s.append_links([link("t1", 2)], [("m", 1, "d", b"puk")], []) == ChainMoved()
        assert await s.append_links([link("t1", 3)], [], [("t1", 1, "m", b"again")]) == ChainMoved()  # a box
        assert [(x.chain, x.seq) for x in await s.all_links()] == [("t1", 1), ("t1", 2)]
        assert await s.puk_boxes_for("m", "d") == [] and await s.team_boxes_for("t1", "m") == [(1, b"box")]
        assert [w for w, _ in await s.unlogged_links()] == [b"t1/1", b"t1/2"]
        await s.links_logged([link_hash(b"t1/1")])
        assert [w for w, _ in await s.unlogged_links()] == [b"t1/2"]
    finally:
        await s.close()


async def test_two_stores_on_one_database_append_at_one_position_and_one_wins(tmp_path: Path, backend: str) -> None:
    a, b = await open_storage(tmp_path, backend), await open_storage(tmp_path, backend)
    try:
        assert await a.append_links([link("org", 1)], [], []) == LinksAppended()
        outcomes = await asyncio.gather(*(s.append_links([link("org", 2)], [], []) for s in (a, b, a, b)))
        assert sorted(type(o).__name__ for o in outcomes) == ["ChainMoved"] * 3 + ["LinksAppended"]
        assert [x.seq for x in await b.all_links()] == [1, 2]
    finally:
        await a.close()
        await b.close()


async def test_an_append_judged_before_a_link_stored_since_stores_nothing(tmp_path: Path, backend: str) -> None:
    """``seen`` (review 26, finding 2): a link of any chain stored after the order number the append was judged at,
    here by the other store on the database (another server process), is ``LinksMoved`` (nothing stored), or with
    ``again`` is given to it in the transaction: it refuses (nothing stored) or the append goes on."""
    a, b = await open_storage(tmp_path, backend), await open_storage(tmp_path, backend)
    try:
        assert await a.append_links([link("org", 1)], [], []) == LinksAppended()
        seen = (await a.links_after(0))[-1][0]
        assert await b.append_links([link("m1", 1)], [("m1", 1, "d", b"puk")], []) == LinksAppended()  # since
        assert await a.append_links([link("t1", 1)], [], [("t1", 1, "m", b"box")], seen=seen) == LinksMoved()
        assert await a.append_links([link("m1", 1)], [], [], seen=seen) == LinksMoved()  # not ChainMoved: judge again
        assert [(x.chain, x.seq) for x in await b.all_links()] == [("org", 1), ("m1", 1)]
        assert await b.team_boxes_for("t1", "m") == []
        given: list[list[tuple[str, int]]] = []

        async def refuse(since: list[tuple[int, StoredLink]]) -> SignedCheck | None:
            given.append([(x.chain, x.seq) for _, x in since])
            raise ChainError("judged again: refused")

        with pytest.raises(ChainError, match="judged again"):  # judged again in the transaction: nothing stored
            await a.append_links([link("t1", 1)], [], [("t1", 1, "m", b"box")], seen=seen, again=refuse)
        assert given == [[("m1", 1)]] and len(await b.all_links()) == 2 and await b.team_boxes_for("t1", "m") == []

        async def take(since: list[tuple[int, StoredLink]]) -> SignedCheck | None:
            given.append([(x.chain, x.seq) for _, x in since])
            return None

        assert await a.append_links([link("t1", 1)], [], [("t1", 1, "m", b"box")], seen=seen,
                                    again=take) == LinksAppended()
        assert given[1:] == [[("m1", 1)]]
        assert [(x.chain, x.seq) for x in await b.all_links()] == [("org", 1), ("m1", 1), ("t1", 1)]
        seen = (await a.links_after(0))[-1][0]  # caught up: taken as it is
        assert await a.append_links([link("t1", 2)], [], [], seen=seen, again=refuse) == LinksAppended()
        assert len(given) == 2
    finally:
        await a.close()
        await b.close()


async def test_versions_sit_on_the_head_and_the_team_link(store: Storage) -> None:
    await store.append_links([link("t1", 1)], [], [])
    assert await store.add_version(version("d", 1), None, 100, team_seq=1) == VersionAdded()
    assert await store.add_version(version("d", 1), None, 100) == HeadMoved(1)
    assert await store.add_version(version("d", 2), "v-t1-d-1", 100, team_seq=0) == TeamMoved(1)
    assert await store.add_version(version("d", 2), "v-t1-d-1", 100, team_seq=1) == VersionAdded()
    assert await store.add_version(version("e", 1), None, 101) == VersionAdded()
    assert [v.seq for v in await store.versions("t1", "d")] == [1, 2]
    assert [(v.doc, v.seq) for v in await store.heads("t1")] == [("d", 2), ("e", 1)]
    assert [v.vid for v in await store.team_versions("t1")] == ["v-t1-d-1", "v-t1-d-2", "v-t1-e-1"]
    assert await store.version("t1", "v-t1-d-2") == version("d", 2)
    assert await store.version("t2", "v-t1-d-2") is None
    # Many at once (a batch download): only the team's, each once, an unknown or other team's id left out.
    await store.append_links([link("t2", 1)], [], [])
    assert await store.add_version(version("f", 1, team="t2"), None, 102) == VersionAdded()
    got = await store.versions_by_id("t1", ["v-t1-d-2", "v-t2-f-1", "nope", "v-t1-e-1", "v-t1-d-2"])
    assert got == {"v-t1-d-2": version("d", 2), "v-t1-e-1": version("e", 1)}
    assert await store.versions_by_id("t2", ["v-t2-f-1"]) == {"v-t2-f-1": version("f", 1, team="t2")}
    assert await store.versions_by_id("t1", []) == {}


async def test_a_version_over_the_daily_quota_is_refused_and_counted_once(store: Storage) -> None:
    quota = Allowance("m", per_day=1)
    assert await store.add_version(version("d", 1), None, 1000, allowance=quota) == VersionAdded()
    refused = await store.add_version(version("e", 1), None, 1001, allowance=quota)
    assert isinstance(refused, OverDailyCount) and refused.retry_after == 86400 - 1
    use = await store.usage("m", "version", 1001, 1)
    assert (use.stored_bytes, use.today) == (10, 1)
    assert await store.versions("t1", "e") == []


async def test_two_stores_upload_one_document_at_once_and_one_wins(tmp_path: Path, backend: str) -> None:
    a, b = await open_storage(tmp_path, backend), await open_storage(tmp_path, backend)
    try:
        rivals = [StoredVersion(f"v{i}", "t1", "d", 1, b"r", f"v{i}", 1) for i in range(6)]
        outcomes = await asyncio.gather(*((a, b)[i % 2].add_version(v, None, 5) for i, v in enumerate(rivals)))
        assert sorted(type(o).__name__ for o in outcomes) == ["HeadMoved"] * 5 + ["VersionAdded"]
        assert len(await a.versions("t1", "d")) == 1
    finally:
        await a.close()
        await b.close()


async def test_concurrent_versions_share_commits_and_each_is_judged(tmp_path: Path, backend: str) -> None:
    """Uploads at once through two stores (two processes): each store commits its concurrent versions together
    (PostgreSQL too: one transaction a batch, every lock taken first in one order), and each version is still
    judged on its own against the rows of those before it: one of two rivals on a document, the author's daily
    quota counted across both stores, a version on a moved team chain refused; no deadlock between the stores."""
    a, b = await open_storage(tmp_path, backend), await open_storage(tmp_path, backend)
    try:
        await a.append_links([link("t1", 1)], [], [])
        quota = Allowance("m", per_day=6)
        writes = [(version(doc, 1), 1) for doc in "abcdefgh"] + [
            (StoredVersion("v-rival", "t1", "a", 1, b"record", "v-rival", 10), 1), (version("z", 1), 0)]
        outcomes = await asyncio.gather(*((a, b)[i % 2].add_version(v, None, 1000, team_seq=seq, allowance=quota)
                                          for i, (v, seq) in enumerate(reversed(writes))))
        kinds = sorted(type(o).__name__ for o in outcomes)
        assert kinds.count("VersionAdded") == 6 and kinds.count("TeamMoved") == 1, kinds
        assert kinds.count("OverDailyCount") + kinds.count("HeadMoved") == 3, kinds
        heads = await b.heads("t1")
        assert len(heads) == 6 and all(v.seq == 1 for v in heads)  # one version per document, six in all
        assert (await a.usage("m", "version", 1000, 6)).today == 6
    finally:
        await a.close()
        await b.close()


async def test_sessions_nonces_and_their_expiry(store: Storage) -> None:
    await store.add_session(b"tok", "m", "d", 50.0)
    found = await store.session(b"tok")
    assert found is not None and (found.member, found.device, found.expires) == ("m", "d", 50.0)
    assert await store.session(b"other") is None
    await store.add_nonce(b"n", "m", "d", 40.0)
    assert await store.take_nonce(b"n") == ("m", "d", 40.0) and await store.take_nonce(b"n") is None
    await store.purge_expired(60.0)
    assert await store.session(b"tok") is None


async def test_a_nonce_gives_one_session_whichever_store_takes_it(tmp_path: Path, backend: str) -> None:
    """A login takes its nonce and stores its session in one transaction: of two stores on one database (two
    processes; SQLite: one store twice) taking one nonce at once, exactly one gets the session; a session only
    for the member and device the nonce was issued to, before it expires; a refused login's take uses it up."""
    a = await open_storage(tmp_path, backend)
    b = await open_storage(tmp_path, backend) if backend else a
    try:
        await a.add_nonce(b"n", "m", "d", 40.0)
        taken = await asyncio.gather(*(s.take_nonce_login(b"n", 30.0, (b"tok-%d" % i, "m", "d", 50.0))
                                       for i, s in enumerate((a, b, a, b))))
        won = [t is not None for t in taken]
        assert sorted(won) == [False, False, False, True]
        assert [t for t in taken if t is not None] == [TakenNonce("m", "d", 40.0, True)]
        assert [await a.session(b"tok-%d" % i) is not None for i in range(4)] == won  # none for the losers
        assert await b.take_nonce_login(b"n", 30.0, (b"x", "m", "d", 50.0)) is None and await a.session(b"x") is None
        assert await a.take_nonce_login(b"never", 30.0, (b"y", "m", "d", 50.0)) is None
        for nonce, now, member, device in ((b"late", 40.0, "m", "d"), (b"other", 30.0, "m2", "d"),
                                           (b"other-device", 30.0, "m", "d2")):
            await b.add_nonce(nonce, "m", "d", 40.0)  # expired at 40, or issued to another member or device
            assert await a.take_nonce_login(nonce, now, (b"s-" + nonce, member, device, 50.0)) == \
                TakenNonce("m", "d", 40.0, False)
            assert await a.session(b"s-" + nonce) is None and await b.take_nonce(nonce) is None  # used up
        await a.add_nonce(b"refused", "m", "d", 40.0)
        assert await b.take_nonce_login(b"refused", 30.0, None) == TakenNonce("m", "d", 40.0, False)
        assert await a.take_nonce_login(b"refused", 30.0, (b"z", "m", "d", 50.0)) is None
        assert await a.session(b"z") is None
    finally:
        await a.close()
        if b is not a:
            await b.close()


async def test_device_link_slots(store: Storage) -> None:
    assert await store.open_slot("s1", "m", 100.0, now=10, max_open=2) == SlotOpen.OPENED
    assert await store.open_slot("s1", "x", 100.0, now=10) == SlotOpen.IN_USE
    assert await store.open_slot("s2", "m", 50.0, now=10, max_open=2) == SlotOpen.OPENED
    assert await store.open_slot("s3", "m", 100.0, now=10, max_open=2) == SlotsFull(2, 41)
    assert await store.read_slot("s1", "x", 10) == SlotMissing.UNKNOWN
    assert await store.read_slot("s1", "m", 10) == SlotRead(None)
    assert await store.fill_slot("s1", b"keys", 10) == SlotFill.FILLED
    assert await store.fill_slot("s1", b"other", 10) == SlotFill.UNAVAILABLE
    assert await store.fill_slot("s2", b"late", 60) == SlotFill.UNAVAILABLE  # expired
    assert await store.read_slot("s1", "m", 10) == SlotRead(b"keys")
    assert await store.read_slot("s1", "m", 10) == SlotMissing.UNKNOWN  # read once, then gone


def message(pos: int, seq: int, time: int = 100, device: str = "d1") -> StoredMessage:
    return StoredMessage("t1", "th", pos, f"m{device}{seq}", device, seq, time, b"rec%d" % pos)


async def test_threads_and_their_messages(store: Storage) -> None:
    thread = StoredThread("t1", "th", b"record", 50, 1, 100)
    quota = Allowance("m", per_day=5)
    assert await store.add_thread(thread, 100, quota) == ThreadAdded()
    assert await store.add_thread(thread, 100, quota) == ThreadExists()
    assert (await store.usage("m", "thread", 100, 5)).today == 1  # the refused one is not counted
    # positions are the store's to give; each message must follow its device's last one (number and id)
    placed = await store.add_messages([
        MessagePost(message(0, 1, 100), None), MessagePost(message(0, 1, 120, "d2"), None),
        MessagePost(message(0, 3, 125), "md11"), MessagePost(message(0, 2, 130), "md12"),
        MessagePost(message(0, 2, 130), "md11")])
    assert placed == [MessagePlaced(1), MessagePlaced(2), SenderMoved(1), SenderMoved(1), MessagePlaced(3)]
    head = await store.thread_head("t1", "th")
    assert head is not None and head.next_pos == 4 and head.senders == {"d1": (2, "md12", 130), "d2": (1, "md21", 120)}
    assert await store.thread_head("t1", "none") is None
    assert [m.pos for m in await store.messages("t1", "th", 1, 10, 140)] == [2, 3]
    assert await store.last_sent("t1", "th", "d2") == (1, "md21", 120)
    listed = await store.threads("t1", 160)  # message 1 expired at 150, 2 at 170
    assert [(t.thread, t.next_pos, t.last_time, t.count) for t in listed] == [("th", 4, 130, 2)]
    assert await store.purge_messages(175) == [("t1", "th", 2)]
    assert [m.pos for m in await store.messages("t1", "th", 0, 10, 175)] == [3]
    stored = await store.thread("t1", "th")
    assert stored is not None and stored.record == b"record"


async def test_one_batch_of_messages_across_threads(store: Storage) -> None:
    """One batch placing messages in two threads, a device twice in each: positions per thread, each sender's last
    message and each thread's next position and newest time are stored (on PostgreSQL one statement writes them)."""
    for name in ("a", "b"):
        assert await store.add_thread(StoredThread("t1", name, b"record", 0, 1, 100), 100,
                                      Allowance("m", per_day=5)) == ThreadAdded()

    def post(thread: str, seq: int, time: int, prev: str | None) -> MessagePost:
        return MessagePost(StoredMessage("t1", thread, 0, f"{thread}{seq}", "d1", seq, time, b"r"), prev)

    placed = await store.add_messages([post("a", 1, 101, None), post("b", 1, 102, None), post("a", 2, 105, "a1"),
                                       post("b", 2, 103, "b1"), post("b", 3, 104, "b2")])
    assert placed == [MessagePlaced(1), MessagePlaced(1), MessagePlaced(2), MessagePlaced(2), MessagePlaced(3)]
    a, b = await store.thread_head("t1", "a"), await store.thread_head("t1", "b")
    assert a is not None and a.next_pos == 3 and a.senders == {"d1": (2, "a2", 105)}
    assert b is not None and b.next_pos == 4 and b.senders == {"d1": (3, "b3", 104)}
    assert [(m.pos, m.mid) for m in await store.messages("t1", "b", 0, 10, 110)] == [(1, "b1"), (2, "b2"), (3, "b3")]
    assert {t.thread: (t.next_pos, t.last_time) for t in await store.threads("t1", 110)} == {"a": (3, 105),
                                                                                           "b": (4, 104)}
    assert await store.add_messages([post("a", 2, 106, "a1")]) == [SenderMoved(2)]  # the stored sender is the truth


async def test_the_audit_log_is_rebuilt_from_the_database(tmp_path: Path, backend: str) -> None:
    log = await open_audit(tmp_path, backend)
    try:
        indices = await asyncio.gather(*(log.append(b"leaf%d" % i, 3) for i in range(20)))
        assert sorted(indices) == list(range(20))
        first = await log.checkpoint("org", 1000)
        assert await log.checkpoint("org", 2000) == first  # nothing changed: the same one
        await log.add_cosig(20, "m", "d", b"sig", 5)
        assert await log.issued(first.checkpoint.raw) == first
        assert await log.prune(4) == 20
        assert all(leaf is None for _, _, leaf in await log.leaves(0, 100))
    finally:
        await log.close()
    log = await open_audit(tmp_path, backend)
    try:
        expected = MerkleTree()
        for i in range(20):
            expected.append(leaf_hash(b"leaf%d" % i))
        assert log.committed == 20 and log.tree.root(20) == expected.root(20)
        witnessed = await log.witnessed()
        assert witnessed is not None and witnessed[0] == first and [c.member for c in witnessed[1]] == ["m"]
        await log.add_cosig(20, "n", "e", b"sig2", 4)
        witnessed = await log.witnessed()  # every cosignature of the newest size, oldest first
        assert witnessed is not None and [(c.member, c.device) for c in witnessed[1]] == [("n", "e"), ("m", "d")]
        await log.add_cosig(30, "m", "d", b"sig3", 6)  # a size no checkpoint was stored at
        assert await log.witnessed() is None
    finally:
        await log.close()


async def test_a_cosignature_is_stored_only_while_its_signers_chains_are_as_judged(tmp_path: Path,
                                                                                   backend: str) -> None:
    """Review 27, finding 2: ``add_cosig``'s ``signer`` (the member chain and the organization chain as the route
    judged the cosignature on) stores nothing once either moved (``SignerMoved``: a revocation, cut or removal may
    have been stored since; the route judges again). SQLite reads the vault's file (``heads``)."""
    store = await open_storage(tmp_path, backend)
    log = await open_audit(tmp_path, backend, heads=store.chain_heads if isinstance(store, SQLiteStorage) else None)
    try:
        await store.append_links([link("org", 1)], [], [])
        await store.append_links([link("m", 1)], [], [])
        assert await log.add_cosig(20, "m", "d", b"sig", 5, {"m": 1, "org": 1}) == CosigAdded()
        await store.append_links([link("m", 2)], [], [])  # the device's revocation, say, stored since
        assert await log.add_cosig(20, "m", "e", b"sig2", 6, {"m": 1, "org": 1}) == SignerMoved()
        await store.append_links([link("org", 2)], [], [])
        assert await log.add_cosig(20, "m", "e", b"sig2", 6, {"m": 2, "org": 1}) == SignerMoved()
        assert await log.cosigned() == [("m", "d", 5)]  # nothing of the refused ones
        assert await log.add_cosig(20, "m", "e", b"sig2", 6, {"m": 2, "org": 2}) == CosigAdded()
        assert sorted(await log.cosigned()) == [("m", "d", 5), ("m", "e", 6)]
    finally:
        await log.close()
        await store.close()
    if not backend:  # an audit store opened without the vault's chains cannot check a signer: it says so
        alone = await open_audit(tmp_path)
        try:
            with pytest.raises(RuntimeError, match="without the vault's chains"):
                await alone.add_cosig(20, "m", "f", b"sig3", 7, {"m": 2, "org": 2})
        finally:
            await alone.close()


async def test_a_cosignature_waits_for_a_chain_append_in_flight_and_is_refused_after_it(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    """Over PostgreSQL (another process's ``device.revoke`` transaction holds the member chain's lock, as
    ``append_links`` does, when its ``SignedCheck`` reads the ``cosigs`` table): the cosignature's transaction waits
    for it (its locks, shared) and then finds the chain moved; it was not inserted between that read and the link."""
    url = pg_cluster.new_database()
    store, log = await open_storage(tmp_path, url), await open_audit(tmp_path, url)
    other = await asyncpg.connect(url)
    try:
        await store.append_links([link("org", 1)], [], [])
        await store.append_links([link("m", 1)], [], [])
        tx = other.transaction()
        await tx.start()
        await lock_chain(other, "m")
        await other.execute("INSERT INTO links (chain, seq, kind, wire, time) VALUES ('m', 2, 'member', 'r', 0)")
        cosig = asyncio.ensure_future(log.add_cosig(20, "m", "d", b"sig", 5, {"m": 1, "org": 1}))
        await asyncio.sleep(0.5)
        assert not cosig.done()  # waits for the lock
        assert await other.fetchval("SELECT count(*) FROM cosigs") == 0
        await tx.commit()
        assert await cosig == SignerMoved()
        assert await log.cosigned() == []
    finally:
        await other.close()
        await log.close()
        await store.close()


async def test_two_processes_append_to_one_audit_log(tmp_path: Path, pg_cluster: Cluster) -> None:
    url = pg_cluster.new_database()
    a, b = await PostgresAudit.open(url, tmp_path), await PostgresAudit.open(url, tmp_path)
    try:
        got = await asyncio.gather(*((a, b)[i % 2].append(b"L%d" % i, 1) for i in range(64)))
        assert sorted(got) == list(range(64))  # every index once: one log
        await a.append(b"last", 1)  # adopts b's leaves first
        c = await PostgresAudit.open(url, tmp_path)
        try:
            assert a.tree.root(65) == c.tree.root(65) and c.committed == 65
            cp = await a.checkpoint("org", 1)
            assert (await c.checkpoint("org", 2)) == cp  # the one stored at that size, whoever asks
        finally:
            await c.close()
    finally:
        await a.close()
        await b.close()


async def test_an_audit_batch_waits_for_the_lock_and_adopts_what_was_committed_meanwhile(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    """The batch is one statement (``mvault_audit_append``): its read of other processes' leaves comes after the
    lock, so a leaf committed by whoever held the lock is adopted and the batch goes to the next index."""
    url = pg_cluster.new_database()
    a = await PostgresAudit.open(url, tmp_path)
    other = await asyncpg.connect(url)
    try:
        assert await a.append(b"first", 1) == 0
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
        await other.execute("INSERT INTO events VALUES (1, 1, $1, $2)", leaf_hash(b"theirs"), b"theirs")
        mine = asyncio.ensure_future(a.append(b"mine", 1))
        await asyncio.sleep(0.5)
        assert not mine.done()  # waits for the lock
        await tx.commit()
        assert await mine == 2
        tree = MerkleTree()
        for leaf in (b"first", b"theirs", b"mine"):
            tree.append(leaf_hash(leaf))
        assert a.tree.size == a.committed == 3 and a.tree.root(3) == tree.root(3)
        assert await other.fetchval("SELECT relpersistence FROM pg_class WHERE relname = 'login_nonces'") == b"u"
    finally:
        await other.close()
        await a.close()


async def test_a_checkpoint_is_signed_once_at_a_size_and_one_with_another_root_replaced(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    """``checkpoint`` in one statement: the first stored at a size is handed out by every process (kept, not
    signed again); a stored one whose root is not the log's is replaced, as on SQLite."""
    url = pg_cluster.new_database()
    a, b = await PostgresAudit.open(url, tmp_path), await PostgresAudit.open(url, tmp_path)
    try:
        await a.append(b"one", 1)
        first = await a.checkpoint("org", 100)
        await b.append(b"two", 1)  # b adopts a's leaf first: size 2
        assert (await b.checkpoint("org", 200)).checkpoint.size == 2
        assert await a.checkpoint("org", 300) == first  # a's own, cached: its committed size is still 1
        c = await PostgresAudit.open(url, tmp_path)
        try:
            at_two = await b.checkpoint("org", 400)
            assert await c.checkpoint("org", 500) == at_two  # the stored one, whoever asks
            wrong = Checkpoint.build("org", 2, bytes(32), 600)
            async with c._pool.acquire() as conn:
                await conn.execute("UPDATE checkpoints SET raw=$1, sig=$2 WHERE size=2", wrong.raw,
                                   wrong.sign(c.log_secret))
            c._latest = None
            mended = await c.checkpoint("org", 700)
            assert mended.checkpoint.root == c.tree.root(2) and mended.checkpoint.time == 700
            assert await c.issued(mended.checkpoint.raw) == mended
        finally:
            await c.close()
    finally:
        await a.close()
        await b.close()


async def test_links_after_hands_out_what_another_store_appended_in_order(tmp_path: Path, backend: str) -> None:
    """How a server process learns the links another one stored (``Directory.catch_up``): every link after an
    order number, in the order stored, and nothing twice once that number is passed on."""
    a, b = await open_storage(tmp_path, backend), await open_storage(tmp_path, backend)
    try:
        assert await b.links_after(0) == []
        assert await a.append_links([link("org", 1), link("t1", 1)], [], []) == LinksAppended()
        first = await b.links_after(0)
        assert [(x.chain, x.seq) for _, x in first] == [("org", 1), ("t1", 1)]
        assert first[0][0] < first[1][0]
        assert await b.append_links([link("t1", 2)], [], []) == LinksAppended()
        assert [(x.chain, x.seq) for _, x in await a.links_after(first[-1][0])] == [("t1", 2)]
    finally:
        await a.close()
        await b.close()


async def test_a_claim_is_won_once_whichever_store_asks(tmp_path: Path, backend: str) -> None:
    """What may be done once (an export request's use, ``server/exports.py``) is a unique row of the database: of
    two stores on one database (two server processes) claiming at one instant, exactly one wins, and a claim
    never replaces what was stored."""
    a, b = await open_storage(tmp_path, backend), await open_storage(tmp_path, backend)
    try:
        won = await asyncio.gather(*((a, b)[i % 2].claim_meta("used:r1", b"m%d" % i) for i in range(8)))
        assert sorted(won) == [False] * 7 + [True]
        assert await b.get_meta("used:r1") == b"m%d" % won.index(True)
        assert not await a.claim_meta("used:r1", b"again") and await a.get_meta("used:r1") == b"m%d" % won.index(True)
        assert await b.claim_meta("used:r2", b"other")  # another key is another row
    finally:
        await a.close()
        await b.close()


async def test_a_message_batch_that_waited_for_its_thread_reads_the_senders_stored_meanwhile(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    """A batch locks its thread's row and reads the thread's senders in one statement, whose snapshot is older than
    the lock when it had to wait: a batch that waited while another process stored a message of that thread reads
    the senders again under the lock, so the device's message 1 sent again is refused, not placed a second time."""
    url = pg_cluster.new_database()
    a = await open_storage(tmp_path, url)
    other = await asyncpg.connect(url)
    try:
        assert await a.add_thread(StoredThread("t1", "th", b"record", 0, 1, 100), 100,
                                  Allowance("m", per_day=5)) == ThreadAdded()
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT next_pos FROM threads WHERE team='t1' AND thread='th' FOR UPDATE")
        # what another process's batch writes under the lock: message 1 of d1, d1's last message, the next position
        await other.execute("INSERT INTO messages (team, thread, pos, mid, device, seq, time, record) "
                            "VALUES ('t1', 'th', 1, 'md11', 'd1', 1, 100, 'r')")
        await other.execute("INSERT INTO thread_senders (team, thread, device, seq, mid, time) "
                            "VALUES ('t1', 'th', 'd1', 1, 'md11', 100)")
        await other.execute("UPDATE threads SET next_pos=2, last_time=100 WHERE team='t1' AND thread='th'")
        mine = asyncio.ensure_future(a.add_messages([MessagePost(message(0, 1, 110), None)]))  # d1's first, again
        await asyncio.sleep(0.5)
        assert not mine.done()  # waits for the thread's lock
        await tx.commit()
        assert await mine == [SenderMoved(1)]
        assert [(m.pos, m.mid) for m in await a.messages("t1", "th", 0, 10, 120)] == [(1, "md11")]
        assert await a.add_messages([MessagePost(message(0, 2, 115), "md11")]) == [MessagePlaced(2)]  # uncontended
    finally:
        await other.close()
        await a.close()
