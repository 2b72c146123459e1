"""Issue 16's known gaps, closed (real server, real CLI, temporary folders).

- `ls` pins the deletions it listed once their chains check: a device that only listed a deleted document catches
  the server reopening it (the deletion dropped), as one that fetched it does (review round 7's open exploit:
  tests/test_review7_exploits.py `test_acceptance_reopens_a_document_deleted_before_the_backup`); a live head is
  not pinned from a listing (tests/test_sync_noop.py `test_a_head_whose_chain_fails_does_not_enter_the_index`).
- A remote rename of a file unchanged here is a local rename: no download (the server's own count of version
  bodies sent, `/api/metrics`), the same inode; a file touched or edited here falls back to a deletion and a
  download, as before.
- `--hidden` works both ways: local hidden files are pushed too (ignore rules still apply; `.mvaultignore`, the
  download temporaries and a Member Vault home inside the folder never are).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Member, Org
from tests.helpers.db import rows_deleted
from tests.helpers.http import Http
from tests.test_sync import acts, sync, tree, write
from tests.test_sync_safety import two_synced


def vids(m: Member, name: str) -> list[str]:
    return [v["vid"] for v in m.json("history", "drafting", name)]


def test_a_device_that_only_listed_a_deletion_catches_the_server_dropping_it(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    names = write(tmp_path / "names.md", "names\n")
    alice.ok("put", "drafting", str(names))
    alice.ok("rm", "drafting", "names.md")
    deletion = vids(alice, "names.md")[1]
    bob.ok("ls", "drafting")  # bob never fetched the document: he only listed its deletion
    got = tmp_path / "got.md"
    with rows_deleted(org, deletion):  # the server drops the deletion (a rollback, or an older backup)
        r = bob.run("get", "drafting", "names.md", "-o", str(got))
        assert r.code == 3 and "rolled back" in r.err and not got.exists(), (r.code, r.err)
        r = bob.run("ls", "drafting")
        assert r.code == 3 and "rolled back" in r.err, (r.code, r.err)
    # once the server serves what it stored again, everything goes on: the pin was the deletion's own
    r = bob.run("get", "drafting", "names.md", "-o", str(got))
    assert r.code == 1 and "deleted" in r.err and not got.exists(), (r.code, r.err)
    bob.ok("ls", "drafting")


def downloads(org: Org) -> float:
    """Version bodies the server sent so far (its `mvault_downloads` counter, read over loopback)."""
    async def scrape() -> str:
        async with Http(org.server) as h:
            status, body = await h.call("GET", "/api/metrics")
            assert status == 200, status
            return str(body.decode())
    families = text_string_to_metric_families(asyncio.run(scrape()))
    return sum(s.value for f in families if f.name == "mvault_downloads" for s in f.samples
               if s.name == "mvault_downloads_total")


def test_a_remote_rename_of_an_unchanged_file_is_a_local_rename_without_a_download(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = two_synced(org, tmp_path, ("plan.md", "notes.md"))
    ino = (b / "plan.md").stat().st_ino
    (a / "archive/2027").mkdir(parents=True)
    os.rename(a / "plan.md", a / "archive/2027/plan.md")  # a rename in alice's folder, stored as a move...
    alice.ok("mv", "drafting", "notes.md", "kept/notes.md")  # ...and one with `mvault mv`, renamed in her folder too
    assert acts(sync(alice, a)) == [("move", "archive/2027/plan.md"), ("rename-local", "kept/notes.md")]
    before = downloads(org)
    rows = sync(bob, b)
    assert sorted((r["action"], r["name"], r.get("source")) for r in rows) == [
        ("rename-local", "archive/2027/plan.md", "plan.md"), ("rename-local", "kept/notes.md", "notes.md")], rows
    assert downloads(org) == before  # nothing fetched
    assert (b / "archive/2027/plan.md").stat().st_ino == ino and not (b / "plan.md").exists()
    assert tree(b) == tree(a)
    assert sync(bob, b) == []  # in step: the index took the renamed files as they are
    write(b / "kept/notes.md", "bob's notes\n")  # and an edit goes on top of the move
    assert [(r["action"], r["seq"]) for r in sync(bob, b)] == [("push", 2)]


def test_a_remote_rename_of_a_file_touched_or_edited_here_falls_back_to_a_download(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = two_synced(org, tmp_path, ("touched.md", "edited.md"))
    alice.ok("mv", "drafting", "touched.md", "t2.md")
    alice.ok("mv", "drafting", "edited.md", "e2.md")
    st = (b / "touched.md").stat()
    os.utime(b / "touched.md", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the same content, another mtime
    write(b / "edited.md", "bob's edit\n")
    before = downloads(org)
    rows = sync(bob, b)
    # as before this change: the edit is stored again over the deletion, the touched file is kept for the next
    # pass to decide (its stat is not the indexed one), and both new names are fetched
    assert acts(rows) == [("pull", "e2.md"), ("pull", "t2.md"), ("push", "edited.md"), ("skipped", "touched.md")]
    assert downloads(org) == before + 2  # both new names fetched, as before this change
    assert (b / "t2.md").read_text() == "touched.md v1\n" and (b / "edited.md").read_text() == "bob's edit\n"


def test_hidden_files_go_both_ways_with_hidden_and_the_folder_s_own_files_never(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b, plain = tmp_path / "a", tmp_path / "b", tmp_path / "plain"
    write(a / "visible.md", "visible\n")
    write(a / ".env", "TOKEN=team\n")
    write(a / "sub/.config/settings", "dark\n")
    write(a / ".private-notes", "mine only\n")
    write(a / ".mvaultignore", ".private*\n")
    write(a / ".other-home/keystore.bin", "a home's keystore\n")  # another Member Vault home in the folder
    write(a / ".other-home/config.bin", "its config\n")
    rows = sync(alice, a, "--hidden")
    assert acts(rows) == [("push", ".env"), ("push", "sub/.config/settings"), ("push", "visible.md"),
                          ("skipped", ".other-home")], rows
    assert acts(sync(bob, b, "--hidden")) == [("pull", ".env"), ("pull", "sub/.config/settings"),
                                              ("pull", "visible.md")]
    assert tree(b) == {".env": "TOKEN=team\n", "sub/.config/settings": "dark\n", "visible.md": "visible\n"}
    write(b / ".env", "TOKEN=bob\n")  # an edit of a hidden file goes up, and down again
    assert [(r["action"], r["name"], r["seq"]) for r in sync(bob, b, "--hidden")] == [("push", ".env", 2)]
    assert acts(sync(alice, a, "--hidden")) == [("pull", ".env"), ("skipped", ".other-home")]
    assert (a / ".env").read_text() == "TOKEN=bob\n"
    # without --hidden the hidden files are neither fetched nor taken for deletions
    assert acts(sync(alice, a)) == [("skipped", ".env"), ("skipped", "sub/.config/settings")]
    assert acts(sync(bob, plain)) == [("pull", "visible.md"), ("skipped", ".env"), ("skipped", "sub/.config/settings")]
    assert len(bob.json("history", "drafting", ".env")) == 2
