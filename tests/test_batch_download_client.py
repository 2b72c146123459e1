"""The client's batch download (``client/downloadbatch.py``): a sync's pulls of small files come in a few
``version_bodies`` requests (big ones alone, as before), every body verified as a single download's; a server that
alters, swaps, drops or cuts a body in a batch is caught (exit 3, nothing under a real name but verified files);
a pass killed while a batch is out is finished by the next one. Real server (in this process, so its reads can be
counted, made to lie and held), real CLI; the server as attacker."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from server.store.blobs import FileBlobs
from tests.conftest import MVAULT, Org
from tests.helpers.members import unlock_here
from tests.helpers.tampering import flip_middle

SMALL_FILES = 40


@pytest.fixture
def reads_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[int]]]:
    """The item count of each batch download the server read, and one entry per single body read."""
    seen: dict[str, list[int]] = {"batch": [], "single": []}
    read_many, single = FileBlobs.read_many, FileBlobs.response

    def counting(self: FileBlobs, names: Sequence[str]) -> list[bytes | None]:
        seen["batch"].append(len(names))
        return read_many(self, names)

    def counting_single(self: FileBlobs, name: str, headers: Any) -> Any:
        seen["single"].append(1)
        return single(self, name, headers)

    monkeypatch.setattr(FileBlobs, "read_many", counting)
    monkeypatch.setattr(FileBlobs, "response", counting_single)
    yield seen


def _tree(root: Path, small: int = SMALL_FILES) -> dict[str, bytes]:
    files = {f"notes/{i:03}.txt": f"note {i}\n".encode() * (i % 50 * 40 + 1) for i in range(small)}
    files["big.bin"] = bytes(range(256)) * 1024  # 256 KiB: a single download
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def _here(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_sync_fetches_small_files_in_batches(org: Org, tmp_path: Path, reads_seen: dict[str, list[int]]) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    files = _tree(tmp_path / "alice")
    alice.ok("sync", "drafting", str(tmp_path / "alice"))
    reads_seen["batch"].clear()
    pulled = bob.json("sync", "drafting", str(tmp_path / "bob"))
    assert sorted(r["name"] for r in pulled if r["action"] == "pull") == sorted(files)
    assert _here(tmp_path / "bob") == files
    assert sum(reads_seen["batch"]) == SMALL_FILES and len(reads_seen["batch"]) <= SMALL_FILES // 4, reads_seen
    assert reads_seen["single"] == [1]  # big.bin
    # Second versions come the same way (their histories asked for, as before), and the pass after is in step.
    for name in list(files)[:5]:
        (tmp_path / "alice" / name).write_bytes(b"second " + files[name])
    alice.ok("sync", "drafting", str(tmp_path / "alice"))
    bob.ok("sync", "drafting", str(tmp_path / "bob"))
    assert (tmp_path / "bob" / "notes/000.txt").read_bytes() == b"second " + files["notes/000.txt"]
    assert all(r["action"] == "in-step" for r in bob.json("sync", "drafting", str(tmp_path / "bob")))
    # A folder get fetches its small files the same way.
    reads_seen["batch"].clear()
    reads_seen["single"].clear()
    bob.ok("get", "drafting", "notes/", "-o", str(tmp_path / "got"))
    assert _here(tmp_path / "got") == {n: d for n, d in _here(tmp_path / "bob").items() if n.startswith("notes/")}
    assert sum(reads_seen["batch"]) == SMALL_FILES and len(reads_seen["batch"]) <= SMALL_FILES // 4, reads_seen
    assert reads_seen["single"] == []


def _lying(monkeypatch: pytest.MonkeyPatch, lie: Callable[[list[bytes | None]], list[bytes | None]]) -> None:
    """The server's batch reads return what ``lie`` makes of the stored bodies (the first batch of several)."""
    read_many = FileBlobs.read_many

    def lying(self: FileBlobs, names: Sequence[str]) -> list[bytes | None]:
        got = read_many(self, names)
        return lie(got) if len(got) > 1 else got

    monkeypatch.setattr(FileBlobs, "read_many", lying)


LIES: dict[str, Callable[[list[bytes | None]], list[bytes | None]]] = {
    "flip": lambda b: [flip_middle(b[0] or b""), *b[1:]],  # one body altered
    "swap": lambda b: [b[1], b[0], *b[2:]],  # two bodies exchanged
    "cut": lambda b: [(b[0] or b"")[:-1], *b[1:]],  # one body a byte short (its length, not its signed one)
    "grow": lambda b: [(b[0] or b"") + b"\0", *b[1:]],
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_server_that_lies_in_a_batch_is_caught(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 lie: str) -> None:
    """A body altered, exchanged with another, or of another length than signed: each item is verified alone,
    the pass stops as a detected server lie (exit 3), nothing is left under a real name that is not exactly the
    team's file (no temporary either), and the next pass with an honest server finishes the tree."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    files = _tree(tmp_path / "alice")
    alice.ok("sync", "drafting", str(tmp_path / "alice"))
    _lying(monkeypatch, LIES[lie])
    down = tmp_path / "bob"
    r = bob.run("sync", "drafting", str(down))
    assert r.code == 3, (r.code, r.err, r.out)
    here = _here(down)
    assert len(here) < len(files)
    assert all(files[name] == data for name, data in here.items()), "an unverified body under a real name"
    monkeypatch.undo()
    bob.ok("sync", "drafting", str(down))
    assert _here(down) == files


def test_a_pass_killed_while_a_batch_is_out_is_finished_by_the_next(org: Org, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The server holds the second batch download it reads; the client is killed (-9) meanwhile, with the first
    batch's files being written. The next pass: no partial file, every file whole, no second version."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    files = _tree(tmp_path / "alice", small=300)
    alice.ok("sync", "drafting", str(tmp_path / "alice"))
    reached, release = threading.Event(), threading.Event()
    read_many, calls = FileBlobs.read_many, []

    def held(self: FileBlobs, names: Sequence[str]) -> list[bytes | None]:
        calls.append(len(names))
        if len(calls) == 2:
            reached.set()
            release.wait(60)
        return read_many(self, names)

    monkeypatch.setattr(FileBlobs, "read_many", held)
    down = tmp_path / "bob"
    p = subprocess.Popen([MVAULT, "sync", "drafting", str(down)], env=bob.env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        assert reached.wait(120), "the client never sent a second batch download"
        threading.Event().wait(0.3)  # the first batch's files are being verified and written
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        release.set()
    monkeypatch.undo()
    assert len(_here(down)) < len(files)  # killed mid-way
    assert all(files[n] == d for n, d in _here(down).items() if not n.split("/")[-1].startswith("."))
    bob.ok("sync", "drafting", str(down))
    assert _here(down) == files  # no partial file left, every file whole
    assert {d["version"] for d in alice.json("ls", "drafting")} == {1}
    assert all(r["action"] == "in-step" for r in bob.json("sync", "drafting", str(down)))
