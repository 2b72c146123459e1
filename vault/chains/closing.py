"""Closing an organization: the quorum-signed acts that end its chain (issue 20; docs/lifecycle.md section 3).

    org.close.propose   {plan, plan_hash, quorum, not_before}
                        an NCC member proposes the closing: ``plan`` the hand-over plan (per entry a team id, the
                        ids of the documents handed over, none for every live one, and the successors' age
                        recipients), ``plan_hash`` its tagged hash (``plan_hash``), ``quorum`` the ``[closing]``
                        parameters of the security protocols in force (``{ncc, security}``: refused when they are
                        not those), ``not_before`` the earliest time of its ``org.closed``
    org.close.approve   {proposal}
                        an NCC or Security Team member approves the proposal (its link hash); the proposer counts as
                        one NCC approval, and nobody approves twice
    org.close.exported  {proposal, entry, manifest}
                        an NCC member records that plan entry ``entry`` was exported: ``manifest`` the SHA-256 of
                        the export's manifest.json (only once the quorum is met)
    org.closed          {proposal}
                        an NCC member ends the chain: the quorum is met, ``not_before`` has passed and every plan
                        entry was exported. No link of any chain may follow it (``Closing.closed``)

The quorum: ``ncc`` NCC approvals (``majority``: more than half of the members holding NCC at the proposal's time,
``all``: every one of them, or a number) and ``security`` Security Team approvals, by distinct members, each
holding the role at its approval's time, and no member counted for both: a member holding both roles counts for
one of them (``quorum_met``). The signers' rights are judged by the one judge (``security.authority``) as the
act of the link's type; this module checks what the acts name and records their effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, encode
from vault.errors import ChainError, PolicyDenied
from vault.links import Link

CLOSING_TYPES = ("org.close.propose", "org.close.approve", "org.close.exported", "org.closed")
MAX_ENTRIES = 256
MAX_DELAY = 365 * 86400  # not_before at most this far after the proposal


@dataclass(frozen=True)
class Quorum:
    """The ``[closing]`` protocol parameters: ``ncc`` is ``majority``, ``all`` or a number (as text)."""

    ncc: str
    security: int

    def body(self) -> dict[str, Value]:
        return {"ncc": self.ncc, "security": self.security}

    def ncc_needed(self, ncc_members: int) -> int:
        """How many NCC approvals a closing needs when ``ncc_members`` members held NCC at its proposal."""
        if self.ncc == "majority":
            return ncc_members // 2 + 1
        if self.ncc == "all":
            return ncc_members
        return int(self.ncc)


def check_quorum(ncc: str, security: int) -> Quorum:
    """The quorum parameters, refused (ValueError) unless ``ncc`` is majority, all or a number 1-99 and
    ``security`` 0-99."""
    if ncc not in ("majority", "all") and not (ncc.isascii() and ncc.isdigit() and 1 <= int(ncc) <= 99
                                               and str(int(ncc)) == ncc):
        raise ValueError("ncc must be 'majority', 'all' or a number from 1 to 99 (as a string)")
    if not 0 <= security <= 99:
        raise ValueError("security must be a number from 0 to 99")
    return Quorum(ncc, security)


@dataclass(frozen=True)
class PlanEntry:
    """One hand-over: the documents of ``team`` (all its live ones when ``documents`` is empty) to ``recipients``."""

    team: str
    documents: tuple[str, ...]
    recipients: tuple[str, ...]

    def body(self) -> dict[str, Value]:
        return {"team": self.team, "documents": list(self.documents), "recipients": list(self.recipients)}


def plan_hash(plan: list[PlanEntry]) -> bytes:
    """The tagged hash (``mvault/v1/close-plan``) of the canonical encoding of the plan's body."""
    return p.tagged_hash(labels.H_CLOSE_PLAN, encode([e.body() for e in plan]))


def parse_plan(items: list[Value]) -> list[PlanEntry]:
    """The ``plan`` field of an ``org.close.propose`` (EncodingError / ChainError when malformed)."""
    plan = []
    for item in items:
        f = Fields(item, "plan entry", {"team", "documents", "recipients"})
        docs = tuple(_strs(f, "documents", 10000, 64))
        recipients = tuple(_strs(f, "recipients", 64, 256))
        if not recipients or not all(r.startswith("age1") and r.isascii() and r.isalnum() for r in recipients):
            raise ChainError("a plan entry hands over to one or more age recipients (age1...)")
        if len(set(docs)) != len(docs) or len(set(recipients)) != len(recipients):
            raise ChainError("a plan entry names a document or a recipient twice")
        plan.append(PlanEntry(f.str_("team", 64), docs, recipients))
    return plan


def _strs(f: Fields, key: str, count: int, size: int) -> list[str]:
    out = []
    for v in f.list_(key, count):
        if not isinstance(v, str) or not v or len(v) > size:
            raise ChainError(f"plan entry: {key} must be non-empty strings of at most {size} characters")
        out.append(v)
    return out


@dataclass
class Proposal:
    """A proposed closing and its approvals: approver -> (the roles it counts with, the approval's seq)."""

    hash: bytes
    seq: int
    proposer: str
    time: int
    plan: list[PlanEntry]
    plan_hash: bytes
    quorum: Quorum
    ncc_members: int  # members holding NCC at the proposal's time
    not_before: int
    approvals: dict[str, tuple[frozenset[str], int]] = field(default_factory=dict)
    exported: dict[int, bytes] = field(default_factory=dict)  # plan entry -> manifest SHA-256

    def met(self, ncc_now: int | None = None, roles_now: Callable[[str], frozenset[str]] | None = None) -> bool:
        """Is the quorum met? With ``ncc_now`` (the NCC's size at the act judged) and ``roles_now`` (each
        approver's organization roles then), as every act after the approvals is judged: the NCC places needed are
        the larger of the proposal's and the present NCC's, and an approver counts only with the roles it approved
        with and still holds (review round 11: a proposal made while the NCC was one member, or approvals by
        members stripped or removed since, do not close an organization whose NCC has changed). Without them, as at
        the proposal (what the approvals alone say)."""
        need = self.quorum.ncc_needed(self.ncc_members)
        if ncc_now is not None:
            need = max(need, self.quorum.ncc_needed(ncc_now))
        return quorum_met(need, self.quorum.security,
                          [roles if roles_now is None else roles & roles_now(m)
                           for m, (roles, _) in self.approvals.items()])


def quorum_met(ncc_needed: int, security_needed: int, approvers: list[frozenset[str]]) -> bool:
    """Can distinct approvers, each counted once, holding ``approvers``' roles, fill ``ncc_needed`` NCC places and
    ``security_needed`` Security Team places? (With a = NCC only, b = Security only, c = both: a + c and b + c
    cover each need and a + b + c covers both.)"""
    a = sum(1 for r in approvers if "ncc" in r and "security" not in r)
    b = sum(1 for r in approvers if "security" in r and "ncc" not in r)
    c = sum(1 for r in approvers if {"ncc", "security"} <= r)
    return a + c >= ncc_needed and b + c >= security_needed and a + b + c >= ncc_needed + security_needed


@dataclass(frozen=True)
class Closed:
    """The ``org.closed`` link: the organization's last."""

    seq: int
    hash: bytes
    time: int
    by: str
    proposal: Proposal


@dataclass
class Closing:
    """The closing acts of an organization chain, in chain order."""

    proposals: dict[bytes, Proposal] = field(default_factory=dict)
    closed: Closed | None = None


def apply_closing(closing: Closing, link: Link, roles: frozenset[str], ncc_members: int,
                  in_force: Quorum, roles_now: Callable[[str], frozenset[str]]) -> None:
    """Check what a closing act names against ``closing`` and record it (the signer was judged already).

    ``roles``: the signer's organization roles at the link's time; ``ncc_members``: how many members hold NCC
    then; ``in_force``: the ``[closing]`` parameters of the security protocols in force; ``roles_now``: any
    member's organization roles at the link's time (``Proposal.met``)."""
    b = link.body
    if link.type == "org.close.propose":
        plan = parse_plan(b.list_("plan", MAX_ENTRIES))
        if not plan:
            raise ChainError("org.close.propose: the hand-over plan is empty (a plan hands something over; an "
                             "organization handing nothing over still names one entry)")
        if b.bytes_("plan_hash", 32) != plan_hash(plan):
            raise ChainError("org.close.propose: plan_hash is not the hash of the plan")
        q = b.dict_("quorum", {"ncc", "security"})
        quorum = Quorum(q.str_("ncc", 16), q.int_("security", 0))
        if quorum != in_force:
            raise ChainError(f"org.close.propose: the quorum {quorum.body()} is not the one in force "
                             f"({in_force.body()})")
        not_before = b.int_("not_before", link.time, link.time + MAX_DELAY)
        closing.proposals[link.hash] = Proposal(link.hash, link.seq, link.signer, link.time, plan, plan_hash(plan),
                                                quorum, ncc_members, not_before,
                                                {link.signer: (frozenset({"ncc"}), link.seq)})
        return
    proposal = closing.proposals.get(b.bytes_("proposal", 32))
    if proposal is None:
        raise ChainError(f"{link.type} names no closing proposal of this organization")
    if link.type == "org.close.approve":
        if link.signer in proposal.approvals:
            raise PolicyDenied("you approved this closing already (or proposed it: the proposer counts as one)")
        proposal.approvals[link.signer] = (roles & {"ncc", "security"}, link.seq)
        return
    if not proposal.met(ncc_members, roles_now):
        raise PolicyDenied(f"{link.type}: the closing has not reached its quorum (counted with the NCC and the "
                           f"approvers' roles as they are now)")
    if link.type == "org.close.exported":
        entry = b.int_("entry", 0, len(proposal.plan) - 1)
        if entry in proposal.exported:
            raise ChainError(f"org.close.exported: plan entry {entry} is recorded as exported already")
        proposal.exported[entry] = b.bytes_("manifest", 32)
        return
    if link.time < proposal.not_before:
        raise PolicyDenied(f"org.closed: the closing may not be made before {proposal.not_before}")
    missing = sorted(set(range(len(proposal.plan))) - set(proposal.exported))
    if missing:
        raise PolicyDenied(f"org.closed: plan entries {missing} were not exported yet")
    closing.closed = Closed(link.seq, link.hash, link.time, link.signer, proposal)
