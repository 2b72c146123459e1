"""Export approvals as steps of the authority state machine (tests/test_authority_model.py, issues 18 and 20):
``export.request`` by anyone (a member of the team or not, paused, with a cut device), ``export.approve`` by
anyone (a Security Team member, one without the role, the requester, an approver a second time, after the expiry).
Each is appended and replayed with the real code and must be accepted exactly when the reference model
(tests/helpers/authority_model.py: the judge's rule for the act, plus ``MRequest``) says; and after every step the
real chain's answer to "may this member export this (sensitive) team under this request now?" is the model's."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from security.authority import POLICY
from tests.helpers.authority_machine import MachineBase, idx
from tests.helpers.authority_model import MRequest
from tests.helpers.chain_world import Person
from vault.acts import Act
from vault.chains import clone
from vault.errors import ChainError, PolicyDenied
from vault.links import Link

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
TTLS = [30, 700, 5000, 90000]


class ExportSteps(MachineBase):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[bytes, MRequest]] = []  # team -> request link hash -> the model's request

    def reqs(self, ti: int) -> dict[bytes, MRequest]:
        while len(self.requests) <= ti:
            self.requests.append({})
        return self.requests[ti]

    def export_link(self, ti: int, q: Person, type_: str, body: Mapping[str, object], want: bool) -> Link | None:
        """Append the link and replay it with the real code: accepted exactly when ``want``; the model's team moves
        on with an accepted one (an honest link names the org head: whoever left the organization leaves the team)."""
        link = self.team_link(ti, q, type_, dict(body), append=False)
        try:
            clone(self.states[ti]).apply(link, self.org, self.members, POLICY)
            got, why = True, ""
        except (ChainError, PolicyDenied) as e:
            got, why = False, f"{type(e).__name__}: {e}"
        event(f"{type_} {'accepted' if want else 'refused'}")
        assert got == want, f"{type_} {body} by {q.name} at {link.time}: model {want}, code {got} {why}"
        if not got:
            return None
        self.teams[ti].links.append(link)
        mt = self.m.teams[ti]
        mt.members = mt.view(self.m, self.m.org_seq)
        mt.awaiting &= set(mt.members)
        self.m.team_link(mt, link.time, self.m.org_seq)
        return link

    def org_role(self, signer: int, whom: int, role: str, term: int | None, grant: bool) -> None:
        raise NotImplementedError  # the machine's own step (tests/test_authority_model.py)

    @rule(a=idx, b=idx)
    def security_team_of_two(self, a: int, b: int) -> None:
        """Two grants of the Security Team role (honest, by NCC): approvals need two holders; now and then to a
        requester (who must still not approve their own request)."""
        admitted = [p for p in self.people() if self.m.admitted(p.id)]  # whom org_role picks from
        requesters = [p for p in admitted if any(r.requester == p.id for reqs in self.requests for r in reqs.values())]
        if requesters and a % 2 == 0:
            a = admitted.index(requesters[a % len(requesters)])
        self.org_role(0, a, "security", None, True)
        self.org_role(0, b, "security", None, True)

    @precondition(lambda self: bool(self.teams))
    @rule(team=idx, signer=idx, ttl=st.sampled_from(TTLS), honest=st.booleans())
    def export_request(self, team: int, signer: int, ttl: int, honest: bool) -> None:
        ti = team % len(self.teams)
        mt, t = self.m.teams[ti], self.now + 10
        position = (self.teams[ti].team_id, mt.seq + 1)

        def may(q: Person) -> bool:
            return self.m.entitled(q.id, self.dev(q).device_id, t, "export.request", org_seq=self.m.org_seq,
                                   team=mt, position=position)

        q: Person = self.pick([q for q in self.people() if may(q)] if honest else [], signer) or \
            self.pick(self.people(), signer)
        body = {"docs": None, "recipients": [RECIPIENT], "expires": t + ttl}
        link = self.export_link(ti, q, "export.request", body, may(q))
        if link is not None:
            self.reqs(ti)[link.hash] = MRequest(q.id, t + ttl)
        self.sync("export_request")

    @precondition(lambda self: any(self.requests))
    @rule(team=idx, signer=idx, pick=idx, honest=st.booleans())
    def export_approve(self, team: int, signer: int, pick: int, honest: bool) -> None:
        ti = team % len(self.teams)
        reqs = self.reqs(ti)
        if not reqs:
            return
        h = self.pick(sorted(reqs), pick)
        req = reqs[h]
        for _ in range(2 if honest else 1):  # an honest step tries for both approvals
            if honest and not self.approvers(ti, req):  # nobody may: grant the role to someone
                self.org_role(0, signer + pick, "security", None, True)
            fit = self.approvers(ti, req)
            # adversarial: the requester and those who approved already first, then anyone
            suspects = [p for p in self.people() if p.id == req.requester or p.id in req.approvers]
            q: Person = self.pick(fit if honest else [], signer) or self.pick([*suspects, *self.people()], signer)
            if self.export_link(ti, q, "export.approve", {"request": h}, q in fit) is not None:
                req.approvers.append(q.id)
            self.sync("export_approve")

    def approvers(self, ti: int, req: MRequest) -> list[Person]:
        """Who the model lets approve ``req`` now (10 s on) with their main device."""
        mt, t = self.m.teams[ti], self.now + 10
        position = (self.teams[ti].team_id, mt.seq + 1)
        return [q for q in self.people() if req.may_approve(q.id, t) and self.m.entitled(
            q.id, self.dev(q).device_id, t, "export.approve", org_seq=self.m.org_seq, team=mt, position=position)]

    @invariant()
    def d_exports_entitled_as_the_model_says(self) -> None:
        """For every request and member, now: the real chain's answer (``ExportRequest.refusal`` with the judge's
        ``doc.read``, what the server and clients ask before a sensitive export) is the model's."""
        t = self.now + 10
        for ti, reqs in enumerate(self.requests):
            state, mt = self.states[ti], self.m.teams[ti]
            for h, req in reqs.items():
                real = state.exports[h]
                for q in self.people():
                    d = self.dev(q).device_id
                    want = req.export_entitled(q.id, t) and self.m.entitled(q.id, d, t, "doc.read", team=mt)
                    got = real.refusal(q.id, t) is None and POLICY.entitled(Act(q.id, d, t, "doc.read"), self.org,
                                                                            self.members, state)
                    if want:
                        event("export entitled")
                    assert got == want, f"export by {q.name} under {h.hex()[:8]} at {t}: model {want}, code {got}"
