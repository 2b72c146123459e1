"""Review 16 (session 16): the host's own coalition key of a space follows the host's rekey. From the organization
state of the ``org.coalition`` that retired it, the host's judge refuses a statement signed with the retired key
(``coalitionspace.check_host_in_force``); a member carries the host's ``coalition.rekey`` statement (the one the
org.coalition link holds, signed with the old key) into the space as a team link, and from that link on both the
host's replay and a guest's take the new key only (``coalitionspace.rekey``). Chain level, both replays."""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import Person
from tests.helpers.coalition_world import Coalition
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement
from vault.errors import ChainError, VaultError
from vault.links import Link


def carried_rekey(c: Coalition, new: CoalitionKey) -> dict[str, object]:
    """The ``rekey`` statement of the host's org.coalition that recorded ``new`` (what a member carries)."""
    links = [x for x in c.host.org_links if x.type == "org.coalition" and x.body.raw.get("key") == new.public]
    rekey = links[-1].body.raw["rekey"]  # the link that recorded it (a second NCC member's, when two-person)
    assert isinstance(rekey, dict)
    return dict(rekey)


def carry(c: Coalition, signer: Person, statement: dict[str, object], append: bool = True) -> Link:
    return c.host.team_link(c.space, signer, "coalition.rekey", statement, append=append)


def refused_by_both(c: Coalition, link: Link, match: str | None = None) -> None:
    for replay in c.both(link):
        with pytest.raises(VaultError, match=match):
            replay()


def test_the_host_key_follows_the_hosts_rekey_on_both_sides() -> None:
    c = Coalition(hosted=True)
    old = c.host_key
    assert old is not None
    bob = c.host.admit("bob")
    c.add(bob, c.host_approval(bob))  # admitted with the old key before the rekey: stays valid on replay
    new = c.rekey_host_key()
    dan, erin = c.host.admit("dan"), c.host.admit("erin")
    # Before anyone carried the rekey: the host's side refuses the retired key at once (the guest cannot tell yet)
    with pytest.raises(ChainError, match="host_key is not this organization's coalition key"):
        c.state([c.add(dan, c.host_approval(dan, key=old), append=False)])
    with pytest.raises(ChainError, match="host_key is not this organization's coalition key"):
        c.state([c.remove(bob, [c.admin, c.writer], statement=c.host_removal(bob, key=old), append=False)])
    refused_by_both(c, c.add(dan, c.host_approval(dan, key=new), append=False), "not signed with the coalition key")
    carry(c, c.writer, carried_rekey(c, new))  # any member of the space carries it
    for state in (c.state(), c.outside(c.space.links)):
        assert state.host_key == new.public and state.host_retired[old.public] == len(c.space.links)
        assert bob.id in state.members
    refused_by_both(c, c.add(dan, c.host_approval(dan, key=old), append=False), "not signed with the coalition key")
    refused_by_both(c, c.remove(bob, [c.admin, c.writer], statement=c.host_removal(bob, key=old), append=False),
                    "not signed with the coalition key")
    c.host_key = new
    c.add(erin, c.host_approval(erin))
    c.remove(bob, [c.admin, c.writer, erin], statement=c.host_removal(bob))
    host, guest = c.state(), c.outside(c.space.links)
    assert host.members == guest.members and erin.id in host.members and bob.id not in host.members
    refused_by_both(c, carry(c, c.writer, carried_rekey(c, new), append=False), "already pinned")  # once


def test_a_rekey_the_hosts_chain_did_not_make_is_refused_on_the_hosts_side() -> None:
    """The departed NCC member, holding the space's host key, signs a rekey to a key of his own and carries it before
    the NCC's: the host's judge refuses it (its chain never recorded that key); the NCC's, carried after, is taken.
    (A guest's client, without the host's chain, would take the first rekey signed with the key in force: only a
    host server serving a fork the host's own clients refuse shows it to a guest, as for any link.)"""
    c = Coalition(hosted=True)
    old = c.host_key
    assert old is not None
    root, mine = c.host.org_links[0].hash, CoalitionKey.generate()
    rival = signed_statement(old, rekey_statement(root, mine.public, c.host.time))
    with pytest.raises(ChainError, match="did not replace the space's host key"):
        c.state([carry(c, c.writer, rival, append=False)])
    new = c.rekey_host_key()
    with pytest.raises(ChainError, match="did not replace the space's host key"):
        c.state([carry(c, c.writer, rival, append=False)])
    forged = signed_statement(CoalitionKey.generate(), rekey_statement(root, new.public, c.host.time))
    refused_by_both(c, carry(c, c.writer, forged, append=False), "not signed with the coalition key it replaces")
    carry(c, c.writer, carried_rekey(c, new))
    assert c.state().host_key == new.public == c.outside(c.space.links).host_key


def test_two_rekeys_of_the_host_key_are_carried_in_their_order() -> None:
    c = Coalition(hosted=True)
    first = c.rekey_host_key()
    c.host_key = first
    second = c.rekey_host_key()
    with pytest.raises(ChainError, match="not signed with the coalition key it replaces"):
        c.state([carry(c, c.writer, carried_rekey(c, second), append=False)])  # the later one first: not yet
    carry(c, c.admin, carried_rekey(c, first))
    carry(c, c.admin, carried_rekey(c, second))
    assert c.state().host_key == second.public == c.outside(c.space.links).host_key
    c.host_key = second
    dan = c.host.admit("dan")
    c.add(dan, c.host_approval(dan))
    assert dan.id in c.state().members and dan.id in c.outside(c.space.links).members
