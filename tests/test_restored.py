"""A server restored from an older backup (docs/restore.md), with the real server and the real CLI: every
device that saw newer state stops with what it sees and changes nothing (exit 3) until a member of the
Security Team signs an acceptance (``mvault restored accept``); then each device follows it, lowering only
the pins that went back (its safety-number verifications kept), and ``mvault republish`` puts back the
documents it holds newer local copies of. A replay of that acceptance after a second rollback is refused.

The forged acceptances a malicious server could serve are in tests/test_restored_attacks.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Member, Org, security_team
from tests.helpers.members import unlock_here
from tests.helpers.restored import Servers, pins_file, pins_of


def stopped(m: Member, *args: str) -> str:
    """``m`` runs a command against the restored server: exit 3, one line that explains, pins untouched."""
    before = pins_file(m)
    r = m.fails(*args)
    assert r.code == 3, r.err
    assert "restored from an older backup" in r.err and "mvault restored status" in r.err, r.err
    assert "mvault restored accept" in r.err and "changed nothing" in r.err, r.err
    assert pins_file(m) == before, "a device that stopped changed its pins"
    return r.err


def by_name(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [row] = [r for r in rows if r["name"] == name]
    return row


def test_a_restore_is_explained_then_accepted_followed_and_republished(org: Org, make_member: Any, tmp_path: Path,
                                                                        servers: Servers) -> None:
    alice, bob = org.alice, org.bob
    carol = security_team(org, make_member)
    unlock_here(alice, bob, carol)  # their ~30 commands skip Argon2id (the unlock itself: tests/test_auth.py)
    bob.ok("verify", "alice", "--confirm")
    plan = tmp_path / "plan.md"
    plan.write_text("plan, first draft")
    alice.ok("put", "drafting", str(plan))
    for m in (alice, bob, carol):
        m.ok("whoami")
    backup = servers.backup("backup-1")

    # What the backup lacks: a newer version of the plan, bob's notes, a team link.
    plan.write_text("plan, second draft: only alice's disk and the lost server have it")
    alice.ok("put", "drafting", str(plan))
    notes = tmp_path / "notes.md"
    notes.write_text("bob's notes")
    bob.ok("put", "drafting", str(notes))
    alice.ok("team", "add", "drafting", "carol", "--role", "reader")
    for m in (alice, bob):
        m.ok("ls", "drafting")
    carol.ok("whoami")
    bob_before = pins_of(bob)
    assert bob_before.verified, "bob verified alice in person"

    servers.restore(backup, "restored-1")
    err = stopped(bob, "ls", "drafting")
    assert "the server shows none" in err and "documents behind your pins: 1" in err, err
    assert "team drafting" in err, err  # the chain that went back, by name
    stopped(alice, "whoami")

    status = bob.json("restored", "status")
    assert status["state"] == "behind" and status["acceptance"] is None and status["restored"] == []
    assert status["log"]["served"] < status["log"]["pinned"]
    assert [(v["served"], v["pinned"]) for v in status["docs"].values()] == [(0, 1)]  # bob's notes
    assert pins_of(bob).docs == bob_before.docs  # status changed nothing

    # Only the Security Team may sign an acceptance: the server refuses bob's.
    bob.fails("restored", "accept", "--yes", contains="may not accept a server restored")
    stopped(bob, "whoami")
    r = carol.ok("restored", "accept", "--yes", "--json")
    assert r.json()["accepted"]["size"] > 0

    # Everyone follows it: warned, pins lowered to what the server has, verifications kept.
    r = bob.ok("ls", "drafting")
    assert "the server was restored from an older backup; carol (Security Team) accepted" in r.err, r.err
    after = pins_of(bob)
    assert after.verified == bob_before.verified and after.keys == bob_before.keys
    assert after.docs == {} and len(bob_before.docs) == 1
    bob.ok("ls", "drafting")  # in step from now on, no new warning
    status = bob.json("restored", "status")
    assert status["state"] == "in step" and [r["name"] for r in status["restored"]] == ["carol"]
    assert status["restored"][0]["docs"] == 1

    # Republish: alice's second draft and bob's notes come back from their local copies.
    rows = alice.json("republish", "drafting")
    row = by_name(rows, "plan.md")
    assert (row["result"], row["version"], row["served"], row["pinned"]) == ("republished", 2, 1, 2), rows
    rows = bob.json("republish", "drafting")
    assert by_name(rows, "notes.md")["result"] == "republished", rows
    assert not [r for r in rows if r["name"] == "plan.md"], rows  # bob never saw the second draft
    chain = [r for r in rows if r["kind"] == "chain"]
    assert chain and chain[0]["result"] == "lost", rows
    out = tmp_path / "got.md"
    bob.ok("get", "drafting", "plan.md", "-o", str(out))
    assert out.read_text() == plan.read_text()

    # A second rollback to a state that holds the acceptance: replaying it is refused.
    second = servers.backup("backup-2")
    bob.ok("put", "drafting", str(notes), "--force-new-version")
    servers.restore(second, "restored-2")
    err = stopped(bob, "whoami")
    assert "no newer than an acceptance this device followed before" in err, err
