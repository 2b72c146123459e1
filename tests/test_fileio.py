"""vault/fileio.py on real files and real worker threads: complete writes, atomic replacement, pipelines."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from vault.fileio import WRITE_PIECE, Stage, atomic_write, prefetch, replace_durably, write_all, write_chunks


def leftovers(directory: Path, keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != keep)


# -- complete writes ----------------------------------------------------------------------------


def test_write_all_writes_every_byte_through_a_pipe(tmp_path: Path) -> None:
    # A pipe takes at most its buffer per write() while the reader lags: short writes are real here.
    data = os.urandom(1 << 20)
    r, w = os.pipe()
    got = bytearray()

    def read() -> None:
        while chunk := os.read(r, 65536):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        write_all(w, data)
    finally:
        os.close(w)
        reader.join()
        os.close(r)
    assert bytes(got) == data


def test_write_all_gives_write_at_most_a_piece_a_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Big writes are cut to WRITE_PIECE bytes a call (page-cache folios sized by the write: vault/fileio.py).
    calls: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    data = os.urandom(3 * WRITE_PIECE + 5)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    assert calls == [WRITE_PIECE, WRITE_PIECE, WRITE_PIECE, 5]


def test_write_chunks_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_chunks(fd, [b"one ", b"", b"two ", bytearray(b"three")])
    finally:
        os.close(fd)
    assert path.read_bytes() == b"one two three"


def test_write_all_reports_a_full_disk() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError):
            write_all(fd, b"x" * 4096)
    finally:
        os.close(fd)


# -- atomic replacement -------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "state"
    atomic_write(path, b"first")
    assert path.read_bytes() == b"first"
    assert path.stat().st_mode & 0o777 == 0o600
    atomic_write(path, [b"sec", b"ond"], mode=0o644)
    assert path.read_bytes() == b"second"
    assert path.stat().st_mode & 0o777 == 0o644
    assert leftovers(tmp_path, "state") == []


def test_a_failing_source_leaves_the_old_file_and_no_part(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"new and partial"
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        atomic_write(path, chunks())
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path, "state") == []


def test_a_failing_disk_write_leaves_the_old_file_and_no_part(tmp_path: Path) -> None:
    # A real failing write(): a child process whose file size limit is 1000 bytes (EFBIG past it).
    path = tmp_path / "state"
    path.write_bytes(b"old")
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from vault.fileio import atomic_write\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n"
        "    atomic_write(Path(sys.argv[1]), b'n' * 5000)\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent)
    assert done.stdout.startswith("refused")
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path, "state") == []


def test_replace_durably_renames_over_the_target(tmp_path: Path) -> None:
    temp, target = tmp_path / "t", tmp_path / "target"
    temp.write_bytes(b"new")
    target.write_bytes(b"old")
    replace_durably(temp, target)
    assert target.read_bytes() == b"new"
    assert not temp.exists()


# -- the one-stage-in-flight pipeline ------------------------------------------------------------


class Worker:
    """Records how many calls run at once; each call takes a little while so overlaps would show."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.seen: list[int] = []

    def __call__(self, item: int) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.002 * (item % 3))
        with self.lock:
            self.running -= 1
            self.seen.append(item)
        return item * 10


async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def test_prefetch_keeps_order_with_one_call_in_flight() -> None:
    work = Worker()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        got = [r async for r in prefetch(numbers(20), work, pool)]
    assert got == [i * 10 for i in range(20)]
    assert work.seen == list(range(20))
    assert work.most == 1


async def test_prefetch_works_ahead_of_the_consumer() -> None:
    # When the consumer holds result k, the call for item k+1 has already been handed to the worker.
    submitted: list[int] = []

    async def items() -> AsyncIterator[int]:
        for i in range(5):
            submitted.append(i)
            yield i

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        async for result in prefetch(items(), lambda i: i, pool):
            assert submitted[-1] == min(result + 1, 4)


async def test_prefetch_stopped_early_waits_for_the_call_in_flight() -> None:
    work = Worker()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        gen = prefetch(numbers(10), work, pool)
        assert await anext(gen) == 0
        await gen.aclose()
        assert work.running == 0
        assert work.seen == [0, 1]


async def test_prefetch_raises_the_workers_error() -> None:
    def work(i: int) -> int:
        if i == 3:
            raise ValueError("bad piece")
        return i

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        got: list[int] = []
        with pytest.raises(ValueError, match="bad piece"):
            async for r in prefetch(numbers(6), work, pool):
                got.append(r)
    assert got == [0, 1, 2]


async def test_stage_writes_in_order_with_one_call_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    work = Worker()

    def write(item: int) -> None:
        work(item)
        write_all(fd, b"%d," % item)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            stage: Stage[int] = Stage(write, pool)
            try:
                for i in range(30):
                    await stage.push(i)
                await stage.drain()
            finally:
                stage.settle()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(b"%d," % i for i in range(30))
    assert work.most == 1


async def test_stage_reports_a_failed_call_and_settles() -> None:
    work = Worker()

    def write(item: int) -> None:
        work(item)
        if item == 2:
            raise OSError(28, "No space left on device")

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        stage: Stage[int] = Stage(write, pool)
        with pytest.raises(OSError, match="No space"):
            try:
                for i in range(10):
                    await stage.push(i)
                await stage.drain()
            finally:
                stage.settle()
        assert work.running == 0
        assert work.seen == [0, 1, 2]


async def test_stage_cancelled_while_draining_still_settles() -> None:
    """A cancelled ``drain`` (Ctrl-C, a client gone) leaves the call in flight known, so ``settle`` waits for it:
    the worker is done with the file before the caller closes it."""
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def write(item: int) -> None:
        started.set()
        release.wait(10)
        done.append(item)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        stage: Stage[int] = Stage(write, pool)
        await stage.push(1)
        draining = asyncio.create_task(stage.drain())
        await asyncio.to_thread(started.wait, 10)
        await asyncio.sleep(0)
        draining.cancel()
        with pytest.raises(asyncio.CancelledError):
            await draining
        releaser = threading.Timer(0.2, release.set)
        releaser.start()
        try:
            stage.settle()
            assert done == [1]
        finally:
            release.set()
            releaser.join()
