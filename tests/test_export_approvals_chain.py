"""Issues 18 and 20: the export approval acts of a team chain (vault/chains/exports.py), replayed with the real
chain code and the one judge: who may request, who may approve (the Security Team, two distinct members, neither
the requester, before the expiry), malformed bodies, and when an export is entitled."""

from __future__ import annotations

from typing import Any

import pytest

from security.events import Event
from tests.helpers.chain_world import DAY, MWorld, Person, Team, expect, rejected
from tests.helpers.rules import audit, circle_of, event, ok, only, result
from vault.chains import TeamState
from vault.chains.exports import find_request
from vault.errors import ChainError, PolicyDenied
from vault.links import Link

R1 = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
R2 = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


class Exports:
    """A circle (alice writer, bob reader), three Security Team members outside it (s1, s2, s3), an NCC member."""

    def __init__(self) -> None:
        self.w = MWorld()
        w = self.w
        self.alice, self.bob = w.admit("alice"), w.admit("bob")
        self.sec = [w.admit(n) for n in ("s1", "s2", "s3")]
        for s in self.sec:
            w.role(w.founder, s, "security")
        self.team = circle_of(w, (self.alice, "writer"), (self.bob, "reader"))

    def request(self, by: Person, *, docs: Any = None, recipients: tuple[str, ...] = (R1,), ttl: int = 7 * DAY,
                append: bool = True) -> Link:
        return self.w.team_link(self.team, by, "export.request",
                                {"docs": docs, "recipients": list(recipients), "expires": self.w.time + 10 + ttl},
                                append=append)

    def approve(self, by: Person, request: Link, append: bool = True, **kw: Any) -> Link:
        return self.w.team_link(self.team, by, "export.approve", {"request": request.hash}, append=append, **kw)

    def state(self) -> TeamState:
        return self.w.replay_team(self.team.links)


@pytest.fixture
def x() -> Exports:
    return Exports()


def _refused(x: Exports, link: Link, exc: type[Exception], match: str) -> None:
    rejected(x.w, [*x.team.links, link], exc, match)


def test_two_security_members_approve_and_the_requester_may_export(x: Exports) -> None:
    req = x.request(x.alice, docs=["a" * 32, "b" * 32])
    state = x.state()
    found = state.exports[req.hash]
    assert found.requester == x.alice.id and found.docs == ("a" * 32, "b" * 32) and found.recipients == (R1,)
    assert "0 of the 2" in (found.refusal(x.alice.id, x.w.time) or "")
    x.approve(x.sec[0], req)
    assert "1 of the 2" in (x.state().exports[req.hash].refusal(x.alice.id, x.w.time) or "")
    x.approve(x.sec[1], req)
    done = x.state().exports[req.hash]
    assert done.refusal(x.alice.id, x.w.time) is None and done.status(x.w.time) == "approved"
    assert done.covers(["a" * 32]) and not done.covers(["c" * 32])
    assert "not yours" in (done.refusal(x.bob.id, x.w.time) or "")
    assert "expired" in (done.refusal(x.alice.id, done.expires) or "")
    assert find_request(x.state().exports, req.hash.hex()[:8]) is not None
    expect(ChainError, lambda: find_request(x.state().exports, "0" * 7))


def test_who_may_approve(x: Exports) -> None:
    req = x.request(x.alice)
    # a member without the Security Team role: NCC (the founder), or a member of the team
    _refused(x, x.approve(x.w.founder, req, append=False), PolicyDenied, "may not approve an export")
    _refused(x, x.approve(x.bob, req, append=False), PolicyDenied, "may not approve an export")
    x.approve(x.sec[0], req)
    _refused(x, x.approve(x.sec[0], req, append=False), ChainError, "approved the request already")
    # the requester, even holding the Security Team role
    x.w.role(x.w.founder, x.alice, "security")
    own = x.request(x.alice)
    _refused(x, x.approve(x.alice, own, append=False), ChainError, "cannot approve their own export")
    # a role revoked before the approval's time (the founder is the only NCC member: one signature)
    x.w.role(x.w.founder, x.sec[2], "security", grant=False)
    _refused(x, x.approve(x.sec[2], req, append=False), PolicyDenied, "may not approve an export")
    x.approve(x.sec[1], req)
    assert x.state().exports[req.hash].approved


def test_after_expiry_and_unknown_requests_are_refused(x: Exports) -> None:
    req = x.request(x.alice, ttl=100)
    _refused(x, x.approve(x.sec[0], req, append=False, time=x.w.time + 200), ChainError, "expired")
    other = Exports()
    foreign = other.request(other.alice)
    _refused(x, x.approve(x.sec[0], foreign, append=False), ChainError, "names no export request")


@pytest.mark.parametrize(("body", "match"), [
    ({"docs": [], "recipients": [R1]}, "non-empty"),
    ({"docs": ["b" * 32, "a" * 32], "recipients": [R1]}, "sorted"),
    ({"docs": None, "recipients": []}, "non-empty"),
    ({"docs": None, "recipients": [R2, R1]}, "sorted"),
    ({"docs": None, "recipients": ["age1notakey"]}, "age recipient"),
    ({"recipients": [R1]}, "missing docs"),
    ({"docs": None, "recipients": [R1], "expires": 0}, "expiry"),
    ({"docs": None, "recipients": [R1], "expires": 10**12}, "expiry"),
])
def test_malformed_requests_are_refused(x: Exports, body: dict[str, Any], match: str) -> None:
    body = {"expires": x.w.time + 3600, **body}
    _refused(x, x.w.team_link(x.team, x.alice, "export.request", body, append=False), ChainError, match)


def test_who_may_request(x: Exports) -> None:
    outsider: Team = x.team
    _refused(x, x.request(x.sec[0], append=False), PolicyDenied, "may not request an export")
    x.request(x.bob)  # a reader may: an export is a read
    assert len(x.state().exports) == 1 and outsider is x.team
    # paused by a lost-device incident: no request in a sensitive team
    phone = x.w.add_device(x.bob)
    x.w.org_link(x.sec[0], "org.device.cut", x.w.cut_body(x.bob, x.bob.device))
    _refused(x, x.w.team_link(x.team, x.bob, "export.request", {"docs": None, "recipients": [R1],
                                                                "expires": x.w.time + 100}, by=phone, append=False),
             PolicyDenied, "paused")


def test_the_rules_judge_exports_against_the_requests(x: Exports) -> None:
    """``exports``: a sensitive export under the exporter's approved request is fine; without one, under another
    member's, after the expiry or a second time under one request, a violation. ``two-person``: an export under a
    request with fewer than two approvals."""
    alice, tid = x.alice, x.team.team_id
    req = x.request(alice, ttl=3600)
    half = x.request(alice)
    x.approve(x.sec[0], req)
    x.approve(x.sec[1], req)
    x.approve(x.sec[0], half)
    t = x.w.time

    def export(who: Person, request: Link | None, when: int = t) -> Event:
        res = {"team": tid} | ({} if request is None else {"request": request.hash.hex()})
        return event(when, "doc.export", who.id, who.device.device_id, res=res, detail={"count": 2})

    fine = export(alice, req)
    ok(result(audit(x.w, [x.team], [fine]), "exports"))
    assert not [f for f in result(audit(x.w, [x.team], [fine]), "two-person").findings if "export" in f.message]
    for bad, why in ((export(alice, None), "no export request"), (export(x.bob, req), "not yours"),
                     (export(alice, req, req.time + 3600 + 1), "expired"), (export(alice, half), "1 of the 2")):
        f = only(result(audit(x.w, [x.team], [bad], now=t + 7200), "exports"), "violation")
        assert why in f.message and f.subject == tid, f.message
    twice = only(result(audit(x.w, [x.team], [fine, export(alice, req)]), "exports"), "violation")
    assert "used before" in twice.message and twice.events == (1,)
    (short,) = [f for f in result(audit(x.w, [x.team], [export(alice, half)]), "two-person").findings
                if "export" in f.message]
    assert "1 of the 2" in short.message and short.level == "violation"
