"""Issue 20, an allied organization's own removals reach the host's coalition space (client/expulsions.py): the
ally's expulsion of a member (its NCC's ``org.remove`` carrying ``coalition.expel`` statements signed with the
coalition key) is carried to the host by another of the ally's guests at its next contact, rotating the space's key,
so the expelled member, with a copy of the host server's data and its old keys, opens nothing newer; a device the
guest revokes at home no longer logs in at the host and signs nothing a client accepts. Two real servers, the real
CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member, Org, security_team
from tests.helpers.allies import own_server
from tests.helpers.forgery import Forge, plant_version, team_key
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guest_world import copied_ally, space_org_world, world_space
from tests.helpers.guests import Space, erin_of, guest_with_laptop
from tests.helpers.tampering import ROLLBACK

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = copied_ally  # the world's ally server, copied (a fresh one for a test without ``space``)
org_world = space_org_world  # a test asking for ``space`` starts from a world built once per worker


@pytest.fixture
def space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Space:
    return world_space(forge, ally, make_member, monkeypatch, tmp_path)  # guest_space's, copied from the world


def _second_guest(space: Space, forge: Forge, ally: Member, make_member: Any,
                  monkeypatch: pytest.MonkeyPatch) -> Member:
    """fred, another member of erin's organization, a guest of the same space (joined with a newer join code)."""
    fred = erin_of(forge, ally, make_member, monkeypatch, "fred")
    code = ally.json("coalition", "approve", "campaign", "fred", "--space", space.id)["code"]
    space.alice.ok("coalition", "add", space.name, f"fred@{space.ally_name}", "--approval", code)
    fred.ok("coalition", "join", space.alice.json("coalition", "join-code", space.name)["code"])
    return fred


def test_an_expelled_ally_member_opens_nothing_newer(space: Space, forge: Forge, ally: Member, make_member: Any,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """dora (the ally's NCC) expels erin from her own organization; nobody names the space. fred's next command in
    the space carries the removal (rotated in the same link): erin's host sessions end, and her keys open no box of
    the new generation in the host server's data, so nothing written after it."""
    alice, erin, name = space.alice, space.erin, space.name
    erin.ok("coalition", "join", space.code)
    fred = _second_guest(space, forge, ally, make_member, monkeypatch)
    gen = forge.d.team(space.id).generation
    assert team_key(forge, "erin", space.id, gen)
    ally.ok("remove", "erin")
    assert erin.run("--space", name, "ls", name).code == 0  # the window: until a guest of the ally carries it
    carried = fred.ok("--space", name, "ls", name)
    erin.fails("--space", name, "ls", name, contains="nor a guest of any of its coalition spaces")
    assert forge.d.team(space.id).generation == gen + 1
    assert forge.d.team_links[space.id][-1].type == "coalition.remove"
    assert "carried your organization's expulsion of erin" in carried.err, carried.err
    later = tmp_path / "later.txt"
    later.write_text("written after the expulsion\n")
    alice.ok("put", name, str(later))
    for who in ("alice", "fred"):
        team_key(forge, who, space.id, gen + 1)
    with pytest.raises(AssertionError, match="holds no key"):
        team_key(forge, "erin", space.id, gen + 1)  # every box of the server's data, tried with erin's PUKs
    fred.ok("--space", name, "get", name, "later.txt", "-o", str(tmp_path / "fred.txt"))
    assert (tmp_path / "fred.txt").read_text() == "written after the expulsion\n"
    again = fred.ok("--space", name, "ls", name)  # carried once: nothing more to carry
    assert "carried" not in again.err
    # A host server that drops the carried removal (serves the chain without it) is caught by the carrier.
    links = forge.d.team_links[space.id]
    removal = next(i for i, x in enumerate(links) if x.type == "coalition.remove")
    dropped = links[removal:]
    del links[removal:]
    try:
        assert fred.fails("--space", name, "ls", name, contains=ROLLBACK).code == 3
    finally:
        links.extend(dropped)


def test_a_revoked_ally_device_no_longer_logs_in_nor_signs(forge: Forge, ally: Member, make_member: Any,
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """erin's laptop is a device of hers in the space; she revokes it at home: the same command carries the
    revocation to the host's server, where the laptop no longer logs in, and a version it signs after (the host's
    server colluding with whoever holds it) is refused by the host's member and by erin's own client."""
    erin, laptop, space = guest_with_laptop(forge, ally, make_member, monkeypatch, tmp_path)
    name = space.name
    assert [d["name"] for d in laptop.json("--space", name, "ls", name)] == ["plan.txt"]
    revoked = erin.json("device", "revoke", "laptop")
    laptop.fails("--space", name, "ls", name, contains="this device (laptop) was revoked")
    assert any("carried your device.revoke" in r and name in r for r in revoked["rotated"]), revoked
    forge.keys["laptop"] = Home(laptop.home).unlock()
    forge.ids["laptop"] = space.erin_id
    team = forge.d.team(space.id)
    key = team_key(forge, "alice", space.id, team.generation)
    plant_version(forge, "laptop", key, "from-laptop.txt", seq=1, parent=None, when=forge.now() + 1,
                  team_seq=team.seq, data=b"signed by a revoked device")
    for who, args in ((space.alice, ("get", name, "from-laptop.txt")),
                      (erin, ("--space", name, "get", name, "from-laptop.txt"))):
        r = who.run(*args, "-o", str(tmp_path / "planted"))  # (alice's client also rotates first, and says so)
        assert r.code == 3 and "error: document version signed by a device that was not active" in r.err, r
    assert not (tmp_path / "planted").exists()


def test_a_guest_leaves_and_its_own_organizations_log_records_it(space: Space, forge: Forge, ally: Member,
                                                                 make_member: Any, tmp_path: Path) -> None:
    """``mvault coalition leave``: erin leaves the space (the host's next key holder rotates, she holds no box of
    it), her device forgets it, and her own organization's audit log records her ``leave`` after her ``join``."""
    erin, name = space.erin, space.name
    sam = security_team(Org(own_server(tmp_path), ally, erin), make_member, "sam")
    erin.ok("coalition", "join", space.code)
    left = erin.json("coalition", "leave", name)
    assert left == {"space": space.id, "name": name, "left": True}
    assert forge.d.team_links[space.id][-1].type == "team.leave"
    erin.fails("--space", name, "ls", name, contains="no coalition space")
    erin.fails("coalition", "leave", name, contains="no coalition space")  # nothing left to leave, nothing sent
    space.alice.ok("ls", name)  # a key holder's command rotates
    with pytest.raises(AssertionError, match="holds no key"):
        team_key(forge, "erin", space.id, forge.d.team(space.id).generation)
    events = sam.json("audit", "log", "--action", "coalition.act")
    assert [e["detail"]["act"] for e in events if e["actor"] == space.erin_id] == ["join", "leave"], events
