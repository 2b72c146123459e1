"""Signed records (issue 18): vouches, key verifications, approvals (org chain) and membership reviews (team
chain) are links signed by a member's device and replayed by every client, so a server cannot make one up.

1. The replay every client runs (``MWorld``, real chains): a record made up by the server, replayed from another
   organization or team, signed by the wrong member, by a removed member or with a device revoked before, is
   refused; honest ones are kept in ``OrgState.records`` / ``TeamState.reviews``.
2. The real server and CLI (fixture ``forge``): each forgery posted to the API is refused and changes nothing;
   served by the server, every client's next command fails with one clear line; the commands themselves work.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from security.authority import POLICY
from security.policy import TEAM_KINDS
from tests.helpers.chain_world import MWorld, Person, Team
from tests.helpers.forgery import Forge, Forgery, served, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.http import Http, b64, login_as, refused
from tests.helpers.rules import circle_of, refused_org_link
from vault.chains import clone, records_of, replay_team
from vault.errors import ChainError, PolicyDenied
from vault.keys import DeviceKeys
from vault.links import Link, make_link

forge = forge_fixture  # the fixture (tests/helpers/forgery.py)


@pytest.fixture
def world() -> MWorld:
    return MWorld()


def fp() -> bytes:
    return bytes(range(32))


# == 1. the replay every client runs =================================================================


def test_honest_records_are_kept_in_chain_order(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    world.org_link(alice, "org.vouch", {"member": bob.id})
    world.org_link(bob, "org.verify", {"member": alice.id, "fingerprint": fp()})
    grant = world.role(world.founder, alice, "security")
    world.role(world.founder, bob, "ncc")
    world.org_link(bob, "org.approve", {"link": grant.hash})
    org = world.org()
    assert [(r.type, r.signer, r.subject) for r in org.records] == [
        ("org.vouch", alice.id, bob.id), ("org.verify", bob.id, alice.id),
        ("org.approve", bob.id, grant.hash.hex())]
    assert records_of(org, "org.verify")[0].detail == fp().hex()
    assert records_of(org, "org.approve")[0].detail == str(grant.seq)


@pytest.mark.parametrize("case", ["made-up device", "another member's device", "compa vouches", "self vouch",
                                  "vouch twice", "for a removed member", "by a removed member",
                                  "revoked device", "approve by a non-NCC member", "approve by the signer",
                                  "approve by the subject", "approve a link of another organization"])
def test_forged_org_records_are_refused_by_the_replay(world: MWorld, case: str) -> None:
    alice, bob, compa = world.admit("alice"), world.admit("bob"), world.admit("cleo", role="compa")
    grant = world.role(world.founder, alice, "security")
    vouch = {"member": bob.id}
    if case == "made-up device":  # the server signs in alice's name with a key it made
        link = world.org_link(alice, "org.vouch", vouch, by=DeviceKeys.generate(), append=False)
        with pytest.raises(ChainError, match="not an active device"):
            clone(world.org()).apply(link, world.members(), POLICY)
        return
    if case == "another member's device":
        link = world.org_link(alice, "org.verify", {"member": bob.id, "fingerprint": fp()}, by=bob.device,
                              append=False)
        with pytest.raises(ChainError, match="not an active device"):
            clone(world.org()).apply(link, world.members(), POLICY)
        return
    if case == "revoked device":  # bob's phone, revoked before the verification is dated
        phone = world.add_device(bob, "phone")
        world.revoke_device(bob, phone)
        link = world.org_link(bob, "org.verify", {"member": alice.id, "fingerprint": fp()}, by=phone, append=False)
        with pytest.raises((ChainError, PolicyDenied), match="not an active device|not active at"):
            clone(world.org()).apply(link, world.members(), POLICY)
        return
    signer: Person
    body: dict[str, Any]
    if case == "compa vouches":
        signer, body, why = compa, vouch, "may not vouch"
    elif case == "self vouch":
        signer, body, why = bob, vouch, "themselves"
    elif case == "vouch twice":
        world.org_link(alice, "org.vouch", vouch)
        signer, body, why = alice, vouch, "already in the chain"
    elif case == "for a removed member":
        world.org_link(world.founder, "org.remove", {"member": bob.id, "reason": ""})
        signer, body, why = alice, vouch, "not a current member"
    elif case == "by a removed member":
        world.org_link(world.founder, "org.remove", {"member": alice.id, "reason": ""})
        signer, body, why = alice, vouch, "not an admitted member"
    elif case == "approve by a non-NCC member":
        signer, body, why = bob, {"link": grant.hash}, "may not approve"
    elif case == "approve by the signer":
        signer, body, why = world.founder, {"link": grant.hash}, "neither the link's signer nor its subject"
    elif case == "approve by the subject":
        world.role(world.founder, alice, "ncc")  # alice may approve, but not her own grant
        signer, body, why = alice, {"link": grant.hash}, "neither the link's signer nor its subject"
    else:
        other = MWorld()
        foreign = other.role(other.founder, other.admit("zed"), "staff")
        world.role(world.founder, bob, "ncc")
        signer, body, why = bob, {"link": foreign.hash}, "names no earlier link"
    assert why in refused_org_link(world, signer, "org." + ("approve" if "link" in body else "vouch"), body)


def test_a_record_replayed_from_another_organization_is_refused(world: MWorld) -> None:
    other = MWorld()
    zed = other.admit("zed")
    theirs = other.org_link(other.founder, "org.vouch", {"member": zed.id})
    world.admit("alice")
    with pytest.raises(ChainError):
        clone(world.org()).apply(theirs, world.members(), POLICY)


def review(world: MWorld, team: Team, signer: Person, roster: bytes | None = None, **kw: Any) -> Link:
    state = world.replay_team(team.links)
    return world.team_link(team, signer, "team.review",
                           {"roster": state.roster(world.org()) if roster is None else roster}, **kw)


def test_team_reviews(world: MWorld) -> None:
    alice, bob = world.admit("alice"), world.admit("bob")
    team = circle_of(world, (alice, "admin"), (bob, "writer"))
    first = review(world, team, alice)
    state = world.replay_team(team.links)
    assert state.reviews == [(first.seq, alice.id, first.time)]
    refusals = {
        "a writer reviews": (review(world, team, bob, append=False), "may not review"),
        "the roster of another list": (review(world, team, alice, roster=bytes(32), append=False),
                                       "not the team's"),
        "a made-up device": (review(world, team, alice, by=DeviceKeys.generate(), append=False),
                             "not an active device"),
    }
    other = circle_of(world, (alice, "admin"), (bob, "admin"))
    review(world, other, alice)  # the other team's chain as long as this one: its next review has seq 3 too
    refusals["replayed from another team"] = (review(world, other, bob, append=False), "another chain|current head")
    world.org_link(world.founder, "org.remove", {"member": alice.id, "reason": ""})
    refusals["by an admin removed from the organization"] = (review(world, team, alice, append=False),
                                                             "not an admitted member|may not review")
    state = world.replay_team(team.links)
    for link, why in refusals.values():
        with pytest.raises((ChainError, PolicyDenied), match=why):
            clone(state).apply(link, world.org(), world.members(), POLICY)
    # The roster changed with alice's removal: a review now confirms the new list only.
    assert replay_team([*team.links, review(world, team, world.founder, append=False)], world.org(),
                       world.members(), POLICY, TEAM_KINDS).reviews[-1][1] == world.founder.id


# == 2. the real server and CLI =======================================================================


def org_link(f: Forge, signer: str, type_: str, body: dict[str, Any], *, device: DeviceKeys | None = None) -> Link:
    org = f.d.require_org()
    return make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=max(f.now(), org.time),
                     signer=f.ids[signer], device=device or f.device(signer), type_=type_, body=body)


def forged_records(f: Forge) -> list[Forgery]:
    org = f.d.require_org()
    grant = next(lk for lk in f.d.org_links if lk.type == "org.invite")  # alice's
    drafting = f.d.team(f.drafting)
    return [
        Forgery("a vouch in bob's name, signed by a device the server made up", "org",
                org_link(f, "bob", "org.vouch", {"member": f.ids["carol"]}, device=DeviceKeys.generate()),
                "not an active device"),
        Forgery("a verification in bob's name from alice's device", "org",
                org_link(f, "bob", "org.verify", {"member": f.ids["carol"], "fingerprint": fp()},
                         device=f.device("alice")), "not an active device"),
        Forgery("an approval by a member without NCC", "org",
                org_link(f, "bob", "org.approve", {"link": grant.hash}), "may not approve"),
        Forgery("an approval by the link's own signer", "org",
                org_link(f, "alice", "org.approve", {"link": org.root}), "neither the link's signer"),
        Forgery("a review by a writer", f.drafting,
                team_link(f, f.drafting, "bob", "team.review", {"roster": drafting.roster()}), "may not review"),
        Forgery("a review confirming another list", f.drafting,
                team_link(f, f.drafting, "alice", "team.review", {"roster": bytes(32)}), "not the team's"),
    ]


def test_forged_records_posted_to_the_api_are_refused(forge: Forge) -> None:
    f = forge

    async def post_all() -> None:
        async with Http(f.server) as h:
            tokens = {n: await login_as(h, f.ids[n], f.device(n)) for n in ("alice", "bob")}
            before = (f.d.require_org().head, f.d.team(f.drafting).head)
            for forgery in forged_records(f):
                signer = next(n for n, mid in f.ids.items() if mid == forgery.link.signer)
                path = "/api/v1/org/links" if forgery.chain == "org" else f"/api/v1/teams/{forgery.chain}/links"
                js: dict[str, Any] = {"link": b64(forgery.link.wire)}
                if forgery.chain != "org":
                    js["boxes"] = {}
                # Signed with a device that is not the session's: refused before any replay (403); otherwise the
                # server's replay refuses it as every client's does (403 not entitled, 400 a bad link).
                if "not an active device" in forgery.client_error:
                    status, contains = 403, "logged-in device"
                else:
                    status, contains = (403 if "may not" in forgery.client_error else 400), forgery.client_error
                await refused(h, "POST", path, status, token=tokens[signer], js=js, contains=contains,
                              what=forgery.label)
            assert (f.d.require_org().head, f.d.team(f.drafting).head) == before
            assert f.d.require_org().records == [] and f.d.team(f.drafting).reviews == []

    asyncio.run(post_all())


def test_forged_records_served_by_the_server_are_caught_by_every_client(forge: Forge) -> None:
    f = forge
    for m in f.clients():
        m.ok("whoami")  # every chain pinned
    for forgery in forged_records(f):
        with served(f, forgery):
            for m in f.clients():
                m.fails("whoami", contains=forgery.client_error)
    for m in f.clients():
        assert "drafting" in m.json("whoami")["teams"]  # undone: the failures came from the forgeries alone


def test_vouch_verify_review_and_approve_end_to_end(forge: Forge) -> None:
    f = forge
    alice, bob, carol = f.org.alice, f.org.bob, f.carol
    assert bob.json("vouch", "carol") == {"member": f.ids["carol"], "name": "carol", "vouched": True}
    bob.fails("vouch", "carol", contains="already in the chain")
    carol.fails("vouch", "carol", contains="yourself")
    shown = alice.json("verify", "bob", "--confirm")
    assert shown["verified"] == "yes"
    alice.ok("verify", "bob", "--confirm")  # the same keys again: nothing new to sign
    reviewed = alice.json("team", "review", "drafting")
    assert sorted(reviewed["member_names"]) == ["alice", "bob"]
    bob.fails("team", "review", "drafting", contains="may not review")
    org = f.d.require_org()
    assert [(r.type, r.signer, r.subject) for r in org.records] == [
        ("org.vouch", f.ids["bob"], f.ids["carol"]), ("org.verify", f.ids["alice"], f.ids["bob"])]
    assert [r[1] for r in f.d.team(f.drafting).reviews] == [f.ids["alice"]]
    # Admin changes are approved by a second person with a signed team.approve (rule two-person).
    alice.ok("team", "role", "ops", "bob", "admin")
    alice.ok("team", "role", "ops", "carol", "admin")
    promoted = f.d.team(f.ops).seq  # carol's promotion
    carol.fails("team", "approve", "ops", str(promoted), contains="neither the link's signer nor its subject")
    alice.fails("team", "approve", "ops", str(promoted), contains="neither the link's signer nor its subject")
    approved = bob.json("team", "approve", "ops", str(promoted))
    assert approved["seq"] == promoted and approved["approved"] == f.d.team_links[f.ops][promoted - 1].hash.hex()
    for m in (alice, bob, carol):  # every client replays the records and accepts them
        m.ok("whoami")
