"""A document a device saw deleted, served live again after a restore (the deletion lost with the backup, or
dropped by a seized server: the device cannot tell), against the real server and CLI. The Security Team's
acceptance does not name it (the signer cannot read the team's documents), so the device that pinned the deletion
follows the acceptance but keeps the document deleted: reading it stops (exit 3, nothing written) until the
member runs `mvault republish TEAM`, which signs the deletion again.

A device that only listed the document never pinned the deletion: tests/test_review7_exploits.py (xfail).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Org, security_team
from tests.helpers.members import unlock_here
from tests.helpers.restored import Servers, pins_of, restore_dropping_a_deletion


def test_a_deletion_the_acceptance_does_not_name_is_kept_then_signed_again(org: Org, make_member: Any,
                                                                          tmp_path: Path, servers: Servers) -> None:
    alice, bob = org.alice, org.bob
    carol = security_team(org, make_member)
    unlock_here(alice, bob, carol)  # their commands skip Argon2id (the unlock itself: tests/test_auth.py)
    restore_dropping_a_deletion(org, carol, servers, tmp_path, alice)  # alice's device pinned the deletion
    r = alice.ok("whoami")  # follows the acceptance, keeping names.md deleted
    assert "carol (Security Team) accepted" in r.err and "keeps them deleted" in r.err, r.err
    held = [k for k, pin in pins_of(alice).docs.items() if pin[0] == 2]
    assert len(held) == 1 and pins_of(alice).docs[held[0]][2] == "deleted"
    got = tmp_path / "again.md"
    r = alice.fails("get", "drafting", "names.md", "-o", str(got))
    assert r.code == 3 and not got.exists(), r.err
    assert "saw deleted are served again" in r.err and "mvault republish" in r.err, r.err

    rows = alice.json("republish", "drafting")
    [row] = [r for r in rows if r["name"] == "names.md"]
    assert (row["result"], row["version"]) == ("deleted again", 2), rows
    r = bob.run("get", "drafting", "names.md", "-o", str(got))
    assert r.code != 0 and not got.exists(), r.out
    assert "names.md" not in alice.ok("ls", "drafting").out
