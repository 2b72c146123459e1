"""The transfer path's tuning (issue 17's upload and download rows): uploads go with their exact length
(no chunked encoding), and the C allocator is tuned for MiB pieces. Real server, real CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import server.routes.docs as doc_routes
from tests.conftest import Org
from tests.helpers.envelope import data_of
from tests.helpers.members import unlock_here
from vault.envelope import FRAME, DocWriter
from vault.fileio import in_worker
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME, 3 * FRAME + 17])
def test_upload_length_is_the_length_of_the_stream(size: int) -> None:
    w = DocWriter(key=TeamKey.generate("a" * 32, 1), team_seq=1, device=DeviceKeys.generate(), author="author-1",
                  doc="doc-1", seq=1, parent=None, time=1_700_000_000, name="plan.txt", size=size)
    expected = w.upload_length()
    data = data_of(size)
    stream = w.upload_prefix() + (w.encrypt(data) if data else b"") + w.finish()
    assert len(stream) == expected


def test_put_sends_its_exact_length_not_chunks(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server (in this process) sees a Content-Length equal to the upload and no Transfer-Encoding; the
    document comes back intact. Before the change every upload was chunked."""
    seen: list[tuple[int | None, str | None]] = []
    put_version = doc_routes._put_version

    async def spying(request: web.Request, *args: Any) -> web.Response:
        seen.append((request.content_length, request.headers.get("Transfer-Encoding")))
        return await put_version(request, *args)

    monkeypatch.setattr(doc_routes, "_put_version", spying)
    alice = org.alice
    unlock_here(alice)
    src = tmp_path / "big.bin"
    data = data_of(3 * FRAME + 5)
    src.write_bytes(data)
    alice.ok("put", "drafting", str(src))
    small = tmp_path / "small.txt"
    small.write_bytes(b"a few bytes")
    alice.ok("put", "drafting", str(small))
    assert len(seen) == 2
    for length, coding in seen:
        assert coding is None
        assert length is not None and length > 0
    assert seen[0][0] is not None and seen[0][0] > len(data)
    out = tmp_path / "out.bin"
    alice.ok("get", "drafting", "big.bin", "-o", str(out))
    assert out.read_bytes() == data


_PROBE = """
import json, sys
from vault import heap
first = heap.tune_for_streaming()
print(json.dumps([first, heap.tune_for_streaming()]))
"""


def _probe(env: dict[str, str]) -> list[bool]:
    r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    result: list[bool] = json.loads(r.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="the allocator tuning is for glibc on Linux only")
def test_allocator_is_tuned_once_unless_the_environment_tunes_it() -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                              "GLIBC_TUNABLES")}
    assert _probe(base) == [True, True]
    # An operator's own setting wins: left alone.
    assert _probe({**base, "MALLOC_TRIM_THRESHOLD_": "1048576"}) == [False, False]


def test_in_worker_lets_the_loop_run_and_finishes_before_a_cancellation_returns() -> None:
    """A blocking call (a download's fsync, its rename) runs in a worker: the event loop serves another task
    meanwhile (here the one that lets the call finish: on the loop it would wait forever), and a cancelled
    caller gets control back only once the call is done (it may close the descriptor next)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    release = threading.Event()
    finished: list[str] = []

    started = threading.Event()

    def blocking(tag: str) -> str:
        started.set()
        if not release.wait(30):
            raise AssertionError("the event loop never ran the releasing task")
        finished.append(tag)
        return tag

    async def main() -> None:
        async def releaser() -> None:
            await asyncio.sleep(0)
            release.set()

        got, _ = await asyncio.gather(in_worker(pool, lambda: blocking("a")), releaser())
        assert got == "a"
        release.clear()
        started.clear()
        task = asyncio.ensure_future(in_worker(pool, lambda: blocking("b")))
        # Cancelled while still queued (a loaded machine), the call would never run at all (the pool drops it):
        # cancel once it runs, which is the case where returning early would race the worker.
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        threading.Timer(0.05, release.set).start()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == ["a", "b"]  # the cancelled call had finished when the cancellation arrived

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def test_sync_bench_runs_only_the_rows_asked_for(tmp_path: Path) -> None:
    """bench/sync.py --rows first: the first-sync row alone (what the transfer work measures), trees compared; an
    unknown row is a usage error. No timing asserted."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "sync.py"
    out = tmp_path / "sync.json"
    r = subprocess.run([sys.executable, str(bench), "--quick", "--rows", "first", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    [row] = json.loads(out.read_text())["rows"]
    assert row["row"] == "first sync" and row["detail"]["trees_identical"] is True
    assert len(row["ours"]) == len(row["reference"]) == 2
    bad = subprocess.run([sys.executable, str(bench), "--rows", "first,nothing", "--out", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--rows takes some of" in bad.stderr
