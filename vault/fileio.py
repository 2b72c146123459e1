"""File I/O shared by the client and the server: complete writes, atomic replacement, and a pipeline.

* ``write_all`` / ``write_chunks``: ``os.write`` may write less than it was given; these loop until
  every byte is written (or raise ``OSError``). ``WriteBehind``: a big file's write-back started as it is
  written, so its final fsync does not write all of it at the end.
* ``atomic_write`` and ``replace_durably``: write to a temporary file in the target's directory,
  fsync it, rename it over the target and fsync the directory, so a reader (or a crash) sees the old
  file or the new one, never a part, and an acknowledged write survives a crash.
* ``locked``: an exclusive ``flock`` on a lock file, for the read-merge-write of a shared local file.
* ``in_worker``: one blocking call (an fsync) off the event loop, waited for even when cancelled.
* ``prefetch`` and ``Stage``: the one-stage-in-flight pipeline of uploads and downloads. While the
  event loop sends (or receives, or hashes) one piece, a worker thread prepares the next (reads and
  encrypts, decrypts, writes). One call in flight per stage keeps the order and bounds memory to two
  pieces; libsodium, hashing and ``write()`` release the GIL, so the two really overlap.

Plain standard library (ctypes for one libc call): no event-loop framework, no crypto.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import fcntl
import os
import sys
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Generic, TypeVar, cast

Buffer = bytes | bytearray | memoryview
In = TypeVar("In")
Out = TypeVar("Out")


# The most one ``os.write`` is given. Linux (6.x, ext4 and others with large folios) sizes the page-cache folios a
# buffered write allocates by the write's length: a 1 MiB write takes order-8 folios from the free lists' high
# orders, likely the memory a virtual machine's balloon (free page reporting) has handed back to its host and must
# fault in again. Measured on this project's Firecracker VM (kernel 6.18, docs/performance.md, session 16): new
# files written 1 MiB at a time cost 2.0-4.5 ms of system CPU per MiB after a few idle seconds, in 128 KiB writes
# 0.23-0.27 ms; when the free memory is warm (just freed) 1 MiB writes cost 0.20-0.28 and 128 KiB ones ~0.05 more.
WRITE_PIECE = 128 << 10


def write_all(fd: int, data: Buffer) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may take fewer), at most ``WRITE_PIECE`` bytes a call;
    ``OSError`` on failure."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:WRITE_PIECE]):]


def write_chunks(fd: int, chunks: Iterable[Buffer]) -> int:
    """``write_all`` each chunk, in order; the number of bytes written."""
    written = 0
    for chunk in chunks:
        write_all(fd, chunk)
        written += len(chunk)
    return written


class WriteBehind:
    """Starts the write-back of a file being written in big sequential pieces once each ``step`` bytes are written
    (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: it does not wait for the disk), so the ``fsync`` that makes
    the file durable at the end finds most of it already written instead of all of it. Small files never reach a
    step (one fsync, as before). Without that call (other systems), or where the file cannot use it (a pipe),
    nothing happens: the final fsync does it all."""

    def __init__(self, fd: int, step: int = 1 << 20) -> None:
        self.fd = fd
        self.step = step
        self.offset = 0  # bytes written so far
        self.started = 0  # of those, how many have had their write-back started
        self._on = _SYNC_FILE_RANGE is not None

    def written(self, n: int) -> None:
        """``n`` more bytes were written after the previous ones."""
        self.offset += n
        if not self._on or self.offset - self.started < self.step:
            return
        assert _SYNC_FILE_RANGE is not None
        if _SYNC_FILE_RANGE(self.fd, self.started, self.offset - self.started, _SYNC_FILE_RANGE_WRITE) != 0:
            self._on = False  # not a file that can (ESPIPE, EINVAL): the final fsync writes it all
        self.started = self.offset


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux; Python's ``os`` has no binding), or None where there is none.
    ctypes releases the GIL for the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], fn)


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start write-out of dirty pages in the range, do not wait


def start_writeback(fd: int) -> None:
    """Start the write-back of everything written to ``fd`` so far, without waiting (a no-op where there is no
    ``sync_file_range`` or the file cannot use it). For many small files made durable together: each written and
    started, then each fsync'd, the file system commits the lot in a few journal commits instead of one a file
    (an fsync still makes each file durable; this only starts the disk earlier)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # offset 0, length 0: the whole file


Signature = tuple[int, int, int] | None  # a file's (size, mtime_ns, inode); None: absent (or not statable)


def signature(path: Path) -> Signature:
    """``path``'s own (size, mtime_ns, inode), links not followed: what tells a file changed without reading it."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that a rename or a new entry in it survives a crash."""
    fsync_path(directory)


def fsync_path(path: Path) -> None:
    """fsync the file or directory at ``path`` through a descriptor of its own (Linux writes out the inode's data
    and metadata whichever descriptor asks: a file written and closed earlier is made durable this way)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(temp: Path, target: Path) -> None:
    """Rename the (already fsync'd) ``temp`` over ``target``, then fsync ``target``'s directory."""
    os.replace(temp, target)
    fsync_dir(target.parent)


def atomic_write(path: Path, data: Buffer | Iterable[Buffer], mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks written in order) atomically and durably.

    The temporary file is made beside ``path`` with a unique name (two writers of one file do not
    trip over each other) and ``mode``. If anything fails (a write, the source of the chunks, the
    fsync), ``path`` keeps its old content and the temporary file is removed.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        try:
            os.fchmod(fd, mode)
            if isinstance(data, bytes | bytearray | memoryview):
                write_all(fd, data)
            else:
                write_chunks(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (made empty, 0600, if missing) for the block."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def prefetch(items: AsyncIterable[In], work: Callable[[In], Out],
                   executor: concurrent.futures.Executor) -> AsyncGenerator[Out, None]:
    """``work(item)`` for each item, in order, each in a worker of ``executor``: while the caller handles
    one result, the worker computes the next one (one call in flight, so at most two results exist).

    If the caller stops early (an error, a cancellation, ``aclose``), the call in flight is waited for
    before this generator returns, so the worker is done with whatever it uses (a file descriptor).
    """
    pending: concurrent.futures.Future[Out] | None = None
    try:
        async for item in items:
            if pending is None:
                pending = executor.submit(work, item)
                continue
            result = await asyncio.wrap_future(pending)
            pending = executor.submit(work, item)
            yield result
        if pending is not None:
            result = await asyncio.wrap_future(pending)
            pending = None
            yield result
    finally:
        if pending is not None:
            concurrent.futures.wait([pending])


class Stage(Generic[In]):
    """A sink run in a worker, one call in flight: ``await push(item)`` waits for the previous call to
    finish, then starts ``work(item)``, and returns while it runs (the caller reads the next piece).

    ``await drain()`` waits for the last call. ``settle()`` (in a ``finally``) blocks until no call is in
    flight, whatever happened: cancelled or failed, the worker must be done before its file closes.
    A failed call's exception is raised by the next ``push`` or ``drain``.
    """

    def __init__(self, work: Callable[[In], object], executor: concurrent.futures.Executor) -> None:
        self._work = work
        self._executor = executor
        self._pending: concurrent.futures.Future[object] | None = None

    async def push(self, item: In) -> None:
        await self.drain()
        self._pending = self._executor.submit(self._work, item)

    async def drain(self) -> None:
        if self._pending is not None:
            # Forgotten only once it is done: a drain cancelled while the call runs leaves it to ``settle``.
            await asyncio.wrap_future(self._pending)
            self._pending = None

    def settle(self) -> None:
        if self._pending is not None:
            concurrent.futures.wait([self._pending])


async def in_worker(executor: concurrent.futures.Executor, work: Callable[[], Out]) -> Out:
    """``work()`` in a worker of ``executor`` while the event loop serves other tasks (an fsync, a rename and
    the fsync of its directory: concurrent downloads' syncs overlap instead of each stopping the loop).

    Cancelled (Ctrl-C, a failed sibling), it still waits for ``work`` to finish before raising, so whatever
    the caller does next (closing a descriptor, removing a temporary file) never races the worker."""
    pending = executor.submit(work)
    try:
        return await asyncio.wrap_future(pending)
    finally:
        if not pending.done():
            concurrent.futures.wait([pending])

