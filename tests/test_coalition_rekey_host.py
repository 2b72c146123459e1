"""Issue 20, the coalition key's rotation reaching the host's space (docs/lifecycle.md "Every NCC member holds the
coalition key", steps 2-3): a ``coalition.rekey`` team link any member of the space carries; the host's judge
replaces the pinned key when the ally's statement verifies with the key pinned now, keeps the old one retired and
refuses it afterwards whatever time the statement claims; a second, different rekey of a retired key freezes the ally
(no approval or removal by any of its keys) until the host's NCC re-pins it. The guest's view (replayed without the
host's organization chain, vault/chains/outside.py) agrees. Real chain code, two organizations built by hand."""

from __future__ import annotations

import pytest

from security.authority import POLICY
from security.policy import TEAM_KINDS
from tests.helpers.chain_world import Person
from tests.helpers.coalition_world import Ally, Coalition
from vault.chains import TeamState, replay_team
from vault.chains.coalition import CoalitionKey, expel_statement, rekey_statement, signed_statement
from vault.chains.outside import outside_org
from vault.errors import VaultError
from vault.links import Link


@pytest.fixture
def c() -> Coalition:
    return Coalition()


def rekey(c: Coalition, ally: Ally, signer: Person, new: CoalitionKey, *, old: CoalitionKey | None = None,
          append: bool = True) -> Link:
    statement = signed_statement(old or ally.key, rekey_statement(ally.root, new.public, ally.world.time))
    return c.host.team_link(c.space, signer, "coalition.rekey", dict(statement), append=append)


def refused(c: Coalition, link: Link, match: str | None) -> None:
    with pytest.raises(VaultError, match=match):
        c.state([link])


def guest_view(c: Coalition, upto: int) -> TeamState:
    """A guest's view: a join code vouching for the chain's first ``upto`` links, the rest replayed by team roles."""
    vouched = c.host.replay_team(c.space.links[:upto])
    outside = outside_org(c.host.org_links[0].hash, vouched.team_id, vouched.seq, vouched.ally_pins.items())
    return replay_team(c.space.links, outside, c.host.members(), POLICY, TEAM_KINDS)


def test_a_guest_carries_the_rekey_and_the_old_key_signs_nothing_after(c: Coalition) -> None:
    ally, alice, bob = c.ally_with_two_guests()
    joined = len(c.space.links)
    old, new = ally.key, CoalitionKey.generate()
    rekey(c, ally, bob, new)
    state = c.state()
    assert state.allies[ally.root].key == new.public and state.rekeys[old.public].new == new.public
    assert guest_view(c, joined).allies[ally.root].key == new.public  # the guest's client agrees
    erin = ally.member("erin", c.host)
    refused(c, c.add(erin, c.approval(ally, erin, key=old), append=False), "not signed with the coalition key")
    refused(c, c.remove(alice, [c.admin, c.writer, bob], signer=bob, statement=c.removal(ally, alice, key=old),
                        append=False), "not signed with the coalition key")
    expel = signed_statement(old, expel_statement(ally.root, alice.id, 0))
    refused(c, c.remove(alice, [c.admin, c.writer, bob], signer=bob, statement=expel, append=False),
            "not signed with the coalition key")
    ally.key = new
    c.add(erin, c.approval(ally, erin))
    c.remove(alice, [c.admin, c.writer, bob, erin], signer=bob, statement=c.removal(ally, alice))
    assert alice.id not in c.state().members and erin.id in c.state().members
    assert guest_view(c, joined).members == c.state().members


def test_a_rekey_the_space_refuses(c: Coalition) -> None:
    ally, other, alice, olga = c.two_allies()
    new = CoalitionKey.generate()
    refused(c, rekey(c, ally, alice, new, old=CoalitionKey.generate(), append=False), "not signed with the coalition")
    refused(c, rekey(c, ally, alice, other.key, old=ally.key, append=False), "already pinned here")
    unpinned = signed_statement(ally.key, rekey_statement(c.host.org_links[0].hash, new.public, 0))  # the host's
    refused(c, c.host.team_link(c.space, alice, "coalition.rekey", dict(unpinned), append=False), "not an ally pinned")
    refused(c, c.host.team_link(c.space, alice, "coalition.rekey", {"statement": b"x", "sig": bytes(64)},
                                append=False), "malformed")
    outsider = c.host.admit("outsider")  # a host member not in the space: carries nothing
    refused(c, rekey(c, ally, outsider, new, append=False), None)
    rekey(c, ally, alice, new)
    refused(c, rekey(c, ally, olga, new, old=ally.key, append=False), "already pinned here")  # the same, again
    refused(c, rekey(c, ally, olga, ally.key, old=new, append=False), "already pinned here")  # back to a retired key


def test_a_rival_rekey_of_a_retired_key_freezes_the_ally_until_the_host_re_pins(c: Coalition) -> None:
    """The departed NCC member (holding the old key) got a rekey to a key of its own carried first: the host takes
    it (the first rekey of a key wins). The ally's true rekey of the same old key, carried after, freezes the ally:
    neither key approves or removes anyone until the host's NCC re-pins the ally (from a pairing code exchanged in
    person); then only the re-pinned key counts."""
    ally, alice, bob = c.ally_with_two_guests()
    old, rival, true = ally.key, CoalitionKey.generate(), CoalitionKey.generate()
    rekey(c, ally, alice, rival)
    assert c.state().allies[ally.root].key == rival.public
    rekey(c, ally, bob, true)  # signed with the old key, naming another new key: a conflict
    state = c.state()
    assert state.allies[ally.root].frozen and state.allies[ally.root].key == rival.public
    erin = ally.member("erin", c.host)
    for key in (rival, true, old):
        refused(c, c.add(erin, c.approval(ally, erin, key=key), append=False), "frozen")
        refused(c, c.remove(alice, [c.admin, c.writer, bob], signer=bob, statement=c.removal(ally, alice, key=key),
                            append=False), "frozen")
    refused(c, rekey(c, ally, bob, CoalitionKey.generate(), old=rival, append=False), "frozen")
    refused(c, c.pin(ally, key=old.public, append=False), "already in the space")  # a retired key: never again
    c.pin(ally, key=true.public)  # the host's NCC re-pins the ally with the key its leaders gave in person
    assert not c.state().allies[ally.root].frozen and c.state().allies[ally.root].key == true.public
    refused(c, c.add(erin, c.approval(ally, erin, key=rival), append=False), "not signed with the coalition key")
    ally.key = true
    c.add(erin, c.approval(ally, erin))
    assert erin.id in c.state().members
    seen = guest_view(c, len(c.space.links))  # a guest's client with a join code made now replays it all
    assert not seen.allies[ally.root].frozen and seen.members == c.state().members


def test_a_re_pin_closes_every_earlier_key_and_a_key_retired_after_it_still_freezes(c: Coalition) -> None:
    """Review 16 (session 16): after the host's NCC re-pins a frozen ally, a rival rekey signed with a key retired
    before the re-pin is refused (it froze the ally again after every re-pin), on the host's side and the guest's;
    the designed race still holds for a key retired after the re-pin (it freezes the ally, on both sides)."""
    ally, alice, bob = c.ally_with_two_guests()
    old, rival, true = ally.key, CoalitionKey.generate(), CoalitionKey.generate()
    rekey(c, ally, alice, rival)
    rekey(c, ally, bob, true)  # the conflict: frozen
    c.pin(ally, key=true.public)  # re-pinned
    joined = len(c.space.links)  # a guest's join code made now (a re-pin past its code would need a newer one)
    for signer, key in ((alice, old), (alice, rival)):  # a key retired before the re-pin (old), or never in force here
        late = rekey(c, ally, signer, CoalitionKey.generate(), old=key, append=False)
        for replay in c.both(late):
            with pytest.raises(VaultError, match="not signed with the coalition key it replaces"):
                replay()
    ally.key, newer = true, CoalitionKey.generate()
    rekey(c, ally, bob, newer)  # the ally's next rekey, after the re-pin: true is retired since it
    assert c.state().allies[ally.root].key == newer.public
    rekey(c, ally, alice, CoalitionKey.generate(), old=true)  # a rival of a key retired since the re-pin: frozen
    assert c.state().allies[ally.root].frozen
    assert guest_view(c, joined).allies[ally.root].frozen  # a guest's client: the same
