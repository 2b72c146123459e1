"""``mvault audit timeline``: a member's events as a signed evidence bundle, checked by a second implementation
written from docs/format.md alone (``tests/helpers/timeline_verifier.py``). A real bundle verifies; one altered
byte anywhere is caught; a bundle whose proofs stand on a checkpoint no listed witness cosigned is refused.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member, Org, security_team
from tests.helpers.timeline_verifier import Rejected, verify
from tests.helpers.witnessed_org import cosigned_note, list_witnesses, new_witness, second_ncc
from tests.helpers.worlds import World, Worlds, security_member, security_world
from vault.crypto import labels


@dataclass
class Timeline:
    org: Org
    carol: Member
    witness_vkey: str
    bundle: Path


def _timeline(org: Org, make_member: Callable[[str], Member]) -> None:
    """bob wrote and read a document; a listed outside witness cosigned the checkpoint after; carol (Security
    Team) exported bob's timeline to ``bob.timeline`` beside the members' homes (the outside witness's key in
    ``witness.vkey``)."""
    root = org.alice.home.parent
    carol = security_team(org, make_member)
    dana = second_ncc(org.alice, make_member)
    witness = new_witness(carol)
    list_witnesses(org.alice, dana, root, witness.vkey)
    doc = root / "plan.txt"
    doc.write_text("strategy draft")
    org.bob.ok("put", "drafting", str(doc))
    org.bob.ok("get", "drafting", "plan.txt", "-o", str(root / "copy.txt"))
    carol.ok("audit", "witness-cosign", str(cosigned_note(carol, witness, int(org.server.clock()), root)))
    carol.ok("audit", "timeline", "bob", "--out", str(root / "bob.timeline"))
    (root / "witness.vkey").write_text(witness.vkey)


@pytest.fixture
def org_world(worlds: Worlds, request: pytest.FixtureRequest) -> World:
    """The tests of ``tl`` start from a copy of the timeline world (``_timeline``, built once per session and
    worker: its set-up was most of this file's time); the others from the Security Team's (carol)."""
    if "tl" in request.fixturenames:
        return worlds.org_then("org-timeline", _timeline)
    return security_world(worlds)


@pytest.fixture
def tl(org: Org, make_member: Any, tmp_path: Path) -> Timeline:
    """The timeline world: carol's export of bob's timeline, the outside witness that cosigned under it."""
    assert org.server.restored
    return Timeline(org, make_member("carol"), (tmp_path / "witness.vkey").read_text(), tmp_path / "bob.timeline")


def test_a_real_bundle_verifies_with_the_second_implementation(tl: Timeline) -> None:
    data = tl.bundle.read_bytes()
    assert stat.S_IMODE(os.stat(tl.bundle).st_mode) == 0o600
    verdict = verify(data)
    bob_id = tl.org.bob.json("whoami")["member"]
    assert verdict.member == bob_id and verdict.witnesses == ["witness.example/w1"]
    actions = [e["event"]["action"] for e in verdict.events]
    assert {"doc.write", "doc.read", "auth.login"} <= set(actions), actions
    assert all(bob_id in (e["event"]["actor"], e["event"]["res"].get("member")) for e in verdict.events)
    assert verify(data, trusted_witnesses=[tl.witness_vkey]).size == verdict.size
    # A witness the reader trusts out of band that did not cosign: refused.
    other = new_witness(tl.carol).vkey
    with pytest.raises(Rejected, match="no cosignature by a listed witness"):
        verify(data, trusted_witnesses=[other])


def test_one_altered_byte_anywhere_is_caught(tl: Timeline) -> None:
    data = tl.bundle.read_bytes()
    # Every byte of the file's frame and a stride through the body: the signed body is base64, so every
    # character of it counts; with each position, two alterations (a low bit, and a high bit: not ASCII).
    positions = sorted(set(range(0, 200)) | set(range(len(data) - 200, len(data)))
                       | set(range(0, len(data), max(1, len(data) // 1500))))
    caught = 0
    for i in positions:
        for flip in (0x01, 0x80):
            altered = bytearray(data)
            altered[i] ^= flip
            with pytest.raises(Rejected):
                verify(bytes(altered))
            caught += 1
    assert caught >= 2 * min(len(data), 1500)


def _resigned(data: bytes, carol: Member, change: Any) -> bytes:
    """The bundle with its body changed by ``change`` and signed again by carol's own device: what a Security
    Team member could make, so only the verifier's checks of the content stand in its way."""
    outer = json.loads(data)
    body = json.loads(base64.b64decode(outer["body"]))
    change(body)
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    os.environ["MVAULT_PASSPHRASE_FILE"] = str(carol.passphrase_file)
    try:
        device = Home(carol.home).unlock().device
    finally:
        del os.environ["MVAULT_PASSPHRASE_FILE"]
    outer["body"] = base64.b64encode(raw).decode()
    outer["sig"] = base64.b64encode(device.sign(labels.SIG_TIMELINE, raw)).decode()
    return json.dumps(outer, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def test_a_bundle_on_a_checkpoint_without_cosignature_is_refused(tl: Timeline) -> None:
    data = tl.bundle.read_bytes()
    assert verify(_resigned(data, tl.carol, lambda b: None)).size  # the re-signing itself is sound

    def drop_cosignatures(body: dict[str, Any]) -> None:
        text, _, sigs = body["checkpoint"].rpartition("\n\n")
        body["checkpoint"] = text + "\n\n" + sigs.split("\n")[0] + "\n"  # the log's signature line only

    with pytest.raises(Rejected, match="no cosignature by a listed witness"):
        verify(_resigned(data, tl.carol, drop_cosignatures))

    def other_event(body: dict[str, Any]) -> None:
        body["events"][0]["event"]["action"] = "doc.delete"

    with pytest.raises(Rejected, match="not what its leaf holds"):
        verify(_resigned(data, tl.carol, other_event))


def test_no_overwrite_without_force_and_no_bundle_before_a_witness(tl: Timeline, org: Org, make_member: Any,
                                                                   tmp_path: Path) -> None:
    before = tl.bundle.read_bytes()
    tl.carol.fails("audit", "timeline", "bob", "--out", str(tl.bundle), contains="--force")
    assert tl.bundle.read_bytes() == before
    r = tl.carol.json("audit", "timeline", "bob", "--since", "1h", "--out", str(tl.bundle), "--force")
    assert r["events"] >= 1 and stat.S_IMODE(os.stat(tl.bundle).st_mode) == 0o600
    verify(tl.bundle.read_bytes())
    tl.org.bob.fails("audit", "timeline", "alice", "--out", str(tmp_path / "x"), contains="Security Team")
    assert not (tmp_path / "x").exists()


def test_no_bundle_while_no_listed_witness_cosigned(org: Org, make_member: Any, tmp_path: Path) -> None:
    """A server that never shows a witnessed note (or before any witness cosigned) gets no bundle out of the
    Security Team's client: its proofs would stand on a checkpoint nobody outside the server vouched for."""
    carol = security_member(org, make_member)
    carol.ok("audit", "witness")  # the Security Team's own cosignature is not a C2SP one: not enough
    carol.fails("audit", "timeline", "bob", "--out", str(tmp_path / "b.timeline"), contains="no listed outside witness")
    assert not (tmp_path / "b.timeline").exists()
