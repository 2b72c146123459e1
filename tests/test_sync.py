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
