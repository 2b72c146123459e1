"""Two ``mvault-server run`` processes over one PostgreSQL database and one data directory, driven over real HTTP
(issue 19): concurrent uploads of one document through both (one wins, the other gets the conflict), concurrent
appends to one chain (one wins, the other 409, never two links at one position), a follower on one process and
posters on the other (every message once, in order), the audit log appended by both verifies for a member and
stays consistent with its pinned checkpoint, and one process killed with -9 mid-upload while the other serves
(nothing acknowledged lost; no trace of the interrupted upload once it starts again). One pair per module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client import admin
from client.audit.log import verify_log
from client.docs import Documents
from client.threads.team import Threads
from client.view import Chains
from tests.conftest import Member, Org
from tests.helpers.killable_server import ServerProcess
from tests.helpers.members import session
from tests.helpers.pair import wire
from tests.helpers.postgres import Cluster, SyncConnection
from tests.helpers.process_pair import process_pair
from vault.errors import Conflict, VaultError


@dataclass
class Processes:
    one: ServerProcess
    two: ServerProcess
    org: Org
    url: str
    root: Path


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster) -> Iterator[Processes]:
    root = tmp_path_factory.mktemp("procs")
    url = pg_cluster.new_database()
    with process_pair(root, url) as (one, two, org):
        yield Processes(one, two, org, url, root)


def _rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with SyncConnection(url) as db:
        return list(db.execute(query, params).fetchall())


def _gate(monkeypatch: pytest.MonkeyPatch, cls: type, name: str, parties: int) -> list[BaseException | None]:
    """The first ``parties`` calls of ``cls.name`` wait for each other (each read the same head before any sends);
    what each call ended with (None: it returned), in the order they ended."""
    barrier = asyncio.Barrier(parties)
    original = getattr(cls, name)
    ended: list[BaseException | None] = []
    calls = [0]

    async def gated(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= parties:
            async with asyncio.timeout(60):
                await barrier.wait()
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as e:
            ended.append(e)
            raise
        ended.append(None)
        return result

    monkeypatch.setattr(cls, name, gated)
    return ended


async def test_a_member_pins_a_checkpoint_before_both_append(procs: Processes) -> None:
    """The checkpoint the last test verifies against: alice's, taken before anything of this module."""
    procs.org.alice.ok("audit", "verify")


async def test_concurrent_uploads_of_one_document_through_both_one_wins(
        procs: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    org = procs.org
    files = []
    for who in ("alice", "bob"):
        f = procs.root / f"{who}-same.txt"
        f.write_bytes(who.encode() * 300_000)
        files.append(f)
    _gate(monkeypatch, Documents, "_put_version", 2)  # both found no head: both send version 1

    async def put(server: ServerProcess, m: Member, f: Path) -> Any:
        async with session(server, m) as s:  # type: ignore[arg-type]
            return await s.docs.put("drafting", f, "same.txt")

    results = await asyncio.gather(put(procs.one, org.alice, files[0]), put(procs.two, org.bob, files[1]),
                                   return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], Conflict) and "document changed on the server" in str(lost[0]), repr(lost[0])
    seq, vid = won[0]
    assert seq == 1
    assert _rows(procs.url, "SELECT vid, seq FROM versions WHERE doc = (SELECT doc FROM versions WHERE vid = ?)",
                 vid) == [(vid, 1)]


async def test_concurrent_appends_to_one_chain_through_both_one_wins(
        procs: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    org = procs.org
    (team,), = _rows(procs.url, "SELECT chain FROM links WHERE kind = 'team' GROUP BY chain")
    (before,), = _rows(procs.url, "SELECT max(seq) FROM links WHERE chain = ?", team)
    ended = _gate(monkeypatch, Chains, "_post_link", 2)  # both built link before + 1

    async def role(server: ServerProcess, until: int | None) -> None:
        async with session(server, org.alice) as s:  # type: ignore[arg-type]
            await admin.set_team_role(s, "drafting", "bob", "reader", until)

    try:
        results = await asyncio.gather(role(procs.one, None), role(procs.two, int(time.time()) + 86400),
                                       return_exceptions=True)
        assert ended.count(None) == 1 and len(ended) == 2, ended  # one won ...
        refused = [e for e in ended if e is not None]
        # ... one 409: from the store ("the chain moved on") or, since the loser catches up with the winner's link
        # before it judges its own (server/routes/chains.py), from that check ("the team chain moved on")
        assert isinstance(refused[0], Conflict) and "chain moved on" in str(refused[0]), refused
        assert refused[0] in results
        assert _rows(procs.url, "SELECT seq, count(*) FROM links WHERE chain = ? AND seq > ? GROUP BY seq "
                     "ORDER BY seq", team, before) == [(before + 1, 1)]  # never two links at one position
    finally:
        async with session(procs.one, org.alice) as s:  # type: ignore[arg-type]
            await admin.set_team_role(s, "drafting", "bob", "writer", None)  # as the module found it


async def test_a_follower_on_two_gets_every_message_posted_through_one_once_in_order(procs: Processes) -> None:
    org = procs.org
    async with session(procs.one, org.alice) as s:  # type: ignore[arg-type]
        threads = await Threads.open(s, "drafting")
        await threads.create("procs", 0)
        team, thread = threads.team.team_id, (await threads.resolve("procs")).checker.thread

    async def post(m: Member, n: int) -> None:
        async with session(procs.one, m) as s:  # type: ignore[arg-type]
            t = await Threads.open(s, "drafting")
            for i in range(n):
                await t.post("procs", f"{m.name} {i}")

    async with wire(procs.two, org.bob, team, {"after": {thread: 0}}) as w:  # type: ignore[arg-type]
        await asyncio.gather(post(org.alice, 15), post(org.bob, 15))
        await w.until(lambda: len(w.positions(thread)) >= 30)
        await asyncio.sleep(0.3)  # a duplicate would come now
    assert w.positions(thread) == list(range(1, 31))


async def test_killed_mid_upload_the_other_serves_and_nothing_acknowledged_is_lost(procs: Processes) -> None:
    org = procs.org
    kept = procs.root / "kept.txt"
    kept.write_bytes(b"acknowledged\n")
    big = procs.root / "big.bin"
    with big.open("wb") as f:
        f.truncate(256 * 1024 * 1024)  # sparse: read as zeros, sent encrypted
    async with session(procs.two, org.bob) as s:  # type: ignore[arg-type]
        _, kept_vid = await s.docs.put("drafting", kept, "kept.txt")
        upload = asyncio.create_task(s.docs.put("drafting", big, "big.bin"))
        tmp = procs.root / "data" / "tmp"
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 1 << 20 for p in tmp.iterdir()):
            assert time.monotonic() < deadline and not upload.done(), "the upload never reached the server"
            await asyncio.sleep(0.01)
        procs.two.kill()  # kill -9, mid-body
        with pytest.raises(VaultError):
            await upload
    async with session(procs.one, org.alice) as s:  # type: ignore[arg-type]
        listed = await s.docs.ls("drafting")
        names = {d.opened.name for d in listed if d.opened is not None}
        assert "kept.txt" in names and "big.bin" not in names, names
        await (await Threads.open(s, "drafting")).post("procs", "one still serves")
        got = procs.root / "kept-got.txt"
        await s.docs.get("drafting", "kept.txt", got)
        assert got.read_bytes() == b"acknowledged\n"
    assert _rows(procs.url, "SELECT count(*) FROM versions WHERE vid = ?", kept_vid) == [(1,)]
    procs.two.start()  # one still serves: nothing is collected at this start (review round 10, server/datalock.py)
    assert len(list((procs.root / "data" / "tmp").iterdir())) <= 1  # at most the killed upload's temporary
    used = {r[0] for r in _rows(procs.url, "SELECT blob FROM versions")}
    blobs = {p.name for p in (procs.root / "data" / "blobs").rglob("*") if p.is_file()}
    assert blobs == used


async def test_the_audit_log_both_appended_verifies_against_the_pinned_checkpoint(procs: Processes) -> None:
    for server in (procs.two, procs.one):
        async with session(server, procs.org.alice) as s:  # type: ignore[arg-type]
            verified, *_ = await verify_log(s)
            assert verified.checkpoint.size > 0 and not verified.problems, verified.problems
    r = procs.org.alice.ok("audit", "verify")  # through one, against the checkpoint pinned in the first test
    assert "Traceback" not in r.err
