"""The audit log's designated security team (``org.audit_team``) and the audit-key statement judge.

Pure tests (no server): the organization chain replays designations with the two-person rule
(``vault.chains.OrgState``), the server's directory checks the named team's kind
(``server.directory``), and ``security.auditkey.judge_audit_key`` judges statements with the one
judge against the designation in force at their time.
"""

from __future__ import annotations

import os

import pytest

from security.auditkey import AuditKeyClaim, designated_at, judge_audit_key, judge_cosignature
from security.authority import POLICY
from security.events import audit_key_statement, cosign_statement
from server.directory import Directory
from tests.helpers.chain_world import MWorld, Person, expect
from vault.chains import replay_org
from vault.crypto import labels
from vault.errors import BadSignature, ChainError, PolicyDenied


@pytest.fixture
def world() -> MWorld:
    return MWorld()


def designate(world: MWorld, signer: Person, team: str) -> None:
    world.org_link(signer, "org.audit_team", {"team": team})


def test_the_only_ncc_member_designates_alone(world: MWorld) -> None:
    designate(world, world.founder, "team-a")
    org = world.org()
    assert org.audit_team == "team-a" and org.audit_team_at(org.seq) == "team-a"
    assert org.audit_team_at(org.seq - 1) is None and not org.audit_team_proposals
    designate(world, world.founder, "team-a")
    expect(ChainError, world.org, "already the designated")


def test_with_a_second_ncc_member_a_designation_needs_their_approval(world: MWorld) -> None:
    nina = world.admit("nina")
    world.role(world.founder, nina, "ncc")
    designate(world, world.founder, "team-a")
    org = world.org()
    assert org.audit_team is None and set(org.audit_team_proposals) == {"team-a"}
    designate(world, world.founder, "team-a")  # the proposer alone: refused
    expect(PolicyDenied, world.org, "second NCC member")
    world.org_links.pop()
    designate(world, nina, "team-b")  # another team: a second proposal, not an approval
    assert world.org().audit_team is None
    designate(world, nina, "team-a")
    org = world.org()
    assert org.audit_team == "team-a" and not org.audit_team_proposals
    in_force_at = org.seq
    # Changing it needs the two people again; until then the old designation stands.
    designate(world, nina, "team-b")
    assert world.org().audit_team == "team-a"
    designate(world, world.founder, "team-b")
    org = world.org()
    assert org.audit_team == "team-b"
    assert org.audit_team_at(in_force_at) == "team-a" and org.audit_team_at(in_force_at - 1) is None
    assert [team for _, team in org.audit_team_log] == ["team-a", "team-b"]


def test_an_approval_needs_a_proposer_still_on_the_ncc(world: MWorld) -> None:
    nina, olga = world.admit("nina"), world.admit("olga")
    world.role(world.founder, nina, "ncc")
    world.role(world.founder, olga, "ncc")  # proposed (nina is NCC)...
    world.role(nina, olga, "ncc")  # ...in force
    designate(world, nina, "team-a")
    world.role(world.founder, nina, "ncc", grant=False)  # proposed (olga is NCC)...
    world.role(olga, nina, "ncc", grant=False)  # ...in force
    designate(world, olga, "team-a")  # nina is no NCC member now: olga's link is a new proposal
    org = world.org()
    assert org.audit_team is None and org.audit_team_proposals["team-a"][0] == olga.id
    designate(world, world.founder, "team-a")
    assert world.org().audit_team == "team-a"


@pytest.mark.parametrize("who", ["plain member", "compa", "staff", "security", "pending"])
def test_only_ncc_designates(world: MWorld, who: str) -> None:
    signer = world.admit("signer", role="compa" if who == "compa" else "member")
    if who in ("staff", "security"):
        world.role(world.founder, signer, who)
    elif who == "pending":
        signer = world.pending("signer-2", world.admit("alice"))
    designate(world, signer, "team-a")
    expect(PolicyDenied, world.org, "may not designate")


def test_designation_replay_is_stable(world: MWorld) -> None:
    nina = world.admit("nina")
    designate(world, world.founder, "team-a")  # in force: nina is no NCC member yet
    world.role(world.founder, nina, "ncc")
    designate(world, nina, "team-b")
    designate(world, world.founder, "team-b")
    world.admit("later")
    members = world.members()
    full = replay_org(world.org_links, members, POLICY)
    for k in range(1, len(world.org_links) + 1):
        prefix = replay_org(world.org_links[:k], members, POLICY)
        for seq in range(1, k + 1):
            assert prefix.audit_team_at(seq) == full.audit_team_at(seq)
    assert full.audit_team == "team-b" and replay_org(world.org_links, members, POLICY).audit_team_log == \
        full.audit_team_log


def _directory(world: MWorld) -> Directory:
    d = Directory()
    for person in world.people.values():
        for link in person.chain:
            d.commit_member(d.check_member_create(link) if link.seq == 1 else d.check_member_link(link))
    for link in world.org_links:
        d.commit_org(d.check_org_link(link), link)
    return d


def test_the_server_refuses_a_designation_of_a_team_that_is_not_a_security_team(world: MWorld) -> None:
    sec = world.create_team(world.founder, [(world.founder, "admin")], kind="security")
    circle = world.create_team(world.founder, [(world.founder, "admin")], kind="circle")
    d = _directory(world)
    for team in (sec, circle):
        d.commit_team(d.check_team_create(team.links[0]), team.links[0])
    for team_id in (circle.team_id, "f" * 32):
        link = world.org_link(world.founder, "org.audit_team", {"team": team_id}, append=False)
        expect(PolicyDenied, lambda link=link: d.check_org_link(link), "kind 'security'")  # type: ignore[misc]
    link = world.org_link(world.founder, "org.audit_team", {"team": sec.team_id}, append=False)
    assert d.check_org_link(link).audit_team == sec.team_id


def _statement(world: MWorld, signer: Person, team_id: str, gen: int = 1, t: int | None = None,
               org: str | None = None) -> tuple[AuditKeyClaim, bytes]:
    raw = audit_key_statement(org or world.org_id, team_id, gen, os.urandom(32), world.time if t is None else t,
                              signer.id, signer.device.device_id)
    return AuditKeyClaim.parse(raw), signer.device.sign(labels.SIG_AUDIT_KEY, raw)


def test_audit_key_statements_are_judged_against_the_designation_then(world: MWorld) -> None:
    carol = world.admit("carol")
    world.role(world.founder, carol, "security")
    dave = world.admit("dave")  # key holder of both security teams, but no security role
    sec = world.create_team(world.founder, [(world.founder, "admin"), (carol, "admin"), (dave, "writer")],
                            kind="security")
    sec2 = world.create_team(world.founder, [(world.founder, "admin"), (carol, "admin"), (dave, "writer")],
                             kind="security")
    prog = world.create_team(world.founder, [(world.founder, "admin"), (carol, "admin")], kind="program")
    teams = {t.team_id: world.replay_team(t.links) for t in (sec, sec2, prog)}
    before = world.time
    designate(world, world.founder, sec.team_id)
    org, members = world.org(), world.members()

    def judge(claim: AuditKeyClaim, sig: bytes) -> None:
        judge_audit_key(claim, sig, org, members, teams.get(claim.team), designated_at(org, claim.time))

    judge(*_statement(world, carol, sec.team_id))  # valid
    # Before the designation any security team qualified; after it, only the designated one.
    judge(*_statement(world, carol, sec2.team_id, t=before))
    expect(PolicyDenied, lambda: judge(*_statement(world, carol, sec2.team_id)), "designated security team")
    expect(PolicyDenied, lambda: judge(*_statement(world, carol, prog.team_id, t=before)), "kind 'security'")
    expect(PolicyDenied, lambda: judge(*_statement(world, dave, sec.team_id)), "may not publish")
    expect(ChainError, lambda: judge(*_statement(world, carol, sec.team_id, gen=2)), "never held generation")
    expect(PolicyDenied, lambda: judge(*_statement(world, carol, sec.team_id, org="x" * 32)), "another organization")
    claim, _ = _statement(world, carol, sec.team_id)
    expect(BadSignature, lambda: judge(claim, dave.device.sign(labels.SIG_AUDIT_KEY, claim.raw)))


def test_cosignatures_are_judged_at_their_signed_time(world: MWorld) -> None:
    carol = world.admit("carol")
    world.role(world.founder, carol, "security", until=world.time + 100)
    on_team = world.time + 50
    after = world.time + 200
    org, members = world.org(), world.members()
    cp = b"a checkpoint"

    def cosign(t: int, signer: Person = carol) -> None:
        sig = signer.device.sign(labels.SIG_COSIGN, cosign_statement(cp, signer.id, signer.device.device_id, t))
        judge_cosignature(cp, signer.id, signer.device.device_id, t, sig, org, members)

    cosign(on_team)
    expect(PolicyDenied, lambda: cosign(after), "may not cosign")
    expect(PolicyDenied, lambda: cosign(on_team, world.founder), "may not cosign")
