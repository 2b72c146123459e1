"""The organization chain: members and their organization roles, invites, admissions, removals, the
security-protocols text in force and the designated audit team.

Transitions: ``org.create``, ``org.invite``, ``org.invite.revoke``, ``org.join``, ``org.admit``, ``org.role``,
``org.remove``, ``org.protocols.propose`` / ``org.protocols.approve``, ``org.audit_team``, ``org.server`` (see
``vault.chains``), ``org.coalition`` and ``org.coalition.share`` (``vault.chains.coalitionshare``), the incident
acts ``org.device.cut`` and ``org.clear`` (``vault.chains.incidents``), the closing acts ``org.close.*`` and
``org.closed`` (``vault.chains.closing``: nothing follows ``org.closed``), and the signed records ``org.vouch``,
``org.verify``, ``org.approve`` (``vault.chains.records``).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from vault.acts import Act
from vault.chains.closing import CLOSING_TYPES, Closing, Proposal, Quorum, apply_closing
from vault.chains.coalition import CoalitionEntry, check_expels
from vault.chains.coalitionshare import Offers, Retired, Share, apply_share, record_coalition
from vault.chains.common import Outside, check_name, org_id_for, protocols_digest
from vault.chains.incidents import INCIDENT_TYPES, Incidents, apply_incident
from vault.chains.member import MemberState, verify_signer
from vault.chains.records import RECORD_TYPES, Record, Signed, approved_link
from vault.chains.twoperson import TWO_PERSON_ROLES, device_gone, drop_void, pending, role_act, second_person
from vault.encoding import Fields
from vault.errors import ChainError, EncodingError, InviteNotOpen, PolicyDenied
from vault.links import Link, check_sequence, verify_invite_signature
from vault.pin import Pin, named_place

ORG_INVITE_ROLES = ("member", "compa")
MAX_INVITE_SECONDS = 30 * 86400
MAX_OPEN_INVITES = 20  # per member: unused, unexpired invites
GRANTABLE_ROLES = ("ncc", "staff", "security", "compa")


class OrgPolicy(Protocol):
    """What the organization chain asks of the policy (``vault.chains.team.Policy`` adds the teams')."""

    def org_allows(self, roles: frozenset[str], action: str) -> bool: ...

    def protocols_version(self, text: str) -> int:
        """Validate a security-protocols text; its version (``EncodingError`` if invalid)."""
        ...

    def closing_quorum(self, text: str | None) -> Quorum:
        """The ``[closing]`` parameters of a security-protocols text (None: the shipped defaults)."""
        ...

    def judge(self, act: Act, org: OrgState, members: Mapping[str, MemberState], team: None) -> None:
        """Refuse (``PolicyDenied``/``ChainError``) an act its author was not entitled to at its time."""
        ...


@dataclass
class Invite:
    public: bytes
    role: str
    note: str
    expires: int
    by: str
    used_by: str | None = None
    seq: int = 0  # the org.invite link's sequence number
    created: int = 0  # its time
    revoked_by: str | None = None  # who signed the org.invite.revoke
    revoked_at: int | None = None

    def refusal(self, t: int) -> str | None:
        """Why this invite cannot be claimed at time ``t`` (None: it is open). One text for the chain replay and
        the server's join route."""
        if self.used_by is not None:
            return "invite has already been used"
        if self.revoked_by is not None:
            return "invite has been revoked"
        if t >= self.expires:
            return "invite has expired"
        return None

    def is_open(self, t: int) -> bool:
        return self.refusal(t) is None


@dataclass
class RoleEntry:
    seq: int
    status: str  # "admitted" | "pending" | "removed"
    roles: dict[str, int | None]  # role -> until (None: no end)


@dataclass
class OrgMember:
    member_id: str
    invited_by: str | None
    since: int
    member_head: bytes
    log: list[RoleEntry] = field(default_factory=list)
    removed_at: int | None = None  # time of the org.remove link

    @property
    def status(self) -> str:
        return self.log[-1].status

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(self.log[-1].roles)

    @property
    def role_terms(self) -> dict[str, int | None]:
        return dict(self.log[-1].roles)

    def entry_at(self, seq: int) -> RoleEntry | None:
        found = None
        for e in self.log:
            if e.seq <= seq:
                found = e
        return found


@dataclass(frozen=True)
class ServerPlace:
    """Where the organization's server is, as an ``org.server`` link in force says: URL and transport pin."""

    url: str
    pin: Pin
    seq: int  # the link that put it in force
    by: str  # who signed it (the second NCC member when it took two)
    time: int


@dataclass(frozen=True)
class ProtocolsChange:
    """A proposed security-protocols text; in force once a second NCC member approves it."""

    digest: bytes
    text: str
    version: int
    proposer: str
    proposed_at: int
    approver: str | None = None
    approved_at: int | None = None
    device: str = ""  # the proposing device: the proposal is void once it is revoked or cut (twoperson)


@dataclass
class OrgState:
    org_id: str
    root: bytes
    name: str
    founder_invite: bytes
    members: dict[str, OrgMember]
    invites: dict[bytes, Invite]
    seq: int
    head: bytes
    time: int
    proposals: dict[bytes, ProtocolsChange] = field(default_factory=dict)
    protocols: ProtocolsChange | None = None  # None: the shipped defaults
    protocols_log: list[ProtocolsChange] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # the time of each link, by seq - 1
    audit_team: str | None = None  # the designated security team (None: none designated yet)
    audit_team_log: list[tuple[int, str]] = field(default_factory=list)  # (seq, team) of each designation in force
    # Two-person acts waiting for their second signature (``role_act``): act -> (proposer, time)
    role_proposals: dict[tuple[str, ...], tuple[str, int]] = field(default_factory=dict)
    proposed_on: dict[tuple[str, ...], str] = field(default_factory=dict)  # act -> its proposal's device
    cosigned_on: dict[int, str] = field(default_factory=dict)  # seq of a second signature -> the proposal's device
    # seq of each link of a two-person act signed by two -> its proposer (None: the proposal itself); a
    # two-person act's link missing here took effect on one signature (rule two-person reports those)
    cosigned: dict[int, str | None] = field(default_factory=dict)
    server: ServerPlace | None = None  # the last org.server in force (None: never moved; the invite's place)
    servers: list[ServerPlace] = field(default_factory=list)  # every org.server put in force, in order
    records: list[Record] = field(default_factory=list)  # vouches, key verifications, approvals, in chain order
    signed: dict[bytes, Signed] = field(default_factory=dict)  # hash of every link -> what an org.approve needs
    incidents: Incidents = field(default_factory=Incidents)  # devices cut off, members paused (org.device.cut)
    coalitions: dict[str, CoalitionEntry] = field(default_factory=dict)  # space name -> our coalition key for it
    coalition_shares: dict[str, dict[str, Share]] = field(default_factory=dict)  # name -> NCC member -> its box
    coalitions_retired: dict[str, list[Retired]] = field(default_factory=dict)  # name -> keys a rekey replaced
    coalition_signers: dict[bytes, dict[str, int]] = field(default_factory=dict)  # key -> signer -> first time
    coalition_offers: dict[bytes, dict[str, Share]] = field(default_factory=dict)  # proposed key -> member -> box
    expels: dict[str, list[Fields]] = field(default_factory=dict)  # member -> its coalition.expel (org.remove)
    closing: Closing = field(default_factory=Closing)  # closing proposals, approvals, and org.closed once made
    outside: Outside | None = None  # a guest's view without this chain: vault/chains/outside.py
    _ncc_terms_cache: dict[int, tuple[int | None, frozenset[str]]] = field(default_factory=dict, repr=False,
                                                                         compare=False)

    @property
    def audit_team_proposals(self) -> dict[str, tuple[str, int]]:
        """Designations of the audit team waiting for a second NCC member: team -> (proposer, time)."""
        return {act[1]: v for act, v in self.role_proposals.items() if act[0] == "org.audit_team"}

    def audit_team_at(self, seq: int) -> str | None:
        """The security team designated for the audit log at organization state ``seq`` (None: none yet)."""
        found = None
        for s, team in self.audit_team_log:
            if s <= seq:
                found = team
        return found

    def seq_at(self, t: int) -> int:
        """The organization state current at time ``t``: the last link dated at or before it (0: none)."""
        return bisect.bisect_right(self.times, t)

    def superseded_at(self, seq: int) -> int | None:
        """When the state ``seq`` ended: the time of the next link (None: still current)."""
        return self.times[seq] if 0 < seq < len(self.times) else None

    def roles_of(self, member_id: str, now: int | None = None, seq: int | None = None) -> frozenset[str]:
        """Org roles in force for an admitted member (at org ``seq`` and time ``now``)."""
        m = self.members.get(member_id)
        if m is None:
            return frozenset()
        s = self.seq if seq is None else seq
        e = m.entry_at(s)
        if e is None or e.status != "admitted":
            return frozenset()
        roles = {r for r, until in e.roles.items() if until is None or now is None or now < until}
        if now is not None and "ncc" in e.roles and "ncc" not in roles and member_id in self.caretakers(s, now):
            roles.add("ncc")
        return frozenset(roles)

    def caretakers(self, seq: int, now: int) -> frozenset[str]:
        """Who keeps the NCC role past the end of their term at org state ``seq`` and time ``now``.

        The organization is never left without NCC: when every NCC term has ended and nobody was
        granted NCC since, the member(s) whose NCC term ended last stay NCC (caretakers) until
        another member is granted the role (``role-terms`` reports it; they cannot renew themselves)."""
        last, holders = self._ncc_terms(seq)
        return holders if last is not None and now >= last else frozenset()

    def _ncc_terms(self, seq: int) -> tuple[int | None, frozenset[str]]:
        """(the latest end of an NCC term at org state ``seq``, who holds it); None: some term has no end."""
        cached = self._ncc_terms_cache.get(seq)
        if cached is None:
            ends: dict[str, int | None] = {}
            for mid, om in self.members.items():
                e = om.entry_at(seq)
                if e is not None and e.status == "admitted" and "ncc" in e.roles:
                    ends[mid] = e.roles["ncc"]
            bounded = [u for u in ends.values() if u is not None]
            if not ends or len(bounded) < len(ends):
                cached = (None, frozenset())
            else:
                last = max(bounded)
                cached = (last, frozenset(mid for mid, u in ends.items() if u == last))
            self._ncc_terms_cache[seq] = cached
        return cached

    def admitted(self, member_id: str, seq: int | None = None) -> bool:
        m = self.members.get(member_id)
        e = m.entry_at(self.seq if seq is None else seq) if m else None
        return e is not None and e.status == "admitted"

    @classmethod
    def create(cls, link: Link, members: Mapping[str, MemberState]) -> OrgState:
        if link.type != "org.create" or link.seq != 1 or link.prev is not None or link.chain:
            raise ChainError("an organization chain must start with org.create")
        founder = verify_signer(link, members)
        try:
            invite_pk = link.body.bytes_("founder_invite", 32)
            name = check_name(link.body.str_("name"), "organization name")
            if link.body.bytes_("member_head", 32) != founder.root:
                raise ChainError("org.create does not pin the founder's member chain")
            ncc_until = link.body.opt_int("ncc_until")  # the founder's NCC term (absent: no end)
        except EncodingError as e:
            raise ChainError(f"malformed org.create: {e}") from e
        if ncc_until is not None and ncc_until <= link.time:
            raise ChainError("the founder's NCC term ends before the founding")
        verify_invite_signature(link, invite_pk)
        root = link.hash
        m = OrgMember(founder.member_id, None, link.time, founder.root,
                      [RoleEntry(1, "admitted", {"member": None, "ncc": ncc_until})])
        return cls(org_id_for(root), root, name, invite_pk, {founder.member_id: m}, {}, 1, root, link.time,
                   times=[link.time], signed={root: Signed(1, link.signer, None)})

    def apply(self, link: Link, members: Mapping[str, MemberState], policy: OrgPolicy) -> None:
        if self.closing.closed is not None:
            raise ChainError(f"the organization was closed (org.closed, link {self.closing.closed.seq}): "
                             "no link may follow it")
        check_sequence(link, self.org_id, self.seq, self.head, self.time)
        ms = verify_signer(link, members)
        handlers = {"org.invite": self._invite, "org.invite.revoke": self._revoke_invite, "org.join": self._join,
                    "org.admit": self._admit,
                    "org.role": self._role, "org.remove": self._remove,
                    "org.protocols.propose": self._propose, "org.protocols.approve": self._approve,
                    "org.audit_team": self._audit_team, "org.server": self._server,
                    "org.coalition": self._coalition, "org.coalition.share": self._coalition}
        for kind in INCIDENT_TYPES:
            handlers[kind] = lambda link, ms, policy: self._incident(link, ms, policy, members)
        for kind in CLOSING_TYPES:
            handlers[kind] = self._closing
        drop_void(self, members, link.time)  # a proposal of a device revoked or cut waits no more (twoperson)
        self.proposals = {d: c for d, c in self.proposals.items()  # a protocols text's too
                          if not device_gone(members, self.incidents, c.proposer, c.device, link.time)}
        handler = handlers.get(link.type)
        if handler is None and link.type not in RECORD_TYPES:
            raise ChainError(f"unsupported organization link type {link.type!r}")
        try:
            (handler or self._record_act)(link, ms, policy)
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.seq, self.head, self.time = link.seq, link.hash, link.time
        self.times.append(link.time)
        subject = link.body.raw.get("member")
        self.signed[link.hash] = Signed(link.seq, link.signer, subject if isinstance(subject, str) else None)

    def _authorize(self, link: Link, ms: MemberState, policy: OrgPolicy, action: str) -> None:
        """The signer's right to an org link, judged by the one judge at the state before it."""
        policy.judge(Act(link.signer, link.device, link.time, action), self, {ms.member_id: ms}, None)

    def _record(self, member_id: str, seq: int, status: str, roles: dict[str, int | None]) -> None:
        self.members[member_id].log.append(RoleEntry(seq, status, roles))
        self._ncc_terms_cache.clear()  # entries changed: past answers may name a later seq

    def _invite(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        b = link.body
        role = b.str_("role", 16)
        if role not in ORG_INVITE_ROLES:
            raise ChainError(f"an invite grants one of {ORG_INVITE_ROLES}, not {role!r}")
        self._authorize(link, ms, policy, f"org.invite.{role}")
        pk = b.bytes_("invite", 32)
        if pk in self.invites or pk == self.founder_invite:
            raise ChainError("invite key is already recorded")
        expires = b.int_("expires", 0)
        if expires <= link.time:
            raise ChainError("invite expires before it is issued")
        if expires > link.time + MAX_INVITE_SECONDS:
            raise ChainError("an invite may be valid for at most 30 days")
        open_invites = [i for i in self.invites.values() if i.by == link.signer and i.is_open(link.time)]
        if len(open_invites) >= MAX_OPEN_INVITES:
            raise PolicyDenied(f"you have {MAX_OPEN_INVITES} unused invites open; let some be used or expire, "
                               "or revoke some")
        self.invites[pk] = Invite(pk, role, b.str_("note", 256), expires, link.signer, seq=link.seq, created=link.time)

    def _revoke_invite(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        """Withdraw an open invite: its author may, with the right to issue it (``org.invite.<role>``), and so
        may whoever the policy lets withdraw others' invites of its role (``org.invite.revoke.<role>``)."""
        pk = link.body.bytes_("invite", 32)
        inv = self.invites.get(pk)
        if inv is None:
            raise ChainError("org.invite.revoke names an unknown invite")
        own = inv.by == link.signer
        self._authorize(link, ms, policy, f"org.invite.{inv.role}" if own else f"org.invite.revoke.{inv.role}")
        why = inv.refusal(link.time)
        if why is not None:
            raise ChainError(f"only an open invite can be revoked: {why}")
        inv.revoked_by, inv.revoked_at = link.signer, link.time

    def _join(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        pk = link.body.bytes_("invite", 32)
        inv = self.invites.get(pk)
        if inv is None:
            raise InviteNotOpen("org.join claims an unknown invite")
        why = inv.refusal(link.time)
        if why is not None:
            raise InviteNotOpen(why)
        if link.signer in self.members:
            raise ChainError("member has already joined")
        if link.body.bytes_("member_head", 32) != ms.root:
            raise ChainError("org.join does not pin the member's chain")
        verify_invite_signature(link, pk)
        inv.used_by = link.signer
        # An invite from someone allowed to admit is an admission; otherwise it waits for org.admit.
        admitted = policy.org_allows(self.roles_of(inv.by, link.time), "org.admit")
        self.members[link.signer] = OrgMember(link.signer, inv.by, link.time, ms.root)
        self._record(link.signer, link.seq, "admitted" if admitted else "pending", {inv.role: None})

    def _admit(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        self._authorize(link, ms, policy, "org.admit")
        target = link.body.str_("member", 64)
        m = self.members.get(target)
        if m is None:
            raise ChainError(f"unknown member {target}")
        if m.status == "admitted":
            raise ChainError(f"member {target} is already admitted")
        if m.status == "removed":
            raise ChainError(f"member {target} was removed from the organization and cannot come back; "
                             "they join again with a new invite (a new identity)")
        self._record(target, link.seq, "admitted", m.role_terms)

    def _role(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        b = link.body
        self._authorize(link, ms, policy, "org.role")
        target, role, grant = b.str_("member", 64), b.str_("role", 16), b.bool_("grant")
        until = b.opt_int("until", 0)
        if role not in GRANTABLE_ROLES:
            raise ChainError(f"role must be one of {GRANTABLE_ROLES}, not {role!r}")
        m = self.members.get(target)
        if m is None or m.status != "admitted":
            raise ChainError(f"member {target} is not an admitted member")
        roles = m.role_terms
        active = self.roles_of(target, link.time)
        if grant:
            if until is not None and until <= link.time:
                raise ChainError("role end date is in the past")
            if role == "compa" and until is not None:
                raise ChainError("compa replaces the member role; it takes no end date")
            if role in active:
                raise ChainError(f"member already holds role {role!r}")
            if target == link.signer and role in TWO_PERSON_ROLES:
                raise PolicyDenied(f"granting yourself the {role} role needs a second person: "
                                   "another NCC member must sign the grant")
            if role in TWO_PERSON_ROLES and not self._second_person(link, role_act(target, role, True, until), target):
                return
            roles[role] = until
            if role == "compa":
                roles.pop("member", None)
        else:
            if until is not None:
                raise ChainError("a revocation takes no end date")
            if role not in active:
                raise ChainError(f"member does not hold role {role!r}")
            if role == "ncc" and not any(
                mid != target and "ncc" in self.roles_of(mid, link.time) for mid in self.members
            ):
                raise ChainError("cannot remove the last NCC member")
            if role in TWO_PERSON_ROLES and target != link.signer and not self._second_person(
                    link, role_act(target, role, False, None), target):
                return  # (stepping down oneself takes one signature: it only gives power up)
            del roles[role]
            if role == "compa":
                roles["member"] = None
        self._record(target, link.seq, "admitted", roles)

    def _remove(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        """A departure: no roles, no logins, the member's open invites die with it."""
        self._authorize(link, ms, policy, "org.remove")
        target = link.body.str_("member", 64)
        link.body.str_("reason", 256)
        expels = check_expels(link.body.raw.get("coalition"), self.coalitions, self.root, target)
        m = self.members.get(target)
        if m is None or m.status == "removed":
            raise ChainError(f"member {target} is not a current member")
        if target == link.signer:
            raise ChainError("members leave the organization through another NCC member")
        if "ncc" in self.roles_of(target, link.time) and not any(
            mid != target and "ncc" in self.roles_of(mid, link.time) for mid in self.members
        ):
            raise ChainError("cannot remove the last NCC member")
        strong = self.roles_of(target, link.time) & set(TWO_PERSON_ROLES)
        if strong and not self._second_person(link, ("org.remove", target), target):
            return
        for inv in self.invites.values():
            if inv.by == target and inv.is_open(link.time):
                inv.expires = link.time
        self._record(target, link.seq, "removed", {})
        m.removed_at = link.time
        self.expels[target] = expels  # those of the link that puts the removal in force

    def _second_person(self, link: Link, act: tuple[str, ...], subject: str | None) -> bool:
        """Rule two-person (``vault.chains.twoperson.second_person``): does ``act`` take effect with this link?"""
        return second_person(self, link, act, subject, lambda m: "ncc" in self.roles_of(m, link.time))

    def pending(self, members: Mapping[str, MemberState], t: int) -> dict[tuple[str, ...], tuple[str, str, int]]:
        """Two-person acts waiting at time ``t``: act -> (proposer, device, time); none of a device revoked or cut."""
        return pending(self, members, t)

    def _propose(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        self._authorize(link, ms, policy, "org.protocols")
        text = link.body.str_("text", 64 * 1024)
        version = policy.protocols_version(text)
        current = self.protocols.version if self.protocols else 1
        if version <= current:
            raise ChainError(f"a protocols change must raise the version above {current}")
        digest = protocols_digest(text)
        if digest in self.proposals:
            raise ChainError("this protocols text is already proposed")
        self.proposals[digest] = ProtocolsChange(digest, text, version, link.signer, link.time, device=link.device)

    def _approve(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        self._authorize(link, ms, policy, "org.protocols")
        digest = link.body.bytes_("digest", 32)
        proposal = self.proposals.get(digest)
        if proposal is None:
            raise ChainError("no such security-protocols proposal")
        if proposal.proposer == link.signer:
            raise PolicyDenied("a protocols change needs a second NCC member: you proposed it")
        current = self.protocols.version if self.protocols else 1
        if proposal.version <= current:
            raise ChainError("a newer protocols version is already in force")
        approved = replace(proposal, approver=link.signer, approved_at=link.time)
        self.cosigned_on[link.seq] = proposal.device
        self.protocols = approved
        self.protocols_log.append(approved)
        self.proposals = {d: c for d, c in self.proposals.items() if c.version > approved.version}

    def _audit_team(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        """Designate the audit log's security team (its kind is checked where teams are known: the server
        on accepting the link, clients when they judge an audit-key statement).

        Two people: with another NCC member at the link's time, the first link is a proposal and the
        same link by a second NCC member puts it in force; with one NCC member only, one signature does."""
        self._authorize(link, ms, policy, "org.audit_team")
        team = link.body.str_("team", 64)
        if not team:
            raise ChainError("org.audit_team names no team")
        if team == self.audit_team:
            raise ChainError(f"team {team} is already the designated security team")
        if not self._second_person(link, ("org.audit_team", team), None):
            return
        self.audit_team = team
        self.audit_team_log.append((link.seq, team))
        for act in [act for act in self.role_proposals if act[0] == "org.audit_team"]:
            del self.role_proposals[act]  # taking effect clears every pending designation

    def _server(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        """The server moved: the URL and transport pin members reach it at from now on (docs/format.md
        ``org.server``). Two people like the other sensitive org acts: with another NCC member at the link's
        time the first link proposes, the same place signed by a second NCC member puts it in force."""
        self._authorize(link, ms, policy, "org.server")
        b = link.body
        url, kind, value = b.str_("url", 512), b.str_("pin_kind", 16), b.bytes_("pin", max_size=32)
        pin = named_place("org.server", url, kind, value)
        if self.server is not None and (self.server.url, self.server.pin) == (url, pin):
            raise ChainError("org.server names the place already in force")
        if not self._second_person(link, ("org.server", url, str(pin)), None):
            return
        self.server = ServerPlace(url, pin, link.seq, link.signer, link.time)
        self.servers.append(self.server)
        for act in [act for act in self.role_proposals if act[0] == "org.server"]:
            del self.role_proposals[act]  # taking effect clears every pending move

    def _coalition(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        """``org.coalition`` / ``org.coalition.share``: NCC records a coalition key / seals it to NCC members
        (``vault.chains.coalitionshare``)."""
        self._authorize(link, ms, policy, link.type)
        holds_ncc = lambda m: "ncc" in self.roles_of(m, link.time)  # noqa: E731
        if link.type == "org.coalition":
            return record_coalition(self.coalitions, self.role_proposals, link, lambda act: self._second_person(
                link, act, None), self.coalitions_retired, self.root, self.coalition_signers,
                Offers(self.coalition_offers, self.coalition_shares, holds_ncc))
        apply_share(self.coalition_shares, self.coalitions, link, holds_ncc)

    def _incident(self, link: Link, ms: MemberState, policy: OrgPolicy, members: Mapping[str, MemberState]) -> None:
        """``org.device.cut`` / ``org.clear``: judged as the act of that name, then ``vault.chains.incidents``."""
        self._authorize(link, ms, policy, link.type)
        target = self.members.get(link.body.str_("member", 64))
        apply_incident(self.incidents, link, members, target is not None and target.status != "removed")

    def _closing(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        """``org.close.*`` / ``org.closed``: judged as the act of that name, then ``vault.chains.closing`` with the
        signer's roles, the NCC's size and the ``[closing]`` parameters in force, all at the link's time."""
        self._authorize(link, ms, policy, link.type)
        in_force = policy.closing_quorum(self.protocols.text if self.protocols else None)
        apply_closing(self.closing, link, self.roles_of(link.signer, link.time), self.ncc_size(link.time), in_force,
                      lambda m: self.roles_of(m, link.time))

    def closing_met(self, proposal: Proposal, now: int) -> bool:
        """Would an act at ``now`` find ``proposal``'s quorum met (the NCC and the approvers' roles as at ``now``)?"""
        return proposal.met(self.ncc_size(now), lambda m: self.roles_of(m, now))

    def ncc_size(self, now: int) -> int:
        """How many members hold NCC at ``now`` (a closing's quorum is counted on it)."""
        return sum(1 for m in self.members if "ncc" in self.roles_of(m, now))

    def _record_act(self, link: Link, ms: MemberState, policy: OrgPolicy) -> None:
        """A signed record (``vault.chains.records``): judged as the act of its type, checked against the state
        before it, then added to ``records``. It changes nobody's rights."""
        self._authorize(link, ms, policy, link.type)
        if link.type == "org.approve":
            target, signed = approved_link(self.signed, link)
            record = Record(link.type, link.signer, link.device, link.time, link.seq, target.hex(), str(signed.seq))
        else:
            subject = link.body.str_("member", 64)
            m = self.members.get(subject)
            if m is None or m.status == "removed":
                raise ChainError(f"member {subject} is not a current member")
            if subject == link.signer:
                raise ChainError(f"{link.type}: a member cannot vouch for or verify themselves")
            detail = link.body.bytes_("fingerprint", 32).hex() if link.type == "org.verify" else ""
            record = Record(link.type, link.signer, link.device, link.time, link.seq, subject, detail)
        if any((r.type, r.signer, r.subject, r.detail) == (record.type, record.signer, record.subject, record.detail)
               for r in self.records):
            raise ChainError(f"{link.type}: the same record is already in the chain")
        self.records.append(record)


def replay_org(links: list[Link], members: Mapping[str, MemberState], policy: OrgPolicy) -> OrgState:
    if not links:
        raise ChainError("empty organization chain")
    state = OrgState.create(links[0], members)
    for link in links[1:]:
        state.apply(link, members, policy)
    return state
