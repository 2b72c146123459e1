"""A pass's pulls fsync each folder once per save, not once per file (issue 16's first sync, session 11).

A pulled file gets its name by a link beside its verified temporary file; that new name survives a crash only once
its directory is fsynced. Before, every pulled file fsynced its directory on its own (1,000 small files: 1,000
directory fsyncs into a dozen folders). In a batch of fetches the directories are fsynced once each before the
local copies index or the folder's index that records the new files is saved (``Documents.take_unsynced``: the
saving thread of client/saver.py fsyncs them, then writes): a crash may lose names not yet recorded (the next pass
fetches them again), never leave an index entry for a name the disk does not hold (the next pass would take it for
a file the member deleted).

Bob's real pass, in this process against the real server, with every link, directory fsync and save watched.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client import download
from client.localcopies import Entry, LocalCopies
from client.sync.folders import SyncFolders
from tests.conftest import Org
from tests.helpers.in_process_pass import run_pass, synced_by_alice
from tests.test_sync import tree
from vault import fileio
from vault.syncindex import SyncIndex

FILES = 150  # more than PIN_FLUSH (64): the pass saves during its batch, not only at its end
FOLDERS = 3


def test_pulled_files_fsync_each_folder_once_before_anything_records_them(org: Org, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    synced_by_alice(org, a, FILES, FOLDERS)

    lock, clock = threading.Lock(), itertools.count()
    linked: dict[Path, int] = {}  # a pulled file's name -> when it was made
    synced: dict[Path, list[int]] = defaultdict(list)  # a directory -> when each fsync of it began
    unsettled: list[str] = []  # files a save recorded before their directory was fsynced after their link
    real_link = os.link

    def link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        real_link(src, dst, *args, **kwargs)
        with lock:
            linked[Path(dst)] = next(clock)

    def fsync_dir(directory: Path) -> None:
        with lock:
            synced[Path(directory)].append(next(clock))
        fileio.fsync_dir(directory)

    def check(paths: list[Path], what: str) -> None:
        with lock:
            unsettled.extend(f"{what}: {p}" for p in paths
                             if p in linked and not any(t > linked[p] for t in synced[p.parent]))

    copies_save, folders_sealed = LocalCopies.save, SyncFolders.sealed

    def saving_copies(self: LocalCopies, entries: list[Entry]) -> None:
        check([Path(e[2]) for e in entries], "local copies")
        copies_save(self, entries)

    def sealing_folder(self: SyncFolders, index: SyncIndex) -> Callable[[], None]:
        names = [Path(index.root) / name for name in index.files]  # what it records, as sealed
        write = folders_sealed(self, index)

        def writing() -> None:  # when its bytes are written (the saving thread's save, or ``save``)
            check(names, "folder index")
            write()

        return writing

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(download, "fsync_dir", fsync_dir)
    monkeypatch.setattr(LocalCopies, "save", saving_copies)
    monkeypatch.setattr(SyncFolders, "sealed", sealing_folder)
    out = run_pass(org, org.bob, b, monkeypatch)
    assert len(out.rows) == FILES and {r["action"] for r in out.rows} == {"pull"}
    assert tree(b) == tree(a)
    assert len(linked) == FILES
    assert unsettled == []
    root = b.resolve()
    fsyncs = sum(len(times) for d, times in synced.items() if root in d.parents)
    assert fsyncs < FILES // 2  # the code before: one per pulled file (150)
    assert {d for d in synced if root in d.parents} == {root / f"d{i}" for i in range(FOLDERS)}
