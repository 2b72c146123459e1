"""Issue 20, the host's members' entry verifiable by a guest, end to end: two real servers (the host: alice's
organization, tests/helpers/forgery.py; the ally: dora's, tests/helpers/allies.py, with its member erin) and the real
CLI. `coalition create` records the host's own coalition key and the space's `team.create` carries it (`host_key`);
a host member's entry then carries the host NCC's approval signed with it, which the guest's client checks past its
join code; the host's removal of a member reaches the space as a `coalition.remove` signed with it.

The attacks (docs/lifecycle.md "The hole"): a host server that replays an expelled admin's `team.add` to the guest
only, and a space admin's add the host's NCC never approved. Each is refused by the guest's client (exit 3) before
any key work: the rotation the guest's command would make (carrying the ally's expulsion of fred) is not made, so
no box of the guest's is sealed to the added member.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member
from tests.helpers.forgery import Forge, Forgery, served, team_key, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guest_world import copied_ally, space_org_world, world_space
from tests.helpers.guests import Space, reader_guest
from vault.links import Link

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = copied_ally  # the world's ally server, copied (a fresh one for a test without ``space``)
org_world = space_org_world  # a test asking for ``space`` starts from a world built once per worker


@pytest.fixture
def space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Space:
    return world_space(forge, ally, make_member, monkeypatch, tmp_path)  # guest_space's, copied from the world


def _boxed_to(forge: Forge, name: str, team: str, gens: range) -> list[int]:
    found = []
    for gen in gens:
        try:
            team_key(forge, name, team, gen)
        except AssertionError:
            continue
        found.append(gen)
    return found


def _carol_was_in(space: Space, forge: Forge) -> int:
    """carol enters the space (approved on the spot by alice) and leaves it (alice removes her, rotating): a former
    member, whose member chain the host's server serves to the space's members, as it does for any member who left.
    Returns the first generation she holds no box of."""
    space.alice.ok("coalition", "add", space.name, "carol")
    space.alice.ok("coalition", "remove", space.name, "carol")
    gen = forge.d.team(space.id).generation
    assert _boxed_to(forge, "carol", space.id, range(gen, gen + 1)) == []
    return gen


def _add_of_carol(forge: Forge, space: Space, signer: str, *, seq: int | None = None, prev: bytes | None = None,
                  gen: int | None = None) -> Link:
    """``signer``'s `team.add` of carol (a host member the host's NCC did not approve for this entry), as the host's
    server would make one up from a link the signer's device signed; the key box commitment as a key holder's (of
    ``gen``, default the current generation)."""
    gen = forge.d.team(space.id).generation if gen is None else gen
    body = {"member": forge.ids["carol"], "role": "writer", "until": None,
            "key": {"gen": gen, "boxes": [{"member": forge.ids["carol"], "puk_gen": 1, "hash": b"\x07" * 32}]}}
    return team_link(forge, space.id, signer, "team.add", body, seq=seq, prev=prev)


def test_the_space_carries_the_hosts_key_and_host_members_enter_with_its_approval(space: Space, forge: Forge,
                                                                                  tmp_path: Path) -> None:
    """The host's coalition key is in its chain (host = its own root) and in the space's first link; alice (NCC, a
    space admin, holding the key) adds bob in one command; a space admin without the key is told to get the NCC's
    approval, and adds with the approval code; the guest's client accepts both adds and reads their writing."""
    alice, erin, name = space.alice, space.erin, space.name
    first = forge.d.team_links[space.id][0]
    key = first.body.bytes_("host_key", 32)
    entry = forge.d.require_org().coalitions[name]
    assert (entry.key, entry.host) == (key, forge.d.require_org().root)
    assert erin.json("coalition", "join", space.code)["host_key"] is True
    alice.ok("coalition", "add", name, "bob", "--role", "admin")
    bob = forge.org.bob
    bob.fails("coalition", "add", name, "carol", contains="coalition approve")
    assert forge.ids["carol"] not in forge.d.team(space.id).members
    code = alice.json("coalition", "approve", name, "carol", "--space", space.id)["code"]
    bob.ok("coalition", "add", name, "carol", "--approval", code)
    assert forge.d.team(space.id).members[forge.ids["carol"]].role == "writer"
    assert forge.ids["carol"] not in forge.d.team(space.id).guests
    note = tmp_path / "from-carol.txt"
    note.write_text("carol's note\n")
    forge.carol.ok("put", name, str(note))
    erin.ok("--space", name, "get", name, "from-carol.txt", "-o", str(tmp_path / "got"))
    assert (tmp_path / "got").read_text() == "carol's note\n"
    bob.fails("coalition", "add", name, "carol", "--approval", code, contains="")  # used once (and in already)


def test_a_space_admins_add_without_the_hosts_approval_is_refused_by_the_guest(space: Space, forge: Forge,
                                                                                ally: Member, make_member: Any) -> None:
    """bob, a space admin but not NCC, adds carol without the NCC's approval; the host's judge refuses it, so only a
    colluding host server can serve it: the guest's client stops (exit 3) and its carrying of fred's expulsion, which
    rotates the key, is not made (no generation boxed to carol)."""
    alice, erin, name = space.alice, space.erin, space.name
    alice.ok("coalition", "add", name, "bob", "--role", "admin")
    out = _carol_was_in(space, forge)
    erin.ok("coalition", "join", space.code)
    reader_guest(space, forge, ally, make_member)
    gen = forge.d.team(space.id).generation
    ally.ok("remove", "fred")  # erin's next command would carry it, rotating the key to the members she sees
    with served(forge, Forgery("an add without approval", space.id, _add_of_carol(forge, space, "bob"), "")):
        r = erin.run("--space", name, "ls", name)
        assert r.code == 3, r
        assert "needs the host's coalition.admit" in r.err, r.err
    assert forge.d.team(space.id).generation == gen  # erin made no rotation
    assert _boxed_to(forge, "carol", space.id, range(out, gen + 2)) == []
    erin.ok("--space", name, "ls", name)  # served no more: the expulsion is carried, the key rotated without carol
    assert forge.d.team(space.id).generation == gen + 1
    assert _boxed_to(forge, "carol", space.id, range(out, gen + 2)) == []


def test_a_host_server_replaying_an_expelled_admins_add_is_refused_by_the_guest(space: Space, forge: Forge,
                                                                               ally: Member, make_member: Any) -> None:
    """bob, a space admin, is expelled by the host (`mvault remove bob`: alice's client carries the host's signed
    removal into the space, rotating). The host's server then serves the guest, and the guest only, the space as it
    was before that removal plus an add bob's device signed after it: without the host's approval the guest's client
    refuses it (exit 3) and seals nothing to carol."""
    alice, erin, name = space.alice, space.erin, space.name
    alice.ok("coalition", "add", name, "bob", "--role", "admin")
    out = _carol_was_in(space, forge)
    erin.ok("coalition", "join", space.code)
    reader_guest(space, forge, ally, make_member)
    erin.ok("--space", name, "ls", name)  # erin's pin: the chain with bob as admin
    links = forge.d.team_links[space.id]
    before = len(links)
    r = alice.run("remove", "bob")
    assert r.code == 0, r
    assert [x.type for x in links[before:]] == ["coalition.remove"]  # the host's removal carried into the space
    assert forge.ids["bob"] not in forge.d.team(space.id).members
    gen = forge.d.team(space.id).generation
    removal = links.pop()
    head = links[-1]
    ally.ok("remove", "fred")
    try:
        replayed = _add_of_carol(forge, space, "bob", seq=head.seq + 1, prev=head.hash, gen=gen - 1)
        with served(forge, Forgery("the expelled admin's add", space.id, replayed, "")):
            r = erin.run("--space", name, "ls", name)
            assert r.code == 3, r
            assert "needs the host's coalition.admit" in r.err, r.err
    finally:
        links.append(removal)
    assert forge.d.team(space.id).generation == gen
    assert _boxed_to(forge, "carol", space.id, range(out, gen + 2)) == []
    erin.ok("--space", name, "ls", name)  # the honest chain: bob is out for erin too, fred's expulsion carried
    assert _boxed_to(forge, "bob", space.id, range(gen, gen + 2)) == []

