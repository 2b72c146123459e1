"""Issue 20, coalition spaces on two real servers through the real CLI: the ally's NCC makes its pairing code on its
own server (its coalition key recorded in its own chain), the host's NCC creates the space on the host's server
pinning that code; only the host's NCC may pin, and a server that invents an ally (a pin no NCC signed) is caught
by every client. Guests (the ally's members on the host's server): tests/test_coalition_guests.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.forgery import Forge, Forgery, served, team_key, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.http import Http, b64, login_as
from vault.chains.coalition import CoalitionKey
from vault.keys import DeviceKeys

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture


def test_pairing_code_then_a_space_pinning_the_ally(forge: Forge, ally: Member, tmp_path: Path) -> None:
    alice, bob = forge.org.alice, forge.org.bob
    code = ally.json("coalition", "pairing-code", "campaign")
    assert code["code"].startswith("mvault-ally:1:")
    assert ally.json("coalition", "pairing-code", "campaign") == code  # recorded once, the same code after
    # Only the host's NCC pins an ally: bob's client refuses before the server sees it.
    bob.fails("coalition", "create", "campaign", "--with", code["code"], contains="may not")
    alice.fails("coalition", "create", "campaign", "--with", "mvault-ally:1:zz", contains="malformed pairing code")
    assert "campaign" not in alice.json("whoami")["teams"]  # a bad code: nothing was created
    made = alice.json("coalition", "create", "campaign", "--with", code["code"])
    info = alice.json("coalition", "show", "campaign")
    assert [(a["org_root"], a["key"]) for a in info["allies"]] == [(code["org_root"], code["key"])]
    assert info["space"] == made["space"] and [m["name"] for m in info["members"]] == ["alice"]
    assert [s["name"] for s in alice.json("coalition", "ls")] == ["campaign"]
    assert bob.json("coalition", "ls") == []  # not in the space: he does not see it

    # The host's members through coalition add / remove: bob writes, alice reads; removed, bob opens nothing newer.
    bob.fails("coalition", "add", "campaign", "alice", contains="no team named")  # not in it: he cannot see it
    alice.fails("coalition", "add", "campaign", "zed@allies", contains="needs their organization's approval")
    assert alice.json("coalition", "add", "campaign", "bob", "--role", "writer")["key_shared"] is True
    note = tmp_path / "plan.txt"
    note.write_text("joint campaign plan\n")
    bob.ok("put", "campaign", str(note))
    assert [d["name"] for d in alice.json("ls", "campaign")] == ["plan.txt"]
    assert alice.json("coalition", "remove", "campaign", "bob")["rotated"] is True
    note.write_text("after bob left\n")
    alice.ok("put", "campaign", str(note))
    bob.fails("ls", "campaign")
    assert "campaign" not in bob.json("whoami")["teams"]
    team_key(forge, "alice", info["space"], 2)
    with pytest.raises(AssertionError, match="holds no key"):  # every box the server holds, with every key of bob's
        team_key(forge, "bob", info["space"], 2)


def test_the_server_cannot_pin_an_ally(forge: Forge, ally: Member) -> None:
    """bob's own signed pin is refused by the server (403); a pin the server serves in alice's name, signed with
    a key of its own, or bob's pin served as if accepted, is caught by alice's client."""
    code = ally.json("coalition", "pairing-code", "campaign")
    space = forge.org.alice.json("coalition", "create", "campaign", "--with", code["code"])["space"]
    forge.org.alice.ok("team", "add", "campaign", "bob", "--role", "writer")
    invented = {"ally": CoalitionKey.generate().public, "key": CoalitionKey.generate().public, "name": "invented"}
    by_bob = team_link(forge, space, "bob", "coalition.ally", invented)
    by_server = team_link(forge, space, "alice", "coalition.ally", invented, device=DeviceKeys.generate())

    async def post() -> tuple[int, int]:
        async with Http(forge.server) as h:
            token = await login_as(h, forge.ids["bob"], forge.device("bob"))
            status, _ = await h.call("POST", f"/api/v1/teams/{space}/links", js={"link": b64(by_bob.wire)}, token=token)
            status2, _ = await h.call("POST", f"/api/v1/teams/{space}/links", js={"link": b64(by_server.wire)},
                                      token=token)
            return status, status2

    assert asyncio.run(post()) == (403, 403)
    assert len(forge.d.team_links[space]) == 3  # nothing stored: create, pin, bob's add
    for forgery in (Forgery("bob pins", space, by_bob, "may not pin an allied organization"),
                    Forgery("server pins", space, by_server, "")):
        with served(forge, forgery):
            for m in (forge.org.alice, forge.org.bob):
                m.fails("coalition", "show", "campaign", contains=forgery.client_error)
    # Served no more, both read the space again, with the one ally alice pinned.
    name = code["code"].split(":", 4)[4]
    assert [a["name"] for a in forge.org.bob.json("coalition", "show", "campaign")["allies"]] == [name]


def test_two_ncc_members_record_the_key_and_pin_the_ally(forge: Forge, ally: Member, make_member: Any) -> None:
    """Rule two-person on both sides, through the real CLI: with a second NCC member, `pairing-code` and `create`
    only propose; the second NCC member's same command puts the key (ally, and the host's own) and the pin (host) in
    force."""
    alice, bob = forge.org.alice, forge.org.bob
    erin = make_member("erin")
    erin.ok("join", ally.json("invite")["invite"], "--name", "erin")
    ally.ok("role", "grant", "erin", "ncc", "--until", "2099-01-01")
    assert ally.json("coalition", "pairing-code", "campaign") == {"space": "campaign", "proposed": True}
    assert ally.json("coalition", "pairing-code", "campaign")["proposed"] is True  # still waiting for another
    code = erin.json("coalition", "pairing-code", "campaign")  # erin signs the key dora proposed
    assert ally.json("coalition", "pairing-code", "campaign") == code  # recorded: the same code on dora's device

    alice.ok("role", "grant", "bob", "ncc", "--until", "2099-01-01")
    # (session 15) The host's own coalition key comes first: alice's `create` only proposes it; bob's records it and
    # creates the space, whose pin he then only proposes; alice's `pin` puts it in force.
    assert alice.json("coalition", "create", "campaign", "--with", code["code"]) == {"name": "campaign",
                                                                                     "proposed": True}
    made = bob.json("coalition", "create", "campaign", "--with", code["code"])
    assert made["allies"] == [] and made["proposed"] is True
    bob.fails("coalition", "pin", "campaign", "--with", code["code"], contains="proposed this pin already")
    assert alice.json("coalition", "pin", "campaign", "--with", code["code"])["allies"] == [code["code"].split(":")[4]]
    assert [a["key"] for a in bob.json("coalition", "show", "campaign")["allies"]] == [code["key"]]
    bob.ok("coalition", "add", "campaign", "carol")  # alice's device sealed the host's key to bob: he approves
