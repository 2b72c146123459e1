"""Owed audit events survive a kill -9 (issue 17): the real ``mvault-server run`` on a small tmpfs stores a document
version, then the disk fills before its audit event (``tests/helpers/disk_filler``): the client gets 507 and the
event is owed. The server is killed with SIGKILL while the disk is still full; space is freed; at the next start
the owed event is appended before anything else. Before: owed events lived in memory only and the kill lost the
version's event for good (the version in the store, no trace of it in the log).

Also the reserved file itself (``server/store/owed.py``): a save torn by a crash leaves the state before, and an
owed state too large for the reserve is refused (kept in memory only by the caller).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from server.store.owed import NAME, SLOT, OwedJournal, owed_in
from tests.helpers.killable_server import ServerProcess
from tests.helpers.tmpfs import tmpfs

TMPFS = 32 * 1024 * 1024
HELPERS = Path(__file__).parent / "helpers"


def _rows(data: Path, db: str, table: str) -> int:
    con = sqlite3.connect(f"file:{data / db}?mode=ro", uri=True)
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def _log_size(data: Path) -> int:
    return _rows(data, "audit.db", "events")


def test_owed_events_survive_a_kill_9(tmp_path: Path, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with tmpfs(tmp_path / "server-data", TMPFS) as data:
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HELPERS / "disk_filler"), str(HELPERS.parents[1])]))
        monkeypatch.setenv("FILL_DISK_AFTER", "add_version")
        server = ServerProcess(data).start()
        monkeypatch.delenv("FILL_DISK_AFTER")  # the restarted server fills nothing
        try:
            alice = make_member("alice")
            assert server.invite is not None
            alice.ok("join", server.invite, "--name", "alice")
            alice.ok("team", "create", "drafting", "--kind", "program")
            note = tmp_path / "plan.txt"
            note.write_text("the plan\n")
            r = alice.run("put", "drafting", str(note))
            assert r.code == 1 and "no space left" in r.err, (r.code, r.err)
            assert _rows(data, "vault.db", "versions") == 1  # stored, its event owed
            events = _log_size(data)  # the put's login, not its version
            server.kill()  # kill -9 with the disk still full
            (data / "filler").unlink()
            server.start()
            assert _log_size(data) == events + 1  # appended at the start, before any request
            assert owed_in(data) == ([], [])  # read without taking the running server's journal
            assert [row["name"] for row in alice.json("ls", "drafting")] == ["plan.txt"]
            verified = alice.json("audit", "verify")
            assert verified["ok"] and verified["problems"] == [], verified
        finally:
            server.kill()


def test_a_torn_save_leaves_the_state_before(tmp_path: Path) -> None:
    journal, events, links = OwedJournal.open(tmp_path)
    assert (events, links, (tmp_path / NAME).stat().st_size) == ([], [], 2 * SLOT)  # reserved up front
    first = [(b"sealed event one", 20000)]
    assert journal.save(first, [b"\x01" * 32])
    assert journal.save([*first, (b"sealed event two", 20001)], [])
    with (tmp_path / NAME).open("r+b") as f:  # the second save, torn: its slot's bytes half written
        f.seek(journal.slot * SLOT + 60)
        f.write(b"\xff" * 8)
    assert owed_in(tmp_path) == (first, [b"\x01" * 32])
    assert not journal.save([(b"x" * SLOT, 1)], [])  # beyond the reserve: not saved
    journal.close()
    again, events, links = OwedJournal.open(tmp_path)
    assert (again.path, events, links) == (tmp_path / NAME, first, [b"\x01" * 32])  # free again: taken at once
    again.close()


def test_one_journal_per_process_and_a_stopped_ones_adopted(tmp_path: Path) -> None:
    """Two processes (here two opens: ``flock`` locks of two open files conflict as two processes' do) each write
    their own journal; once both stopped, the next one takes the first and adopts the other's owed events."""
    one, nothing, _ = OwedJournal.open(tmp_path)
    two, _, _ = OwedJournal.open(tmp_path)
    assert (one.path.name, two.path.name, nothing) == (NAME, ".owed-audit.1.bin", [])
    assert one.save([(b"one's event", 20001)], [b"\x01" * 32])
    assert two.save([(b"two's event", 20000)], [b"\x02" * 32])
    assert owed_in(tmp_path) == ([(b"one's event", 20001), (b"two's event", 20000)], [b"\x01" * 32, b"\x02" * 32])
    one.close()
    two.close()
    three, events, links = OwedJournal.open(tmp_path)
    try:
        assert three.path.name == NAME
        assert (events, links) == ([(b"two's event", 20000), (b"one's event", 20001)], [b"\x01" * 32, b"\x02" * 32])
        assert owed_in(tmp_path) == (events, links)  # all in the adopting process's journal; the other's cleared
        assert three.save([], [])  # settled
        assert owed_in(tmp_path) == ([], [])
        four, events, _ = OwedJournal.open(tmp_path)  # while three lives: the free second journal, nothing owed
        assert (four.path.name, events) == (".owed-audit.1.bin", [])
        four.close()
    finally:
        three.close()
