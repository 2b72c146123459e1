"""The local copies index on disk (``$MVAULT_HOME/index.bin``, format in ``vault.localindex``).

Several commands of one member may run at once (a ``get`` beside a batch ``put``): each save takes
a lock (``index.lock``), re-reads the file and applies only its own new entries, so no command drops
another's. The file is re-read only when it changed since this command last read or wrote it (its size,
mtime and inode: every save is a new file renamed into place), so a batch that saves it again and again
opens it once, not at every save. A file that does not open is refused with one line, like the pins: it is what stands
between a stale local file and someone's newer version.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from vault.errors import DecryptionFailed, VaultError
from vault.fileio import Signature, atomic_write, locked, signature
from vault.keys import DeviceKeys
from vault.localindex import NAME, LocalCopy, LocalIndex, open_index, seal_index
from vault.localstate import local_key

Entry = tuple[str, str, str, LocalCopy]  # team id, doc id, absolute path, the copy there


def copy_of(path: Path, vid: str, seq: int, digest: bytes, st: os.stat_result | None = None) -> LocalCopy:
    """The entry for ``path`` as it is now on disk, holding version ``seq`` (``vid``); ``st``: its ``stat`` taken
    already (by the worker call that gave the file that name: no second look from the event loop)."""
    st = path.stat() if st is None else st
    return LocalCopy(vid, seq, digest, st.st_size, st.st_mtime_ns, st.st_ino)


class LocalCopies:
    def __init__(self, home: Path, device: DeviceKeys) -> None:
        self.path = home / f"{NAME}.bin"
        self._key = local_key(device)
        self._index: LocalIndex | None = None
        # The file as it was (None: absent) when ``_index`` was read from it or written to it; None in a list: never.
        self._seen: list[Signature] = []
        # Each write of this command: the file as it was when the written index was read or last written (so the
        # write holds what was on disk then, plus this command's entries), and the file the write made.
        self._writes: list[tuple[Signature, Signature]] = []
        self._mutex = threading.RLock()  # a batch's saves are made by another thread (client/saver.py)

    def load(self) -> LocalIndex:
        """The index as on disk (read once per command; ``save`` re-reads under the lock if it changed)."""
        with self._mutex:
            if self._index is None:
                self._index = self._read()
            return self._index

    def _current(self) -> LocalIndex:
        """Under the lock: the index as on disk now, read again only if the file changed since we saw it."""
        if self._index is not None and self._seen == [signature(self.path)]:
            return self._index
        return self._read()

    def _write(self, index: LocalIndex) -> None:
        onto = self._seen[0] if self._seen else None  # (under the lock, after ``_current``) what ``index`` holds
        try:
            atomic_write(self.path, seal_index(self._key, index))
        except BaseException:
            self._index, self._seen = None, []  # not written: what is on disk is read again when next needed
            raise
        self._index, self._seen = index, [signature(self.path)]
        self._writes.append((onto, self._seen[0]))

    def mark(self) -> int:
        """A point in this command's writes, for ``only_ours_since``."""
        with self._mutex:
            return len(self._writes)

    def only_ours_since(self, mark: int, start: Signature) -> tuple[LocalIndex, Signature] | None:
        """If this command wrote the file since ``mark``, and nobody else wrote it since it was ``start`` (each write
        was onto the file as ``start`` or as the previous write left it, and it is still as the last one left it):
        the index on disk now, as this command holds it, and that file's signature. Else None (read it to know)."""
        with self._mutex:
            writes = self._writes[mark:]
            if not writes or self._index is None:
                return None
            at = start
            for onto, made in writes:
                if onto != at:
                    return None
                at = made
            return (self._index, at) if at is not None and signature(self.path) == at else None

    def _read(self) -> LocalIndex:
        self._seen = [signature(self.path)]  # before reading: a write in between only makes the next save read again
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return LocalIndex()
        try:
            return open_index(self._key, blob)
        except DecryptionFailed as e:
            raise VaultError(f"{self.path} failed its integrity check (altered, damaged or not this device's); "
                             "refusing to use it (remove it to forget which versions your local files are based "
                             "on)") from e

    def save(self, entries: list[Entry]) -> None:
        """Record ``entries`` (in order: a later one for a path wins) on top of what is on disk now."""
        if not entries:
            return
        with self._mutex, locked(self.path.with_suffix(".lock")):
            index = self._current()
            for team, doc, path, copy in entries:
                index.record(team, doc, path, copy)
            self._write(index)

    def forget(self, team: str, doc: str) -> None:
        """Drop the entries of a document that is no longer there (a deletion, the old name of a move)."""
        with self._mutex, locked(self.path.with_suffix(".lock")):
            index = self._current()
            if index.forget(team, doc):
                self._write(index)
            else:
                self._index = index
