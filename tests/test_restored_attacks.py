"""What a malicious (or seized) server can do with restore acceptances (docs/restore.md), against the real
server and CLI: it stores acceptances without judging them (planted on its loop, as a server that lies
would), and every device judges each one itself before following it:

* one signed by a member who is not on the Security Team: refused, the device stays stopped (exit 3);
* one naming a checkpoint of another log (the one before the restore) than the server serves: refused;
* withheld (the server shows none): the device stays stopped and says so (tests/test_restored.py);
* a valid one whose "lost" list claims more went back than did: followed, but the pins go down only to what
  the server serves, never to what the list says.

Replaying an acceptance after a second rollback is in tests/test_restored.py.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from security.restore import Lost, acceptance_statement, sign_acceptance
from tests.conftest import Member, Org, ServerThread, security_team
from tests.helpers.restored import Servers, pins_file, pins_of, unlocked
from tests.helpers.tampering import team_id


def plant(servers: Servers, signer: Member, lost: Lost, checkpoint: tuple[bytes, bytes] | None = None) -> None:
    """An acceptance of the live server's state (or naming ``checkpoint``) signed by ``signer``'s device."""
    raw_cp, cp_sig, log_key, org_seq, org_head, org_id = servers.state()
    if checkpoint is not None:
        raw_cp, cp_sig = checkpoint
    home, secrets = unlocked(signer)
    cfg = home.config()
    t = int(servers.live.clock())
    raw = acceptance_statement(org_id, raw_cp, cp_sig, log_key, org_seq, org_head, t, cfg.member_id,
                               secrets.device.device_id, lost, heads=servers.heads())
    servers.plant_acceptance(raw, sign_acceptance(secrets.device, raw), 0, t)


def refused(m: Member, reason: str) -> None:
    before = pins_file(m)
    r = m.fails("whoami")
    assert r.code == 3 and "the acceptance the server shows is refused" in r.err and reason in r.err, r.err
    assert pins_file(m) == before


def newest_checkpoint(data_dir: Path) -> tuple[bytes, bytes]:
    db = sqlite3.connect(data_dir / "audit.db")
    try:
        raw, sig = db.execute("SELECT raw, sig FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return bytes(raw), bytes(sig)
    finally:
        db.close()


def test_forged_and_foreign_acceptances_are_refused_and_a_lost_list_lowers_nothing(
        org: Org, make_member: Any, tmp_path: Path, servers: Servers) -> None:
    alice, bob = org.alice, org.bob
    carol = security_team(org, make_member)
    plan = tmp_path / "plan.md"
    plan.write_text("first")
    bob.ok("put", "drafting", str(plan))
    bob.ok("whoami")
    backup = servers.backup("backup")
    plan.write_text("second")
    bob.ok("put", "drafting", str(plan))
    alice.ok("team", "add", "drafting", "carol", "--role", "reader")
    bob.ok("ls", "drafting")
    before_restore = servers.live.data_dir
    servers.restore(backup, "restored")
    lost_cp = newest_checkpoint(before_restore)  # the lost server's newest checkpoint: another log

    plant(servers, bob, Lost())
    refused(bob, "its signer was not entitled")
    plant(servers, carol, Lost(), checkpoint=lost_cp)
    refused(bob, "the server's log does not")
    status = bob.json("restored", "status")
    assert status["acceptance"]["valid"] is False and status["acceptance"]["name"] == "carol"

    # A valid acceptance that claims every chain and document went back to nothing.
    pinned = pins_of(bob)
    [(doc_key, doc)] = status["docs"].items()
    assert (doc["served"], doc["pinned"]) == (1, 2)
    assert [(v["served"], v["pinned"]) for v in status["chains"].values()] == [(2, 3)]  # drafting: carol's add
    plant(servers, carol, Lost((1, 10**6), {c: (0, 10**6) for c in pinned.chains}, {doc_key: (0, 2)}))
    r = bob.ok("whoami")
    assert "carol (Security Team) accepted" in r.err, r.err
    after = pins_of(bob)
    assert after.docs[doc_key][0] == 1  # lowered to the version the server has, not dropped
    for chain, pin in pinned.chains.items():
        behind = status["chains"].get(chain)
        assert after.chains[chain][0] == (pin[0] if behind is None else behind["served"]), chain
    assert after.keys == pinned.keys and after.verified == pinned.verified
    bob.ok("ls", "drafting")


def fork_link(servers: Servers, state: Path, home: Path, member: Member, chain: str, *args: str) -> None:
    """Have ``member``'s device, from a copy of its home (``home``) in step with the backup ``state``, sign a
    link on a separate copy of that state (a fork the seized server keeps), then put that link in place of the
    live server's link at the same position of ``chain``: another history of the same length."""
    live = servers.live
    live.stop()
    side = ServerThread(shutil.copytree(state, servers.root / "fork"), live.port, **live.config)
    side.offset = live.offset
    side.start()
    try:
        Member(home, member.name, member.passphrase_file).ok(*args)
    finally:
        side.stop()
    db = side.db()
    try:
        row = db.execute("SELECT * FROM links WHERE chain=? ORDER BY seq DESC LIMIT 1", (chain,)).fetchone()
    finally:
        db.close()
    servers.live = servers._track(live.restart())
    servers.tamper(("DELETE FROM links WHERE chain=? AND seq=?", (chain, row[1])),
                   ("INSERT INTO links VALUES (?, ?, ?, ?, ?)", tuple(row)))


def test_an_acceptance_is_not_followed_to_another_history_of_the_same_length(
        org: Org, make_member: Any, tmp_path: Path, servers: Servers) -> None:
    alice, bob = org.alice, org.bob
    carol = security_team(org, make_member)
    drafting = team_id(alice, "drafting")
    for m in (alice, bob, carol):
        m.ok("whoami")
    before = servers.backup("before")
    alice_then = Path(shutil.copytree(alice.home, tmp_path / "alice-then"))  # alice's device as it was then
    alice.ok("team", "add", "drafting", "carol", "--role", "reader")
    for m in (alice, bob, carol):
        m.ok("ls", "drafting")
    accepted = servers.backup("accepted")
    alice.ok("team", "role", "drafting", "carol", "writer")
    for m in (alice, bob, carol):
        m.ok("ls", "drafting")
    servers.restore(accepted, "restored")
    r = carol.ok("restored", "accept", "--yes", "--json")
    length = r.json()["accepted"]["lost"]["chains"][drafting]["served"]

    # The seized server swaps the accepted link for one alice signed on a fork (carol a writer there).
    fork_link(servers, before, alice_then, alice, drafting, "team", "add", "drafting", "carol", "--role", "writer")
    pinned = pins_of(bob)
    r = bob.run("whoami")
    assert r.code == 3, f"bob followed the acceptance to another history of drafting: {r.err.strip()[:300]}"
    assert "does not hold the head the Security Team accepted" in r.err and f"(link {length})" in r.err, r.err
    assert pins_of(bob).chains == pinned.chains
