"""Issue 16, the watch hint: a `--watch` pass woken by file events scans only the paths the watcher reported, one
woken by a notice alone scans nothing, and the team's listing is always whole (real server, the real client
library's `sync_pass` with the hint `client/cli/sync.py` passes it; `mvault sync --watch` itself is driven in
tests/test_sync_watch_cli.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from client.client import Client
from client.sync.engine import Outcome, sync_pass
from client.sync.scan import scan
from tests.conftest import Org
from tests.helpers.members import in_session
from tests.test_sync import acts, sync, write


def hinted(org: Org, folder: Path, only: frozenset[str], monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    async def one(c: Client) -> Outcome:
        return await sync_pass(c, "drafting", folder, only=only)

    out: Outcome = in_session(org.server, org.bob, one, monkeypatch)
    return sorted((r["action"], r["name"]) for r in out.rows)


def synced(org: Org, tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("a.md", "b.md", "sub/c.md", "sub/d.md"):
        write(a / name, f"{name} v1\n")
    sync(org.alice, a)
    sync(org.bob, b)
    return a, b


def test_a_hinted_pass_looks_only_at_the_reported_paths_and_never_takes_the_rest_for_deleted(
        org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = synced(org, tmp_path)
    write(b / "a.md", "bob's edit\n")
    write(b / "b.md", "an edit the watcher missed\n")
    (b / "sub/d.md").unlink()  # a deletion the watcher missed too
    write(b / "new.md", "new\n")
    assert hinted(org, b, frozenset({"a.md", "new.md"}), monkeypatch) == [("push", "a.md"), ("push", "new.md")]
    # a folder stands for everything under it
    assert hinted(org, b, frozenset({"sub"}), monkeypatch) == [("delete-remote", "sub/d.md")]
    # the full pass (the backstop) finds what the watcher missed
    assert acts(sync(org.bob, b)) == [("push", "b.md")]


def test_a_pass_woken_by_a_notice_alone_scans_nothing_but_pulls_from_the_whole_listing(
        org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = synced(org, tmp_path)
    write(a / "sub/c.md", "alice's edit\n")
    write(a / "e.md", "alice's new file\n")
    sync(org.alice, a)
    write(b / "b.md", "bob's unreported edit\n")
    assert hinted(org, b, frozenset(), monkeypatch) == [("pull", "e.md"), ("pull", "sub/c.md")]
    assert (b / "sub/c.md").read_text() == "alice's edit\n" and (b / "b.md").read_text() == "bob's unreported edit\n"
    # a file the watcher did not report but that changed is never overwritten by a pull: it becomes a conflict
    write(a / "b.md", "alice's edit of b\n")
    sync(org.alice, a)
    rows = hinted(org, b, frozenset(), monkeypatch)
    assert rows == [("conflict", "b.md")], rows
    assert "bob's unreported edit\n" in {p.read_text() for p in b.glob("b (conflict*")}


def test_a_hint_naming_the_ignore_rules_or_a_link_on_the_way_is_a_full_scan(tmp_path: Path) -> None:
    from vault.syncindex import SyncIndex

    root = tmp_path / "f"
    write(root / "x/a.md", "a\n")
    write(root / "b.md", "b\n")
    full = scan(root, SyncIndex("t" * 32, str(root)))
    index = SyncIndex("t" * 32, str(root))
    assert sorted(full.files) == ["b.md", "x/a.md"]
    narrowed = scan(root, index, only=frozenset({"x/a.md"}))
    assert sorted(narrowed.files) == ["x/a.md"] and narrowed.hashed == 1
    for only in ({".mvaultignore"}, {"."}):
        assert sorted(scan(root, index, only=frozenset(only)).files) == ["b.md", "x/a.md"]
    outside = tmp_path / "outside"
    write(outside / "secret.md", "not in the folder\n")
    os.symlink(outside, root / "link")
    got: Any = scan(root, index, only=frozenset({"link/secret.md"}))
    assert "link/secret.md" not in got.files and ("link", "a symbolic link: not followed") in got.skipped
