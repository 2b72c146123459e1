"""Closing acts in the chain replay and the one judge (issue 20; vault/chains/closing.py): who may propose,
approve, record the exports and close; when the quorum is met (the ``[closing]`` parameters in force at the
proposal, distinct members each holding the role at their approval's time, the proposer counting as one NCC
approval, nobody counted twice); and that nothing follows ``org.closed``.

The world (tests/helpers/closing.py): founder, bob and dan hold NCC (a majority is two), carol is on the
Security Team, eve is a plain member."""

from __future__ import annotations

import pytest

from security.authority import POLICY
from tests.helpers.chain_world import MWorld, expect
from tests.helpers.closing import ClosingWorld, closing_world, propose_body
from vault.acts import Act
from vault.chains import PlanEntry, quorum_met
from vault.errors import ChainError, PolicyDenied


@pytest.fixture
def cw() -> ClosingWorld:
    return closing_world()


def test_a_closing_with_its_quorum_ends_the_chain(cw: ClosingWorld) -> None:
    w = cw.w
    proposal = cw.propose()
    cw.approve(proposal, cw.carol)
    cw.approve(proposal, cw.bob)
    cw.exported(proposal)
    cw.closed(proposal, by=cw.dan)
    org = w.org()
    assert org.closing.closed is not None and org.closing.closed.seq == org.seq
    assert org.closing.closed.proposal.exported == {0: bytes(32)}
    w.org_link(w.founder, "org.vouch", {"member": cw.eve.id})  # nothing follows org.closed
    expect(ChainError, w.org, match="no link may follow")
    del w.org_links[-1]
    with pytest.raises(PolicyDenied, match="organization was closed"):  # nor any act dated from it on
        POLICY.judge(Act(w.founder.id, w.founder.device.device_id, w.time, "org.vouch"), org, w.members(), None)


def test_below_quorum_nothing_is_exported_or_closed(cw: ClosingWorld) -> None:
    w = cw.w
    proposal = cw.propose()
    cw.approve(proposal, cw.carol)  # the Security Team's, but one NCC approval (the proposer's) of two
    cw.exported(proposal)
    expect(PolicyDenied, w.org, match="not reached its quorum")
    del w.org_links[-1]
    cw.closed(proposal)
    expect(PolicyDenied, w.org, match="not reached its quorum")
    del w.org_links[-1]
    cw.approve(proposal, cw.bob)  # two NCC of three and one Security Team member: the exports may run
    cw.exported(proposal)
    assert w.org().closing.proposals[proposal].met()


def test_ncc_alone_is_not_enough(cw: ClosingWorld) -> None:
    w = cw.w
    proposal = cw.propose()
    cw.approve(proposal, cw.bob)
    cw.approve(proposal, cw.dan)  # every NCC member, no Security Team member
    assert not w.org().closing.proposals[proposal].met()


@pytest.mark.parametrize("who", ["eve", "carol_after_term"])
def test_approvals_by_members_without_the_role_are_refused(cw: ClosingWorld, who: str) -> None:
    w = cw.w
    if who == "carol_after_term":  # carol's Security Team role ends before her approval
        w.role(w.founder, cw.carol, "security", grant=False)
        w.role(cw.bob, cw.carol, "security", grant=False)
    proposal = cw.propose()
    cw.approve(proposal, cw.eve if who == "eve" else cw.carol)
    expect(PolicyDenied, w.org, match="may not approve closing the organization")


def test_duplicate_approvals_and_the_proposers_own_do_not_count(cw: ClosingWorld) -> None:
    w = cw.w
    proposal = cw.propose()
    cw.approve(proposal, w.founder)
    expect(PolicyDenied, w.org, match="approved this closing already")
    del w.org_links[-1]
    cw.approve(proposal, cw.carol)
    cw.approve(proposal, cw.carol)
    expect(PolicyDenied, w.org, match="approved this closing already")


def test_a_member_holding_both_roles_counts_once(cw: ClosingWorld) -> None:
    w = cw.w
    w.role(w.founder, cw.bob, "security")
    w.role(cw.dan, cw.bob, "security")  # two people: dan confirms
    proposal = cw.propose()
    cw.approve(proposal, cw.bob)  # NCC and Security Team: one of the two places
    assert not w.org().closing.proposals[proposal].met()
    cw.approve(proposal, cw.carol)
    assert w.org().closing.proposals[proposal].met()


def test_only_ncc_proposes_and_closes(cw: ClosingWorld) -> None:
    w = cw.w
    cw.propose(by=cw.carol)
    expect(PolicyDenied, w.org, match="may not propose closing")
    del w.org_links[-1]
    proposal = cw.propose()
    cw.approve(proposal, cw.carol)
    cw.approve(proposal, cw.bob)
    cw.exported(proposal)
    cw.closed(proposal, by=cw.carol)
    expect(PolicyDenied, w.org, match="may not close the organization")


def test_not_before_and_every_export_are_required(cw: ClosingWorld) -> None:
    w = cw.w
    plan = [PlanEntry("team-a", (), ("age1abc",)), PlanEntry("team-b", ("doc1",), ("age1abc", "age1def"))]
    proposal = cw.propose(plan=plan, not_before=w.time + 1000)
    cw.approve(proposal, cw.carol)
    cw.approve(proposal, cw.bob)
    cw.exported(proposal, 1)
    cw.exported(proposal, 1)
    expect(ChainError, w.org, match="exported already")
    del w.org_links[-1]
    cw.closed(proposal)
    expect(PolicyDenied, w.org, match="may not be made before")
    del w.org_links[-1]
    w.time = w.org().closing.proposals[proposal].not_before
    cw.closed(proposal)
    expect(PolicyDenied, w.org, match=r"plan entries \[0\] were not exported")
    del w.org_links[-1]
    cw.exported(proposal, 0)
    cw.closed(proposal)
    assert w.org().closing.closed is not None


def test_the_quorum_is_the_one_in_force_at_the_proposal(cw: ClosingWorld) -> None:
    w = cw.w
    w.org_link(w.founder, "org.close.propose", propose_body(quorum={"ncc": "1", "security": 0},
                                                            not_before=w.time))
    expect(ChainError, w.org, match="not the one in force")
    del w.org_links[-1]
    proposal = cw.propose()  # then the NCC lowers the bar: the pending closing keeps its own
    text = "version = 2\n[closing]\nncc = \"1\"\nsecurity = 0\n"
    w.org_link(w.founder, "org.protocols.propose", {"text": text})
    w.org_link(cw.bob, "org.protocols.approve", {"digest": w.org().proposals.popitem()[0]})
    assert w.org().protocols is not None
    cw.approve(proposal, cw.bob)
    assert not w.org().closing.proposals[proposal].met()
    lower = cw.propose(quorum={"ncc": "1", "security": 0})  # a new proposal takes the new parameters
    assert w.org().closing.proposals[lower].met()


def test_a_closing_from_another_organization_is_refused(cw: ClosingWorld) -> None:
    other = closing_world()
    proposal = other.propose()
    other.approve(proposal, other.carol)
    other.approve(proposal, other.bob)
    other.exported(proposal)
    other.closed(proposal)
    foreign = other.w.org_links[-4:]
    w = cw.w
    w.org_links.extend(foreign)  # the other organization's links on this chain: refused
    expect(ChainError, w.org)
    del w.org_links[-4:]
    w.org_link(w.founder, "org.close.approve", {"proposal": proposal})  # its proposal named here: unknown
    expect(ChainError, w.org, match="names no closing proposal")


def test_malformed_plans_are_refused(cw: ClosingWorld) -> None:
    w = cw.w
    for body in [propose_body(plan=[]), {**propose_body(), "plan_hash": bytes(32)},
                 propose_body(plan=[PlanEntry("t", (), ("ssh-ed25519",))]),
                 propose_body(plan=[PlanEntry("t", ("d", "d"), ("age1x",))]),
                 {**propose_body(), "not_before": w.time - 10**6}]:
        w.org_link(w.founder, "org.close.propose", body)
        with pytest.raises((ChainError, PolicyDenied)):
            w.org()
        del w.org_links[-1]


def test_quorum_met_counts_each_member_once() -> None:
    n, s, both = frozenset({"ncc"}), frozenset({"security"}), frozenset({"ncc", "security"})
    assert quorum_met(2, 1, [n, n, s]) and quorum_met(2, 1, [n, both, n])
    assert not quorum_met(2, 1, [n, both]) and not quorum_met(2, 1, [both, both])
    assert quorum_met(1, 1, [both, both]) and not quorum_met(1, 1, [both])
    assert quorum_met(0, 0, [])


def test_world_is_replayable() -> None:
    assert isinstance(closing_world().w, MWorld)


def test_the_authority_model_reaches_a_closing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's closing steps (tests/helpers/authority_closing.py) on one path Hypothesis rarely draws: a Security
    Team member outside the team, a proposal approved at once, the exports and ``org.closed`` judged (accepted, then
    taken back), checked against the model at each link."""
    from tests.helpers import authority_machine
    from tests.test_authority_model import AuthorityMachine

    monkeypatch.setattr(authority_machine, "event", lambda *_: None)  # (outside a Hypothesis test)
    m = AuthorityMachine()
    m.start(1, False, None, "security", None)
    m.close_propose(0, 0, True, 3)
    [c] = m.closings.values()
    assert c.exported and len(c.approvers) == 2
    assert m.w.org_links[-1].type == "org.close.exported"  # org.closed was judged, then taken back
    m.close_approve(0, 0, 0, False, True)  # anyone else's approval: judged as the model says
