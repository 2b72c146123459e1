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
from client.home import Home
from client.localcopies import LocalCopies
from client.sync.engine import Outcome, sync_pass
from tests.conftest import Member, Org, join_member
from tests.helpers.db import sql
from tests.helpers.members import in_session, unlock_here
from tests.test_sync import acts, sync, tree, write
from tests.test_sync_safety import lie, vids
from tests.test_sync_safety import two_synced as synced_pair
from vault.encoding import Value
from vault.envelope import Record
from vault.errors import DecryptionFailed
from vault.localindex import LocalIndex, seal_padded
from vault.localstate import local_key
from vault.syncindex import (
    SyncEntry,
    SyncIndex,
    open_last_sync,
    open_sync_index,
    seal_last_sync,
    seal_sync_index,
)


def two_synced(org: Org, tmp_path: Path) -> tuple[Path, Path]:
    """``two_synced`` (tests/test_sync_safety.py) with alice and bob unlocked first (``unlock_here``): their many
    CLI runs here skip the passphrase step, which these tests do not test."""
    unlock_here(org.alice, org.bob)
    return synced_pair(org, tmp_path)


def counted_pass(org: Org, m: Member, folder: Path, monkeypatch: pytest.MonkeyPatch,
                 parsed: list[bytes] | None = None) -> tuple[Outcome, int, int]:
    """One in-process pass of ``m`` over ``folder``: its outcome, how many versions it verified (signature and
    author: ``Documents._verify_author``, the check of every listed head and of every fetched chain) and how many
    times it read the local copies index (``LocalCopies._read``); ``parsed`` gets every document record it parsed."""
    seen: list[str] = []
    reads: list[int] = []
    verify, read, parse = Documents._verify_author, LocalCopies._read, Record.parse
    if parsed is not None:
        def parsing(raw: bytes) -> Record:
            parsed.append(raw)
            return parse(raw)

        monkeypatch.setattr(Record, "parse", staticmethod(parsing))

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
    monkeypatch.setattr(Record, "parse", parse)
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


# -- the raw record cache: a head listed byte for byte as a pass saw it is not even parsed ----------------------


def test_a_head_listed_byte_for_byte_as_recorded_is_not_parsed(org: Org, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """bob fetched the three versions (their records as verified go into his index): his no-op pass parses no
    head. alice uploaded them (the records she signed and sent go into hers): her first no-op pass parses none
    either (session 11: it parsed the three, known by version id, and sealed the whole index again to record
    them; the bench's first no-op pass of 10,000 files paid 3.6 s of CPU for it). A new version is parsed and
    verified in full, and recorded when fetched."""
    a, b = two_synced(org, tmp_path)
    parsed: list[bytes] = []
    assert counted_pass(org, org.bob, b, monkeypatch, parsed)[:2] == (Outcome(), 0) and parsed == []
    assert counted_pass(org, org.alice, a, monkeypatch, parsed)[:2] == (Outcome(), 0) and parsed == []
    assert counted_pass(org, org.alice, a, monkeypatch, parsed)[:2] == (Outcome(), 0) and parsed == []
    write(a / "a.md", "a.md v2\n")
    sync(org.alice, a)
    out, checked, _ = counted_pass(org, org.bob, b, monkeypatch, parsed)
    assert [(r["action"], r["name"]) for r in out.rows] == [("pull", "a.md")] and checked == 3
    parsed.clear()
    assert counted_pass(org, org.bob, b, monkeypatch, parsed)[:2] == (Outcome(), 0) and parsed == []


def test_a_record_altered_under_the_same_version_id_is_verified_and_refused(org: Org, tmp_path: Path) -> None:
    """The server alters the signature of the head bob holds (the version id hashes the signed statement, not the
    signature, so it is the same): not the record bob's index recorded, so verified in full, and refused (exit 3,
    nothing changed). Before the record cache, a head with a known version id was taken without its signature."""
    a, b = two_synced(org, tmp_path)
    vid = vids(org, org.alice, "a.md")[0]
    [(raw,)] = sql(org, "SELECT record FROM versions WHERE vid=?", vid)
    rec = Record.parse(raw)
    forged = raw.replace(rec.sig, bytes([rec.sig[0] ^ 1]) + rec.sig[1:])
    assert forged != raw and Record.parse(forged).version_id == vid
    sql(org, "UPDATE versions SET record=? WHERE vid=?", forged, vid)
    lie(org.bob, b, "signature", "does not verify")
    sql(org, "UPDATE versions SET record=? WHERE vid=?", raw, vid)
    assert sync(org.bob, b) == []


def test_a_no_op_pass_seals_only_its_time_and_a_tampered_time_file_is_refused(org: Org, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that changes nothing but its time does not seal the folder's index again: the time goes into a small
    sealed file beside it, which ``sync status`` reads. Altered or swapped, it is refused like the index."""
    a, b = two_synced(org, tmp_path)
    sync(org.bob, b)  # (catches up with what the first pass recorded in the local copies index)
    [index] = sorted((org.bob.home / "sync").glob("*.bin"))
    blob, last = index.read_bytes(), index.with_suffix(".last")
    [before] = org.bob.json("sync", "status", str(b))
    sync(org.bob, b)
    assert index.read_bytes() == blob and last.exists()  # not rewritten: the time went beside it
    [after] = org.bob.json("sync", "status", str(b))
    key = bob_key(org.bob, monkeypatch)
    assert after["last_sync"] >= before["last_sync"] > 0 and open_last_sync(key, last.stem, last.read_bytes()) == \
        after["last_sync"]
    last.write_bytes(seal_last_sync(key, last.stem, 2_000_000_000))  # what status shows is the later of the two
    assert org.bob.json("sync", "status", str(b))[0]["last_sync"] == 2_000_000_000
    write(b / "b.md", "bob's edit\n")
    assert acts(sync(org.bob, b)) == [("push", "b.md")] and index.read_bytes() != blob  # a change: sealed whole
    sync(org.bob, b)
    good = last.read_bytes()
    last.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    before = tree(b)
    r = org.bob.run("sync", "drafting", str(b))
    assert r.code == 1 and "integrity check" in r.err, r.err
    assert tree(b) == before
    last.write_bytes(good)
    assert sync(org.bob, b) == []


def test_the_record_digest_and_the_time_file_round_trip_and_bad_ones_are_refused() -> None:
    key, fid = bytes(range(32)), "ab" * 16
    index = SyncIndex("t" * 32, "/home/m/drafts", "drafting")
    index.record("a.md", SyncEntry("1" * 32, 2, bytes(32), 5, 6, 7, "d" * 32, bytes(range(32))))
    back = open_sync_index(key, fid, seal_sync_index(key, fid, index))
    assert back == index and [(bytes(range(32)), s.doc, s.seq, s.vid) for s in back.seen().values()] == [
        (bytes(range(32)), "d" * 32, 2, "1" * 32)]
    short: dict[str, Value] = {**index.files["a.md"].to_value(), "raw": bytes(31)}
    with pytest.raises(DecryptionFailed):
        open_sync_index(key, fid, seal_padded(key, f"sync:{fid}", {**index.to_value(), "files": {"a.md": short}}))
    assert open_last_sync(key, fid, seal_last_sync(key, fid, 1_800_000_000)) == 1_800_000_000
    with pytest.raises(DecryptionFailed):
        open_last_sync(key, "cd" * 16, seal_last_sync(key, fid, 1))  # another folder's
    with pytest.raises(DecryptionFailed):
        open_last_sync(key, fid, seal_padded(key, f"sync:{fid}", index.to_value()))  # the index in its place


def bob_key(m: Member, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """``m``'s local key (what seals the folder indexes)."""
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    return local_key(Home(m.home).unlock(agent_ok=False).device)


def test_the_pass_after_an_upload_or_a_download_reads_no_local_copies_and_seals_only_its_time(
        org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that uploads or downloads records its files in the local copies index too; when no other command wrote
    that file meanwhile, the pass catches up with what it wrote itself (in memory) and records the file as seen, so
    the next pass neither reads it nor seals the whole folder index again (session 11: it did both, ~0.3 s of CPU per
    1,000 files on the first no-op pass after an upload)."""
    a, b = two_synced(org, tmp_path)  # alice's pass uploaded three files, bob's fetched them
    write(a / "a.md", "a.md v2\n")
    assert acts(sync(org.alice, a)) == [("push", "a.md")]
    assert acts(sync(org.bob, b)) == [("pull", "a.md")]
    for m, folder in ((org.alice, a), (org.bob, b)):
        [index] = sorted((m.home / "sync").glob("*.bin"))
        blob = index.read_bytes()
        assert counted_pass(org, m, folder, monkeypatch)[::2] == (Outcome(), 0)
        assert index.read_bytes() == blob  # only the time was sealed, beside it


@pytest.mark.parametrize("when", ["before", "after"])
def test_another_command_writing_the_local_copies_during_a_pass_is_caught_up_next_time(
        org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """Another command (a ``get``) records a copy while bob's pass pulls: before the pass's own write or after its
    last, the pass does not take the file as its own, and the next pass reads it and catches up with it."""
    from client.sync.engine import SyncRun

    a, b = two_synced(org, tmp_path)
    write(a / "a.md", "a.md v2\n")
    sync(org.alice, a)
    apply = SyncRun.apply

    def other_command() -> None:
        org.bob.ok("get", "drafting", "b.md", "-o", str(tmp_path / f"elsewhere-{when}.md"))

    async def applying(self: SyncRun, *args: Any) -> None:
        if when == "before":
            other_command()
        await apply(self, *args)
        if when == "after":
            other_command()

    monkeypatch.setattr(SyncRun, "apply", applying)
    out, _, _ = counted_pass(org, org.bob, b, monkeypatch)
    monkeypatch.setattr(SyncRun, "apply", apply)
    assert [(r["action"], r["name"]) for r in out.rows] == [("pull", "a.md")]
    assert counted_pass(org, org.bob, b, monkeypatch)[::2] == (Outcome(), 1)  # read: another command wrote it
    assert counted_pass(org, org.bob, b, monkeypatch)[::2] == (Outcome(), 0)
