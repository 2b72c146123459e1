"""Issue 20, the ally's expulsion reaching the host's space (``coalition.expel``, vault/chains/coalition.py): the
ally's ``org.remove`` carries a statement per coalition key, checked by the ally's own chain replay; in the host's
space any member carries it in a ``coalition.remove`` (rotating), valid in any space that pins that key, for that
ally's own guest only, once. Two organizations built by hand (tests/helpers/coalition_world.py)."""

from __future__ import annotations

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import expect
from tests.helpers.coalition_world import Ally, Coalition
from tests.helpers.keyholder import openable
from vault.chains import replay_org
from vault.chains.coalition import CoalitionKey, expel_statement, expel_statements, signed_statement
from vault.encoding import Value
from vault.errors import ChainError


@pytest.fixture
def c() -> Coalition:
    return Coalition()


def expel(ally: Ally, member: str, key: CoalitionKey | None = None, root: bytes | None = None) -> dict[str, Value]:
    return signed_statement(key or ally.key, expel_statement(root or ally.root, member, ally.world.time))


def test_the_allys_org_remove_carries_checked_expels(c: Coalition) -> None:
    ally = c.ally()
    alice, bob = ally.member("alice", c.host), ally.member("bob", c.host)
    w = ally.world
    seeds = {c.space_name: ally.key.seed, "elsewhere": CoalitionKey.generate().seed}  # a key not recorded: skipped
    made = expel_statements(w.org().coalitions, seeds, ally.root, alice.id, w.time)
    assert len(made) == 1
    for wrong, error in (([expel(ally, bob.id)], "another organization or member"),
                         ([expel(ally, alice.id, root=c.host.org_links[0].hash)], "another organization or member"),
                         ([expel(ally, alice.id, key=CoalitionKey.generate())], "not signed with a coalition key"),
                         ([made[0], made[0]], "or twice with one"),
                         ("not a list", "must be a list"),
                         ([{"statement": b"x"}], "malformed")):
        link = w.org_link(w.founder, "org.remove", {"member": alice.id, "reason": "", "coalition": wrong},
                          append=False)
        with pytest.raises(ChainError, match=error):
            replay_org([*w.org_links, link], w.members(), POLICY)
    w.org_link(w.founder, "org.remove", {"member": alice.id, "reason": "", "coalition": made})
    org = w.org()
    assert not org.admitted(alice.id) and [e.raw for e in org.expels[alice.id]] == made


@pytest.mark.parametrize("carrier", ["ally-guest", "host-member"])
def test_an_expel_removes_the_allys_guest_from_the_space(c: Coalition, carrier: str) -> None:
    ally, alice, bob = c.ally_with_two_guests()
    before = c.state().generation
    signer = bob if carrier == "ally-guest" else c.writer
    c.remove(alice, [c.admin, c.writer, bob], signer=signer, statement=expel(ally, alice.id))
    state = c.state()
    assert alice.id not in state.members and state.generation == before + 1
    assert openable(c.space.team_id, state.canaries, state.prev, [alice.puk], c.every_box) == set(range(1, before + 1))


def test_an_expel_is_the_allys_for_its_own_guest_and_used_once(c: Coalition) -> None:
    ally, other, alice, olga = c.two_allies()
    rest = [c.admin, c.writer, olga]
    for statement, error in ((expel(other, alice.id), "only its own members"),  # another ally's key
                             (expel(ally, alice.id, root=other.root), "not signed with the coalition key"),
                             (expel(ally, alice.id, key=CoalitionKey.generate()), "not signed with the coalition key"),
                             (expel(ally, c.writer.id), "only its own members")):  # a host member
        link = c.remove(alice, rest, signer=olga, statement=statement, append=False)
        with pytest.raises(ChainError, match=error):
            c.state([link])
    statement = expel(ally, alice.id)
    c.remove(alice, rest, signer=olga, statement=statement)
    c.add(alice, c.approval(ally, alice))  # (the ally could not approve her again: its own chain refuses it)
    expect(ChainError, lambda: c.state([c.remove(alice, rest, signer=olga, statement=statement, append=False)]),
           "used once")
