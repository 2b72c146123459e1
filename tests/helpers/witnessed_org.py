"""An organization whose security protocols list an outside witness (``tests/helpers/c2sp_witness.py``), for the
witness-note and timeline tests: a second NCC member approves the change, as every protocol change needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Member
from tests.helpers.c2sp_witness import OutsideWitness

WITNESS_NAME = "witness.example/w1"


def second_ncc(alice: Member, make_member: Any, name: str = "dana") -> Member:
    """A second NCC member (alice, the founder, grants the role alone: she is the only NCC member)."""
    m: Member = make_member(name)
    m.ok("join", alice.json("invite")["invite"], "--name", name)
    alice.ok("role", "grant", name, "ncc", "--until", "2099-01-01")
    return m


def list_witnesses(alice: Member, approver: Member, tmp_path: Path, *vkeys: str) -> None:
    """Propose (alice) and approve (``approver``) the protocols in force with ``vkeys`` as the witness keys."""
    shown = alice.json("audit", "protocols", "show")
    version = shown["version"]
    text = shown["text"].replace(f"version = {version}\n", f"version = {version + 1}\n", 1)
    listed = text.replace("witness_keys = []", f"witness_keys = {json.dumps(list(vkeys))}", 1)
    assert listed != text, "the shipped protocols have no empty witness_keys line"
    path = tmp_path / f"protocols-{version + 1}.toml"
    path.write_text(listed)
    digest = alice.json("audit", "protocols", "propose", str(path))["digest"]
    assert approver.json("audit", "protocols", "approve", digest[:16])["version"] == version + 1


def cosigned_note(carol: Member, witness: OutsideWitness, now: int, tmp_path: Path) -> Path:
    """The current checkpoint note (``mvault audit note``), cosigned by ``witness``, in a file."""
    note = carol.json("audit", "note")["note"]
    path = tmp_path / "cosigned.note"
    path.write_text(witness.cosign(note, now))
    return path


def new_witness(carol: Member) -> OutsideWitness:
    """A witness configured with the log's verifier key as ``mvault audit note`` prints it."""
    return OutsideWitness(WITNESS_NAME, carol.json("audit", "note")["log_key"])
