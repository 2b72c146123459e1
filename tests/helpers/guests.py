"""Guests of a coalition space (issue 20): the ally's member erin, and a space of the host's alice with erin in it
(tests/test_coalition_guests.py, tests/test_coalition_guest_client.py)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import MVAULT, Member
from tests.helpers.forgery import Forge


def erin_of(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch,
            name: str = "erin") -> Member:
    """dora's member erin (or ``name``), on the ally's server; her keys in ``forge.keys`` (to open boxes as she
    would)."""
    erin: Member = make_member(name)
    erin.ok("join", ally.json("invite")["invite"], "--name", name)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(erin.passphrase_file))
    forge.keys[name] = Home(erin.home).unlock()
    forge.ids[name] = erin.json("whoami")["member"]
    return erin


@dataclass
class Space:
    """The space ``campaign`` of the host (alice, its admin), with the ally's erin as a writer; ``code`` is alice's
    join code for it, ``plan.txt`` its first document."""

    alice: Member
    erin: Member
    name: str
    id: str
    ally_name: str
    erin_id: str
    code: str


def guest_space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch,
                tmp_path: Path, erin: Member | None = None) -> Space:
    """``erin``: the guest made already (with ``erin_of``), for a test that gives her more devices first."""
    alice = forge.org.alice
    erin = erin or erin_of(forge, ally, make_member, monkeypatch)
    pairing = ally.json("coalition", "pairing-code", "campaign")["code"]
    space = alice.json("coalition", "create", "campaign", "--with", pairing)["space"]
    org = alice.json("coalition", "show", "campaign")["allies"][0]["name"]
    guest = ally.json("coalition", "approve", "campaign", "erin", "--space", space)["code"]
    alice.ok("coalition", "add", "campaign", f"erin@{org}", "--approval", guest)
    note = tmp_path / "plan.txt"
    note.write_text("joint campaign plan\n")
    alice.ok("put", "campaign", str(note))
    code = alice.json("coalition", "join-code", "campaign")["code"]
    return Space(alice, erin, "campaign", space, org, forge.ids["erin"], code)


def reader_guest(space: Space, forge: Forge, ally: Member, make_member: Any, name: str = "fred") -> Member:
    """Another member of the ally, approved and added as a reader of the space, joined with a fresh join code."""
    fred: Member = make_member(name)
    fred.ok("join", ally.json("invite")["invite"], "--name", name)
    forge.ids[name] = fred.json("whoami")["member"]
    guest = ally.json("coalition", "approve", space.name, name, "--space", space.id, "--role", "reader")["code"]
    space.alice.ok("coalition", "add", space.name, f"{name}@{space.ally_name}", "--role", "reader",
                   "--approval", guest)
    fred.ok("coalition", "join", space.alice.json("coalition", "join-code", space.name)["code"])
    return fred


def laptop_of(member: Member, tmp_path: Path) -> Member:
    """``member``'s second device ("laptop"), linked from their first (``device add --wait`` / ``device link``)."""
    laptop = Member(tmp_path / f"home-{member.name}-laptop", member.name, member.passphrase_file)
    adder = subprocess.Popen([MVAULT, "device", "add", "--json", "--wait", "60"], env=member.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert adder.stdout is not None
    laptop.ok("device", "link", json.loads(adder.stdout.readline())["code"], "--name", "laptop")
    assert adder.communicate(timeout=60) and adder.returncode == 0
    return laptop


def guest_with_laptop(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch,
                      tmp_path: Path) -> tuple[Member, Member, Space]:
    """erin (``erin_of``) and her laptop (``laptop_of``), both joined to the space of ``guest_space``."""
    erin = erin_of(forge, ally, make_member, monkeypatch)
    laptop = laptop_of(erin, tmp_path)
    space = guest_space(forge, ally, make_member, monkeypatch, tmp_path, erin)
    erin.ok("coalition", "join", space.code)
    laptop.ok("coalition", "join", space.code)
    return erin, laptop, space
