"""Issue 16, `mvault sync TEAM DIR`: two members keep one team folder in step (real server, real CLI).

Up and down, edits both ways, subfolders as names, conflict copies (content and naming), signed
deletions both ways, local renames pushed as moves, a no-op pass that reads no unchanged file, ignore
rules and reported symbolic links, `--dry-run` and `sync status`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tests.conftest import Member, Org


def write(path: Path, data: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


def sync(m: Member, folder: Path, *more: str, team: str = "drafting") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = m.json("sync", team, str(folder), *more)
    return rows


def acts(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["action"], r["name"]) for r in rows)


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_members_sync_up_and_down_and_edits_both_ways(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "plan.md", "plan 1\n")
    write(a / "notes/2027/minutes.txt", "minutes\n")
    assert acts(sync(alice, a)) == [("push", "notes/2027/minutes.txt"), ("push", "plan.md")]
    assert acts(sync(bob, b)) == [("pull", "notes/2027/minutes.txt"), ("pull", "plan.md")]
    assert tree(b) == tree(a)

    write(b / "plan.md", "plan 2 by bob\n")
    rows = sync(bob, b)
    assert [(r["action"], r["name"], r["seq"]) for r in rows] == [("push", "plan.md", 2)]
    assert acts(sync(alice, a)) == [("pull", "plan.md")]
    assert (a / "plan.md").read_text() == "plan 2 by bob\n"

    assert sync(alice, a) == [] and sync(bob, b) == []  # in step: nothing to do
    assert [v["version"] for v in alice.json("history", "drafting", "plan.md")] == [1, 2]


def test_both_changed_keeps_a_conflict_copy_uploaded_as_its_own_document(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "drafts/plan.md", "v1\n")
    sync(alice, a)
    sync(bob, b)
    write(a / "drafts/plan.md", "alice's edit\n")
    write(b / "drafts/plan.md", "bob's edit\n")
    sync(alice, a)
    r = bob.run("sync", "drafting", str(b), "--json")
    assert r.code == 1, r.err  # a conflict is reported: not in step
    [row] = r.json()
    assert row["action"] == "conflict" and row["name"] == "drafts/plan.md" and row["seq"] == 2
    copy = row["copy"]
    assert re.fullmatch(r"drafts/plan \(conflict bob \d{4}-\d\d-\d\d \d{4}\)\.md", copy), copy
    assert (b / "drafts/plan.md").read_text() == "alice's edit\n"  # the team's version under the name
    assert (b / copy).read_text() == "bob's edit\n"  # not a byte lost
    [conflict] = alice.json("history", "drafting", copy)
    assert conflict["version"] == 1
    assert acts(sync(alice, a)) == [("pull", copy)]
    assert tree(a) == tree(b)


def test_signed_deletions_both_ways_and_an_edit_wins_over_a_deletion(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    for n in ("one.md", "two.md", "three.md", "sub/four.md"):
        write(a / n, n)
    sync(alice, a)
    sync(bob, b)
    (a / "one.md").unlink()
    assert acts(sync(alice, a)) == [("delete-remote", "one.md")]
    assert acts(sync(bob, b)) == [("delete-local", "one.md")]
    assert not (b / "one.md").exists()

    # bob edits two.md while alice deletes it: bob's edit is stored again over the deletion
    (a / "two.md").unlink()
    write(b / "two.md", "bob kept working\n")
    sync(alice, a)
    rows = sync(bob, b)
    assert [(r["action"], r["name"]) for r in rows] == [("push", "two.md")]
    assert "deleted in the team" in rows[0]["detail"]
    assert (b / "two.md").read_text() == "bob kept working\n"
    sync(alice, a)
    assert (a / "two.md").read_text() == "bob kept working\n"
    ops = [v["version"] for v in alice.json("history", "drafting", "two.md")]
    assert ops == [1, 2, 3]


def test_a_local_rename_is_pushed_as_a_move_and_history_follows(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    for n in ("old.md", "keep1.md", "keep2.md"):
        write(a / n, f"content of {n}\n")
    sync(alice, a)
    sync(bob, b)
    (a / "moved").mkdir()
    os.rename(a / "old.md", a / "moved/new.md")
    rows = sync(alice, a)
    assert [(r["action"], r["name"], r.get("source")) for r in rows] == [("move", "moved/new.md", "old.md")]
    assert acts(sync(bob, b)) == [("rename-local", "moved/new.md")]  # renamed here too, no download
    assert tree(a) == tree(b)
    old = alice.json("history", "drafting", "old.md")
    assert len(old) == 2  # the old name ends with a signed deletion (moved_to)


def test_a_no_op_pass_reads_no_unchanged_file(org: Org, tmp_path: Path) -> None:
    alice = org.alice
    a = tmp_path / "a"
    for i in range(5):
        write(a / f"f{i}.md", f"file {i}\n")
    sync(alice, a)
    # Same size, mtime and inode, other bytes: only a pass that reads the file could notice (even as root,
    # whom an unreadable mode would not stop).
    st = (a / "f0.md").stat()
    with (a / "f0.md").open("r+") as f:
        f.write("FILE 0\n")
    os.utime(a / "f0.md", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sync(alice, a) == []
    write(a / "f1.md", "edited\n")
    assert acts(sync(alice, a)) == [("push", "f1.md")]


def test_ignore_rules_and_symbolic_links(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / ".mvaultignore", "build/\n*.log\n")
    write(a / "doc.md", "doc\n")
    for n in ("build/out.bin", "run.log", "doc.md~", ".#doc.md", "doc.md.swp", ".DS_Store", "x.tmp", "~$doc.docx",
              ".hidden/secret"):
        write(a / n, "ignored\n")
    (a / "link.md").symlink_to(tmp_path / "elsewhere.md")
    write(tmp_path / "elsewhere.md", "outside\n")
    rows = sync(alice, a)
    assert acts(rows) == [("push", "doc.md"), ("skipped", "link.md")]
    assert "symbolic link" in [r for r in rows if r["name"] == "link.md"][0]["detail"]
    sync(bob, b)
    assert tree(b) == {"doc.md": "doc\n"}


def test_dry_run_changes_nothing_and_status_lists_the_folder(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "plan.md", "v1\n")
    assert acts(sync(alice, a, "--dry-run")) == [("push", "plan.md")]
    assert alice.json("ls", "drafting") == []
    sync(alice, a)
    write(a / "plan.md", "v2\n")
    write(a / "new.md", "new\n")
    [st] = alice.json("sync", "status")
    assert st["team_name"] == "drafting" and st["folder"] == str(a.resolve())
    assert st["files"] == 1 and st["pending"] == 2 and st["conflicts"] == 0 and st["last_sync"] > 0
    assert acts(sync(bob, b, "--dry-run")) == [("pull", "plan.md")]
    assert not b.exists()
    assert acts(sync(alice, a, "--dry-run")) == [("push", "new.md"), ("push", "plan.md")]
    assert [v["version"] for v in alice.json("history", "drafting", "plan.md")] == [1]
    piped = alice.ok("sync", "drafting", str(a), "--dry-run").out
    assert sorted(line.split("\t")[:2] for line in piped.splitlines()) == [["push", "new.md"], ["push", "plan.md"]]


def test_a_file_new_on_both_sides_is_kept_if_the_same_else_a_conflict(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "same.md", "same\n")
    write(a / "x.md", "alice's x\n")
    sync(alice, a)
    write(b / "same.md", "same\n")
    write(b / "x.md", "bob's x\n")
    r = bob.run("sync", "drafting", str(b), "--json")
    assert r.code == 1
    rows = {row["name"]: row for row in r.json()}
    assert rows["same.md"]["action"] == "in-step" and rows["x.md"]["action"] == "conflict"
    assert (b / "x.md").read_text() == "alice's x\n" and (b / rows["x.md"]["copy"]).read_text() == "bob's x\n"
    assert [v["version"] for v in alice.json("history", "drafting", "same.md")] == [1]
    sync(alice, a)
    assert tree(a) == tree(b)
