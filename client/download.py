"""Receiving a document version's body: the verified download pipeline and where its plaintext lands.

Plaintext is released only after the signature (checked before), every frame, the body hash and the
final tag verify: it goes to a temporary file first, then either a new name beside the target
(``place``: never over an existing file unless forced) or standard output (``to_stdout``: the anonymous
temporary file is copied out only once everything verified).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from client.api import Api
from vault.directwrite import DirectFile
from vault.envelope import BodyDecryptor, Opened, Record
from vault.fileio import (
    Buffer,
    Stage,
    WriteBehind,
    fsync_dir,
    in_worker,
    prefetch,
    replace_durably,
    write_all,
    write_chunks,
)
from vault.heap import tune_for_streaming
from vault.localindex import content_hasher, same_kind

Progress = Callable[[int], None]
# Worker threads for streaming crypto and file writes. Our own pool, not the loop's: on any exit
# (errors, Ctrl-C) we wait for submitted work on its concurrent futures before closing the file,
# which asyncio's wrappers do not allow once cancelled.
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mvault-io")
# fsyncs and renames of finished downloads, off the event loop: a folder's pulls (8 in flight) sync together
# (the file system commits concurrent fsyncs in one journal transaction) instead of one after the other on the
# loop, which stopped every other transfer meanwhile. Apart from POOL, so a sync never waits behind decryption.
SYNC_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="mvault-sync")
# The directory fsyncs of a batch of fetches' new names (``sync_dirs``), together: the file system commits them in one
# journal transaction and the disk flushes at once, not one after the other on the event loop (11 folders with new
# names, in-process: ~35 ms one after the other, ~1 ms together). Apart from SYNC_POOL, busy with the pulls.
DIR_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="mvault-dirs")
DOWNLOAD_BATCH = 1 << 20  # bytes received before a batch goes to the decrypting thread
COPY_CHUNK = 1 << 20


async def receive(api: Api, rec: Record, opened: Opened, fd: int, progress: Progress | None,
                  durable: bool = False, like: bytes | None = None) -> bytes:
    """Write the version's plaintext to ``fd`` and verify all of it; the plaintext's content digest (of ``like``'s
    kind when given: ``vault.localindex.content_hasher``; an export's manifest names SHA-256, ``SHA256_LIKE``).
    On any failure (or Ctrl-C) the workers are done with ``fd`` before this returns or raises.
    ``durable``: the caller will fsync ``fd``; its write-back starts as the plaintext is written."""
    if rec.core.body_len >= DOWNLOAD_BATCH:
        tune_for_streaming()  # MiB pieces reused, not faulted in again for each (vault/heap.py)
    # A file the caller will fsync, big enough: its plaintext goes to the disk from reused page-aligned buffers,
    # past the page cache (vault/directwrite.py: no copy, no new pages; the same bytes; buffered where it cannot).
    direct = DirectFile(fd, rec.core.frame) if durable and rec.core.body_len >= DOWNLOAD_BATCH else None
    dec = BodyDecryptor(opened, into=direct.buffer if direct is not None else None)
    hasher = content_hasher(like)
    behind = WriteBehind(fd) if durable else None

    def decrypt(chunks: list[bytes]) -> list[Buffer]:
        return [piece for chunk in chunks for piece in dec.feed(chunk)]

    def write(pieces: list[Buffer]) -> None:
        for piece in pieces:
            hasher.update(piece)
        if direct is None:
            written = write_chunks(fd, pieces)
        else:
            written = direct.write(pieces)
            if direct.direct:
                return  # nothing in the page cache to write back
        if behind is not None:
            behind.written(written)

    # A three-stage pipeline in constant memory: the event loop receives batch k+2 while one
    # worker thread decrypts batch k+1 (prefetch) and another writes batch k (the Stage); libsodium,
    # hashing and write() release the GIL. Each stage keeps its order: one call in flight per stage.
    writing: Stage[list[Buffer]] = Stage(write, POOL)
    body = f"/api/v1/teams/{rec.core.team}/versions/{rec.version_id}/body"
    try:
        batches = _batches(api.download(body), progress)
        async with contextlib.aclosing(prefetch(batches, decrypt, POOL)) as decrypted:
            async for pieces in decrypted:
                await writing.push(pieces)
        await writing.drain()
        dec.finish()
    finally:  # interrupted (error, Ctrl-C): the workers finish with fd before it closes
        writing.settle()
        if direct is not None:
            direct.close()
    return hasher.digest()


async def receive_beside(api: Api, rec: Record, opened: Opened, out: Path,
                         progress: Progress | None, like: bytes | None = None) -> tuple[Path, bytes]:
    """The verified plaintext in a new temporary file beside ``out`` (fsync'd), and its content digest (of
    ``like``'s kind, as ``receive``). The caller renames or removes it; on failure nothing is left."""
    async def streamed(fd: int) -> bytes:
        digest = await receive(api, rec, opened, fd, progress, durable=True, like=like)
        await in_worker(SYNC_POOL, lambda: os.fsync(fd))
        return digest

    return await beside(out, streamed)


async def beside(out: Path, fill: Callable[[int], Awaitable[bytes]]) -> tuple[Path, bytes]:
    """A new temporary file beside ``out`` that ``fill(fd)`` fills with verified plaintext and fsyncs, returning
    its content digest: the file and that digest. On failure (or Ctrl-C) nothing is left."""
    fd, tmp = _temporary_beside(out)
    with _closed_or_removed(fd, tmp):
        digest = await fill(fd)
    return tmp, digest


def _temporary_beside(out: Path) -> tuple[int, Path]:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".mvault-part", dir=out.parent)
    return fd, Path(tmp_name)


@contextlib.contextmanager
def _closed_or_removed(fd: int, tmp: Path) -> Iterator[None]:
    """``fd`` closed after the block; ``tmp`` (its file) removed too if the block failed (or was interrupted)."""
    try:
        try:
            yield
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def small_beside(out: Path, opened: Opened, body: bytes, then: Callable[[Path], bool] | None = None,
                       ) -> tuple[Path, bytes, bool | None]:
    """``beside`` for a small body received whole (a batch download): the temporary file made, the body verified
    (``receive_small``), written and fsync'd in one worker-thread call, off the event loop: a file's creation
    waits for the file system's journal while other pulls fsync theirs, which stopped every transfer meanwhile.
    ``then`` (``place`` the file): called in that same call once the file is fsync'd, its answer returned (None
    without it): one thread trip a pulled file, not two. If it raises, the temporary file is removed.
    Cancelled (Ctrl-C, a failed sibling), the worker finishes and what it made is removed: nothing is left."""
    pending = SYNC_POOL.submit(_small_beside, out, opened, body, then)
    try:
        return await asyncio.wrap_future(pending)
    except BaseException:
        concurrent.futures.wait([pending])
        if not pending.cancelled() and pending.exception() is None:
            pending.result()[0].unlink(missing_ok=True)
        raise


def _small_beside(out: Path, opened: Opened, body: bytes,
                  then: Callable[[Path], bool] | None) -> tuple[Path, bytes, bool | None]:
    fd, tmp = _temporary_beside(out)
    with _closed_or_removed(fd, tmp):
        digest = receive_small(opened, body, fd)
    if then is None:
        return tmp, digest, None
    try:
        return tmp, digest, then(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def receive_small(opened: Opened, body: bytes, fd: int) -> bytes:
    """A small body already received whole (a batch download, ``client.downloadbatch``), verified as ``receive``
    verifies a streamed one (every frame, the body hash, the final tag) before its plaintext is written to ``fd``
    and fsync'd; the plaintext's content digest (blocking: run it in a worker thread)."""
    dec = BodyDecryptor(opened)
    pieces = dec.feed(body)
    dec.finish()  # before a byte of plaintext reaches the disk
    hasher = content_hasher()
    for piece in pieces:
        hasher.update(piece)
    write_chunks(fd, pieces)
    os.fsync(fd)
    return hasher.digest()


async def place_off_loop(tmp: Path, out: Path, force: bool, unsynced: set[Path] | None = None) -> bool:
    """``place`` in a worker thread (its link and directory fsync do not stop the event loop)."""
    return await in_worker(SYNC_POOL, lambda: place(tmp, out, force, unsynced))


def place(tmp: Path, out: Path, force: bool, unsynced: set[Path] | None = None) -> bool:
    """Give ``tmp`` the name ``out`` durably; without ``force`` only if no file has that name (checked
    atomically where the file system can link: a file created meanwhile is not replaced). False if one has.
    ``unsynced`` (a batch of fetches): a new name's directory goes in it instead of being fsynced here; the caller
    fsyncs each once (``sync_dirs``) before anything that records the file is saved."""
    if force:
        replace_durably(tmp, out)
        return True
    try:
        os.link(tmp, out)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(out):  # no hard links here (FAT, some network file systems): check, then rename
            return False
        replace_durably(tmp, out)
        return True
    tmp.unlink()
    if unsynced is None:
        fsync_dir(out.parent)
    else:
        unsynced.add(out.parent)
    return True


def sync_dirs(unsynced: set[Path]) -> None:
    """fsync each directory ``place`` left in ``unsynced`` (emptied): the new names in them survive a crash. Several
    are fsync'd at once (``DIR_POOL``); this returns once every one is done. One that fails stays in ``unsynced``
    (fsync'd again by the next call) and its error is raised."""
    dirs = list(unsynced)
    unsynced.clear()
    if len(dirs) == 1:
        try:
            fsync_dir(dirs[0])
        except BaseException:
            unsynced.add(dirs[0])
            raise
        return
    done = [(DIR_POOL.submit(fsync_dir, d), d) for d in dirs]
    try:
        concurrent.futures.wait([f for f, _ in done])
    except BaseException:  # interrupted: none counts as done
        unsynced.update(dirs)
        raise
    failed = [(error, d) for f, d in done if (error := f.exception()) is not None]
    unsynced.update(d for _, d in failed)
    if failed:
        raise failed[0][0]


def hash_file(path: Path, like: bytes | None = None) -> bytes:
    """The content digest of a local file (``vault.localindex.content_hasher``; of ``like``'s kind when given: to
    compare with that recorded digest)."""
    hasher = content_hasher(like)
    with path.open("rb") as f:
        while chunk := f.read(COPY_CHUNK):
            hasher.update(chunk)
    return hasher.digest()


def holds(path: Path, digest: bytes, fresh: bytes) -> bool:
    """Whether the file at ``path``, whose content digest ``fresh`` was just taken, has the recorded ``digest``
    (hashed again with ``digest``'s kind when ``fresh`` is of the other one)."""
    return digest == (fresh if same_kind(fresh, digest) else hash_file(path, like=digest))


async def to_stdout(api: Api, rec: Record, opened: Opened, progress: Progress | None) -> None:
    """The verified plaintext on standard output: received into an anonymous temporary file (no name
    on disk, gone with the process), copied out only once all of it verified."""
    with tempfile.TemporaryFile(prefix="mvault-get-") as f:
        await receive(api, rec, opened, f.fileno(), progress)
        f.seek(0)
        sys.stdout.flush()
        out = sys.stdout.fileno()
        while chunk := f.read(COPY_CHUNK):
            write_all(out, chunk)


async def _batches(chunks: AsyncIterator[bytes], progress: Progress | None) -> AsyncIterator[list[bytes]]:
    """The received body in batches of at least DOWNLOAD_BATCH bytes (the last one smaller), counted as it arrives."""
    batch: list[bytes] = []
    batched = 0
    async for chunk in chunks:
        batch.append(chunk)
        batched += len(chunk)
        if progress:
            progress(len(chunk))
        if batched >= DOWNLOAD_BATCH:
            yield batch
            batch, batched = [], 0
    if batch:
        yield batch

