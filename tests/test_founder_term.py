"""The founder's NCC term (issue 15, README walk-through): ``org.create`` may carry ``ncc_until``, and
``mvault join`` with a founder invite sets it (``--until``, default one year), so a new organization does not
violate ``role-terms`` (every NCC term ends) from its first link. Without it the chain keeps the old meaning
(no end), so existing organizations replay unchanged."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from client.client import FOUNDER_TERM
from server.context import DIRECTORY
from tests.conftest import Member, ServerThread
from tests.helpers.chain_world import MWorld, expect
from vault.chains import OrgState, org_id_for
from vault.errors import ChainError
from vault.links import invite_public, make_link


def founded(world: MWorld, extra: dict[str, Any]) -> None:
    """Replace the world's org.create by one whose body has ``extra``."""
    create = make_link(
        chain=None, seq=1, prev=None, time=world.org_links[0].time, signer=world.founder.id,
        device=world.founder.device, type_="org.create",
        body={"name": "the-org", "founder_invite": invite_public(world.founder_secret),
              "member_head": world.founder.root, **extra},
        invite_secret=world.founder_secret)
    world.org_links[0], world.org_id = create, org_id_for(create.hash)


def test_the_founders_ncc_term_ends_and_leaves_a_caretaker() -> None:
    world = MWorld()
    t0 = world.org_links[0].time
    founded(world, {"ncc_until": t0 + 1000})
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc", until=t0 + 5000)
    org = world.org()
    assert org.members[world.founder.id].log[0].roles == {"member": None, "ncc": t0 + 1000}
    assert "ncc" in org.roles_of(world.founder.id, t0 + 999)
    assert "ncc" not in org.roles_of(world.founder.id, t0 + 1000)
    assert org.caretakers(org.seq, t0 + 6000) == {nina.id}


def test_without_a_term_the_founder_keeps_ncc() -> None:
    org = MWorld().org()
    (entry,) = next(iter(org.members.values())).log
    assert entry.roles == {"member": None, "ncc": None}


@pytest.mark.parametrize("until, match", [(0, "ends before the founding"), ("soon", "must be an integer")])
def test_a_bad_founder_term_is_refused(until: Any, match: str) -> None:
    world = MWorld()
    founded(world, {"ncc_until": world.org_links[0].time + until if until == 0 else until})
    expect(ChainError, lambda: OrgState.create(world.org_links[0], world.members()), match)


def founder_term(server: ServerThread) -> int | None:
    create = server.app[DIRECTORY].org_links[0]
    assert create.type == "org.create"
    until = create.body.opt_int("ncc_until")
    return until


def test_founding_gives_the_founder_a_one_year_term(server: ServerThread, make_member: Any) -> None:
    alice: Member = make_member("alice")
    assert server.invite is not None
    alice.ok("join", server.invite, "--name", "alice")
    until = founder_term(server)
    assert until is not None and abs(until - (int(server.clock()) + FOUNDER_TERM)) < 600
    assert "ncc" in alice.json("whoami")["roles"]


def test_the_founder_chooses_the_term(server: ServerThread, make_member: Any) -> None:
    alice: Member = make_member("alice")
    assert server.invite is not None
    day = datetime.date.today() + datetime.timedelta(days=200)
    alice.ok("join", server.invite, "--name", "alice", "--until", day.isoformat())
    end = datetime.datetime.combine(day, datetime.time(23, 59, 59), datetime.UTC)
    assert founder_term(server) == int(end.timestamp())


def test_a_term_in_the_past_or_for_a_member_is_refused(server: ServerThread, make_member: Any) -> None:
    alice, bob = make_member("alice"), make_member("bob")
    assert server.invite is not None
    alice.fails("join", server.invite, "--name", "alice", "--until", "2020-01-01", contains="must be in the future")
    assert not alice.home.exists()
    alice.ok("join", server.invite, "--name", "alice")
    code = alice.json("invite")["invite"]
    bob.fails("join", code, "--name", "bob", "--until", "2099-01-01", contains="is for the founder only")
    assert not bob.home.exists()
    bob.ok("join", code, "--name", "bob")
