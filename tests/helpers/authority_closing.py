"""Closing the organization as steps of the authority state machine (tests/test_authority_model.py, issue 20):
``org.close.propose``, ``org.close.approve``, ``org.close.exported`` and ``org.closed`` signed by anyone (members
without the role, the proposer approving its own proposal, a second approval by the same member, any of their
devices, cut ones too), naming a real proposal or one that does not exist. Each is appended and replayed with the
real code and must be accepted exactly when the reference model entitles it. The model's quorum is its own: every
way of giving each approver one of the places its roles allow is tried (``model_met``), where the code counts
(``vault.chains.quorum_met``). An accepted ``org.closed`` is checked (nothing may follow it) and then taken back:
the machine goes on with an open organization."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import rule

from security.authority import POLICY
from security.protocols import defaults
from tests.helpers.authority_machine import MachineBase, idx
from tests.helpers.chain_world import Person
from tests.helpers.closing import propose_body
from vault.chains import clone
from vault.crypto import primitives as p
from vault.errors import ChainError, PolicyDenied
from vault.keys import DeviceKeys


@dataclass
class MClosing:
    """A closing proposal as the model sees it."""

    proposer: str
    ncc_members: int  # members holding NCC at the proposal
    approvers: dict[str, frozenset[str]] = field(default_factory=dict)  # member -> NCC/Security roles it approved with
    exported: bool = False


def model_met(c: MClosing, ncc_now: int, roles_now: dict[str, frozenset[str]]) -> bool:
    """The quorum in force at the proposal (the shipped defaults: the machine never changes them), by brute force:
    some assignment of each approver to one place (NCC, Security Team, none) that both the roles it approved with
    and its roles now (``roles_now``) allow fills both needs; the NCC places are counted on the larger of the NCC
    at the proposal and ``ncc_now`` (review round 11: a stale proposal does not close a grown NCC)."""
    q = defaults().closing

    def need(members: int) -> int:
        return members // 2 + 1 if q.ncc == "majority" else members if q.ncc == "all" else int(q.ncc)

    ncc_need = max(need(c.ncc_members), need(ncc_now))
    choices = [[None, *sorted(roles & roles_now[m])] for m, roles in c.approvers.items()]
    return any(sum(x == "ncc" for x in pick) >= ncc_need and sum(x == "security" for x in pick) >= q.security
               for pick in itertools.product(*choices))


class ClosingSteps(MachineBase):
    def __init__(self) -> None:
        super().__init__()
        self.closings: dict[bytes, MClosing] = {}

    def closing_signer(self, i: int, action: str, t: int, honest: bool, dev: int,
                       but: frozenset[str] = frozenset()) -> tuple[Person, DeviceKeys]:
        """Anyone with any device; ``honest``: someone the model entitles to ``action`` (not in ``but``), with their
        main device, when there is one."""
        fit = [q for q in self.people() if q.id not in but and self.m.entitled(q.id, self.dev(q).device_id, t, action)
               ] if honest else []
        q: Person = self.pick(fit or self.people(), i)
        d = self.dev(q) if honest else self.pick([*self.w.devices[q.id].values(), *self.revoked[q.id]], dev)
        return q, d

    def closing_judged(self, q: Person, d: DeviceKeys, t: int, type_: str, body: dict[str, object], want: bool,
                       keep: bool = True) -> bool:
        link = self.w.org_link(q, type_, body, time=t, append=False, by=d)
        got = self.org_link_judged(link, want, type_)
        if got:
            self.w.time = max(self.w.time, t)
            self.m.org_link(t)
            self.last_closing = link.hash
            if not keep:
                del self.w.org_links[-1]
                del self.m.org[-1], self.m.org_times[-1]
            self.sync()  # the next link is judged on the state this one made
        return got

    def met_at(self, c: MClosing, t: int) -> bool:
        return model_met(c, self.ncc_count(t),
                         {m: self.m.org_roles(m, self.m.org_seq, t) & {"ncc", "security"} for m in c.approvers})

    def ncc_count(self, t: int) -> int:
        return sum(1 for q in self.people() if "ncc" in self.m.org_roles(q.id, self.m.org_seq, t))

    @rule(signer=idx, dev=idx, honest=st.booleans(), approvals=st.integers(0, 3))
    def close_propose(self, signer: int, dev: int, honest: bool, approvals: int) -> None:
        """A proposal by anyone, then (when it was accepted) up to ``approvals`` honest approvals at once (so that
        quorums are reached often enough), and with three approvals the run (the exports and ``org.closed``) at once."""
        t = self.now + 10
        q, d = self.closing_signer(signer, "org.close.propose", t, honest, dev)
        want = self.m.entitled(q.id, d.device_id, t, "org.close.propose")
        ncc = self.ncc_count(t)
        if self.closing_judged(q, d, t, "org.close.propose", propose_body(not_before=t), want):
            self.closings[self.last_closing] = MClosing(q.id, ncc, {q.id: frozenset({"ncc"})})
            self.sync("close_propose")
            for i in range(approvals):
                self.close_approve(signer + i, dev, len(self.closings) - 1, True, True)
            if approvals == 3:  # and run it, when its quorum is met
                self.close_run(signer, dev, len(self.closings) - 1, True)
        self.sync("close_propose")

    def proposal(self, pick: int, real: bool) -> bytes:
        found: bytes | None = self.pick(list(self.closings), pick) if real else None
        return found or p.random_bytes(32)

    @rule(signer=idx, dev=idx, pick=idx, honest=st.booleans(), real=st.booleans())
    def close_approve(self, signer: int, dev: int, pick: int, honest: bool, real: bool) -> None:
        t = self.now + 10
        h = self.proposal(pick, real or honest)
        c = self.closings.get(h)
        q, d = self.closing_signer(signer, "org.close.approve", t, honest, dev,
                                   frozenset(c.approvers) if c is not None else frozenset())
        want = (c is not None and q.id not in c.approvers
                and self.m.entitled(q.id, d.device_id, t, "org.close.approve"))
        roles = self.m.org_roles(q.id, self.m.org_seq, t) & {"ncc", "security"}
        if self.closing_judged(q, d, t, "org.close.approve", {"proposal": h}, want):
            assert c is not None
            c.approvers[q.id] = roles
        self.sync("close_approve")

    @rule(signer=idx, dev=idx, pick=idx, honest=st.booleans())
    def close_run(self, signer: int, dev: int, pick: int, honest: bool) -> None:
        """The hand-over export recorded, then ``org.closed`` (checked, then taken back)."""
        t = self.now + 10
        h = self.proposal(pick, True)
        c = self.closings.get(h)
        q, d = self.closing_signer(signer, "org.close.exported", t, honest, dev)
        want = (c is not None and not c.exported and self.met_at(c, t)
                and self.m.entitled(q.id, d.device_id, t, "org.close.exported"))
        body: dict[str, object] = {"proposal": h, "entry": 0, "manifest": bytes(32)}
        if self.closing_judged(q, d, t, "org.close.exported", body, want):
            assert c is not None
            c.exported = True
        t = self.now + 10
        q, d = self.closing_signer(signer + 1, "org.closed", t, honest, dev)
        want = (c is not None and c.exported and self.met_at(c, t)
                and self.m.entitled(q.id, d.device_id, t, "org.closed"))
        if self.closing_judged(q, d, t, "org.closed", {"proposal": h}, want, keep=False):
            self.nothing_follows_the_closing(h, q, d, t)
        self.sync("close_run")

    def nothing_follows_the_closing(self, h: bytes, q: Person, d: DeviceKeys, t: int) -> None:
        closed = clone(self.org)
        link = self.w.org_link(q, "org.closed", {"proposal": h}, time=t, append=False, by=d)
        closed.apply(link, self.members, POLICY)
        after = self.w.org_link(q, "org.close.propose", propose_body(not_before=t), time=t + 1, append=False, by=d)
        try:
            clone(closed).apply(after, self.members, POLICY)
        except (ChainError, PolicyDenied):
            return
        raise AssertionError("a link after org.closed was accepted")
