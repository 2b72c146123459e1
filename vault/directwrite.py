"""A big file written past the page cache (``O_DIRECT``) from reused, page-aligned buffers, buffered where it cannot.

Why (docs/performance.md, "Issue 17, session 17"): a buffered ``write()`` copies every byte into new page-cache
pages. On this project's Firecracker VM (Linux 6.18, balloon with free page reporting) that copy faults memory the
host took back and cost a 512 MiB get 1.6-3.4 ms of system CPU per MiB (a third of the command's CPU); the
kernel's write-back then spends more on the same two cores. ``O_DIRECT`` hands the disk our own buffers (DMA): no
copy, no new pages, no write-back thread; a 512 MiB file took 0.03-0.05 s of system CPU instead of 0.13-1.65 s and
the same wall time as a buffered write and its ``fsync`` (the disk, not the copy, sets it).

``DirectFile`` wraps a descriptor opened for writing at offset 0 (a new temporary file). ``buffer(n)`` lends a
page-aligned writable view of ``n`` bytes (from a small free list: the pipeline holds a few at once); ``write``
writes pieces in order and takes the lent buffers back. A piece is written directly only when it is one of the lent
buffers, its length and the file offset are multiples of ``ALIGN``, and direct I/O is on; anything else (the last,
shorter piece; a piece of other memory; a file system that refuses ``O_DIRECT`` at ``fcntl`` or at the first write
with ``EINVAL``; a short write) turns direct I/O off for the rest of the file and writes through the page cache as
``vault.fileio.write_all`` does. The bytes in the file are the same either way. Durability is unchanged: the caller
still ``fsync``s (the file's size and blocks, the disk's cache). Plain standard library.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
from collections.abc import Iterable

from vault.fileio import Buffer, write_all

ALIGN = 4096  # offsets, lengths and addresses of direct writes: a page (every Linux block device's limit is lower)
_O_DIRECT = getattr(os, "O_DIRECT", 0)
# Buffers of finished files, by size, for the next file (a sync's pulls: one file after another would each map and
# fault in new memory); at most SPARE_KEPT of each size are kept.
SPARE_KEPT = 8
_SPARE: dict[int, list[mmap.mmap]] = {}


class DirectFile:
    """Writes to ``fd`` (at its current offset, which must be 0) past the page cache where it can; see the module."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size  # the length of every buffer lent (a frame's plaintext)
        self.offset = 0
        self.direct = _direct_on(fd)
        self._free: list[mmap.mmap] = []

    def buffer(self, n: int) -> memoryview:
        """A page-aligned writable view of ``n`` (<= ``size``) bytes, to fill and then pass to ``write``."""
        if n > self.size:
            raise ValueError("buffer larger than the file's pieces")
        try:
            m = self._free.pop()  # list.pop/append are atomic under the GIL: decrypt and write threads share it
        except IndexError:
            try:
                m = _SPARE.get(self.size, []).pop()
            except IndexError:
                m = mmap.mmap(-1, max(self.size, 1))
        return memoryview(m)[:n]

    def close(self) -> None:
        """The file is done (written or failed): its free buffers are zeroed and kept for the next one
        (``SPARE_KEPT``). The descriptor is the caller's."""
        spare = _SPARE.setdefault(self.size, [])
        while self._free and len(spare) < SPARE_KEPT:
            m = self._free.pop()
            _zero(m)  # a kept buffer holds this file's plaintext: nothing of it outlives the file in memory
            spare.append(m)
        self._free.clear()

    def write(self, pieces: Iterable[Buffer]) -> int:
        """Write ``pieces`` in order; lent buffers among them go back to the free list. The bytes written."""
        written = 0
        for piece in pieces:
            owner = piece.obj if isinstance(piece, memoryview) else None
            self._write(piece, isinstance(owner, mmap.mmap))
            written += len(piece)
            if isinstance(piece, memoryview):
                piece.release()
            if isinstance(owner, mmap.mmap):
                self._free.append(owner)
        return written

    def _write(self, piece: Buffer, lent: bool) -> None:
        if self.direct and lent and len(piece) % ALIGN == 0 and self.offset % ALIGN == 0:
            try:
                n = os.write(self.fd, piece)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                n = 0  # this file system (or this buffer) cannot: the page cache for the rest
            self.offset += n
            if n == len(piece):
                return
            piece = memoryview(piece)[n:]
        if self.direct:
            self._off()
        write_all(self.fd, piece)
        self.offset += len(piece)

    def _off(self) -> None:
        self.direct = False
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~_O_DIRECT)


def _zero(m: mmap.mmap) -> None:
    """Overwrite ``m`` with zeros in place (no new memory: ``bytes(n)`` would fault in fresh pages)."""
    view = ctypes.c_char.from_buffer(m)
    try:
        ctypes.memset(ctypes.addressof(view), 0, len(m))
    finally:
        del view  # the export ends: the map can be closed again


def _direct_on(fd: int) -> bool:
    """Turn ``O_DIRECT`` on for ``fd``; False where the platform or the file system has none."""
    if not _O_DIRECT:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _O_DIRECT)
    except OSError:
        return False
    return True
