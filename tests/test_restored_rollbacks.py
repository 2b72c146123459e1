"""A server that serves chains or documents older than a device saw while its audit log is not behind (a backup
taken during a command, or a server that drops links and versions but keeps the log), against the real server and
CLI: the device stops explaining what may have happened, as when the log went back (tests/test_restored.py);
`mvault restored status` shows it; the Security Team's acceptance covers it and devices follow it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Member, Org, security_team
from tests.helpers.restored import Servers, pins_of
from tests.helpers.tampering import team_id


def explained(m: Member, *args: str) -> str:
    """``m`` runs a command: exit 3, a stop that says what may have happened and what to do, pins untouched."""
    before = pins_of(m)
    r = m.fails(*args)
    assert r.code == 3, r.err
    for words in ("restored from an older backup", "a server that rolls you back", "changed nothing",
                  "mvault restored status", "mvault restored accept", "serves chains or documents older"):
        assert words in r.err, r.err
    after = pins_of(m)
    assert (after.chains, after.docs, after.keys, after.verified, after.log) == (
        before.chains, before.docs, before.keys, before.verified, before.log), "a stopped device changed its pins"
    return r.err


def drop_last_link(servers: Servers, chain: str) -> None:
    [(top,)] = servers.live.db().execute("SELECT MAX(seq) FROM links WHERE chain=?", (chain,)).fetchall()
    servers.tamper(("DELETE FROM links WHERE chain=? AND seq=?", (chain, top)))


def test_a_chain_behind_under_an_intact_log_is_explained_shown_accepted_and_followed(
        org: Org, make_member: Any, servers: Servers) -> None:
    alice, bob = org.alice, org.bob
    carol = security_team(org, make_member)
    alice.ok("team", "add", "drafting", "carol", "--role", "reader")
    drafting = team_id(alice, "drafting")
    for m in (alice, bob, carol):
        m.ok("ls", "drafting")
    pinned = pins_of(bob)
    drop_last_link(servers, drafting)  # the log keeps every event: only the chain went back

    err = explained(bob, "ls", "drafting")
    assert "team drafting 2 of 3 links" in err and "the server shows none" in err, err
    status = bob.json("restored", "status")
    assert status["state"] == "behind" and status["acceptance"] is None, status
    assert status["chains"] == {drafting: {"served": 2, "pinned": 3}}, status
    assert status["log"]["served"] >= status["log"]["pinned"], status

    r = carol.ok("restored", "accept", "--yes", "--json")
    assert r.json()["accepted"]["lost"]["chains"] == {drafting: {"served": 2, "pinned": 3}}
    status = bob.json("restored", "status")
    assert status["acceptance"]["valid"] is True, status

    r = bob.ok("ls", "drafting")  # follows it, and the command goes on
    assert "carol (Security Team) accepted its state" in r.err, r.err
    after = pins_of(bob)
    assert after.chains[drafting][0] == 2 and after.verified == pinned.verified and after.keys == pinned.keys
    r = bob.ok("ls", "drafting")
    assert "accepted its state" not in r.err, r.err
    assert bob.json("restored", "status")["state"] == "in step"


def test_a_document_behind_under_an_intact_log_is_explained_and_shown(
        org: Org, make_member: Any, tmp_path: Path, servers: Servers) -> None:
    alice = org.alice
    carol = security_team(org, make_member)
    plan = tmp_path / "plan.md"
    plan.write_text("first")
    alice.ok("put", "drafting", str(plan))
    plan.write_text("second")
    alice.ok("put", "drafting", str(plan))  # alice's device pins version 2
    carol.ok("whoami")
    servers.tamper(("DELETE FROM versions WHERE seq=2", ()))

    err = explained(alice, "get", "drafting", "plan.md", "-o", str(tmp_path / "got.md"))
    assert "documents behind your pins: 1" in err, err
    assert not (tmp_path / "got.md").exists()
    status = alice.json("restored", "status")
    assert status["state"] == "behind" and [(v["served"], v["pinned"]) for v in status["docs"].values()] == [(1, 2)]
