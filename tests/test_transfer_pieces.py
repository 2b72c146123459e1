"""Issue 17's transfer path without copies or a long final fsync: the server takes an upload's body in the
pieces aiohttp received (``Pace.piece``, no joining) and both ends start a big file's write-back as it is
written (``vault.fileio.WriteBehind``). The stored and downloaded bytes stay exact, and what a lying peer
sends is refused with nothing left behind."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

import vault.fileio as fileio
from tests.helpers.api_fixtures import _wait_for_empty_tmp
from tests.helpers.api_world import World, docs_path, make_upload, new_doc, session, team_key
from tests.helpers.db import snapshot
from tests.helpers.envelope import FRAME_CT, HDR, TEAM_A, data_of, write_doc
from tests.helpers.http import Http, raw_exchange
from tests.helpers.receive import receive
from vault.envelope import FRAME
from vault.errors import DecryptionFailed, IntegrityError, Truncated
from vault.fileio import WriteBehind, write_chunks
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey

MIB = 1 << 20

# == WriteBehind ======================================================================================


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int, int, int]]]:
    """The calls WriteBehind makes to ``sync_file_range``, recorded instead of made (they succeed)."""
    calls: list[tuple[int, int, int, int]] = []

    def record(fd: int, offset: int, n: int, flags: int) -> int:
        calls.append((fd, offset, n, flags))
        return 0

    monkeypatch.setattr(fileio, "_SYNC_FILE_RANGE", record)
    yield calls


def test_write_behind_starts_each_step_once_and_never_for_a_small_file(
        started: list[tuple[int, int, int, int]], tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        small = WriteBehind(fd)
        small.written(write_chunks(fd, [b"x" * 4096]))
        assert started == []  # a small blob or download: its one fsync, nothing more
        big = WriteBehind(fd, step=MIB)
        for size in (MIB // 2, MIB // 2 + 1, 3 * MIB, 10, MIB - 20, 10):
            big.written(size)
        # Every started range follows the previous one, each at least a step, none twice.
        assert [(o, n) for _, o, n, _ in started] == [(0, MIB + 1), (MIB + 1, 3 * MIB), (4 * MIB + 1, MIB)]
        assert {(f, flags) for f, _, _, flags in started} == {(fd, 2)}  # SYNC_FILE_RANGE_WRITE only: no wait
    finally:
        os.close(fd)


def test_write_behind_stops_asking_where_the_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def refuse(fd: int, offset: int, n: int, flags: int) -> int:
        calls.append(offset)
        return -1

    monkeypatch.setattr(fileio, "_SYNC_FILE_RANGE", refuse)
    w = WriteBehind(7, step=10)
    for _ in range(5):
        w.written(10)
    assert calls == [0] and w.offset == 50


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_write_behind_uses_the_real_call_on_files_and_gives_up_on_pipes(tmp_path: Path) -> None:
    assert fileio._SYNC_FILE_RANGE is not None
    data = os.urandom(3 * MIB + 5)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        w = WriteBehind(fd)
        for i in range(0, len(data), 700_001):
            w.written(write_chunks(fd, [data[i:i + 700_001]]))
        assert w._on and w.started == 2_800_004  # the real call succeeded for every step
        os.fsync(fd)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data
    r, wr = os.pipe()
    try:
        p = WriteBehind(wr, step=1)
        p.written(write_chunks(wr, [b"ab"]))  # ESPIPE: no exception, and no more tries
        assert not p._on and os.read(r, 2) == b"ab"
    finally:
        os.close(r)
        os.close(wr)


# == the download pipeline with write-behind, fed by a lying server ===================================




def test_download_writes_behind_and_keeps_the_exact_plaintext(
        started: list[tuple[int, int, int, int]], tmp_path: Path) -> None:
    key, device = TeamKey.generate(TEAM_A, 1), DeviceKeys.generate()
    doc = write_doc(key, device, data_of(3 * FRAME + 17))
    tmp, digest = receive(doc.body, doc.record, key, tmp_path / "out.bin")
    assert tmp.read_bytes() == doc.plaintext and digest == b"\x02" + blake3.blake3(doc.plaintext).digest()
    assert started and started[0][1] == 0  # write-back started from the first MiB on, in order
    assert all(a[1] + a[2] == b[1] for a, b in zip(started, started[1:], strict=False))


def test_download_hands_the_kernel_the_plaintext_in_pieces_of_at_most_write_piece(
        started: list[tuple[int, int, int, int]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The plaintext of 1 MiB frames reaches the file in ``write()`` calls of at most ``WRITE_PIECE`` bytes (a
    1 MiB write makes the kernel take 1 MiB page-cache folios: several ms of CPU per MiB on a VM whose balloon
    reports free memory, vault/fileio.py); the file is still exact and its write-back still starts each MiB."""
    calls: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    key, device = TeamKey.generate(TEAM_A, 1), DeviceKeys.generate()
    doc = write_doc(key, device, data_of(3 * FRAME + 17))
    tmp, _ = receive(doc.body, doc.record, key, tmp_path / "out.bin")
    assert tmp.read_bytes() == doc.plaintext
    assert sum(calls) == len(doc.plaintext) and max(calls) == fileio.WRITE_PIECE < FRAME
    assert [s[1] for s in started] == [0, 1 * MIB, 2 * MIB]


@pytest.mark.parametrize(("what", "cut", "error"), [
    ("truncated inside the second frame", HDR + FRAME_CT + 1000, Truncated),
    ("truncated before the final frame", HDR + 3 * FRAME_CT, Truncated),
    ("first two frames swapped", None, DecryptionFailed),
    ("a byte appended", -1, IntegrityError),
])
def test_download_of_a_tampered_body_fails_and_leaves_no_file(
        started: list[tuple[int, int, int, int]], tmp_path: Path, what: str, cut: int | None,
        error: type[Exception]) -> None:
    key, device = TeamKey.generate(TEAM_A, 1), DeviceKeys.generate()
    doc = write_doc(key, device, data_of(3 * FRAME + 17))
    body = doc.body
    if cut is None:
        first, second = body[HDR:HDR + FRAME_CT], body[HDR + FRAME_CT:HDR + 2 * FRAME_CT]
        body = body[:HDR] + second + first + body[HDR + 2 * FRAME_CT:]
    elif cut < 0:
        body = body + b"\x00"
    else:
        body = body[:cut]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(error):
        receive(body, doc.record, key, out_dir / "out.bin")
    assert list(out_dir.iterdir()) == [], what


# == uploads in the pieces aiohttp received ===========================================================


def _chunked_head(w: World, path: str, token: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{w.server.port}", "Content-Type: application/octet-stream",
             "Transfer-Encoding: chunked", "Connection: close", f"Authorization: Bearer {token}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(data: bytes, size: int) -> list[bytes]:
    """``data`` in chunked encoding, chunks of ``size`` bytes (the last smaller), then the last-chunk."""
    out = [b"%x\r\n" % len(data[i:i + size]) + data[i:i + size] + b"\r\n" for i in range(0, len(data), size)]
    return [*out, b"0\r\n\r\n"]


async def test_chunked_upload_in_odd_pieces_is_stored_exactly(w: World) -> None:
    """A multi-MiB upload in HTTP chunks of an odd size (the signature shares the last one with the body's end):
    the server stores exactly the body and answers the version id the client computed."""
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc, size=2 * FRAME + 333)
        token = s.session.api.token
        assert token is not None
        answer = await raw_exchange(w.server, _chunked_head(w, docs_path(w.drafting, doc), token),
                                    [b"".join(_chunked(up.data, 65_521))], pause=0)
        assert answer is not None and answer[0] == 201, answer
        status, body = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{up.vid}/body", token=token)
        assert status == 200 and body == up.body


async def test_chunked_upload_with_bytes_after_the_signature_is_refused(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc, size=FRAME + 5)
        token = s.session.api.token
        assert token is not None
        before = snapshot(w.server)
        for extra in (b"\x00", up.data[-64:]):  # a stray byte; a second signature
            answer = await raw_exchange(w.server, _chunked_head(w, docs_path(w.drafting, doc), token),
                                        [b"".join(_chunked(up.data + extra, 99_991))], pause=0)
            assert answer is not None and answer[0] == 400 and b"after the signature" in answer[1], answer
            await _wait_for_empty_tmp(w.server)
            assert snapshot(w.server) == before
        assert await h.call("GET", docs_path(w.drafting, doc), token=token) == (200, {"versions": []})
