"""Deletions, renames and restores when the server or a member is the attacker: a deletion is a version like any
other, signed, judged as ``doc.write`` by the authority, with checked metadata, and pinned."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import vault.envelope
from tests.helpers import forgery
from tests.helpers.db import rows_deleted, sql
from tests.helpers.forgery import Forge, plant_version, team_key
from vault.encoding import Value
from vault.envelope import DELETE, PUT, Record
from vault.teamkeys import TeamKey

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

forge = forgery.forge  # the fixture
REFUSED = "document version refused"
MALFORMED = "document metadata is malformed"


def _head(f: Forge, team: str, name: str, key: TeamKey) -> tuple[int, str]:
    [(seq, record)] = sql(f.org, "SELECT seq, record FROM versions WHERE team=? AND doc=? ORDER BY seq DESC LIMIT 1",
                          team, key.doc_id(name))
    return int(seq), Record.parse(bytes(record)).version_id


def _plant(f: Forge, author: str, key: TeamKey, name: str, *, op: str = DELETE, extra: dict[str, Value] | None = None,
           data: bytes = b"", when: int | None = None, team_seq: int | None = None) -> str:
    """A server storing, on top of ``name``'s head, a version ``author`` signed with ``key``, as if uploaded."""
    seq, parent = _head(f, key.team_id, name, key)
    return plant_version(f, author, key, name, seq=seq + 1, parent=parent, when=f.now() if when is None else when,
                         team_seq=f.d.team(key.team_id).seq if team_seq is None else team_seq, data=data, op=op,
                         extra=extra)


@contextmanager
def _unchecked_metadata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The forger's own DocWriter, without the check an honest client makes before it signs."""
    with monkeypatch.context() as m:
        m.setattr(vault.envelope, "check_metadata", lambda meta, op: meta)
        yield


def _refused_everywhere(f: Forge, team: str, name: str, tmp_path: Path, contains: str, *members: Any) -> None:
    for i, m in enumerate(members):
        out = tmp_path / f"refused-{m.name}-{i}"
        for args in (("ls", team), ("ls", team, "--deleted"), ("history", team, name),
                     ("get", team, name, "-o", str(out)), ("restore", team, name, "--version", "1"),
                     ("rm", team, name)):
            r = m.fails(*args, contains=contains)
            assert r.code == 3, (args, r.err)
        assert not out.exists()


def test_a_deletion_signed_by_a_reader_is_refused_like_any_version(forge: Forge, tmp_path: Path) -> None:
    f = forge
    alice, bob, carol = f.org.alice, f.org.bob, f.carol
    (tmp_path / "plan.md").write_text("the plan")
    alice.ok("put", "ops", str(tmp_path / "plan.md"))
    assert bob.fails("rm", "ops", "plan.md", contains="may not write").code == 1  # honest client: refused at home
    vid = _plant(f, "bob", team_key(f, "bob", f.ops, 1), "plan.md")  # a colluding server stores it anyway
    _refused_everywhere(f, "ops", "plan.md", tmp_path, REFUSED, alice, carol)
    with rows_deleted(f.org, vid):
        assert [r["name"] for r in alice.json("ls", "ops")] == ["plan.md"]


def test_a_deletion_signed_by_a_removed_writer_is_refused(forge: Forge, tmp_path: Path) -> None:
    f = forge
    alice, bob = f.org.alice, f.org.bob
    alice.ok("team", "role", "ops", "carol", "writer")
    (tmp_path / "plan.md").write_text("the plan")
    alice.ok("put", "ops", str(tmp_path / "plan.md"))
    before = f.d.team(f.ops).seq
    key = team_key(f, "carol", f.ops, 1)
    alice.ok("team", "remove", "ops", "carol")
    removed_at = f.d.team(f.ops).time
    _plant(f, "carol", key, "plan.md", team_seq=before, when=removed_at + 3600)
    _refused_everywhere(f, "ops", "plan.md", tmp_path, REFUSED, alice, bob)


def test_a_deletion_by_a_writer_is_accepted(forge: Forge, tmp_path: Path) -> None:
    """The same planting, by a member entitled to write: accepted (the refusals above are the authority's)."""
    f = forge
    alice, bob = f.org.alice, f.org.bob
    (tmp_path / "plan.md").write_text("the plan")
    alice.ok("put", "ops", str(tmp_path / "plan.md"))
    _plant(f, "alice", team_key(f, "alice", f.ops, 1), "plan.md", extra={"moved_to": "elsewhere.md"})
    [gone] = bob.json("ls", "ops", "--deleted")
    assert (gone["name"], gone["moved_to"], gone["author_name"]) == ("plan.md", "elsewhere.md", "alice")


@pytest.mark.parametrize(("op", "extra", "data"), [
    (DELETE, {"moved_to": 5}, b""),  # moved_to not a name
    (DELETE, {"moved_from": {"name": "x.md", "doc": "d", "vid": "v"}}, b""),  # a move's key on a deletion
    (DELETE, {"restored_from": 1}, b""),
    (PUT, {"moved_to": "x.md"}, b"new words"),  # a plain put that claims to be the old half of a move
    (vault.envelope.MOVE, {"moved_from": {"name": "x.md"}}, b"content"),  # a source without its ids
    (vault.envelope.RESTORE, {"restored_from": 0}, b"content"),
], ids=["delete-moved_to-int", "delete-moved_from", "delete-restored_from", "put-moved_to", "move-partial",
        "restore-zero"])
def test_malformed_op_metadata_is_refused(forge: Forge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, op: str,
                                          extra: dict[str, Value], data: bytes) -> None:
    f = forge
    alice, bob = f.org.alice, f.org.bob  # unlocked by ``forge`` (MVAULT_SESSION)
    (tmp_path / "plan.md").write_text("the plan")
    alice.ok("put", "ops", str(tmp_path / "plan.md"))
    with _unchecked_metadata(monkeypatch):
        _plant(f, "alice", team_key(f, "alice", f.ops, 1), "plan.md", op=op, extra=extra, data=data)
    for m in (alice, bob):
        assert m.fails("ls", "ops", contains=MALFORMED).code == 3
        assert m.fails("history", "ops", "plan.md", contains=MALFORMED).code == 3
        assert m.fails("get", "ops", "plan.md", "-o", str(tmp_path / f"x-{m.name}"), contains=MALFORMED).code == 3
        assert not (tmp_path / f"x-{m.name}").exists()


def test_an_old_deletion_replayed_over_a_restore_is_a_rollback(forge: Forge, tmp_path: Path) -> None:
    f = forge
    alice, bob = f.org.alice, f.org.bob
    (tmp_path / "plan.md").write_text("the plan")
    alice.ok("put", "ops", str(tmp_path / "plan.md"))
    alice.ok("rm", "ops", "plan.md")
    restored = alice.json("restore", "ops", "plan.md")["vid"]
    bob.ok("history", "ops", "plan.md")  # bob has seen the restore (a listing alone pins nothing: see the report)
    with rows_deleted(f.org, restored):  # the server serves the deletion as the head again
        for args in (("ls", "ops"), ("ls", "ops", "--deleted"), ("history", "ops", "plan.md"),
                     ("get", "ops", "plan.md", "-o", str(tmp_path / "x"))):
            for m in (alice, bob):
                assert m.fails(*args, contains="rolled back").code == 3, args
        assert alice.fails("restore", "ops", "plan.md", contains="rolled back").code == 3
    assert not (tmp_path / "x").exists()
    assert [r["name"] for r in bob.json("ls", "ops")] == ["plan.md"]


def test_a_move_naming_a_source_the_server_does_not_hold_is_refused(forge: Forge, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``history`` follows a move back only to a version the source document really has."""
    f = forge
    alice, bob = f.org.alice, f.org.bob
    (tmp_path / "old.md").write_text("old")
    alice.ok("put", "ops", str(tmp_path / "old.md"))
    alice.ok("mv", "ops", "old.md", "new.md")
    key = team_key(f, "alice", f.ops, 1)
    alice.ok("rm", "ops", "new.md")
    _plant(f, "alice", key, "new.md", op=vault.envelope.MOVE, data=b"x",
           extra={"moved_from": {"name": "old.md", "doc": key.doc_id("old.md"), "vid": "0" * 32}})
    assert bob.fails("history", "ops", "new.md", contains="does not have").code == 3
    # A move naming a real version of one document under another document's name.
    alice.ok("put", "ops", str(tmp_path / "old.md"), "--as", "third.md")
    alice.ok("rm", "ops", "third.md")
    real = alice.json("history", "ops", "old.md")[0]["vid"]
    _plant(f, "alice", key, "third.md", op=vault.envelope.MOVE, data=b"x",
           extra={"moved_from": {"name": "other.md", "doc": key.doc_id("old.md"), "vid": real}})
    assert bob.fails("history", "ops", "third.md", contains="not that of its name").code == 3
