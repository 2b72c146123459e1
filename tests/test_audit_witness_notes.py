"""Checkpoints any witness can check: the audit log's checkpoints as C2SP tlog-checkpoint notes, cosigned by a
witness outside the organization (``tests/helpers/c2sp_witness.py``, written from the C2SP texts alone), kept
by the server only when the key is one the security protocols list, and counted by rule ``log-integrity``.
The server is the attacker: a witness note it alters is caught by every client that reads it.
"""

from __future__ import annotations

import base64
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member, Org, ServerThread, security_team
from tests.helpers.c2sp_witness import OutsideWitness, Refused
from tests.helpers.http import Http, login_as, refused
from tests.helpers.witnessed_org import cosigned_note, list_witnesses, new_witness, second_ncc


def _rule(m: Member, rule: str) -> dict[str, Any]:
    r = m.run("audit", "report", "--json")
    assert r.out, r.err
    return next(x for x in r.json()["rules"] if x["rule"] == rule)


def _witness_rows(server: ServerThread) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(server.data_dir / "audit.db")
    try:
        return con.execute("SELECT size, name, key_id, sig, time FROM witness_cosigs").fetchall()
    finally:
        con.close()


def test_outside_witness_cosigns_and_log_integrity_counts_it(org: Org, make_member: Any, tmp_path: Path) -> None:
    carol = security_team(org, make_member)
    dana = second_ncc(org.alice, make_member)
    shown = carol.json("audit", "note")
    lines = shown["note"].split("\n")
    # origin, size, base64 root, the blank line, the log's signature line (em dash, space, key name, base64)
    assert lines[0].startswith("mvault.invalid/audit/") and lines[1].isdigit() and lines[3] == ""
    assert lines[4].startswith("\u2014 " + lines[0] + " ") and lines[5:] == [""]
    assert len(base64.b64decode(lines[4].split(" ")[2])) == 4 + 64
    witness = new_witness(carol)
    now = int(org.server.clock())
    note = cosigned_note(carol, witness, now, tmp_path)
    # Not listed yet: the server keeps nothing, and the rule still sees no witness.
    carol.fails("audit", "witness-cosign", str(note), contains="no cosignature by a witness key")
    assert _witness_rows(org.server) == []
    assert "never" in _rule(carol, "log-integrity")["findings"][0]["message"]
    list_witnesses(org.alice, dana, tmp_path, witness.vkey)
    size = carol.json("audit", "witness-cosign", str(note))["cosigned"]
    assert [r[:2] for r in _witness_rows(org.server)] == [(size, witness.name)]
    verified = carol.json("audit", "verify")
    assert verified["ok"] and verified["last_outside_witness"] == now and verified["last_witness"] is None
    assert _rule(carol, "log-integrity")["status"] == "ok"
    # A day later the cosignature is too old: violated again until a witness cosigns anew.
    org.server.advance(25 * 3600)
    carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(25 * 3600)
    assert "ago" in _rule(carol, "log-integrity")["findings"][0]["message"]


def test_the_witness_refuses_a_note_the_log_did_not_sign(org: Org, make_member: Any,
                                                                           tmp_path: Path) -> None:
    carol = security_team(org, make_member)
    witness = new_witness(carol)
    note = carol.json("audit", "note")["note"]
    witness.cosign(note, int(org.server.clock()))
    lines = note.split("\n")
    forked = "\n".join([lines[0], lines[1], base64.b64encode(bytes(32)).decode(), *lines[3:]])
    with pytest.raises(Refused, match="signature does not verify"):
        witness.cosign(forked, int(org.server.clock()))


@pytest.fixture
def carol_device(org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Member, str, Any]:
    carol = security_team(org, make_member)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    home = Home(carol.home)
    return carol, home.config().member_id, home.unlock().device


async def test_server_refuses_bad_witness_cosignatures(org: Org, make_member: Any, carol_device: Any,
                                                       tmp_path: Path) -> None:
    carol, carol_id, device = carol_device
    dana = second_ncc(org.alice, make_member)
    witness, stranger = new_witness(carol), new_witness(carol)
    list_witnesses(org.alice, dana, tmp_path, witness.vkey)
    now = int(org.server.clock())
    good = cosigned_note(carol, witness, now, tmp_path).read_text()
    text, _, line = good.rpartition("\u2014 ")
    blob = bytearray(base64.b64decode(line.split(" ")[1]))
    blob[-1] ^= 1
    altered = text + f"\u2014 {witness.name} {base64.b64encode(bytes(blob)).decode()}\n"
    # the listed key, dating its cosignature a day ahead
    future = OutsideWitness(witness.name, carol.json("audit", "note")["log_key"], seed=witness.seed)
    early = future.cosign(carol.json("audit", "note")["note"], now + 86400)
    unlisted = stranger.cosign(carol.json("audit", "note")["note"], now)
    lines = good.split("\n")
    other_tree = "\n".join([lines[0], str(int(lines[1]) + 1000), *lines[2:]])
    async with Http(org.server) as h:
        token = await login_as(h, carol_id, device)
        for what, body, status, says in [
            ("altered signature", altered, 400, "does not verify"),
            ("dated a day ahead", early, 400, "outside the checkpoint's lifetime"),
            ("unlisted witness", unlisted, 400, "no cosignature by a witness key"),
            ("not a note", "hello\n", 400, ""),
            ("a tree the server never signed", other_tree, 404, "never issued"),
        ]:
            await refused(h, "POST", "/api/v1/audit/witness", status, contains=says, what=what, token=token,
                          js={"note": body})
        assert _witness_rows(org.server) == []
    org.bob.fails("audit", "witness-cosign", str(tmp_path / "cosigned.note"), contains="security")
    assert _witness_rows(org.server) == []


def test_client_catches_a_server_that_alters_a_witness_cosignature(org: Org, make_member: Any,
                                                                     tmp_path: Path) -> None:
    carol = security_team(org, make_member)
    dana = second_ncc(org.alice, make_member)
    witness = new_witness(carol)
    list_witnesses(org.alice, dana, tmp_path, witness.vkey)
    then = int(org.server.clock())
    carol.ok("audit", "witness-cosign", str(cosigned_note(carol, witness, then, tmp_path)))
    assert carol.json("audit", "verify")["last_outside_witness"] == then
    con = sqlite3.connect(org.server.data_dir / "audit.db", isolation_level=None)
    try:
        # The server makes the cosignature look fresher: a later timestamp (still within the clock allowance),
        # the same signature.
        (sig,) = con.execute("SELECT sig FROM witness_cosigs").fetchone()
        con.execute("UPDATE witness_cosigs SET sig=?", (struct.pack(">Q", then + 300) + sig[8:],))
    finally:
        con.close()
    fresh = org.server.restart()  # the server serves what its database now holds
    try:
        carol.fails("audit", "verify", contains="outside witness")
    finally:
        fresh.stop()
