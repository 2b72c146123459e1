"""A pass checks that its folder does not overlap another synced folder without opening the others' indexes
(issue 16, session 11): each folder's path is also sealed alone in ``sync/<folder id>.root``.

Before, every pass opened and decoded every other synced folder's whole index just to read its path (a home with a
folder of 10,000 files paid for it in every pass of every other folder). Real server; the CLI, and one pass in this
process with the sealed files it opens counted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.sync import folders as folders_module
from tests.conftest import Org
from tests.helpers.in_process_pass import run_pass
from tests.helpers.opened import count_opens
from tests.test_sync import sync, write


def sync_dir(org: Org) -> Path:
    return org.alice.home / "sync"


def test_a_pass_reads_only_the_other_folders_paths(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a / "plan.md", "plan\n")
    sync(org.alice, a)
    assert len(list(sync_dir(org).glob("*.root"))) == 1
    opened = count_opens(monkeypatch, folders_module, "open_sync_index")
    out = run_pass(org, org.alice, b, monkeypatch)
    assert [r["name"] for r in out.rows] == ["plan.md"] and (b / "plan.md").read_text() == "plan\n"
    assert opened == []  # b had no index yet, and a's was not opened (the code before opened it for its path)
    assert len(list(sync_dir(org).glob("*.root"))) == 2


def test_a_home_without_the_paths_still_refuses_overlaps_and_writes_them(org: Org, tmp_path: Path) -> None:
    a = tmp_path / "deep" / "a"
    write(a / "plan.md", "plan\n")
    sync(org.alice, a)
    for p in sync_dir(org).glob("*.root"):
        p.unlink()  # as an older version left the home
    org.alice.fails("sync", "drafting", str(a / "inner"), contains="another synced folder")
    assert len(list(sync_dir(org).glob("*.root"))) == 1  # read from the index once, then written
    org.alice.fails("sync", "drafting", str(tmp_path / "deep"), contains="another synced folder")


def test_an_altered_or_swapped_path_file_is_refused(org: Org, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (a, b):
        write(folder / "plan.md", "plan\n")
        sync(org.alice, folder)
    roots = sorted(sync_dir(org).glob("*.root"))
    assert len(roots) == 2
    first, second = (p.read_bytes() for p in roots)
    roots[0].write_bytes(first[:-1] + bytes([first[-1] ^ 1]))
    org.alice.fails("sync", "drafting", str(c), contains="failed its integrity check")
    roots[0].write_bytes(second)  # the other folder's path under this folder's name
    org.alice.fails("sync", "drafting", str(c), contains="failed its integrity check")
    roots[0].write_bytes(first)
    assert sync(org.alice, c) != [] and (c / "plan.md").exists()
