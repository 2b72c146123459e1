"""Issue 17, session 17: a big download's plaintext goes to its file past the page cache (``O_DIRECT``) from reused
page-aligned buffers the frames are decrypted into (``vault.directwrite.DirectFile``), and through the page cache
wherever that cannot be (the last, shorter frame; format 1's frames; a file system that refuses it; a short write).
The file's bytes are exact either way, and a lying server still leaves nothing behind."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from pathlib import Path

import blake3
import pytest

import vault.directwrite as directwrite
from tests.helpers.envelope import TEAM_A, data_of, write_doc
from tests.helpers.receive import receive
from vault.bodyformat import BODY_V1, BODY_V2
from vault.directwrite import ALIGN, DirectFile
from vault.envelope import FRAME
from vault.errors import DecryptionFailed, Truncated
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey

MIB = 1 << 20


def _direct_here(path: Path) -> bool:
    try:
        fd = os.open(path / "probe", os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError:
        return False
    os.close(fd)
    return hasattr(os, "O_DIRECT")


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[int, bool]]:
    """Every ``os.write`` to a file under ``tmp_path``: its length and whether the descriptor had ``O_DIRECT``."""
    calls: list[tuple[int, bool]] = []
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            calls.append((len(data), bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    return calls




def test_a_big_download_writes_whole_frames_past_the_page_cache(writes: list[tuple[int, bool]],
                                                                tmp_path: Path) -> None:
    if not _direct_here(tmp_path):
        pytest.skip("no O_DIRECT on this file system")
    key, device = TeamKey.generate(TEAM_A, 1), DeviceKeys.generate()
    doc = write_doc(key, device, data_of(3 * FRAME + 17), body_format=BODY_V2)
    tmp, digest = receive(doc.body, doc.record, key, tmp_path / "out.bin")
    assert tmp.read_bytes() == doc.plaintext and digest == b"\x02" + blake3.blake3(doc.plaintext).digest()
    # Three full frames in one direct write each; the 17 bytes left through the page cache.
    assert writes == [(FRAME, True)] * 3 + [(17, False)]


@pytest.mark.parametrize("body_format", [BODY_V1, BODY_V2])
def test_where_direct_writes_are_refused_the_file_is_written_as_before(
        writes: list[tuple[int, bool]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body_format: int) -> None:
    """A file system that takes ``O_DIRECT`` at ``fcntl`` but refuses the write (``EINVAL``), and format 1's frames
    (decrypted into libsodium's own buffers): the same exact file, in pieces of at most ``WRITE_PIECE``."""
    real_write = os.write

    def refusing(fd: int, data: bytes | memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refusing)
    key, device = TeamKey.generate(TEAM_A, 1), DeviceKeys.generate()
    doc = write_doc(key, device, data_of(2 * FRAME + 5), body_format=body_format)
    tmp, _ = receive(doc.body, doc.record, key, tmp_path / "out.bin")
    assert tmp.read_bytes() == doc.plaintext


@pytest.mark.parametrize(("what", "cut", "error"), [
    ("truncated inside the second frame", FRAME + 16 + 1000, Truncated),
    ("truncated at a frame's end", 2 * (FRAME + 16), Truncated),
    ("a bit flipped in the third frame", -1, DecryptionFailed),
])
def test_a_tampered_body_fails_and_leaves_no_file_with_direct_writes(tmp_path: Path, what: str, cut: int,
                                                                     error: type[Exception]) -> None:
    key, device = TeamKey.generate(TEAM_A, 1), DeviceKeys.generate()
    doc = write_doc(key, device, data_of(3 * FRAME + 17), body_format=BODY_V2)
    body = bytearray(doc.body)
    if cut < 0:
        body[2 * (FRAME + 16) + 5] ^= 1
    else:
        del body[cut:]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(error):
        receive(bytes(body), doc.record, key, out_dir / "out.bin")
    assert list(out_dir.iterdir()) == [], what


def test_direct_file_reuses_its_buffers_and_falls_back_for_the_rest(writes: list[tuple[int, bool]],
                                                                    tmp_path: Path) -> None:
    if not _direct_here(tmp_path):
        pytest.skip("no O_DIRECT on this file system")
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    expected = bytearray()
    try:
        f = DirectFile(fd, 4 * ALIGN)
        assert f.direct
        owners = set()
        for i in range(10):  # a pipeline's worth at a time: the same few buffers, not one per piece
            a, b = f.buffer(4 * ALIGN), f.buffer(4 * ALIGN)
            owners |= {id(a.obj), id(b.obj)}
            assert isinstance(a.obj, mmap.mmap) and isinstance(b.obj, mmap.mmap)
            a[:] = bytes([i]) * len(a)
            b[:] = bytes([100 + i]) * len(b)
            expected += bytes(a) + bytes(b)
            assert f.write([a, b]) == 8 * ALIGN
        assert len(owners) == 2 and f.direct and all(d for _, d in writes)
        c = f.buffer(ALIGN)  # a lent buffer holds what it held before: written as it is
        expected += b"not lent" + bytes(c)
        f.write([b"not lent", c])  # other memory: the page cache from here on
        assert not f.direct and writes[-1][1] is False
        with pytest.raises(ValueError):
            f.buffer(4 * ALIGN + 1)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == bytes(expected)


def test_a_short_direct_write_is_finished_through_the_page_cache(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    real_write = os.write
    short = [True]

    def once_short(fd_: int, data: bytes | memoryview) -> int:
        if short[0]:
            short[0] = False
            return real_write(fd_, memoryview(data)[:ALIGN])
        return real_write(fd_, data)

    monkeypatch.setattr(os, "write", once_short)
    monkeypatch.setattr(directwrite, "_direct_on", lambda fd_: True)  # as if O_DIRECT were on (any file system)
    try:
        f = DirectFile(fd, 4 * ALIGN)
        a = f.buffer(4 * ALIGN)
        a[:] = data_of(4 * ALIGN)
        f.write([a])
        assert not f.direct and f.offset == 4 * ALIGN
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data_of(4 * ALIGN)


def test_no_direct_io_where_the_platform_has_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(directwrite, "_O_DIRECT", 0)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        f = DirectFile(fd, ALIGN)
        assert not f.direct
        a = f.buffer(ALIGN)
        a[:] = b"x" * ALIGN
        f.write([a])
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"x" * ALIGN


def test_the_next_file_reuses_a_finished_files_buffers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A sync's pulls, one file after another: the buffers of a finished file serve the next, at most SPARE_KEPT."""
    monkeypatch.setattr(directwrite, "_SPARE", {})
    used = set()
    for i in range(3):
        fd = os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            f = DirectFile(fd, 2 * ALIGN)
            a, b = f.buffer(2 * ALIGN), f.buffer(2 * ALIGN)
            used |= {id(a.obj), id(b.obj)}
            a[:] = b"a" * len(a)
            b[:] = b"b" * len(b)
            f.write([a, b])
            f.close()
        finally:
            os.close(fd)
        assert (tmp_path / f"f{i}").read_bytes() == b"a" * 2 * ALIGN + b"b" * 2 * ALIGN
    assert len(used) == 2
    fd = os.open(tmp_path / "g", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        many = DirectFile(fd, 2 * ALIGN)
        many.write([many.buffer(ALIGN) for _ in range(directwrite.SPARE_KEPT + 3)])
        many.close()
        assert len(directwrite._SPARE[2 * ALIGN]) == directwrite.SPARE_KEPT  # the rest let go
    finally:
        os.close(fd)


def test_a_kept_buffer_holds_nothing_of_the_finished_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A long-running watcher keeps a few buffers for its next pull: the plaintext of the file it finished must not
    stay in them (a seized, running device's memory would show the last files pulled)."""
    monkeypatch.setattr(directwrite, "_SPARE", {})
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        f = DirectFile(fd, 2 * ALIGN)
        a = f.buffer(2 * ALIGN)
        owner = a.obj
        a[:] = b"secret" * (2 * ALIGN // 6) + b"s" * (2 * ALIGN % 6)
        f.write([a])
        f.close()
    finally:
        os.close(fd)
    assert directwrite._SPARE[2 * ALIGN] == [owner]
    assert bytes(memoryview(owner)) == bytes(2 * ALIGN)
    assert (tmp_path / "f").read_bytes().startswith(b"secret")
