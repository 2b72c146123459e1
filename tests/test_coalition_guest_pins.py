"""Issue 20, review 16's first finding: the key a guest's client trusts for an ally is the one the host's NCC put in
force, never one NCC member's proposal. A guest cannot tell a proposal from a pin (who is the host's NCC is not known
outside the host organization), so the join code names the ``coalition.ally`` links that put a pin in force on the
host's side, with their keys (``pins``; docs/format.md "Join code", docs/lifecycle.md "Pinning allied
organizations"). Chain level (real chain code, both views), then two real servers through the real CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from client.coalition import Pairing
from client.guestspace import JoinCode, legacy_pins
from security.authority import POLICY
from security.policy import TEAM_KINDS
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.chain_world import Person
from tests.helpers.coalition_world import Ally, Coalition
from tests.helpers.forgery import Forge, Forgery, served, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guests import erin_of, guest_space
from vault.chains import TeamState, replay_team
from vault.chains.coalition import CoalitionKey, rekey_statement, remove_statement, signed_statement
from vault.chains.outside import outside_org
from vault.errors import ChainError, VaultError
from vault.links import Link

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture


def with_nina() -> tuple[Coalition, Person]:
    """A space whose host has two NCC members: the founder (the space's admin) and nina, a space admin too."""
    c = Coalition()
    nina = c.host.admit("nina")
    c.host.role(c.admin, nina, "ncc")
    c.add(nina, None, role="admin")
    return c, nina


def both_take(c: Coalition, link: Link) -> tuple[TeamState, TeamState]:
    host, guest = c.state([link]), c.outside([*c.space.links, link])
    c.accept(link)
    return host, guest


def test_a_stray_proposal_before_the_true_pin_breaks_no_guests_replay() -> None:
    """No attacker: nina first proposes the ally's pin with a wrong key (a mistyped pairing code, say), never signed
    twice; the NCC then pins the ally's true key. A join code made now, then the ally's member added past it: every
    guest's replay takes the add (before the fix the guest's view held the wrong key and refused it, "not signed with
    the coalition key": every guest's client stopped for good)."""
    c, nina = with_nina()
    ally = c.ally()
    c.pin(ally, signer=nina, key=CoalitionKey.generate().public)  # a proposal on the host's side
    c.pin(ally)
    c.pin(ally, signer=nina)  # the true pin, in force
    code = len(c.space.links)
    assert c.state().ally_pins == {code: ally.key.public}  # what the join code names
    alice = ally.member("alice", c.host)
    host, guest = both_take(c, c.add(alice, c.approval(ally, alice), append=False))
    assert alice.id in host.members and alice.id in guest.members
    assert guest.allies[ally.root].key == ally.key.public and guest.guests[alice.id].ally == ally.root
    vouched = c.host.replay_team(c.space.links[:code])
    view = outside_org(c.host.org_links[0].hash, c.space.team_id, code, vouched.ally_pins.items())
    assert c.host.replay_team(c.space.links).members.keys() == c.outside(c.space.links).members.keys()
    assert view.outside is not None and view.outside.pins == {(code, ally.key.public)}


def frozen_ally(c: Coalition, nina: Person) -> tuple[Ally, Person, Person, CoalitionKey]:
    """An ally pinned by both NCC members, with two guests, whose key was rekeyed, then raced by a rival rekey of the
    old key: frozen."""
    ally = c.ally()
    c.pin(ally)
    c.pin(ally, signer=nina)
    alice, bob = ally.member("alice", c.host), ally.member("bob", c.host)
    c.add(alice, c.approval(ally, alice))
    c.add(bob, c.approval(ally, bob))
    old, new = ally.key, CoalitionKey.generate()
    c.host.team_link(c.space, bob, "coalition.rekey",
                     dict(signed_statement(old, rekey_statement(ally.root, new.public, 0))))
    c.host.team_link(c.space, alice, "coalition.rekey",
                     dict(signed_statement(old, rekey_statement(ally.root, CoalitionKey.generate().public, 0))))
    assert c.state().allies[ally.root].frozen
    ally.key = new
    return ally, alice, bob, new


def test_a_re_pin_after_a_freeze_counts_for_guests_at_the_pin_in_force_not_at_a_proposal() -> None:
    """The other path of the finding: a frozen ally is re-pinned. nina proposes the re-pin with a key of her own; the
    NCC re-pins the ally's key (given in person). The guest's view (a join code made after the re-pin) unfreezes the
    ally with the key in force, not nina's: an add approved with nina's key is refused on both sides, one with the
    ally's taken on both. (Before the fix the proposal unfroze it for guests, with nina's key.)"""
    c, nina = with_nina()
    ally, alice, bob, new = frozen_ally(c, nina)
    hers = CoalitionKey.generate()
    c.pin(ally, signer=nina, key=hers.public)
    assert c.state().allies[ally.root].frozen and c.outside(c.space.links).allies[ally.root].frozen
    c.pin(ally)
    c.pin(ally, signer=nina)  # in force
    for state in (c.state(), c.outside(c.space.links)):
        assert not state.allies[ally.root].frozen and state.allies[ally.root].key == new.public
    erin = ally.member("erin", c.host)
    forged = c.add(erin, c.approval(ally, erin, key=hers), signer=nina, append=False)
    for replay in c.both(forged):
        with pytest.raises(ChainError, match="not signed with the coalition key"):
            replay()
    host, guest = both_take(c, c.add(erin, c.approval(ally, erin), append=False))
    assert erin.id in host.members and erin.id in guest.members


def test_a_code_naming_another_key_than_the_chains_pin_is_refused() -> None:
    """The guest's judge pins only at a link the code names, with the key it names: a code naming the pin's link
    with another key (not one the admin's client makes) makes the replay fail, never pins that key."""
    c = Coalition()
    ally = c.ally()
    c.pin(ally)
    root, seq = c.host.org_links[0].hash, len(c.space.links)
    members = c.host.members()
    for pins in ({(seq, CoalitionKey.generate().public)}, {(seq, ally.key.public), (seq, bytes(32))}):
        with pytest.raises(ChainError, match="another key than the one its join code names"):
            replay_team(c.space.links, outside_org(root, c.space.team_id, seq, pins), members, POLICY, TEAM_KINDS)
    # The same chain with no pin named (a proposal, as far as the code says): no ally for the guest.
    assert replay_team(c.space.links, outside_org(root, c.space.team_id, seq, ()), members, POLICY,
                       TEAM_KINDS).allies == {}


def test_a_guest_trusts_the_pin_in_force_over_a_lone_ncc_members_proposal(
        forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two real servers, the real CLI. The host has two NCC members; bob creates the space with a pairing code of
    the ally's root and a key of his own (his one signature: a proposal), then the two pin the ally's true key
    (alice's signature puts it in force). bob's join code is made before erin's add: her add (past the code) is
    judged by the guest's client with the key in force, and she works in the space (before the fix: refused, "not
    signed with the coalition key", for every guest). A host server serving erin's removal signed with bob's key
    past the code (a fork the host's clients refuse): erin's client refuses it, exit 3. A join code made before
    session 16 (no ``pins``) cannot say which key is in force here: refused, nothing kept; a code naming another key
    at the pin: refused, exit 3, nothing kept."""
    alice, bob = forge.org.alice, forge.org.bob
    erin = erin_of(forge, ally, make_member, monkeypatch)
    true = ally.json("coalition", "pairing-code", "campaign")["code"]
    hers = CoalitionKey.generate()
    paired = Pairing.parse(true)
    stray = dataclasses.replace(paired, key=hers.public).code
    alice.ok("role", "grant", "bob", "ncc", "--until", "2099-01-01")
    assert alice.json("coalition", "create", "campaign", "--with", true)["proposed"] is True  # the host's key
    made = bob.json("coalition", "create", "campaign", "--with", stray)  # records it; the stray pin: proposed
    assert made["allies"] == [] and made["proposed"] is True
    assert bob.json("coalition", "pin", "campaign", "--with", true)["proposed"] is True
    assert alice.json("coalition", "pin", "campaign", "--with", true)["proposed"] is False  # in force
    shown = bob.json("coalition", "show", "campaign")
    assert [a["key"] for a in shown["allies"]] == [paired.key.hex()]  # the host's view: the key in force
    space, org = shown["space"], shown["allies"][0]["name"]
    code = bob.json("coalition", "join-code", "campaign")["code"]
    jc = JoinCode.parse(code)
    assert jc.pins is not None and [key for _, key in jc.pins] == [paired.key]
    guest = ally.json("coalition", "approve", "campaign", "erin", "--space", space)["code"]
    bob.ok("coalition", "add", "campaign", f"erin@{org}", "--approval", guest)  # past the join code

    # An older code (no pins) over this chain: refused, nothing of it kept.
    legacy = dataclasses.replace(jc, pins=None).code
    assert JoinCode.parse(legacy).pins is None
    failed = erin.fails("coalition", "join", legacy, contains="names two keys for one ally")
    assert failed.code != 0 and not list(erin.home.glob("space.*"))
    # A code naming bob's key at the pin in force: refused, exit 3, nothing kept.
    [(seq, _)] = jc.pins
    lying = dataclasses.replace(jc, pins=((seq, hers.public),)).code
    assert erin.fails("coalition", "join", lying, contains="does not hold with that key").code == 3
    assert not list(erin.home.glob("space.*"))

    joined = erin.json("coalition", "join", code)
    # alice, who put the pin in force, is not in the space: her link is in the code's prefix, taken on its word
    assert sorted(joined["members"]) == [["bob", "host"], ["erin", org]]
    erin.ok("--space", "campaign", "ls", "campaign")
    # The host's server serves, past the code, erin's removal carried by bob with a statement signed with his key.
    statement = signed_statement(hers, remove_statement(space, paired.org_root, forge.ids["erin"], forge.now()))
    fork = team_link(forge, space, "bob", "coalition.remove", {"member": forge.ids["erin"], "statement": statement,
                                                               "key": None})
    with served(forge, Forgery("bob's key removes", space, fork, "not signed with the coalition key")):
        assert erin.fails("--space", "campaign", "ls", "campaign", contains="not signed with the coalition key"
                          ).code == 3
    erin.ok("--space", "campaign", "ls", "campaign")


def code_of(c: Coalition, pins: tuple[tuple[int, bytes], ...] | None) -> JoinCode:
    """A join code for the whole chain of ``c``'s space as the host replays it (``pins`` None: one made before them)."""
    state = c.state()
    return JoinCode("https://host.example", "cert", bytes(32), c.host.org_links[0].hash, state.team_id, state.name,
                    state.seq, state.head, tuple(sorted(state.allies)), pins)


def test_an_older_join_code_stands_for_the_pins_only_where_the_chain_leaves_no_doubt() -> None:
    """A code made before session 16 names the allies' roots only. Where each ally's coalition.ally links in its
    prefix all name one key (a proposal and its second signature), the last of them is the pin, as the host's judge
    says; where one names another key (a stray proposal), which is in force is not known: refused, asking for a new
    code."""
    c, nina = with_nina()
    ally, other = c.ally("ally"), c.ally("other")
    c.pin(ally)
    c.pin(ally, signer=nina)
    c.pin(other, signer=nina)
    c.pin(other)
    assert legacy_pins(code_of(c, None), c.space.links) == c.state().ally_pins
    third = c.ally("third")
    c.pin(third, signer=nina, key=CoalitionKey.generate().public)
    c.pin(third)
    c.pin(third, signer=nina)
    with pytest.raises(VaultError, match="names two keys for one ally"):
        legacy_pins(code_of(c, None), c.space.links)
    code = code_of(c, tuple(sorted(c.state().ally_pins.items())))  # a code made now: the pins in force
    assert JoinCode.parse(code.code) == code and JoinCode.parse(code_of(c, None).code).pins is None


def test_a_code_made_before_pins_still_joins_a_space_with_one_key_per_ally(
        forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two real servers: the guest space of the other guest tests, its join code stripped of ``pins`` (as made
    before session 16): erin joins and works with it, as before."""
    space = guest_space(forge, ally, make_member, monkeypatch, tmp_path)
    legacy = dataclasses.replace(JoinCode.parse(space.code), pins=None).code
    assert JoinCode.parse(legacy).pins is None
    joined = space.erin.json("coalition", "join", legacy)
    assert sorted(joined["members"]) == [["alice", "host"], ["erin", space.ally_name]]
    assert [d["name"] for d in space.erin.json("--space", space.name, "ls", space.name)] == ["plan.txt"]
