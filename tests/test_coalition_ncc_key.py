"""Issue 20, every NCC member of the ally holds its coalition key (client/coalitionkeys.py): dora's device made the
key; granting gina NCC seals it to gina's PUK in the ally's chain (``org.coalition.share``), and gina's device, not
the one that made the key, approves erin's entry to the host's space and expels her from the ally, with the
``coalition.expel`` a guest carries to the host. Two real servers, the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.forgery import Forge
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guests import erin_of

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture


def test_a_second_ncc_member_approves_and_expels(forge: Forge, ally: Member, make_member: Any,
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    alice, dora = forge.org.alice, ally
    erin = erin_of(forge, dora, make_member, monkeypatch)
    fred = erin_of(forge, dora, make_member, monkeypatch, "fred")
    gina = erin_of(forge, dora, make_member, monkeypatch, "gina")
    pairing = dora.json("coalition", "pairing-code", "campaign")["code"]  # dora alone is the NCC: recorded at once
    gina.fails("coalition", "approve", "campaign", "erin", "--space", "x", contains="holds no coalition key")
    dora.ok("role", "grant", "gina", "ncc", "--until", "2099-01-01")  # dora's client seals the key to gina
    assert "campaign" not in Home(gina.home).unlock().coalitions  # not yet opened: it is in the chain
    space = alice.json("coalition", "create", "campaign", "--with", pairing)["space"]
    org = alice.json("coalition", "show", "campaign")["allies"][0]["name"]
    for who in ("erin", "fred"):
        code = gina.json("coalition", "approve", "campaign", who, "--space", space)["code"]  # gina's device signs
        alice.ok("coalition", "add", "campaign", f"{who}@{org}", "--approval", code)
    join = alice.json("coalition", "join-code", "campaign")["code"]
    erin.ok("coalition", "join", join)
    fred.ok("coalition", "join", alice.json("coalition", "join-code", "campaign")["code"])
    assert "campaign" in Home(gina.home).unlock().coalitions  # opened from her box, kept in her keystore
    gen = forge.d.team(space).generation
    gina.ok("remove", "erin")  # gina's org.remove carries the coalition.expel signed with the key she opened
    carried = fred.ok("--space", "campaign", "ls", "campaign")
    assert "carried your organization's expulsion of erin" in carried.err, carried.err
    assert forge.d.team_links[space][-1].type == "coalition.remove"
    assert forge.d.team(space).generation == gen + 1
    erin.fails("--space", "campaign", "ls", "campaign", contains="nor a guest of any of its coalition spaces")


def test_two_ncc_members_the_maker_seals_the_key_once_recorded(ally: Member, make_member: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule two-person: dora proposes the key (her device holds it), gina's signature records it, gina holds no box
    yet and can approve no one; dora's next ``pairing-code`` seals it to both, then gina approves."""
    dora = ally
    gina: Member = make_member("gina")
    gina.ok("join", dora.json("invite")["invite"], "--name", "gina")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(gina.passphrase_file))
    erin: Member = make_member("erin")
    erin.ok("join", dora.json("invite")["invite"], "--name", "erin")
    dora.ok("role", "grant", "gina", "ncc", "--until", "2099-01-01")
    assert dora.json("coalition", "pairing-code", "campaign")["proposed"] is True
    code = gina.json("coalition", "pairing-code", "campaign")["code"]  # recorded by the second NCC member
    space = "ab" * 16
    gina.fails("coalition", "approve", "campaign", "erin", "--space", space, contains="holds no coalition key")
    assert dora.json("coalition", "pairing-code", "campaign")["code"] == code  # and dora's device seals it
    assert gina.json("coalition", "approve", "campaign", "erin", "--space", space)["code"]
    assert "campaign" in Home(gina.home).unlock().coalitions
