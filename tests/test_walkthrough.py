"""The README walk-through, end to end: real server, real CLI, two members."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from server.store.blobs import FileBlobs
from tests.conftest import Org
from tests.helpers.postgres import database_files
from tests.helpers.signals import sigint_default, signal_state

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)


def test_whole_walkthrough(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    me = alice.json("whoami")
    assert me["name"] == "alice" and "ncc" in me["roles"] and me["teams"] == ["drafting"]
    assert bob.json("whoami")["roles"] == ["member"]

    text = tmp_path / "strategy.md"
    text.write_text("# Strategy\n\nOrganize the east side first.\n")
    binary = tmp_path / "logo.bin"
    binary.write_bytes(bytes(range(256)) * 1000 + b"\x00\xff")
    assert alice.json("put", "drafting", str(text))[0]["version"] == 1
    assert bob.json("put", "drafting", str(binary))[0]["version"] == 1

    text.write_text("# Strategy v2\n\nEast side, then the harbour.\n")
    assert bob.json("put", "drafting", str(text))[0]["version"] == 2

    listing = {d["name"]: d for d in alice.json("ls", "drafting")}
    assert set(listing) == {"strategy.md", "logo.bin"}
    assert listing["strategy.md"]["version"] == 2
    assert listing["strategy.md"]["author_name"] == "bob"
    assert listing["strategy.md"]["size"] == text.stat().st_size
    assert listing["logo.bin"]["size"] == binary.stat().st_size
    human = alice.ok("ls", "drafting").out
    assert "strategy.md" in human and "logo.bin" in human and "bob" in human

    hist = alice.json("history", "drafting", "strategy.md")
    assert [h["version"] for h in hist] == [1, 2]
    assert [h["author_name"] for h in hist] == ["alice", "bob"]

    out1, out2, outb = tmp_path / "v1.md", tmp_path / "v2.md", tmp_path / "logo.out"
    bob.ok("get", "drafting", "strategy.md", "-o", str(out1), "--version", "1")
    alice.ok("get", "drafting", "strategy.md", "-o", str(out2))
    alice.ok("get", "drafting", "logo.bin", "-o", str(outb))
    assert out1.read_text() == "# Strategy\n\nOrganize the east side first.\n"
    assert out2.read_text() == text.read_text()
    assert outb.read_bytes() == binary.read_bytes()

    teams = alice.json("team", "ls")
    assert [t["name"] for t in teams] == ["drafting"]
    show = alice.json("team", "show", "drafting")
    assert {m["name"]: m["role"] for m in show["members"]} == {"alice": "admin", "bob": "writer"}
    assert show["generation"] == 1


def test_fifty_mib_file_round_trip(org: Org, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for _ in range(50):
            f.write(os.urandom(1024 * 1024))
    assert org.bob.json("put", "drafting", str(big))[0]["size"] == 50 * 1024 * 1024
    out = tmp_path / "big.out"
    org.alice.ok("get", "drafting", "big.bin", "-o", str(out))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_empty_and_frame_sized_files(org: Org, tmp_path: Path) -> None:
    for name, size in (("empty.txt", 0), ("frame.bin", 1024 * 1024), ("frame-plus.bin", 1024 * 1024 + 1)):
        p = tmp_path / name
        p.write_bytes(os.urandom(size))
        org.alice.ok("put", "drafting", str(p))
        out = tmp_path / (name + ".out")
        org.bob.ok("get", "drafting", name, "-o", str(out))
        assert out.read_bytes() == p.read_bytes()


def test_no_plaintext_at_rest(org: Org, tmp_path: Path) -> None:
    canary_content = b"CANARY-CONTENT-7f3a9c-do-not-store-me"
    canary_name = "CANARY-NAME-b81e44.md"
    doc = tmp_path / canary_name
    doc.write_bytes(b"prefix " + canary_content + b" suffix\n" * 100)
    org.alice.ok("put", "drafting", str(doc))
    doc.write_bytes(canary_content * 3)
    org.bob.ok("put", "drafting", str(doc))
    org.alice.ok("get", "drafting", canary_name, "-o", str(tmp_path / "check.md"))
    needles = [canary_content, canary_name.encode(), canary_name.encode("utf-16-le"), b"CANARY"]
    database = database_files(org.server.config.get("database_url", ""), org.server.data_dir)
    scanned = 0
    for path in [*org.server.data_dir.rglob("*"), *database]:
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle not in data, f"plaintext {needle!r} found in {path}"
    assert scanned >= 4  # database, WAL, certificate, blobs at least
    assert database and any(b"drafting" in p.read_bytes() for p in database)  # the scan reached the rows


def test_put_of_many_files_in_one_command(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    files = []
    for i in range(30):
        f = tmp_path / f"note-{i:02d}.txt"
        f.write_bytes(f"note {i}\n".encode() * (i + 1))
        files.append(f)
    stored = alice.json("put", "drafting", *map(str, files))
    assert [(d["name"], d["version"], d["size"]) for d in stored] == \
        [(f.name, 1, f.stat().st_size) for f in files]
    listing = {d["name"]: d for d in bob.json("ls", "drafting")}
    assert {f.name for f in files} <= set(listing)
    assert all(listing[f.name]["vid"] == d["vid"] for f, d in zip(files, stored, strict=True))
    out = tmp_path / "back.txt"
    bob.ok("get", "drafting", "note-17.txt", "-o", str(out))
    assert out.read_bytes() == files[17].read_bytes()

    # Again, with one new file among them: existing ones get version 2, the new one version 1.
    files[3].write_bytes(b"changed\n")
    extra = tmp_path / "extra.txt"
    extra.write_bytes(b"new\n")
    again = alice.json("put", "drafting", str(files[3]), str(files[4]), str(extra))
    assert [(d["name"], d["version"]) for d in again] == [("note-03.txt", 2), ("note-04.txt", 2), ("extra.txt", 1)]
    human = bob.ok("put", "drafting", str(files[5]), str(files[6])).out
    assert [line.split("\t")[:2] for line in human.splitlines()] == [["note-05.txt", "2"], ["note-06.txt", "2"]]
    bob.ok("get", "drafting", "note-03.txt", "-o", str(out), "--force")  # over note-17: get never replaces unasked
    assert out.read_bytes() == b"changed\n"


def test_put_of_many_files_refusals_and_partial_failure(org: Org, tmp_path: Path) -> None:
    import socket

    alice = org.alice
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"a\n")
    b.write_bytes(b"b\n")
    r = alice.run("put", "drafting", str(a), str(b), "--as", "x.txt")
    assert r.code == 2 and "--as names one document" in r.err
    (tmp_path / "sub").mkdir()
    twin = tmp_path / "sub" / "a.txt"
    twin.write_bytes(b"other a\n")
    alice.fails("put", "drafting", str(a), str(twin), contains="given twice")
    assert alice.json("ls", "drafting") == []
    # A file that cannot be read (a socket) fails alone; the others are stored, exit 1 names it.
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        r = alice.fails("put", "drafting", str(a), str(sock_path), str(b), contains="1 of 3 files were not stored")
        assert "s.sock" in r.err
    finally:
        sock.close()
    assert sorted(d["name"] for d in alice.json("ls", "drafting")) == ["a.txt", "b.txt"]



class _HeldBody(web.StreamResponse):
    """A version body sent as the server's ``FileResponse`` would, but held after ``after`` bytes until the test
    releases it: the client is then mid-download for as long as the test needs, whatever the machine's load."""

    def __init__(self, path: Path, headers: Mapping[str, str], after: int, reached: threading.Event,
                 release: threading.Event) -> None:
        super().__init__(headers=headers)
        self.content_length = path.stat().st_size
        self._path, self._after, self._reached, self._release = path, after, reached, release
        self._sent = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if self._sent:
            return writer
        self._sent = True
        loop = asyncio.get_running_loop()
        sent = 0
        with self._path.open("rb") as f:
            while chunk := f.read(1 << 20):
                await self.write(chunk)
                sent += len(chunk)
                if sent >= self._after and not self._reached.is_set():
                    self._reached.set()
                    await loop.run_in_executor(None, self._release.wait, 120)
        await self.write_eof()
        return writer


def test_ctrl_c_during_get_leaves_no_partial_plaintext(org: Org, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT in the middle of a download: the command stops (130), the temporary file with part of the plaintext
    is gone, and no output file appears. The server holds the body after 16 MiB (of 64) until the SIGINT has been
    sent, and the SIGINT is sent once the temporary file holds plaintext: the get cannot finish first, however
    loaded the machine (it did at session 14: exit 0 before the SIGINT landed)."""
    import signal
    import subprocess
    import time

    from tests.conftest import MVAULT

    alice = org.alice
    alice.env_extra["MVAULT_SESSION"] = str(alice.json("unlock", "--minutes", "30")["session"])
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        block = os.urandom(1 << 20)
        for i in range(64):
            f.write(block[i:] + block[:i])
    alice.ok("put", "drafting", str(big))
    reached, release = threading.Event(), threading.Event()

    def held(self: FileBlobs, name: str, headers: Mapping[str, str]) -> web.StreamResponse | None:
        path = self._path(name)
        return _HeldBody(path, headers, 16 << 20, reached, release) if path.exists() else None

    monkeypatch.setattr(FileBlobs, "response", held)
    where = tmp_path / "out"
    where.mkdir()
    proc = subprocess.Popen([MVAULT, "get", "drafting", "big.bin", "-o", str(where / "big.bin")], env=alice.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    try:
        assert reached.wait(120), "the server never sent 16 MiB of the body"
        deadline = time.monotonic() + 120
        # what the client received before the hold is decrypted and written: plaintext on disk, the rest withheld
        while not any(p.name.endswith(".mvault-part") and p.stat().st_size > 0 for p in where.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no partial plaintext was written"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within 60 s of SIGINT: {signal_state(proc.pid)}")
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert list(where.iterdir()) == []
