"""``mvault-server check`` on threads and witness cosignatures (issue 17): stored as the real server and CLI made
them, then altered in a stopped copy of the data directory as a seizure or a bad disk would. Without any team
key the check finds a message whose bytes changed, a row that lies about its message, a message dropped from the
middle of a sender's sequence, a thread record changed, a cosignature that does not verify and one attributed to
a member who is not on the Security Team; each is one problem and exit 1."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member, ServerThread
from tests.helpers.backup_world import World, build_world, restored, server_cli
from tests.helpers.members import unlock_here


def _witnessed(server: ServerThread, alice: Member, passphrase: Path) -> None:
    """bob posts three messages in thread t (alice one more); carol, on the Security Team, cosigns the log."""
    root = passphrase.parent
    bob, carol = Member(root / "home-bob", "bob", passphrase), Member(root / "home-carol", "carol", passphrase)
    bob.ok("join", alice.json("invite")["invite"], "--name", "bob")
    unlock_here(bob)  # his posts skip Argon2id (alice's agent: build_world)
    alice.ok("team", "add", "drafting", "bob", "--role", "writer")
    for text in ("one", "two", "three"):
        bob.ok("thread", "post", "drafting", "t", text)
    alice.ok("thread", "post", "drafting", "t", "four")
    carol.ok("join", alice.json("invite")["invite"], "--name", "carol")
    unlock_here(carol)
    alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
    alice.ok("team", "create", "sec", "--kind", "security")
    alice.ok("team", "add", "sec", "carol", "--role", "admin")
    alice.ok("leave", "sec")
    carol.ok("whoami")  # rotates sec and publishes the audit key
    w = carol.json("audit", "witness")
    assert w["cosigned"] == w["size"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("check-threads"), _witnessed)
    w.server.stop()
    yield w


@pytest.fixture
def data(world: World, tmp_path: Path) -> Path:
    return restored(world.archive, tmp_path / "data")


def _check(data: Path) -> tuple[int, list[dict[str, str]], dict[str, Any]]:
    p = server_cli("check", "--data", str(data), "--json")
    assert "Traceback" not in p.stderr
    report = json.loads(p.stdout)
    return p.returncode, report["problems"], report["summary"]


def _db(data: Path, name: str = "vault.db") -> sqlite3.Connection:
    return sqlite3.connect(data / name, isolation_level=None)


def _bobs(db: sqlite3.Connection) -> list[tuple[int, int, bytes]]:
    """bob's messages (pos, seq, record): the device with three messages."""
    (device,) = db.execute("SELECT device FROM messages GROUP BY device HAVING COUNT(*) = 3").fetchone()
    return [(int(p), int(s), bytes(r)) for p, s, r in
            db.execute("SELECT pos, seq, record FROM messages WHERE device=? ORDER BY pos", (device,))]


def _flipped(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:]


def test_a_whole_deployment_with_threads_and_cosignatures_checks_clean(data: Path) -> None:
    code, problems, summary = _check(data)
    assert (code, problems) == (0, [])
    assert summary["messages"] == 5 and summary["cosignatures"] == 1
    p = server_cli("check", "--data", str(data))
    assert "5 messages" in p.stdout and "1 cosignatures" in p.stdout


def test_a_tampered_message(data: Path) -> None:
    db = _db(data)
    (pos, _, raw), _, _ = _bobs(db)
    db.execute("UPDATE messages SET record=? WHERE pos=?", (_flipped(raw, 30), pos))  # in its ciphertext
    db.close()
    code, problems, _ = _check(data)
    assert code == 1 and {p["kind"] for p in problems} == {"message"} and problems[0]["path"].endswith(f"message {pos}")
    assert "signature does not verify" in problems[0]["detail"] and "not its signed header's" in problems[0]["detail"]
    # Its id changed with its bytes: bob's next message no longer follows it.
    assert [p["detail"] for p in problems[1:]] == ["it does not follow its sender's message 1 (seq 2, or prev)"]


def test_a_row_that_lies_about_its_message_and_a_dropped_one(data: Path) -> None:
    db = _db(data)
    first, second, third = _bobs(db)
    db.execute("UPDATE messages SET seq=? WHERE pos=?", (7, first[0]))
    db.close()
    code, problems, _ = _check(data)
    assert code == 1 and [p["kind"] for p in problems] == ["message"] and "signed header" in problems[0]["detail"]
    db = _db(data)
    db.execute("UPDATE messages SET seq=? WHERE pos=?", (first[1], first[0]))
    db.execute("DELETE FROM messages WHERE pos=?", (second[0],))  # the middle of bob's sequence
    db.close()
    code, problems, _ = _check(data)
    assert code == 1 and [p["kind"] for p in problems] == ["message"]
    assert problems[0]["path"].endswith(f"message {third[0]}") and "does not follow" in problems[0]["detail"]


def test_a_dropped_last_message_and_a_tampered_thread_record(data: Path) -> None:
    db = _db(data)
    *_, last = _bobs(db)
    db.execute("DELETE FROM messages WHERE pos=?", (last[0],))  # what bob's next post must chain to is gone
    db.close()
    code, problems, _ = _check(data)
    assert code == 1 and [p["kind"] for p in problems] == ["message"] and "last stored is 2" in problems[0]["detail"]
    db = _db(data)
    (raw,) = db.execute("SELECT record FROM threads").fetchone()
    db.execute("UPDATE threads SET record=?", (_flipped(bytes(raw), len(raw) - 10),))  # in its signature
    db.close()
    code, problems, _ = _check(data)
    kinds = sorted({p["kind"] for p in problems})
    assert code == 1 and kinds == ["message", "thread"] and problems[0]["kind"] == "thread"


def test_a_tampered_cosignature_and_a_misattributed_one(data: Path) -> None:
    db = _db(data, "audit.db")
    (size, sig, member) = db.execute("SELECT size, sig, member FROM cosigs").fetchone()
    db.execute("UPDATE cosigs SET sig=?", (_flipped(bytes(sig), 5),))
    db.close()
    code, problems, _ = _check(data)
    assert code == 1 and [p["kind"] for p in problems] == ["cosignature"]
    assert f"checkpoint {size}" in problems[0]["path"] and "not a Security Team member's valid" in problems[0]["detail"]
    db = _db(data, "audit.db")
    db.execute("UPDATE cosigs SET sig=?", (bytes(sig),))
    (alice,) = _db(data).execute("SELECT chain FROM links WHERE kind='member' AND seq=1 AND chain != ? "
                                 "ORDER BY rowid LIMIT 1", (member,)).fetchone()
    db.execute("UPDATE cosigs SET member=?", (alice,))  # the founder, never on the Security Team
    db.close()
    code, problems, _ = _check(data)
    assert code == 1 and [p["kind"] for p in problems] == ["cosignature"]
    db = _db(data, "audit.db")
    db.execute("UPDATE cosigs SET member=?, size=size+1000", (member,))
    db.close()
    code, problems, _ = _check(data)
    assert code == 1 and [p["kind"] for p in problems] == ["cosignature"] and "no checkpoint" in problems[0]["detail"]
