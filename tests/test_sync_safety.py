"""Issue 16, sync safety: the server as attacker, mass deletions, rights, one sync of a folder at a time.

A document missing from the listing, an empty listing or a rolled-back version is a lie: the pass
stops with exit 3 before anything changes here (tampering with the server's SQLite database, as
tests/test_server_attacker_docs.py does). Deleting most of the tree, or the whole folder vanishing,
needs --confirm-deletes. A reader syncs down only; a member removed from the team is told why and
keeps every local file; a second sync of a folder refuses at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from client.client import Client
from client.sync.engine import Outcome, sync_pass
from tests.conftest import Member, Org, join_member
from tests.helpers.db import rows_deleted, sql
from tests.helpers.members import in_session, unlock_at_first_run
from tests.test_sync import acts, sync, tree, write


@pytest.fixture(autouse=True)
def _agents(org: Org) -> None:
    """alice's and bob's commands go through an unlock agent from their first: no Argon2id each
    (their ~60 syncs, histories and listings; session 21). The unlock itself: tests/test_auth.py.
    No test here looks at the unlock state."""
    unlock_at_first_run(org.alice, org.bob)


def two_synced(org: Org, tmp_path: Path, names: tuple[str, ...] = ("a.md", "b.md", "sub/c.md")) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for n in names:
        write(a / n, f"{n} v1\n")
    sync(org.alice, a)
    sync(org.bob, b)
    return a, b


def vids(org: Org, m: Member, name: str) -> list[str]:
    return [v["vid"] for v in m.json("history", "drafting", name)]


def lie(m: Member, folder: Path, *contains: str) -> None:
    """A security error (exit 3, one line naming the lie, from the pins or from the folder's index), nothing changed."""
    before = tree(folder)
    r = m.run("sync", "drafting", str(folder))
    assert r.code == 3, r.err
    assert r.err.startswith("error: ") and any(c in r.err for c in contains), r.err
    assert tree(folder) == before  # nothing deleted, nothing overwritten


def test_a_withheld_document_stops_the_pass_and_changes_nothing(org: Org, tmp_path: Path) -> None:
    a, b = two_synced(org, tmp_path)
    write(b / "a.md", "bob's unsent edit\n")
    with rows_deleted(org, *vids(org, org.alice, "sub/c.md")):
        lie(org.bob, b, "withh", "no longer listed")
    assert len(vids(org, org.alice, "a.md")) == 1  # bob's edit was not pushed during the lie
    assert acts(sync(org.bob, b)) == [("push", "a.md")]  # and goes through once the server behaves


def test_an_empty_listing_stops_the_pass_and_deletes_nothing(org: Org, tmp_path: Path) -> None:
    a, b = two_synced(org, tmp_path)
    all_vids = [v for n in ("a.md", "b.md", "sub/c.md") for v in vids(org, org.alice, n)]
    with rows_deleted(org, *all_vids):
        lie(org.bob, b, "withh", "no longer listed")
    assert tree(b) == tree(a)


def test_a_rolled_back_document_stops_the_pass(org: Org, tmp_path: Path) -> None:
    a, b = two_synced(org, tmp_path)
    write(a / "a.md", "a.md v2\n")
    sync(org.alice, a)
    sync(org.bob, b)
    assert (b / "a.md").read_text() == "a.md v2\n"
    with rows_deleted(org, vids(org, org.alice, "a.md")[1]):
        lie(org.bob, b, "roll")
    assert (b / "a.md").read_text() == "a.md v2\n"


def test_a_forged_deletion_deletes_nothing(org: Org, tmp_path: Path) -> None:
    """The server re-serves a's deletion under b's document (a replayed or re-filed deletion): refused."""
    a, b = two_synced(org, tmp_path)
    (a / "a.md").unlink()
    sync(org.alice, a)
    deletion = vids(org, org.alice, "a.md")[1]
    b_doc = sql(org, "SELECT doc FROM versions WHERE vid=?", vids(org, org.alice, "b.md")[0])[0][0]
    before = tree(b)
    sql(org, "UPDATE versions SET doc=?, seq=2 WHERE vid=?", b_doc, deletion)
    r = org.bob.run("sync", "drafting", str(b))
    assert r.code == 3, r.err
    assert tree(b) == before and (b / "b.md").exists()


def test_mass_deletion_and_a_vanished_folder_need_confirm_deletes(org: Org, tmp_path: Path) -> None:
    a, b = two_synced(org, tmp_path, ("1.md", "2.md", "3.md", "4.md"))
    for n in ("1.md", "2.md", "3.md"):
        (a / n).unlink()
    r = org.alice.run("sync", "drafting", str(a), "--json")
    assert r.code == 1
    assert acts(r.json()) == [("refused", "1.md"), ("refused", "2.md"), ("refused", "3.md")]
    assert "3 local deletion(s) held back" in r.err and "--confirm-deletes" in r.err
    assert len(org.alice.json("ls", "drafting")) == 4
    assert acts(sync(org.alice, a, "--confirm-deletes")) == [("delete-remote", n) for n in ("1.md", "2.md", "3.md")]
    sync(org.bob, b)
    assert tree(b) == {"4.md": "4.md v1\n"}

    shutil.rmtree(b)  # the folder vanished (an unmounted disk): never a reason to delete the team's documents
    write(a / "5.md", "new\n")
    sync(org.alice, a)
    r = org.bob.run("sync", "drafting", str(b), "--json")
    assert r.code == 1 and acts(r.json()) == [("failed", "5.md"), ("refused", "4.md")]
    assert "gone or empty" in r.json()[1]["detail"] and "the folder is gone" in r.json()[0]["detail"]
    assert not b.exists()  # not made again, not even to fetch a new document: the index knows it
    b.mkdir()  # an empty folder is the same
    r = org.bob.run("sync", "drafting", str(b), "--json")
    assert r.code == 1 and ("refused", "4.md") in acts(r.json())
    assert [d["name"] for d in org.alice.json("ls", "drafting") if d["size"]] == ["4.md", "5.md"]


def test_a_reader_syncs_down_only(org: Org, make_member: Any, tmp_path: Path) -> None:
    carol = join_member(org, make_member, "carol")
    org.alice.ok("team", "add", "drafting", "carol", "--role", "reader")
    a, _ = two_synced(org, tmp_path)
    c = tmp_path / "c"
    assert acts(sync(carol, c)) == [("pull", "a.md"), ("pull", "b.md"), ("pull", "sub/c.md")]
    write(c / "a.md", "carol's edit\n")
    write(c / "new.md", "carol's new file\n")
    r = carol.run("sync", "drafting", str(c), "--json")
    assert r.code == 1
    assert acts(r.json()) == [("not-pushed", "a.md"), ("not-pushed", "new.md")]
    assert (c / "a.md").read_text() == "carol's edit\n" and (c / "new.md").exists()
    assert len(vids(org, org.alice, "a.md")) == 1 and "new.md" not in [d["name"] for d in org.alice.json("ls",
                                                                                                            "drafting")]
    write(a / "b.md", "b.md v2\n")
    sync(org.alice, a)
    r = carol.run("sync", "drafting", str(c), "--json")
    assert ("pull", "b.md") in acts(r.json()) and (c / "b.md").read_text() == "b.md v2\n"


def test_a_member_removed_from_the_team_is_told_and_keeps_their_files(org: Org, tmp_path: Path) -> None:
    a, b = two_synced(org, tmp_path)
    org.alice.ok("team", "remove", "drafting", "bob")
    (a / "a.md").unlink()
    sync(org.alice, a)
    before = tree(b)
    r = org.bob.fails("sync", "drafting", str(b), contains="you are no longer in team drafting")
    assert r.code == 1 and "your files are kept" in r.err
    assert tree(b) == before


def test_a_second_sync_of_the_same_folder_refuses_at_once(org: Org, tmp_path: Path) -> None:
    a, _ = two_synced(org, tmp_path)
    [lock] = list((org.alice.home / "sync").glob("*.lock"))
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running sync of the folder holds it
        write(a / "a.md", "edit\n")
        r = org.alice.fails("sync", "drafting", str(a), contains="another sync of")
        assert r.code == 1
    finally:
        os.close(fd)
    assert acts(sync(org.alice, a)) == [("push", "a.md")]


def test_a_push_that_loses_the_race_becomes_a_conflict_copy(org: Org, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob stores a version between alice's plan and her push: her push is refused by the head check and her
    file is kept as a conflict copy; nothing of either is overwritten."""
    a, b = two_synced(org, tmp_path)
    write(a / "a.md", "alice's edit\n")

    def bob_first(_total: int) -> None:  # called once alice's pass has planned, before it applies anything
        write(b / "a.md", "bob got there first\n")
        org.bob.ok("sync", "drafting", str(b))

    async def alice_pass(c: Client) -> Outcome:
        return await sync_pass(c, "drafting", a, on_plan=bob_first)

    out = in_session(org.server, org.alice, alice_pass, monkeypatch)
    [row] = out.rows
    assert row["action"] == "conflict" and row["name"] == "a.md" and out.trouble == 1
    assert (a / "a.md").read_text() == "bob got there first\n"
    assert (a / row["copy"]).read_text() == "alice's edit\n"
    assert len(vids(org, org.alice, "a.md")) == 2 and len(vids(org, org.alice, row["copy"])) == 1


def test_a_link_swapped_in_during_a_pass_is_never_followed(org: Org, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Between alice's plan and its actions, a.md (to be deleted: bob deleted it) is moved to keep/a.md with a
    link left in its place, and sub/ (sub/c.md is to be fetched into it) becomes a link to a folder outside:
    the moved file is not deleted through the link, nothing is written outside."""
    a, b = two_synced(org, tmp_path)
    (b / "a.md").unlink()
    write(b / "sub/c.md", "c.md v2\n")
    sync(org.bob, b)
    outside = tmp_path / "outside"
    outside.mkdir()

    def swap(_total: int) -> None:  # the very file (same inode and stat) moved, a link left in its place
        (a / "keep").mkdir()
        os.rename(a / "a.md", a / "keep/a.md")
        (a / "a.md").symlink_to(a / "keep/a.md")
        shutil.rmtree(a / "sub")
        (a / "sub").symlink_to(outside)

    async def alice_pass(c: Client) -> Outcome:
        return await sync_pass(c, "drafting", a, on_plan=swap)

    out = in_session(org.server, org.alice, alice_pass, monkeypatch)
    assert sorted((r["action"], r["name"]) for r in out.rows) == [("failed", "a.md"), ("failed", "sub/c.md")]
    assert (a / "keep/a.md").read_text() == "a.md v1\n" and tree(outside) == {}
