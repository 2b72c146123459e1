"""Issue 18, checkpoints any witness can check, the two halves left: every login checks the newest checkpoint a
listed outside witness cosigned (client/checkpoints.py ``check_outside_witness``), and the witness checks an RFC 9162
consistency proof from the last checkpoint it cosigned before it cosigns a new one (the C2SP tlog-witness
``add-checkpoint`` body, ``mvault audit note --old N``; tests/helpers/c2sp_witness.py). The server is the attacker:
it alters, hides or forks what was witnessed, and shows the witness a forked log."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from security.merkle import MerkleTree, leaf_hash
from server.context import AUDIT
from tests.conftest import Member, Org, ServerThread, security_team
from tests.helpers.c2sp_witness import Conflict, OutsideWitness, Refused, consistent
from tests.helpers.db import audit_db, put_back_stopped, save_stopped
from tests.helpers.witnessed_org import list_witnesses, new_witness, second_ncc


def test_the_witness_consistency_check_agrees_with_the_log_tree() -> None:
    """The witness's RFC 9162 verifier (written from the RFC alone) accepts exactly the log's own proofs."""
    tree = MerkleTree()
    roots = [tree.root()]
    for i in range(40):
        tree.append(leaf_hash(bytes([i])))
        roots.append(tree.root())
    for first in range(1, 40):
        for second in range(first + 1, 41):
            proof = list(tree.consistency_proof(first, second))
            assert consistent(first, second, roots[first], roots[second], proof), (first, second)
            assert not consistent(first, second, roots[first - 1], roots[second], proof)
            assert not consistent(first, second, roots[first], roots[second - 1], proof)
            if proof:
                assert not consistent(first, second, roots[first], roots[second], proof[:-1])


def _request(carol: Member, old: int) -> str:
    body: str = carol.json("audit", "note", "--old", str(old))["note"]
    return body


def _hand_in(carol: Member, witness: OutsideWitness, body: str, now: int, tmp_path: Path) -> int:
    """The witness's answer to ``body`` appended to its note, handed to the server; the size cosigned."""
    note = body.partition("\n\n")[2]
    path = tmp_path / "cosigned.note"
    path.write_text(note + witness.add_checkpoint(body, now))
    return int(carol.json("audit", "witness-cosign", str(path))["cosigned"])


@pytest.fixture
def witnessed(org: Org, make_member: Any, tmp_path: Path) -> tuple[Member, OutsideWitness]:
    carol = security_team(org, make_member)
    witness = new_witness(carol)
    list_witnesses(org.alice, second_ncc(org.alice, make_member), tmp_path, witness.vkey)
    return carol, witness


def test_the_witness_cosigns_only_with_a_proof_from_its_last_size(org: Org, witnessed: Any, tmp_path: Path) -> None:
    carol, witness = witnessed
    now = int(org.server.clock())
    first = _hand_in(carol, witness, _request(carol, 0), now, tmp_path)
    org.alice.ok("ls", "drafting")
    with pytest.raises(Conflict) as conflict:  # the log asks with a stale size: the witness says its own
        witness.add_checkpoint(_request(carol, 0), now)
    assert conflict.value.size == first
    body = _request(carol, first)
    assert body.startswith(f"old {first}\n") and len(body.partition("\n\n")[0].split("\n")) > 1  # proof lines
    second = _hand_in(carol, witness, body, now + 60, tmp_path)
    assert second > first and carol.json("audit", "verify")["last_outside_witness"] == now + 60
    carol.fails("audit", "note", "--old", str(10**9), contains="beyond the newest checkpoint")


def test_a_server_that_shows_the_witness_a_forked_log_is_refused(org: Org, witnessed: Any, tmp_path: Path) -> None:
    """The witness cosigned history A at size n; the server rolls back to before n and grows history B past it,
    and asks the witness to cosign B with a proof from n: B's tree at n is not A's, the proof fails (422). carol's
    device was copied back too (it saw only the common prefix), so nothing but the witness stands in the way."""
    carol, witness = witnessed
    org.server.stop()
    saved = save_stopped(org.server, tmp_path / "before")
    shutil.copytree(carol.home, tmp_path / "carol-before")
    org.server = org.server.restart()
    now = int(org.server.clock())
    witness.add_checkpoint(_request(carol, 0), now)  # history A, cosigned at its size
    assert witness.last is not None
    cosigned_size = witness.last[0]
    org.server.stop()
    put_back_stopped(org.server, tmp_path / "before", saved)
    shutil.rmtree(carol.home)
    shutil.copytree(tmp_path / "carol-before", carol.home)
    org.server = org.server.restart()
    while _size(org.server) <= cosigned_size + 2:  # history B, past the size cosigned
        org.bob.ok("ls", "drafting")
    with pytest.raises(Refused) as refused:
        witness.add_checkpoint(_request(carol, cosigned_size), now + 60)
    assert refused.value.status == 422 and witness.last[0] == cosigned_size


def _size(server: ServerThread) -> int:
    db = audit_db(server)
    (n,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    db.close()
    return int(n)


def _tamper(org: Org, sql: str, *params: Any) -> None:
    org.server.stop()
    db = audit_db(org.server)
    db.execute(sql, params)
    db.close()
    org.server = org.server.restart()


def test_a_login_refuses_an_altered_witness_cosignature(org: Org, witnessed: Any, tmp_path: Path) -> None:
    carol, witness = witnessed
    _hand_in(carol, witness, _request(carol, 0), int(org.server.clock()), tmp_path)
    db = audit_db(org.server)
    (sig,) = db.execute("SELECT sig FROM witness_cosigs").fetchone()
    db.close()
    _tamper(org, "UPDATE witness_cosigs SET sig=?", struct.pack(">Q", int(org.server.clock()) + 300) + sig[8:])
    org.bob.fails("whoami", contains="outside witness's cosignature does not verify")


def test_a_login_refuses_a_hidden_witness_note_it_saw(org: Org, witnessed: Any, tmp_path: Path) -> None:
    carol, witness = witnessed
    _hand_in(carol, witness, _request(carol, 0), int(org.server.clock()), tmp_path)
    org.bob.ok("whoami")  # checked, and its size pinned
    _tamper(org, "DELETE FROM witness_cosigs")
    org.bob.fails("whoami", contains="no longer shows the checkpoint an outside witness cosigned")


def test_a_login_catches_a_fork_through_the_outside_witness(org: Org, witnessed: Any, tmp_path: Path) -> None:
    """bob never saw the witnessed events; the outside witness's cosignature still exposes their rewrite (no
    Security Team cosignature is involved). The lying server keeps showing the note the witness cosigned (an honest
    store stops serving a note its log no longer matches: hiding it is the residue SECURITY.md states)."""
    carol, witness = witnessed
    org.bob.ok("whoami")
    bob_size = _size(org.server)
    org.alice.ok("ls", "drafting")
    _hand_in(carol, witness, _request(carol, 0), int(org.server.clock()), tmp_path)
    org.alice.ok("whoami")  # the server has built the witnessed note it serves at every login
    store: Any = org.server.app[AUDIT]  # the SQLite store's cache of the note it serves
    shown = store._witness_note
    assert shown is not None
    db = audit_db(org.server)
    (leaf,) = db.execute("SELECT leaf FROM events WHERE idx=?", (bob_size + 1,)).fetchone()
    db.close()
    changed = bytes(leaf[:-1]) + bytes([leaf[-1] ^ 1])
    _tamper(org, "UPDATE events SET leaf=?, hash=? WHERE idx=?", changed, leaf_hash(changed), bob_size + 1)
    store = org.server.app[AUDIT]
    store._witness_note = shown
    org.bob.fails("whoami", contains="does not extend the log an outside witness cosigned")
