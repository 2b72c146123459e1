"""Issue 16, the no-op pass: a listed head that is the very version a folder's index entry holds (same document,
number and version id) is not verified or opened again; every other head is, and the pins still judge them all.

The cache is the folder's own sealed index (vault/syncindex.py): the server cannot plant entries in it, a head
listed under a known number with another version id is a fork the pins catch, a new version id is verified in
full, and a head enters the index's numbers only once its chain was checked (review round 6's known gap: a head
whose chain does not check no longer makes every later pass stop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.client import Client
from client.docs import Documents
from client.localcopies import LocalCopies
from client.sync.engine import Outcome, sync_pass
from tests.conftest import Member, Org, join_member
from tests.helpers.db import sql
from tests.helpers.members import in_session
from tests.test_sync import acts, sync, tree, write
from tests.test_sync_safety import lie, two_synced, vids
from vault.encoding import Value
from vault.envelope import Record
from vault.errors import DecryptionFailed
from vault.localindex import LocalIndex, seal_padded
from vault.syncindex import SyncIndex, open_sync_index, seal_sync_index


def counted_pass(org: Org, m: Member, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Outcome, int, int]:
    """One in-process pass of ``m`` over ``folder``: its outcome, how many versions it verified (signature and
    author: ``Documents._verify_author``, the check of every listed head and of every fetched chain) and how many
    times it read the local copies index (``LocalCopies._read``)."""
    seen: list[str] = []
    reads: list[int] = []
    verify, read = Documents._verify_author, LocalCopies._read

    def counting(self: Documents, view: Any, team: Any, rec: Record) -> None:
        seen.append(rec.version_id)
        verify(self, view, team, rec)

    def reading(self: LocalCopies) -> LocalIndex:
        reads.append(1)
        return read(self)

    monkeypatch.setattr(Documents, "_verify_author", counting)
    monkeypatch.setattr(LocalCopies, "_read", reading)

    async def one_pass(c: Client) -> Outcome:
        return await sync_pass(c, "drafting", folder)

    out = in_session(org.server, m, one_pass, monkeypatch)
    monkeypatch.setattr(Documents, "_verify_author", verify)
    monkeypatch.setattr(LocalCopies, "_read", read)
    return out, len(seen), len(reads)


def test_a_no_op_pass_verifies_no_head_it_holds_and_a_new_version_in_full(org: Org, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = two_synced(org, tmp_path)
    out, checked, _ = counted_pass(org, org.bob, b, monkeypatch)
    assert out.rows == [] and checked == 0  # three heads listed, each the version bob's index holds
    write(a / "a.md", "a.md v2\n")
    sync(org.alice, a)
    out, checked, _ = counted_pass(org, org.bob, b, monkeypatch)
    assert [(r["action"], r["name"]) for r in out.rows] == [("pull", "a.md")]
    assert checked == 3  # the new head as listed, then its chain (v1, v2) as fetched; b.md and sub/c.md not again
    assert (b / "a.md").read_text() == "a.md v2\n"
    assert counted_pass(org, org.bob, b, monkeypatch)[1] == 0


def test_the_local_copies_index_is_read_only_when_it_changed(org: Org, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass catches up with the local copies index (what a killed pass or another command recorded) only when
    that file changed since the folder's index last did: a no-op pass after a no-op pass does not read it."""
    a, b = two_synced(org, tmp_path)
    counted_pass(org, org.bob, b, monkeypatch)  # caught up with what bob's first pass recorded
    assert counted_pass(org, org.bob, b, monkeypatch)[2] == 0
    org.bob.ok("get", "drafting", "a.md", "-o", str(tmp_path / "elsewhere.md"))  # another command records a copy
    assert counted_pass(org, org.bob, b, monkeypatch)[2] == 1
    assert counted_pass(org, org.bob, b, monkeypatch)[2] == 0


def test_a_new_version_id_with_a_bad_signature_is_never_taken_from_the_cache(org: Org, tmp_path: Path) -> None:
    """The server alters the record of a version bob never saw (its metadata: a new version id): verified, refused."""
    a, b = two_synced(org, tmp_path)
    write(a / "a.md", "a.md v2\n")
    sync(org.alice, a)
    v2 = vids(org, org.alice, "a.md")[1]
    [(raw,)] = sql(org, "SELECT record FROM versions WHERE vid=?", v2)
    rec = Record.parse(raw)
    forged = raw.replace(rec.meta, bytes([rec.meta[0] ^ 1]) + rec.meta[1:])
    assert Record.parse(forged).version_id != v2
    sql(org, "UPDATE versions SET record=? WHERE vid=?", forged, v2)
    lie(org.bob, b, "signature", "does not verify")
    assert (b / "a.md").read_text() == "a.md v1\n"


def test_another_version_under_a_known_number_is_caught_on_a_no_op_pass(org: Org, make_member: Any,
                                                                        tmp_path: Path) -> None:
    """A fork: the server hides a.md's version 2 (which bob holds) from carol, who stores her own version 2 on top
    of version 1 (validly signed); bob's next pass, with nothing changed here, is listed her version 2 instead."""
    alice = org.alice
    carol = join_member(org, make_member, "carol")
    alice.ok("team", "add", "drafting", "carol", "--role", "writer")
    a, b = two_synced(org, tmp_path)
    write(a / "a.md", "a.md v2 by alice\n")
    sync(alice, a)
    sync(org.bob, b)
    v2 = vids(org, alice, "a.md")[1]
    [row] = sql(org, "SELECT * FROM versions WHERE vid=?", v2)
    sql(org, "DELETE FROM versions WHERE vid=?", v2)
    c = tmp_path / "c"
    sync(carol, c)
    write(c / "a.md", "carol's version 2\n")
    assert acts(sync(carol, c)) == [("push", "a.md")]
    assert sql(org, "SELECT seq FROM versions WHERE doc=? ORDER BY seq DESC LIMIT 1", row[2]) == [(2,)]
    lie(org.bob, b, "roll")
    assert (b / "a.md").read_text() == "a.md v2 by alice\n"


def test_a_tampered_folder_index_is_refused(org: Org, tmp_path: Path) -> None:
    """The cache lives in the folder's sealed index: one flipped bit (or another folder's index in its place) and
    the pass refuses to use it, nothing changed."""
    a, b = two_synced(org, tmp_path)
    folders = org.bob.home / "sync"
    [path] = sorted(folders.glob("*.bin"))
    blob = path.read_bytes()
    path.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    before = tree(b)
    r = org.bob.run("sync", "drafting", str(b))
    assert r.code == 1 and r.err.startswith("error: ") and "integrity check" in r.err, r.err
    assert tree(b) == before
    path.write_bytes(blob)
    assert sync(org.bob, b) == []


def test_a_head_whose_chain_fails_does_not_enter_the_index(org: Org, tmp_path: Path) -> None:
    """Review round 6's gap: the server lists a.md's version 3 while withholding version 2, so its chain does not
    check (exit 3). Once it lists version 2 as the head (3 was, say, a colluding writer's and is gone), bob's passes
    go on: version 3's number never entered his folder's index, so 2 is no rollback. Then 3 arrives as usual."""
    alice, bob = org.alice, org.bob
    a, b = two_synced(org, tmp_path)
    for v in ("v2", "v3"):
        write(a / "a.md", f"a.md {v}\n")
        sync(alice, a)
    _, v2, v3 = vids(org, alice, "a.md")
    [row2] = sql(org, "SELECT * FROM versions WHERE vid=?", v2)
    [row3] = sql(org, "SELECT * FROM versions WHERE vid=?", v3)
    sql(org, "DELETE FROM versions WHERE vid=?", v2)
    lie(bob, b, "missing", "do not chain")
    sql(org, "DELETE FROM versions WHERE vid=?", v3)
    sql(org, f"INSERT INTO versions VALUES ({', '.join('?' * len(row2))})", *row2)
    assert acts(sync(bob, b)) == [("pull", "a.md")] and (b / "a.md").read_text() == "a.md v2\n"
    sql(org, f"INSERT INTO versions VALUES ({', '.join('?' * len(row3))})", *row3)
    assert acts(sync(bob, b)) == [("pull", "a.md")] and (b / "a.md").read_text() == "a.md v3\n"


def test_copies_seen_round_trips_and_a_malformed_one_is_refused() -> None:
    key, fid = bytes(range(32)), "ab" * 16
    index = SyncIndex("t" * 32, "/home/m/drafts", "drafting", copies_seen=(4096, 1_800_000_000_123, 77))
    assert open_sync_index(key, fid, seal_sync_index(key, fid, index)) == index
    bad = SyncIndex("t" * 32, "/home/m/drafts").to_value()
    values: list[Value] = [[1, 2], [1, 2, "3"], [1, True, 3], 5]
    for value in values:
        with pytest.raises(DecryptionFailed):
            open_sync_index(key, fid, seal_padded(key, f"sync:{fid}", {**bad, "copies_seen": value}))
