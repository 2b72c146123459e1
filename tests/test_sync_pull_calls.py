"""What a pass's pulls ask of the file system from the event loop's thread (issue 16's first sync, session 19): each
system call there waits for the GIL again afterwards while 8 workers write the other pulls (~40-180 us each in a
profile of the bench's first sync). A pulled file's folder is made (and its path checked again) only when it is not
there yet, a new name is not asked whether it is a folder, the placed file's ``stat`` is taken by the worker call
that placed it, and a batch's new names' folders are fsync'd together, not one after the other; every check and
every fsync is still made."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from client import download
from client.docplaces import checked_local, plain_place, plainly_inside, root_id
from tests.conftest import Org
from tests.helpers.in_process_pass import on_loop, run_pass, synced_by_alice
from tests.test_sync import tree
from tests.test_sync_local_paths import NAMES
from tests.test_sync_local_paths import folder as folder  # noqa: F401 (the fixture)
from vault import fileio
from vault.errors import BadName


def test_a_pass_asks_less_of_the_disk_from_the_event_loop(org: Org, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    synced_by_alice(org, a, 30)
    mkdirs: list[Path] = []  # folders a pull asked for on the loop's thread
    stats: list[Path] = []  # pulled files' names stat'd there (before they are in place, or after)
    real_mkdir, real_stat = Path.mkdir, Path.stat

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if on_loop() and self.is_relative_to(b) and self != b:  # the folder itself: made by the pass
            mkdirs.append(self)
        real_mkdir(self, *args, **kwargs)

    def stat(self: Path, *args: Any, **kwargs: Any) -> os.stat_result:
        if on_loop() and self.suffix == ".md" and self.is_relative_to(b):
            stats.append(self)
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(Path, "stat", stat)
    out = run_pass(org, org.bob, b, monkeypatch)
    assert {r["action"] for r in out.rows} == {"pull"} and tree(b) == tree(a)
    assert sorted(mkdirs) == [b / f"d{i}" for i in range(3)]  # before: one a pulled file (30)
    assert stats == []  # before: two a pulled file (60): "is it a folder?" before, the stat of it placed after


@pytest.mark.parametrize("name", NAMES)
def test_plain_place_is_plainly_inside_and_knows_the_folder(folder: Path, name: str) -> None:  # noqa: F811
    ident = root_id(folder)
    assert ident is not None
    place = plain_place(folder, ident, name)
    assert (place is not None) == plainly_inside(folder, ident, name)
    if place:
        assert (folder / name).parent.is_dir() and not (folder / name).parent.is_symlink()
    expected = {"file.md": True, "d/e/f.md": True, "d/e": True, "new.md": True, "d/new/deeper/x.md": False,
                "file.md/under": False}
    if name in expected:
        assert place is expected[name]


def test_a_folder_there_is_not_made_again(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    ident = root_id(folder)
    assert ident is not None
    made: list[Path] = []
    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: made.append(self))
    assert checked_local(folder, ident, "d/e/g.md", make_folder=True) == folder / "d" / "e" / "g.md"
    assert made == []
    checked_local(folder, ident, "d/x/g.md", make_folder=True)
    assert made == [folder / "d" / "x"]


def test_a_link_made_with_the_folder_is_refused(folder: Path, tmp_path: Path,  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder made for a pull is checked again: a link put there meanwhile leads nowhere."""
    ident = root_id(folder)
    assert ident is not None
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        self.symlink_to(outside)  # someone's link where the folder was to be

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(BadName):
        checked_local(folder, ident, "new/x.md", make_folder=True)
    assert list(outside.iterdir()) == []


def test_new_names_folders_are_fsynced_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = [tmp_path / f"d{i}" for i in range(5)]
    for d in dirs:
        d.mkdir()
        (d / "f").write_text("x")
    synced: list[tuple[Path, str]] = []
    real = fileio.fsync_dir

    def fsync_dir(d: Path) -> None:
        real(d)
        synced.append((d, threading.current_thread().name))

    monkeypatch.setattr(download, "fsync_dir", fsync_dir)
    unsynced = set(dirs)
    download.sync_dirs(unsynced)
    assert unsynced == set() and sorted(d for d, _ in synced) == dirs
    assert all(thread.startswith("mvault-dirs") for _, thread in synced)  # before: the caller's, one after another
    synced.clear()
    gone = tmp_path / "gone"
    unsynced = {*dirs[:2], gone}
    with pytest.raises(FileNotFoundError):
        download.sync_dirs(unsynced)
    assert unsynced == {gone}  # kept, to be fsync'd again (before: dropped)
    assert sorted(d for d, _ in synced) == dirs[:2]
