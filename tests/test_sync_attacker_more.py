"""Issue 16, the server as attacker during sync, the two cases tests/test_sync_safety.py does not cover: it serves
another team's document in this team's listing, and it replays a document's old deletion over a later restore.
Each is reported (exit 3) and nothing in the folder is deleted or overwritten."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Org
from tests.helpers.db import rows_deleted, sql
from tests.test_sync import sync, tree, write
from tests.test_sync_safety import lie, two_synced, vids


def test_another_teams_document_in_the_listing_stops_the_pass(org: Org, tmp_path: Path) -> None:
    alice = org.alice
    a, b = two_synced(org, tmp_path)
    alice.ok("team", "create", "other", "--kind", "program")
    alice.ok("team", "add", "other", "bob", "--role", "writer")
    o = tmp_path / "o"
    write(o / "a.md", "the other team's a.md\n")  # the same name as drafting's a.md
    sync(alice, o, team="other")
    other_vid = [v["vid"] for v in alice.json("history", "other", "a.md")][0]
    drafting = sql(org, "SELECT team FROM versions WHERE vid=?", vids(org, alice, "a.md")[0])[0][0]
    before = tree(b)
    sql(org, "UPDATE versions SET team=? WHERE vid=?", drafting, other_vid)  # filed under drafting
    r = org.bob.run("sync", "drafting", str(b))
    assert r.code == 3, r.err
    assert tree(b) == before and (b / "a.md").read_text() == "a.md v1\n"


def test_an_old_deletion_replayed_over_a_restore_deletes_nothing(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = two_synced(org, tmp_path)
    alice.ok("rm", "drafting", "a.md")
    alice.ok("restore", "drafting", "a.md")
    sync(bob, b)
    assert (b / "a.md").read_text() == "a.md v1\n"
    restored = vids(org, alice, "a.md")[2]
    with rows_deleted(org, restored):  # the head is the old deletion again
        lie(bob, b, "roll")
    assert (b / "a.md").read_text() == "a.md v1\n"
