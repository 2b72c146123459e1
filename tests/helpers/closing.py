"""Closing an organization in tests (issue 20): the bodies of the closing acts as an honest client makes them, and
a chain world with a quorum to reach (tests/test_closing_chain.py, the authority model's closing steps)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from server.directory import Directory
from tests.helpers.chain_world import MWorld, Person
from vault.chains import Closed, PlanEntry, Proposal, Quorum, plan_hash
from vault.links import Link

SUCCESSOR = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"
PLAN = [PlanEntry("team-x", (), (SUCCESSOR,))]
DEFAULT_QUORUM = {"ncc": "majority", "security": 1}


def propose_body(plan: list[PlanEntry] | None = None, quorum: dict[str, Any] | None = None,
                 not_before: int = 0) -> dict[str, Any]:
    plan = PLAN if plan is None else plan
    return {"plan": [e.body() for e in plan], "plan_hash": plan_hash(plan), "quorum": quorum or DEFAULT_QUORUM,
            "not_before": not_before}


@dataclass
class ClosingWorld:
    """Three NCC members (founder, bob, dan: a majority is two), carol on the Security Team, eve a member."""

    w: MWorld
    bob: Person
    carol: Person
    dan: Person
    eve: Person

    def propose(self, by: Person | None = None, **kw: Any) -> bytes:
        w = self.w
        kw.setdefault("not_before", w.time + 10)
        return w.org_link(by or w.founder, "org.close.propose", propose_body(**kw)).hash

    def approve(self, proposal: bytes, by: Person, **kw: Any) -> None:
        self.w.org_link(by, "org.close.approve", {"proposal": proposal}, **kw)

    def exported(self, proposal: bytes, entry: int = 0, by: Person | None = None) -> None:
        self.w.org_link(by or self.w.founder, "org.close.exported",
                        {"proposal": proposal, "entry": entry, "manifest": bytes(32)})

    def closed(self, proposal: bytes, by: Person | None = None, **kw: Any) -> None:
        self.w.org_link(by or self.w.founder, "org.closed", {"proposal": proposal}, **kw)


def closing_world() -> ClosingWorld:
    w = MWorld()
    carol = w.admit("carol")
    w.role(w.founder, carol, "security")
    bob, dan, eve = w.admit("bob"), w.admit("dan"), w.admit("eve")
    w.role(w.founder, bob, "ncc")  # the founder is the only other NCC member: one signature
    w.role(w.founder, dan, "ncc")  # proposed; bob, the second NCC member, puts it in force
    w.role(bob, dan, "ncc")
    assert {m for m in w.org().members if "ncc" in w.org().roles_of(m, w.time)} == {w.founder.id, bob.id, dan.id}
    return ClosingWorld(w, bob, carol, dan, eve)


@contextmanager
def pretend_closed(d: Directory, org_links: list[Link] | None = None,
                   member_links: dict[str, list[Link]] | None = None) -> Iterator[None]:
    """The server (``d``, its in-memory chains) says the organization was closed: it refuses every login and session
    (org_closed) and serves ``org_links`` and ``member_links`` (default: its own) as the closing. Its state is put
    back afterwards. A lying server, or one whose closing is real (tests/test_api_schemas.py)."""
    org = d.require_org()
    saved = d.org_links, d.member_links, org.closing.closed
    served = d.org_links if org_links is None else org_links
    last = served[-1]
    nothing = Proposal(b"", 0, "", 0, [], b"", Quorum("majority", 1), 1, 0)
    d.org_links = served
    if member_links is not None:
        d.member_links = member_links
    org.closing.closed = Closed(last.seq, last.hash, last.time, last.signer, nothing)
    try:
        yield
    finally:
        d.org_links, d.member_links, org.closing.closed = saved
