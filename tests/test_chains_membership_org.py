"""Issue 3 chain links replayed with the shipped policy: the organization chain, admission and roles.

Valid histories are accepted and leave the expected state; every forged, unauthorized or
inconsistent link is rejected with one specific error.
"""

from __future__ import annotations

import pytest

from tests.helpers.chain_world import DAY, MWorld, expect, new_person
from vault.chains import MAX_OPEN_INVITES
from vault.errors import ChainError, PolicyDenied
from vault.links import invite_public


@pytest.fixture
def world() -> MWorld:
    return MWorld()


# == organization chain: admission and roles ========================================================


def test_admission_valid_history(world: MWorld) -> None:
    alice = world.admit("alice")
    bob = world.pending("bob", alice)
    joined_at = world.org().seq
    world.org_link(world.founder, "org.admit", {"member": bob.id})
    org = world.org()
    assert org.members[bob.id].status == "admitted" and org.members[bob.id].invited_by == alice.id
    assert org.roles_of(bob.id) == {"member"}
    assert org.admitted(bob.id) and not org.admitted(bob.id, seq=joined_at)
    assert org.roles_of(bob.id, seq=joined_at) == frozenset()


@pytest.mark.parametrize("who", ["plain member", "compa", "staff", "security", "pending", "outsider"])
def test_admit_by_non_ncc(world: MWorld, who: str) -> None:
    alice = world.admit("alice")
    signer = world.admit("signer", role="compa" if who == "compa" else "member")
    if who in ("staff", "security"):
        world.role(world.founder, signer, who)
    elif who == "pending":
        signer = world.pending("signer-2", alice)
    elif who == "outsider":
        signer = world.person("outsider")  # a member chain, never joined
    target = world.pending("bob", alice)
    world.org_link(signer, "org.admit", {"member": target.id})
    expect(PolicyDenied, world.org, "may not admit")


def test_admit_of_an_admitted_or_unknown_member(world: MWorld) -> None:
    alice = world.admit("alice")
    world.org_link(world.founder, "org.admit", {"member": alice.id})
    expect(ChainError, world.org, "already admitted")
    world.org_links.pop()
    world.org_link(world.founder, "org.admit", {"member": new_person("ghost").id})
    expect(ChainError, world.org, "unknown member")


@pytest.mark.parametrize("who", ["plain member", "compa", "staff", "security", "pending"])
def test_role_grant_by_non_ncc(world: MWorld, who: str) -> None:
    alice = world.admit("alice")
    signer = world.admit("signer", role="compa" if who == "compa" else "member")
    if who in ("staff", "security"):
        world.role(world.founder, signer, who)
    elif who == "pending":
        signer = world.pending("signer-2", alice)
    world.role(signer, alice, "ncc")
    expect(PolicyDenied, world.org, "may not grant")


def test_revoking_the_last_ncc(world: MWorld) -> None:
    world.role(world.founder, world.founder, "ncc", grant=False)
    expect(ChainError, world.org, "last NCC")
    world.org_links.pop()
    # With a second NCC the founder may step down; the second may then not.
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    world.role(world.founder, world.founder, "ncc", grant=False)
    org = world.org()
    assert org.roles_of(world.founder.id) == {"member"} and "ncc" in org.roles_of(nina.id)
    world.role(nina, nina, "ncc", grant=False)
    expect(ChainError, world.org, "last NCC")


def test_an_expired_ncc_term_does_not_count_as_another_ncc(world: MWorld) -> None:
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc", until=world.time + 100)
    world.role(world.founder, world.founder, "ncc", grant=False, time=world.time + 200)
    expect(ChainError, world.org, "last NCC")


def test_the_last_ncc_term_ending_leaves_a_caretaker(world: MWorld) -> None:
    """When every NCC term has ended and no one was granted NCC since, whoever's term ended last stays
    NCC (a caretaker) until they grant it to someone else: the organization is never left without
    anyone who may admit, remove or grant roles. The caretaker cannot renew themselves."""
    nina, omar, alice = world.admit("nina"), world.admit("omar"), world.admit("alice")
    t = world.tick()
    world.role(world.founder, nina, "ncc", until=t + 1000)
    world.role(world.founder, omar, "ncc", until=t + 500)  # two NCC members: omar's grant is only proposed...
    world.role(nina, omar, "ncc", until=t + 500)  # ...until nina agrees
    world.role(world.founder, world.founder, "ncc", grant=False)  # stepping down: one signature
    org = world.org()
    assert "ncc" in org.roles_of(omar.id, t + 400) and "ncc" not in org.roles_of(omar.id, t + 600)
    assert "ncc" in org.roles_of(nina.id, t + 600)
    assert org.caretakers(org.seq, t + 999) == frozenset()
    # Both terms over: nina's ended last, so she stays; omar does not.
    assert org.caretakers(org.seq, t + 2000) == {nina.id}
    assert "ncc" in org.roles_of(nina.id, t + 2000) and "ncc" not in org.roles_of(omar.id, t + 2000)
    # She cannot renew herself (she holds the role; a new term comes from someone else)...
    world.role(nina, nina, "ncc", until=t + 90 * DAY, time=t + 2000)
    expect(ChainError, world.org, "already holds")
    world.org_links.pop()
    # ...but may hand over: once alice holds NCC, nina's caretaking ends.
    world.role(nina, alice, "ncc", until=t + 90 * DAY, time=t + 2000)
    org = world.org()
    assert "ncc" in org.roles_of(alice.id, t + 2001)
    assert "ncc" not in org.roles_of(nina.id, t + 2001) and org.caretakers(org.seq, t + 2001) == frozenset()
    # The state before the hand-over still judges acts dated then as nina's.
    assert "ncc" in org.roles_of(nina.id, t + 1999, org.seq - 1)


@pytest.mark.parametrize("offset", [-1, 0])
def test_role_grant_with_past_until(world: MWorld, offset: int) -> None:
    alice = world.admit("alice")
    t = world.tick()
    world.role(world.founder, alice, "staff", until=t + offset, time=t)
    expect(ChainError, world.org, "in the past")


def test_role_grant_with_an_end_date_expires(world: MWorld) -> None:
    alice = world.admit("alice")
    until = world.time + 1000
    world.role(world.founder, alice, "staff", until=until)
    org = world.org()
    assert org.roles_of(alice.id, until - 1) == {"member", "staff"}
    assert org.roles_of(alice.id, until) == {"member"}
    assert org.members[alice.id].role_terms["staff"] == until
    # After the term the role may be granted again (it is no longer held).
    world.role(world.founder, alice, "staff", time=until + 10)
    assert world.org().roles_of(alice.id, until + 10) == {"member", "staff"}


def test_compa_grant_swaps_the_base_role(world: MWorld) -> None:
    alice = world.admit("alice")
    world.role(world.founder, alice, "compa")
    assert world.org().roles_of(alice.id) == {"compa"}
    world.role(world.founder, alice, "compa", grant=False)
    assert world.org().roles_of(alice.id) == {"member"}
    # A compa holding an extra role keeps it through the swap.
    world.role(world.founder, alice, "security")
    world.role(world.founder, alice, "compa")
    assert world.org().roles_of(alice.id) == {"compa", "security"}


@pytest.mark.parametrize(
    ("case", "match"),
    [("already held", "already holds"), ("not held", "does not hold"), ("revocation with an end date", "no end date"),
     ("not grantable", "role must be one of"), ("pending member", "not an admitted member"),
     ("unknown member", "not an admitted member"), ("compa with an end date", "no end date")],
)
def test_role_link_rules(world: MWorld, case: str, match: str) -> None:
    alice = world.admit("alice")
    if case == "already held":
        world.role(world.founder, world.founder, "ncc")
    elif case == "not held":
        world.role(world.founder, alice, "staff", grant=False)
    elif case == "revocation with an end date":
        world.role(world.founder, alice, "staff")
        world.role(world.founder, alice, "staff", grant=False, until=world.time + 100)
    elif case == "not grantable":
        world.role(world.founder, alice, "member")
    elif case == "pending member":
        world.role(world.founder, world.pending("bob", alice), "staff")
    elif case == "compa with an end date":  # compa replaces the base role: an end would leave none
        world.role(world.founder, alice, "compa", until=world.time + 1000)
    else:
        world.role(world.founder, new_person("ghost"), "staff")
    expect(ChainError, world.org, match)


def test_invites_expire_within_30_days(world: MWorld) -> None:
    t = world.tick()
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"a" * 32),
                                                 "expires": t + 30 * DAY, "note": ""}, time=t)
    world.org()
    world.org_link(world.founder, "org.invite", {"role": "member", "invite": invite_public(b"b" * 32),
                                                 "expires": t + 30 * DAY + 1, "note": ""}, time=t)
    expect(ChainError, world.org, "30 days")


def test_at_most_20_open_invites_per_member(world: MWorld) -> None:
    alice = world.admit("alice")
    secrets = [world.invite(alice, lifetime=DAY) for _ in range(MAX_OPEN_INVITES)]
    world.org()
    world.invite(alice)
    expect(PolicyDenied, world.org, "unused invites open")
    world.org_links.pop()
    # Another member has its own allowance; a used or expired invite frees a place.
    world.invite(world.founder)
    world.join(world.person("carol"), secrets[0])
    world.invite(alice)
    world.org()
    world.invite(alice)
    expect(PolicyDenied, world.org, "unused invites open")
    world.org_links.pop()
    t = world.time + 2 * DAY  # every open invite of alice's has expired by then
    world.org_link(alice, "org.invite", {"role": "member", "invite": invite_public(b"c" * 32),
                                         "expires": t + DAY, "note": ""}, time=t)
    world.org()
