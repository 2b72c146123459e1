"""Content-addressed blobs (the ciphertext bodies of document versions), so that no route handles a path.

A blob is written as a temporary blob (``BlobStore.create``), made durable (``TempBlob.sync``), then
committed under its name (the version id: a hash over the signed header, which covers the body's SHA-256)
or discarded. Committed blobs are read back as an HTTP answer (``BlobStore.response``), which for files is
aiohttp's ``FileResponse`` (sendfile where the transport allows it). Blocking methods are marked: callers
run them in a worker thread.

``FileBlobs`` keeps them as files: ``blobs/<first two characters>/<name>``, temporaries in ``tmp/``;
write, fsync, rename, fsync(dir), so an acknowledged blob survives a crash. A full disk (or a file size
limit) while a blob is made is ``InsufficientStorage`` (507), not an unexplained failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from aiohttp import web

from server.store.space import NO_SPACE, no_space
from vault.fileio import Buffer, WriteBehind, fsync_dir, fsync_path, replace_durably, start_writeback, write_chunks

READ_CHUNK = 1 << 20  # over TLS aiohttp cannot sendfile and reads the file in its executor, one trip per chunk


class TempBlob(Protocol):
    """A blob being written, open until ``close``."""

    def write(self, chunks: Iterable[Buffer]) -> None:
        """Append every byte of ``chunks`` (blocking)."""

    def sync(self) -> None:
        """fsync what was written (blocking)."""

    def close(self) -> None:
        """Close it for writing (it stays until committed or discarded); closing twice is harmless."""


class BlobStore(Protocol):
    def create(self) -> TempBlob:
        """A new, empty temporary blob, open for writing."""

    def commit(self, temp: TempBlob, name: str) -> None:
        """The (closed, synced) temporary blob becomes blob ``name``, durably (blocking)."""

    def store_many(self, blobs: Sequence[tuple[str, Buffer]]) -> None:
        """Blobs (name, whole content) made durable together (blocking): each written and fsynced, then all
        renamed into place, then each directory that gained one fsynced once. Nothing is left behind on failure
        but what ``collect`` removes at the next start."""

    def discard(self, temp: TempBlob) -> None:
        """Remove a temporary blob (closed first), committed or not; harmless if it is gone."""

    def delete(self, name: str) -> None:
        """Remove blob ``name``; harmless if it is gone."""

    def response(self, name: str, headers: Mapping[str, str]) -> web.StreamResponse | None:
        """An answer streaming blob ``name``, or ``None`` if it is missing."""

    def read_many(self, names: Sequence[str]) -> list[bytes | None]:
        """The whole content of each blob of ``names`` (small ones: a batch download), ``None`` for a missing one
        (blocking)."""

    def collect(self, used: set[str]) -> None:
        """At start-up: remove every temporary blob and every blob whose name is not in ``used`` (blocking)."""


@contextmanager
def _space() -> Iterator[None]:
    """A write that fails for want of space raises ``InsufficientStorage``; other failures pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise no_space("this upload") from e


class _TempFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        with _space():
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._behind = WriteBehind(self._fd)  # written out as it arrives: sync() waits for the tail only

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError("temporary blob is closed")
        return self._fd

    def write(self, chunks: Iterable[Buffer]) -> None:
        with _space():
            self._behind.written(write_chunks(self._open_fd(), chunks))

    def sync(self) -> None:
        with _space():
            os.fsync(self._open_fd())

    def start_writeback(self) -> None:
        start_writeback(self._open_fd())

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class FileBlobs:
    """Blobs as files under a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.blob_dir = data_dir / "blobs"
        self.tmp_dir = data_dir / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.blob_dir / name[:2] / name

    @staticmethod
    def _file(temp: TempBlob) -> _TempFile:
        if not isinstance(temp, _TempFile):
            raise TypeError("not a temporary blob of this store")
        return temp

    def create(self) -> TempBlob:
        return _TempFile(self.tmp_dir / f"upload-{uuid.uuid4().hex}")

    def commit(self, temp: TempBlob, name: str) -> None:
        target = self._path(name)
        with _space():
            target.parent.mkdir(exist_ok=True)
            replace_durably(self._file(temp).path, target)

    def store_many(self, blobs: Sequence[tuple[str, Buffer]]) -> None:
        temps: list[tuple[_TempFile, Path]] = []
        try:
            # Every blob written and its write-back started (closed: one descriptor open at a time), then each
            # fsync'd: the journal commits the batch in a few commits, not one a blob (measured: docs/performance.md,
            # session 18). Each is durable before any gets its name, as before.
            for name, content in blobs:
                temp = _TempFile(self.tmp_dir / f"upload-{uuid.uuid4().hex}")
                temps.append((temp, self._path(name)))
                temp.write([content])
                temp.start_writeback()
                temp.close()
            with _space():
                for temp, _ in temps:
                    fsync_path(temp.path)
            with _space():
                for temp, target in temps:
                    target.parent.mkdir(exist_ok=True)
                    os.replace(temp.path, target)
                for directory in {target.parent for _, target in temps}:
                    fsync_dir(directory)
        finally:
            for temp, _ in temps:
                self.discard(temp)

    def discard(self, temp: TempBlob) -> None:
        f = self._file(temp)
        f.close()
        f.path.unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def response(self, name: str, headers: Mapping[str, str]) -> web.StreamResponse | None:
        path = self._path(name)
        if not path.exists():
            return None
        return web.FileResponse(path, chunk_size=READ_CHUNK, headers=headers)

    def read_many(self, names: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for name in names:
            try:
                out.append(self._path(name).read_bytes())
            except FileNotFoundError:
                out.append(None)
        return out

    def collect(self, used: set[str]) -> None:
        for f in self.tmp_dir.iterdir():
            f.unlink(missing_ok=True)
        for sub in self.blob_dir.iterdir():
            if sub.is_dir():
                for f in sub.iterdir():
                    if f.name not in used:
                        f.unlink(missing_ok=True)
