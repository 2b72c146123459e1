"""The synced folders of this home: ``$MVAULT_HOME/sync/``, one sealed index and one lock per folder.

A folder's files there are named by a keyed hash of its absolute path (``vault.localstate.file_name``),
so the listing does not say which folders are synced. ``ID.bin`` is the folder's index
(``vault.syncindex``), rewritten atomically after each applied action, so a killed pass leaves an
index that says exactly what was done. ``ID.lock`` is held (``flock``, not waited for) for a whole
pass: a second sync of the same folder refuses at once. ``ID.last`` holds the time of the last pass when a pass
changed nothing else (``save_last``: a no-op pass seals a few bytes, not the whole index).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from client.sanitize import escape
from vault.errors import Conflict, DecryptionFailed, VaultError
from vault.fileio import atomic_write
from vault.keys import DeviceKeys
from vault.localindex import LocalIndex
from vault.localstate import file_name, local_key
from vault.syncindex import (
    SyncEntry,
    SyncIndex,
    open_folder_root,
    open_last_sync,
    open_sync_index,
    seal_folder_root,
    seal_last_sync,
    seal_sync_index,
)

FOLDER = "sync"


class SyncFolders:
    """The registry of synced folders in one home."""

    def __init__(self, home: Path, device: DeviceKeys) -> None:
        self.home = home
        self.dir = home / FOLDER
        self._key = local_key(device)

    def folder_id(self, root: Path) -> str:
        return file_name(self._key, f"{FOLDER}:{root}")

    def load(self, root: Path) -> SyncIndex | None:
        """The index of ``root`` (absolute), or None if it was never synced from this home."""
        fid = self.folder_id(root)
        try:
            blob = (self.dir / f"{fid}.bin").read_bytes()
        except FileNotFoundError:
            return None
        return self._open(fid, blob)

    def _open(self, fid: str, blob: bytes) -> SyncIndex:
        try:
            index = open_sync_index(self._key, fid, blob)
            with contextlib.suppress(FileNotFoundError):
                last = open_last_sync(self._key, fid, (self.dir / f"{fid}.last").read_bytes())
                index.last_sync = max(index.last_sync, last)
            return index
        except DecryptionFailed as e:
            raise VaultError(f"the sync index {self.dir / fid}.bin or .last failed its integrity check (altered, "
                             "damaged or not this device's); refusing to use it") from e

    def save(self, index: SyncIndex) -> None:
        self.sealed(index)()

    def sealed(self, index: SyncIndex) -> Callable[[], None]:
        """``save`` of ``index`` as it is now: sealed here, written by the call returned (in another thread: the
        index may change meanwhile, the bytes do not)."""
        fid = self.folder_id(Path(index.root))
        blob, root = seal_sync_index(self._key, fid, index), index.root

        def write() -> None:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.dir / f"{fid}.bin", blob)
            if not (self.dir / f"{fid}.root").exists():
                atomic_write(self.dir / f"{fid}.root", seal_folder_root(self._key, fid, root))

        return write

    def save_last(self, index: SyncIndex) -> None:
        """Only ``index.last_sync`` (everything else as saved last): into ``ID.last``, read back by ``load``."""
        fid = self.folder_id(Path(index.root))
        atomic_write(self.dir / f"{fid}.last", seal_last_sync(self._key, fid, index.last_sync))

    def all(self, but: Path | None = None) -> list[SyncIndex]:
        """Every synced folder's index, by folder path (``but``: that folder's left out, its file not even read)."""
        if not self.dir.is_dir():
            return []
        skip = self.folder_id(but) if but is not None else None
        found = [self._open(p.stem, p.read_bytes()) for p in sorted(self.dir.glob("*.bin")) if p.stem != skip]
        return sorted(found, key=lambda i: i.root)

    def roots(self, but: Path) -> list[Path]:
        """Every other synced folder's path, from its ``ID.root`` (a small sealed file), or from its whole index where
        an older version left none (then written, so the next pass reads the few bytes)."""
        skip, found = self.folder_id(but), []
        for p in sorted(self.dir.glob("*.bin")) if self.dir.is_dir() else []:
            if p.stem == skip:
                continue
            try:
                root = open_folder_root(self._key, p.stem, (self.dir / f"{p.stem}.root").read_bytes())
            except FileNotFoundError:
                root = self._open(p.stem, p.read_bytes()).root
                atomic_write(self.dir / f"{p.stem}.root", seal_folder_root(self._key, p.stem, root))
            except DecryptionFailed as e:
                raise VaultError(f"{self.dir / p.stem}.root failed its integrity check (altered, damaged or not this "
                                 "device's); refusing to use it") from e
            if self.folder_id(Path(root)) != p.stem:
                raise VaultError(f"{self.dir / p.stem}.root names another folder; refusing to use it")
            found.append(Path(root))
        return found

    def check_place(self, root: Path) -> None:
        """Refused if ``root`` is inside this home, or inside or around another synced folder. Whether ``root`` is
        synced with another team is ``check_team``'s, on the index read under the lock (read once per pass)."""
        home = self.home.resolve()
        if root == home or home in root.parents or root in home.parents:
            raise VaultError(f"{escape(str(root))} is or holds this client's home ({home}): it cannot be synced")
        for there in self.roots(but=root):
            if root in there.parents or there in root.parents:
                raise VaultError(f"{escape(str(root))} is inside or holds another synced folder, "
                                 f"{escape(str(there))}: synced folders may not overlap")

    @staticmethod
    def check_team(index: SyncIndex | None, root: Path, team: str) -> None:
        """Refused if ``root``'s index (None: never synced) is another team's."""
        if index is not None and index.team != team:
            raise VaultError(f"{escape(str(root))} is synced with another team; sync it with that team "
                             "or use another folder")

    @contextmanager
    def locked(self, root: Path) -> Iterator[None]:
        """Hold the folder's lock for the block; refused at once (``Conflict``) when another sync holds it."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.dir / f"{self.folder_id(root)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise Conflict(f"another sync of {escape(str(root))} is running; wait for it to finish") from e
            yield
        finally:
            os.close(fd)


def catch_up(index: SyncIndex, copies: LocalIndex, root: Path) -> None:
    """Index entries behind the local copies entry of their path (an upload or download a killed pass made, which
    the local copies index recorded before the folder's index was saved) take that entry: the file held that
    version then, so the pass compares with it (no conflict with its own upload, no second version)."""
    for name, entry in list(index.files.items()):
        copy = copies.copy(index.team, entry.doc, str(root / name))
        if copy is not None and copy.seq > entry.seq:
            index.record(name, SyncEntry.of(entry.doc, copy))
