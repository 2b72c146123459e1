"""``mvault rm``, ``mv``, ``restore``, and ``ls``/``history``/``get`` that know deletions and renames (issue 16),
through the real CLI against the real server."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from client.docops import _copy_version, _team
from client.putbase import Base
from tests.conftest import Member, Org, join_member, security_team
from tests.helpers.members import session, unlock_here
from tests.helpers.postgres import end_to_end_backends
from vault.envelope import MOVE

pytestmark = end_to_end_backends()  # SQLite; both with MVAULT_ALL_BACKENDS=1 (tests/conftest.py "Backends")


def _put(m: Member, tmp_path: Path, name: str, data: bytes, *extra: str) -> dict[str, Any]:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    [row] = m.json("put", "drafting", str(path), "--as", name, *extra)
    return dict(row)


def _got(m: Member, tmp_path: Path, name: str, *extra: str) -> bytes:
    out = tmp_path / "out" / uuid.uuid4().hex
    out.parent.mkdir(parents=True, exist_ok=True)
    m.ok("get", "drafting", name, "-o", str(out), *extra)
    return out.read_bytes()


def _names(m: Member, *args: str) -> list[str]:
    return [r["name"] for r in m.json("ls", "drafting", *args)]


def test_rm_hides_the_document_and_restore_brings_back_the_version_before(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    _put(alice, tmp_path, "plan.md", b"first")
    _put(alice, tmp_path, "plan.md", b"second", "--force-new-version")
    _put(alice, tmp_path, "other.md", b"stays")
    done = bob.json("rm", "drafting", "plan.md")
    assert done["op"] == "delete" and done["seq"] == 3 and done["name"] == "plan.md" and done["team"] == "drafting"
    assert set(done) == {"team", "name", "doc", "seq", "vid", "op"}
    # Hidden from ls, listed by ls --deleted with who deleted it.
    assert _names(alice) == ["other.md"]
    [gone] = alice.json("ls", "drafting", "--deleted")
    assert gone["name"] == "plan.md" and gone["deleted"] and gone["op"] == "delete" and gone["author_name"] == "bob"
    assert gone["moved_to"] is None
    assert all(not r["deleted"] and r["op"] == "put" for r in alice.json("ls", "drafting"))
    piped = alice.ok("ls", "drafting", "--deleted").out
    assert piped.startswith("plan.md\t3\tbob\t")
    # get refuses, naming who and how to bring it back; an older version is still there.
    r = alice.fails("get", "drafting", "plan.md", "-o", str(tmp_path / "x"), contains="deleted")
    assert r.code == 1 and "bob" in r.err and "mvault restore drafting plan.md" in r.err
    assert not (tmp_path / "x").exists()
    assert _got(alice, tmp_path, "plan.md", "--version", "2") == b"second"
    alice.fails("get", "drafting", "plan.md", "--version", "3", "-o", str(tmp_path / "y"), contains="deletion")
    # Deleting it again is refused, and changes nothing.
    assert bob.fails("rm", "drafting", "plan.md", contains="deleted already").code == 1
    # restore: the last version before the deletion, as version 4.
    back = alice.json("restore", "drafting", "plan.md")
    assert (back["op"], back["seq"], back["restored_from"]) == ("restore", 4, 2)
    assert _got(bob, tmp_path, "plan.md") == b"second"
    assert _names(bob) == ["other.md", "plan.md"] and bob.json("ls", "drafting", "--deleted") == []
    hist = bob.json("history", "drafting", "plan.md")
    assert [(h["version"], h["op"], h["name"]) for h in hist] == [
        (1, "put", "plan.md"), (2, "put", "plan.md"), (3, "delete", "plan.md"), (4, "restore", "plan.md")]
    assert [h["author_name"] for h in hist] == ["alice", "alice", "bob", "alice"]


def test_restore_of_a_live_document_needs_a_version_and_never_a_deletion(org: Org, tmp_path: Path) -> None:
    alice = org.alice
    unlock_here(alice)
    _put(alice, tmp_path, "a.md", b"one")
    _put(alice, tmp_path, "a.md", b"two", "--force-new-version")
    assert alice.fails("restore", "drafting", "a.md", contains="--version").code == 1
    assert alice.fails("restore", "drafting", "a.md", "--version", "7", contains="1..2").code == 1
    assert alice.json("restore", "drafting", "a.md", "--version", "1")["seq"] == 3
    assert _got(alice, tmp_path, "a.md") == b"one"
    alice.ok("rm", "drafting", "a.md")
    r = alice.fails("restore", "drafting", "a.md", "--version", "4", contains="is a deletion")
    assert r.code == 1
    assert alice.json("restore", "drafting", "a.md", "--version", "2")["restored_from"] == 2
    assert _got(alice, tmp_path, "a.md") == b"two"
    assert [h["op"] for h in alice.json("history", "drafting", "a.md")] == ["put", "put", "restore", "delete",
                                                                              "restore"]


def test_rm_refusals(org: Org, make_member: Any, tmp_path: Path) -> None:
    alice = org.alice
    unlock_here(alice)
    assert alice.fails("rm", "drafting", "nothing.md", contains="no document").code == 1
    _put(alice, tmp_path, "a.md", b"one")
    assert alice.fails("rm", "drafting", "a.md", "--if-version", "2", contains="version 1").code == 1
    assert _names(alice) == ["a.md"]
    # A reader is refused by the authority before anything is sent.
    dan = join_member(org, make_member, "dan")
    alice.ok("team", "add", "drafting", "dan", "--role", "reader")
    assert dan.fails("rm", "drafting", "a.md", contains="may not write").code == 1
    assert dan.fails("mv", "drafting", "a.md", "b.md", contains="may not write").code == 1
    assert _names(alice) == ["a.md"]
    assert alice.json("rm", "drafting", "a.md", "--if-version", "1")["seq"] == 2
    # A usage error for a bad --if-version.
    assert alice.run("rm", "drafting", "a.md", "--if-version", "0").code == 2


def test_mv_renames_and_history_follows(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    big = os.urandom(3 * 1024 * 1024 + 5)  # several frames: the content goes through the verified download
    _put(alice, tmp_path, "notes/a.md", b"v1")
    _put(bob, tmp_path, "notes/a.md", big, "--force-new-version")
    moved = alice.json("mv", "drafting", "notes/a.md", "archive/a.md")
    assert moved == {"team": "drafting", "from": "notes/a.md", "to": "archive/a.md", "seq": 1, "vid": moved["vid"]}
    assert _names(bob) == ["archive/a.md"]
    [gone] = bob.json("ls", "drafting", "--deleted")
    assert (gone["name"], gone["moved_to"], gone["author_name"]) == ("notes/a.md", "archive/a.md", "alice")
    assert _got(bob, tmp_path, "archive/a.md") == big
    hist = bob.json("history", "drafting", "archive/a.md")
    assert [(h["name"], h["version"], h["op"], h["author_name"]) for h in hist] == [
        ("notes/a.md", 1, "put", "alice"), ("notes/a.md", 2, "put", "bob"), ("archive/a.md", 1, "move", "alice")]
    # The old name's own history ends with the deletion that names the move.
    assert [h["op"] for h in bob.json("history", "drafting", "notes/a.md")] == ["put", "put", "delete"]
    # Prefix listing: folders are part of names.
    _put(alice, tmp_path, "notes/b.md", b"b")
    assert _names(alice, "notes/") == ["notes/b.md"] and _names(alice, "archive/") == ["archive/a.md"]
    assert _names(alice, "/") == ["archive/a.md", "notes/b.md"]
    assert [r["name"] for r in alice.json("ls", "drafting", "--deleted", "notes/")] == ["notes/a.md"]
    alice.fails("ls", "drafting", "notes", contains="a prefix ends with /")  # as get NAME/ says it
    # A rename back onto the deleted old name: a new version of it, and history follows twice.
    again = alice.json("mv", "drafting", "archive/a.md", "notes/a.md")
    assert again["seq"] == 4
    assert [(h["name"], h["op"]) for h in alice.json("history", "drafting", "notes/a.md")] == [
        ("notes/a.md", "put"), ("notes/a.md", "put"), ("notes/a.md", "delete"), ("archive/a.md", "move"),
        ("notes/a.md", "move")]  # the versions before the first rename are listed once
    assert _got(alice, tmp_path, "notes/a.md") == big
    # get of a folder skips deleted documents.
    out = tmp_path / "folder"
    alice.ok("get", "drafting", "/", "-o", str(out))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["notes/a.md", "notes/b.md"]


def test_mv_refusals(org: Org, tmp_path: Path) -> None:
    alice = org.alice
    unlock_here(alice)
    _put(alice, tmp_path, "a.md", b"a")
    _put(alice, tmp_path, "b.md", b"b")
    assert alice.fails("mv", "drafting", "a.md", "b.md", contains="exists").code == 1
    assert alice.fails("mv", "drafting", "missing.md", "c.md", contains="no document").code == 1
    assert alice.fails("mv", "drafting", "a.md", "a.md", contains="already its name").code == 1
    assert alice.run("mv", "drafting", "a.md", "../c.md").code == 1  # not a valid name
    assert _names(alice) == ["a.md", "b.md"]
    alice.ok("rm", "drafting", "b.md")
    assert alice.fails("mv", "drafting", "b.md", "c.md", contains="is deleted").code == 1
    assert alice.json("mv", "drafting", "a.md", "b.md")["seq"] == 3  # onto a deleted name
    assert _names(alice) == ["b.md"] and _got(alice, tmp_path, "b.md") == b"a"


def test_an_interrupted_mv_is_finished_by_running_it_again(org: Org, tmp_path: Path) -> None:
    """Only the first half (the move version at the new name) stored, as a crash between the two leaves it."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    _put(alice, tmp_path, "old.md", b"content")

    async def first_half() -> None:
        async with session(org.server, alice) as s:
            team, keys = await _team(s.docs, "drafting")
            doc, records = await s.docs.find_doc(team, "old.md")
            source = {"name": "old.md", "doc": doc, "vid": records[-1].version_id}
            await _copy_version(s.docs, "drafting", "new.md", records[-1], keys, MOVE, {"moved_from": source},
                                Base(0), None)

    asyncio.run(first_half())
    assert _names(bob) == ["new.md", "old.md"]  # both names: nothing lost
    done = alice.json("mv", "drafting", "old.md", "new.md")  # her own interrupted move (review round 6)
    assert done["seq"] == 1  # no second move version
    assert _names(bob) == ["new.md"]
    assert [h["version"] for h in bob.json("history", "drafting", "new.md") if h["name"] == "new.md"] == [1]
    assert _got(bob, tmp_path, "new.md") == b"content"


def test_ops_are_audit_events_of_their_author(org: Org, make_member: Any, tmp_path: Path) -> None:
    carol = security_team(org, make_member)
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob, carol)
    _put(alice, tmp_path, "a.md", b"a")
    bob.ok("rm", "drafting", "a.md")
    alice.ok("restore", "drafting", "a.md")
    bob.ok("mv", "drafting", "a.md", "b.md")
    ids = {m.name: m.json("whoami")["member"] for m in (alice, bob)}
    seen = [(e["action"], e["actor"]) for e in carol.json("audit", "log")
            if e["action"].startswith("doc.") and e["action"] not in ("doc.read", "doc.list")]
    assert seen == [("doc.write", ids["alice"]), ("doc.delete", ids["bob"]), ("doc.restore", ids["alice"]),
                    ("doc.move", ids["bob"]), ("doc.delete", ids["bob"])], seen


def test_rm_forgets_this_homes_local_copy_and_others_see_a_conflict(org: Org, tmp_path: Path) -> None:
    """The deleting home forgets which version its file held (putting it again is a new version on top of the
    deletion); another home still knows its file is based on the version before: a conflict, not a silent
    resurrection."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    _put(alice, tmp_path, "a.md", b"one")
    mine, theirs = tmp_path / "alice-a.md", tmp_path / "bob-a.md"
    alice.ok("get", "drafting", "a.md", "-o", str(mine))
    bob.ok("get", "drafting", "a.md", "-o", str(theirs))
    alice.ok("rm", "drafting", "a.md")
    theirs.write_bytes(b"bob's edit")
    r = bob.fails("put", "drafting", str(theirs), "--as", "a.md", contains="based on version 1")
    assert r.code == 1
    mine.write_bytes(b"alice again")
    assert alice.json("put", "drafting", str(mine), "--as", "a.md")[0]["version"] == 3
    assert _got(bob, tmp_path, "a.md") == b"alice again"
