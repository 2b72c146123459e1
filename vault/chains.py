"""Chain replay: member, organization and team chains as pure state machines.

Each ``*State.apply(link, ...)`` checks a link against the state *before* it (sequence,
previous hash, chain id, time order, signer's device at the link's time, signer's right
under the policy) and then applies it. ``replay_*`` folds a whole chain. Server and
clients run the same code; a server that forges, alters, reorders or drops links is
caught here. Always apply a candidate link to a ``clone`` (a rejected link may leave the
state it was applied to half changed).

Transitions (link type -> effect)::

    member.create   new member: first device, PUK generation 1 (self-signed)
    device.add      another device (or a paper key); cosigned by the new device's key
    device.revoke   device revoked; PUK rolls to a new generation sealed to the rest
    org.create      founds the organization; founder becomes member + ncc (invite-cosigned)
    org.invite      records a one-time invite key with the role it grants and its expiry
    org.join        a new member claims an invite (cosigned with the invite key)
    org.admit       NCC admits a pending member
    org.role        NCC grants or revokes ncc / staff / security / compa (optional end date)
    org.audit_team  NCC designates the security team whose key seals the audit log; with another
                    NCC member at the time it is a proposal until a second NCC member signs the same
    team.create     team with kind, initial members and key generation 1
    team.add        adds a member with role (+ expiry) and their key box (none if the
                    signer holds no key: the member waits for a holder's team.share)
    team.share      a key holder boxes the current key for a member added by a non-holder
    team.remove     removes a member; a key holder rotates in the same link, otherwise
                    the team is blocked for new content until a holder's team.rotate
    team.leave      a member leaves; the team needs a rotation
    team.role       changes a member's role or expiry
    team.rotate     a key holder starts a new generation for the current members

Team links carry ``org_seq``: the organization chain head they were made against, so the
signer's organization roles are judged as they were at that point.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from vault.acts import Act
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value
from vault.errors import ChainError, EncodingError, InviteNotOpen, PolicyDenied
from vault.keys import device_id_for, short_id
from vault.links import (
    Link,
    check_no_cosignature,
    check_sequence,
    verify_device_proof,
    verify_invite_signature,
    verify_link_signature,
)

MAX_NAME = 64
ORG_INVITE_ROLES = ("member", "compa")
MAX_INVITE_SECONDS = 30 * 86400
MAX_OPEN_INVITES = 20  # per member: unused, unexpired invites
GRANTABLE_ROLES = ("ncc", "staff", "security", "compa")
# Two people: the subject never signs its own grant of these, and granting, revoking (other than stepping
# down) or removing a holder takes two NCC members when there is one besides the signer and the subject.
TWO_PERSON_ROLES = ("ncc", "security")
TEAM_ROLE_NAMES = ("admin", "writer", "reader")
HISTORY_BLOB = 24 + 32 + 16
T = TypeVar("T")


class Policy(Protocol):
    def org_allows(self, roles: frozenset[str], action: str) -> bool: ...

    def team_allows(self, org_roles: frozenset[str], team_role: str | None, action: str) -> bool: ...

    def may_hold_team_role(self, org_roles: frozenset[str], team_role: str) -> bool: ...

    def protocols_version(self, text: str) -> int:
        """Validate a security-protocols text; its version (``EncodingError`` if invalid)."""
        ...

    def judge(self, act: Act, org: OrgState, members: Mapping[str, MemberState], team: TeamState | None) -> None:
        """Refuse (``PolicyDenied``/``ChainError``) an act its author was not entitled to at its time."""
        ...

    def team_members(self, team: TeamState, org: OrgState, org_seq: int, t: int) -> set[str]:
        """The team's members at time ``t`` (role not ended, admitted at org state ``org_seq``)."""
        ...

    def key_recipients(self, team: TeamState, org: OrgState, org_seq: int, t: int) -> set[str]:
        """Who must receive a box of a new key generation made at org state ``org_seq``, time ``t``."""
        ...


def role_act(member: str, role: str, grant: bool, until: int | None) -> tuple[str, ...]:
    """How a two-person ``org.role`` waits in ``OrgState.role_proposals``.

    An ``org.remove`` waits there as ("org.remove", member), an ``org.audit_team`` as ("org.audit_team", team)."""
    return ("org.role", member, role, "grant", str(until)) if grant else ("org.role", member, role, "revoke")


def clone(state: T) -> T:
    """A deep copy to apply a candidate link to without touching the original."""
    return copy.deepcopy(state)


def member_id_for(first_device_sign_public: bytes) -> str:
    return short_id(labels.H_MEMBER_ID, first_device_sign_public)


def org_id_for(root: bytes) -> str:
    """The organization id: derived from the hash of its org.create link (its root)."""
    return short_id(labels.H_ORG_ID, root)


def team_id_for(org_id: str, nonce: bytes) -> str:
    return short_id(labels.H_TEAM_ID, org_id.encode() + b"\x00" + nonce)


def check_name(name: str, what: str) -> str:
    if not name or len(name) > MAX_NAME or not all(c.isalnum() or c in "-_." for c in name):
        raise ChainError(f"{what} {name!r} is not valid: use 1-{MAX_NAME} letters, digits, - _ .")
    return name


# -- member chain -------------------------------------------------------------------------


@dataclass
class Device:
    device_id: str
    sign_public: bytes
    box_public: bytes
    name: str
    kind: str  # "device" | "paper"
    added: int
    revoked: int | None = None  # time of the revocation link

    def active_at(self, t: int) -> bool:
        return self.added <= t and (self.revoked is None or t < self.revoked)


@dataclass
class PukGeneration:
    gen: int
    sign_public: bytes
    box_public: bytes
    since: int
    box_hashes: dict[str, bytes]  # device id -> hash of the PUK box sealed to it
    prev: bytes | None  # the previous generation's seed, encrypted under this one


@dataclass
class MemberState:
    member_id: str
    name: str
    devices: dict[str, Device]
    puks: dict[int, PukGeneration]
    root: bytes
    seq: int
    head: bytes
    time: int

    @property
    def puk_gen(self) -> int:
        return max(self.puks)

    @property
    def puk_box_public(self) -> bytes:
        return self.puks[self.puk_gen].box_public

    @property
    def puk_sign_public(self) -> bytes:
        return self.puks[self.puk_gen].sign_public

    @property
    def puk_box_hashes(self) -> dict[str, bytes]:
        return self.puks[self.puk_gen].box_hashes

    def puk_gen_at(self, t: int) -> int:
        return max(g for g, pg in self.puks.items() if pg.since <= t or g == 1)

    def puk_gens_at(self, t: int) -> set[int]:
        """PUK generations current at second ``t``: two when a roll happened in that very second.

        Times come from different chains' signers, so a link dated in the same second as a
        PUK roll may have been made with either key; both are accepted for that second.
        """
        before = max(g for g, pg in self.puks.items() if pg.since < t or g == 1)
        return {before, self.puk_gen_at(t)}

    def active_devices(self) -> list[Device]:
        return [d for d in self.devices.values() if d.revoked is None]

    def device(self, device_id: str) -> Device:
        """An active device (for new actions: logins, new links)."""
        d = self.devices.get(device_id)
        if d is None or d.revoked is not None:
            raise ChainError(f"device {device_id} is not an active device of member {self.member_id}")
        return d

    def device_at(self, device_id: str, t: int) -> Device:
        """The device as it was at time ``t`` (to verify what it signed back then)."""
        d = self.devices.get(device_id)
        if d is None or not d.active_at(t):
            raise ChainError(f"device {device_id} was not an active device of member {self.member_id} then")
        return d

    @classmethod
    def create(cls, link: Link) -> MemberState:
        if link.type != "member.create" or link.seq != 1 or link.prev is not None or link.chain:
            raise ChainError("a member chain must start with member.create")
        check_no_cosignature(link)
        try:
            b = link.body
            device = _device(b.dict_("device", {"id", "sign_pk", "box_pk", "name", "kind"}), link.time)
            if link.device != device.device_id or device.kind != "device":
                raise ChainError("member.create must be signed by the device it introduces")
            member_id = member_id_for(device.sign_public)
            if link.signer != member_id:
                raise ChainError("member.create signer is not the member its key defines")
            puk = b.dict_("puk", {"gen", "sign_pk", "box_pk"})
            if puk.int_("gen") != 1:
                raise ChainError("first PUK generation must be 1")
            boxes = _hashes(b.list_("puk_boxes", 64), "device")
            if set(boxes) != {device.device_id}:
                raise ChainError("member.create must box the PUK to exactly its device")
            state = cls(
                member_id=member_id,
                name=check_name(b.str_("name"), "member name"),
                devices={device.device_id: device},
                puks={1: PukGeneration(1, puk.bytes_("sign_pk", 32), puk.bytes_("box_pk", 32), link.time, boxes,
                                       None)},
                root=link.hash,
                seq=1,
                head=link.hash,
                time=link.time,
            )
        except EncodingError as e:
            raise ChainError(f"malformed member.create: {e}") from e
        verify_link_signature(link, device.sign_public)
        return state

    def apply(self, link: Link) -> None:
        check_sequence(link, self.member_id, self.seq, self.head, self.time)
        if link.signer != self.member_id:
            raise ChainError("a member chain link must be signed by the member")
        verify_link_signature(link, self.device(link.device).sign_public)
        try:
            if link.type == "device.add":
                self._device_add(link)
            elif link.type == "device.revoke":
                self._device_revoke(link)
            else:
                raise ChainError(f"unsupported member link type {link.type!r}")
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.seq, self.head, self.time = link.seq, link.hash, link.time

    def _device_add(self, link: Link) -> None:
        new = _device(link.body.dict_("device", {"id", "sign_pk", "box_pk", "name", "kind"}), link.time)
        if new.device_id in self.devices:
            raise ChainError("device is already known (a revoked device cannot come back)")
        if any(d.name == new.name for d in self.active_devices()):
            raise ChainError(f"a device named {new.name!r} already exists")
        verify_device_proof(self.member_id, new.device_id, new.sign_public, new.box_public,
                            link.body.bytes_("proof", 64))
        boxes = _hashes(link.body.list_("puk_boxes", 1), "device")
        if set(boxes) != {new.device_id} or link.body.int_("puk_gen") != self.puk_gen:
            raise ChainError("device.add must box the current PUK to exactly the new device")
        self.devices[new.device_id] = new
        self.puks[self.puk_gen].box_hashes.update(boxes)

    def _device_revoke(self, link: Link) -> None:
        b = link.body
        target = self.device(b.str_("device", 64))
        remaining = {d.device_id for d in self.active_devices()} - {target.device_id}
        if not remaining:
            raise ChainError("cannot revoke the last device (use a recovery key first)")
        puk = b.dict_("puk", {"gen", "sign_pk", "box_pk"})
        gen = puk.int_("gen")
        if gen != self.puk_gen + 1:
            raise ChainError("device.revoke must roll the PUK to the next generation")
        boxes = _hashes(b.list_("puk_boxes", 64), "device")
        if set(boxes) != remaining:
            raise ChainError("the new PUK must be boxed to exactly the remaining devices")
        prev = b.bytes_("prev", 24 + 32 + 16)
        target.revoked = link.time
        self.puks[gen] = PukGeneration(gen, puk.bytes_("sign_pk", 32), puk.bytes_("box_pk", 32), link.time, boxes,
                                       prev)


def _device(d: Fields, t: int) -> Device:
    sign_pk = d.bytes_("sign_pk", 32)
    kind = d.str_("kind", 16)
    if kind not in ("device", "paper"):
        raise ChainError(f"unknown device kind {kind!r}")
    device = Device(device_id_for(sign_pk), sign_pk, d.bytes_("box_pk", 32), check_name(d.str_("name"), "device name"),
                    kind, t)
    if d.str_("id") != device.device_id:
        raise ChainError("a device id does not match its key")
    return device


def _hashes(items: Iterable[Value], key: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in items:
        f = Fields(item, "box commitment", {key, "hash"})
        k = f.str_(key, 64)
        if k in out:
            raise ChainError("duplicate box commitment")
        out[k] = f.bytes_("hash", 32)
    return out


def replay_member(links: list[Link]) -> MemberState:
    if not links:
        raise ChainError("empty member chain")
    state = MemberState.create(links[0])
    for link in links[1:]:
        state.apply(link)
    return state


def verify_signer(link: Link, members: Mapping[str, MemberState]) -> MemberState:
    """Check a link's signature with the signer's device as it was at the link's time."""
    ms = members.get(link.signer)
    if ms is None:
        raise ChainError(f"link signed by unknown member {link.signer}")
    verify_link_signature(link, ms.device_at(link.device, link.time).sign_public)
    return ms


# -- organization chain -------------------------------------------------------------------


@dataclass
class Invite:
    public: bytes
    role: str
    note: str
    expires: int
    by: str
    used_by: str | None = None


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
class ProtocolsChange:
    """A proposed security-protocols text; in force once a second NCC member approves it."""

    digest: bytes
    text: str
    version: int
    proposer: str
    proposed_at: int
    approver: str | None = None
    approved_at: int | None = None


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
    # seq of each link of a two-person act signed by two -> its proposer (None: the proposal itself); a
    # two-person act's link missing here took effect on one signature (rule two-person reports those)
    cosigned: dict[int, str | None] = field(default_factory=dict)
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
        except EncodingError as e:
            raise ChainError(f"malformed org.create: {e}") from e
        verify_invite_signature(link, invite_pk)
        root = link.hash
        m = OrgMember(founder.member_id, None, link.time, founder.root,
                      [RoleEntry(1, "admitted", {"member": None, "ncc": None})])
        return cls(org_id_for(root), root, name, invite_pk, {founder.member_id: m}, {}, 1, root, link.time,
                   times=[link.time])

    def apply(self, link: Link, members: Mapping[str, MemberState], policy: Policy) -> None:
        check_sequence(link, self.org_id, self.seq, self.head, self.time)
        ms = verify_signer(link, members)
        handlers = {"org.invite": self._invite, "org.join": self._join, "org.admit": self._admit,
                    "org.role": self._role, "org.remove": self._remove,
                    "org.protocols.propose": self._propose, "org.protocols.approve": self._approve,
                    "org.audit_team": self._audit_team}
        handler = handlers.get(link.type)
        if handler is None:
            raise ChainError(f"unsupported organization link type {link.type!r}")
        try:
            handler(link, ms, policy)
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.seq, self.head, self.time = link.seq, link.hash, link.time
        self.times.append(link.time)

    def _authorize(self, link: Link, ms: MemberState, policy: Policy, action: str) -> None:
        """The signer's right to an org link, judged by the one judge at the state before it."""
        policy.judge(Act(link.signer, link.device, link.time, action), self, {ms.member_id: ms}, None)

    def _record(self, member_id: str, seq: int, status: str, roles: dict[str, int | None]) -> None:
        self.members[member_id].log.append(RoleEntry(seq, status, roles))
        self._ncc_terms_cache.clear()  # entries changed: past answers may name a later seq

    def _invite(self, link: Link, ms: MemberState, policy: Policy) -> None:
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
        open_invites = [i for i in self.invites.values()
                        if i.by == link.signer and i.used_by is None and i.expires > link.time]
        if len(open_invites) >= MAX_OPEN_INVITES:
            raise PolicyDenied(f"you have {MAX_OPEN_INVITES} unused invites open; let some be used or expire")
        self.invites[pk] = Invite(pk, role, b.str_("note", 256), expires, link.signer)

    def _join(self, link: Link, ms: MemberState, policy: Policy) -> None:
        pk = link.body.bytes_("invite", 32)
        inv = self.invites.get(pk)
        if inv is None:
            raise InviteNotOpen("org.join claims an unknown invite")
        if inv.used_by is not None:
            raise InviteNotOpen("invite has already been used")
        if link.time >= inv.expires:
            raise InviteNotOpen("invite has expired")
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

    def _admit(self, link: Link, ms: MemberState, policy: Policy) -> None:
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

    def _role(self, link: Link, ms: MemberState, policy: Policy) -> None:
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


    def _remove(self, link: Link, ms: MemberState, policy: Policy) -> None:
        """A departure: no roles, no logins, the member's open invites die with it."""
        self._authorize(link, ms, policy, "org.remove")
        target = link.body.str_("member", 64)
        link.body.str_("reason", 256)
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
            if inv.by == target and inv.used_by is None and inv.expires > link.time:
                inv.expires = link.time
        self._record(target, link.seq, "removed", {})
        m.removed_at = link.time

    def _second_person(self, link: Link, act: tuple[str, ...], subject: str | None) -> bool:
        """Two people for the strongest roles: does ``act`` take effect with this link?

        When an NCC member other than the signer and the subject exists at the link's time, the first
        link only proposes the act (False) and the same act signed by a second NCC member, neither
        the proposer nor the subject, puts it in force (True). With no such member, one signature
        does (the ``two-person`` rule reports it)."""
        if not any(m not in (link.signer, subject) and "ncc" in self.roles_of(m, link.time) for m in self.members):
            return True
        proposed = self.role_proposals.get(act)
        if proposed is not None and proposed[0] == link.signer:
            raise PolicyDenied("this needs a second NCC member (neither you nor its subject): you proposed it already")
        if proposed is None or proposed[0] == subject or "ncc" not in self.roles_of(proposed[0], link.time):
            self.role_proposals[act] = (link.signer, link.time)
            self.cosigned[link.seq] = None
            return False
        del self.role_proposals[act]
        self.cosigned[link.seq] = proposed[0]
        return True

    def _propose(self, link: Link, ms: MemberState, policy: Policy) -> None:
        self._authorize(link, ms, policy, "org.protocols")
        text = link.body.str_("text", 64 * 1024)
        version = policy.protocols_version(text)
        current = self.protocols.version if self.protocols else 1
        if version <= current:
            raise ChainError(f"a protocols change must raise the version above {current}")
        digest = p.sha256(text.encode("utf-8"))
        if digest in self.proposals:
            raise ChainError("this protocols text is already proposed")
        self.proposals[digest] = ProtocolsChange(digest, text, version, link.signer, link.time)

    def _approve(self, link: Link, ms: MemberState, policy: Policy) -> None:
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
        self.protocols = approved
        self.protocols_log.append(approved)
        self.proposals = {d: c for d, c in self.proposals.items() if c.version > approved.version}

    def _audit_team(self, link: Link, ms: MemberState, policy: Policy) -> None:
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


def replay_org(links: list[Link], members: Mapping[str, MemberState], policy: Policy) -> OrgState:
    if not links:
        raise ChainError("empty organization chain")
    state = OrgState.create(links[0], members)
    for link in links[1:]:
        state.apply(link, members, policy)
    return state


# -- team chain ----------------------------------------------------------------------------


@dataclass
class TeamMember:
    member_id: str
    role: str
    until: int | None
    since: int

    def active(self, now: int) -> bool:
        return self.until is None or now < self.until


@dataclass
class BoxCommitment:
    gen: int
    member_id: str
    puk_gen: int
    hash: bytes


@dataclass(frozen=True)
class TeamSnapshot:
    """What a document header's ``team_seq`` refers to: generation, roles and org state then."""

    generation: int
    org_seq: int
    roles: dict[str, tuple[str, int | None]]  # member -> (role, until)
    time: int = 0  # the time of the link that made this state


@dataclass
class TeamState:
    team_id: str
    org_id: str
    name: str
    kind: str
    history: bool
    members: dict[str, TeamMember]
    generation: int
    canaries: dict[int, bytes]
    boxes: dict[tuple[int, str], BoxCommitment] = field(default_factory=dict)
    prev: dict[int, bytes] = field(default_factory=dict)  # gen -> previous seed under gen
    pending_rotation: bool = False
    pending_share: dict[str, str] = field(default_factory=dict)  # member -> who added them without a key
    removed_at: dict[str, int] = field(default_factory=dict)  # member -> seq of the link that removed them
    rekeyed: dict[int, str] = field(default_factory=dict)  # gen -> admin who re-keyed the team (no member held it)
    org_seq: int = 0
    seq: int = 0
    head: bytes = b""
    time: int = 0
    snapshots: dict[int, TeamSnapshot] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> TeamState:
        """Everything copied except the past snapshots, which are shared: nothing changes a snapshot
        once made (a link only adds one), and a team grown one member at a time holds a snapshot of
        every member's role per link (O(members^2); copying them made a removal from a 500-member
        team cost ~0.4 s)."""
        fields = {f.name: copy.deepcopy(getattr(self, f.name), memo) for f in dataclasses.fields(self)
                  if f.name != "snapshots"}
        return TeamState(**fields, snapshots=dict(self.snapshots))

    def _snapshot(self) -> None:
        self.snapshots[self.seq] = TeamSnapshot(
            self.generation, self.org_seq, {m: (tm.role, tm.until) for m, tm in self.members.items()}, self.time)

    def superseded_at(self, team_seq: int) -> int | None:
        """When the state ``team_seq`` ended: the time of the next team link (None: still current)."""
        nxt = self.snapshots.get(team_seq + 1)
        return None if nxt is None else nxt.time

    def role_of(self, member_id: str, now: int) -> str | None:
        m = self.members.get(member_id)
        if m is None or not m.active(now):
            return None
        return m.role

    def active_members(self, now: int) -> set[str]:
        return {m for m, tm in self.members.items() if tm.active(now)}

    def admins(self, now: int) -> set[str]:
        return {m for m, tm in self.members.items() if tm.active(now) and tm.role == "admin"}

    def holds_key(self, member_id: str, now: int) -> bool:
        return self.role_of(member_id, now) is not None and (self.generation, member_id) in self.boxes

    def key_holders(self, org: OrgState, org_seq: int, now: int, policy: Policy) -> set[str]:
        """The team's members (at org state ``org_seq``) who hold the current key: who can rotate.
        None left (an orphaned team): one of the team's admins may re-key it (``team.rotate`` without
        the old key, a fresh generation with no history)."""
        return {m for m in policy.team_members(self, org, org_seq, now) if self.holds_key(m, now)}

    def rotation_reasons(self, now: int, members: Mapping[str, MemberState], org: OrgState,
                         tolerant: bool = False, org_seq: int | None = None) -> list[str]:
        """Why the current generation must not be used for new content (empty: it may).

        Judged at organization state ``org_seq`` (default: the head): a member removed from the
        organization takes no part in any team, so a box they hold makes every team of theirs rotate."""
        reasons = []
        if self.pending_rotation:
            reasons.append("a member was removed or left and the key was not rotated yet")
        for (gen, mid), c in self.boxes.items():
            if gen != self.generation:
                continue
            if mid not in self.members:
                reasons.append(f"{mid} was removed but holds the current key")
            elif not org.admitted(mid, org_seq):
                reasons.append(f"{mid} was removed from the organization but holds the current key")
            elif not self.members[mid].active(now):
                reasons.append(f"{mid}'s role ended but they hold the current key")
            elif mid in members and (c.puk_gen not in members[mid].puk_gens_at(now) if tolerant
                                     else c.puk_gen != members[mid].puk_gen_at(now)):
                reasons.append(f"{mid} revoked a device that could open the current key")
        return reasons

    @classmethod
    def create(cls, link: Link, org: OrgState, members: Mapping[str, MemberState], policy: Policy,
               kinds: Iterable[str]) -> TeamState:
        if link.type != "team.create" or link.seq != 1 or link.prev is not None or link.chain:
            raise ChainError("a team chain must start with team.create")
        check_no_cosignature(link)
        verify_signer(link, members)
        try:
            b = link.body
            if b.str_("org") != org.org_id:
                raise ChainError("team belongs to another organization")
            org_seq = _org_seq(b, org, 0)
            kind = b.str_("kind", 16)
            if kind not in kinds:
                raise ChainError(f"unknown team kind {kind!r}")
            policy.judge(Act(link.signer, link.device, link.time, f"team.create.{kind}", org_seq=org_seq), org,
                         members, None)
            state = cls(team_id_for(org.org_id, b.bytes_("nonce", 16)), org.org_id,
                        check_name(b.str_("name"), "team name"), kind, b.bool_("history"), {}, 0, {})
            state.org_seq = org_seq
            for item in b.list_("members", 1000):
                m = Fields(item, "team member", {"member", "role", "until"})
                state._add_member(m, link, org, org_seq, policy)
            if state.role_of(link.signer, link.time) != "admin":
                raise ChainError("the creator of a team must be one of its admins")
            state._new_generation(b.dict_("key"), link, members, org, org_seq, policy)
        except EncodingError as e:
            raise ChainError(f"malformed team.create: {e}") from e
        state.seq, state.head, state.time = 1, link.hash, link.time
        state._snapshot()
        return state

    def apply(self, link: Link, org: OrgState, members: Mapping[str, MemberState], policy: Policy) -> None:
        check_sequence(link, self.team_id, self.seq, self.head, self.time)
        verify_signer(link, members)
        handlers = {"team.add": self._add, "team.share": self._share, "team.remove": self._remove,
                    "team.leave": self._leave, "team.role": self._role, "team.rotate": self._rotate}
        handler = handlers.get(link.type)
        if handler is None:
            raise ChainError(f"unsupported team link type {link.type!r}")
        try:
            org_seq = _org_seq(link.body, org, self.org_seq)
            self._drop_departed(link, org, org_seq)
            handler(link, org, org_seq, members, policy)
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.org_seq = org_seq
        self.seq, self.head, self.time = link.seq, link.hash, link.time
        self._snapshot()

    # -- transitions --------------------------------------------------------------------------

    def _authorize(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState], policy: Policy,
                   action: str) -> None:
        """The signer's right to this link, judged by the one judge at the states the link names (this
        team state, the organization state ``org_seq``)."""
        policy.judge(Act(link.signer, link.device, link.time, action, org_seq=org_seq, team_seq=self.seq), org,
                     members, self)

    def _add(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
             policy: Policy) -> None:
        self._authorize(link, org, org_seq, members, policy, "team.add")
        added = self._add_member(link.body, link, org, org_seq, policy)
        key = link.body.opt_dict("key", {"gen", "boxes"})
        if key is None:
            if self.holds_key(link.signer, link.time):
                raise ChainError("a key holder must box the key for the member it adds")
            if (self.generation, added) not in self.boxes:  # a re-added member may hold it already
                self.pending_share[added] = link.signer
            return
        self._one_box(key, added, link, members, org, org_seq)
        self.pending_share.pop(added, None)  # boxed now: no longer waiting (a re-add by a key holder)

    def _share(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
               policy: Policy) -> None:
        self._authorize(link, org, org_seq, members, policy, "team.share")
        if not self.holds_key(link.signer, link.time):
            raise PolicyDenied("only a holder of the current team key can share it")
        target = link.body.str_("member", 64)
        if target not in self.pending_share or target not in policy.team_members(self, org, org_seq, link.time):
            raise ChainError(f"member {target} is not waiting for the team key")
        self._one_box(link.body.dict_("key", {"gen", "boxes"}), target, link, members, org, org_seq)
        self.pending_share.pop(target, None)

    def _remove(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                policy: Policy) -> None:
        self._authorize(link, org, org_seq, members, policy, "team.remove")
        target = link.body.str_("member", 64)
        if target not in self.members:
            raise ChainError(f"member {target} is not in team {self.name}")
        if self.admins(link.time) == {target}:
            raise ChainError("cannot remove the last admin of a team; make someone else admin first")
        holder = self.holds_key(link.signer, link.time) and link.signer != target
        del self.members[target]
        self.removed_at[target] = link.seq
        self.pending_share.pop(target, None)
        key = link.body.opt_dict("key")
        if key is None:
            if holder:
                raise ChainError("a key holder must rotate the key in the same link as a removal")
            self.pending_rotation = True
        else:
            if not holder:
                raise ChainError("only a holder of the current key can rotate it")
            self._new_generation(key, link, members, org, org_seq, policy)

    def _leave(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
               policy: Policy) -> None:
        if link.signer not in self.members:
            raise ChainError("you are not in this team")
        self._authorize(link, org, org_seq, members, policy, "team.leave")
        if self.admins(link.time) == {link.signer}:
            raise ChainError("you are the last admin of this team; make someone else admin first")
        del self.members[link.signer]
        self.removed_at[link.signer] = link.seq
        self.pending_share.pop(link.signer, None)
        self.pending_rotation = True

    def _role(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
              policy: Policy) -> None:
        self._authorize(link, org, org_seq, members, policy, "team.role")
        b = link.body
        target, role, until = b.str_("member", 64), b.str_("role", 16), b.opt_int("until", 0)
        m = self.members.get(target)
        if m is None or not m.active(link.time):
            raise ChainError(f"member {target} is not in team {self.name}")
        if role not in TEAM_ROLE_NAMES:
            raise ChainError(f"unknown team role {role!r}")
        if until is not None and until <= link.time:
            raise ChainError("role expiry is in the past")
        if m.role == "admin" and role != "admin" and self.admins(link.time) == {target}:
            raise ChainError("cannot demote the last admin of a team")
        if not policy.may_hold_team_role(org.roles_of(target, link.time, org_seq), role):
            raise PolicyDenied(f"member {target} may not hold team role {role!r}")
        if (m.role, m.until) == (role, until):
            raise ChainError("nothing to change")
        m.role, m.until = role, until

    def _rotate(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                policy: Policy) -> None:
        self._authorize(link, org, org_seq, members, policy, "team.rotate")
        if self.holds_key(link.signer, link.time):
            self._new_generation(link.body.dict_("key"), link, members, org, org_seq, policy)
            return
        if self.key_holders(org, org_seq, link.time, policy):
            raise PolicyDenied(f"member {link.signer} holds no key of team {self.name}: only a holder of the "
                               "current team key can rotate it")
        # A re-key: no member holds the key (its only holders were removed by someone who held none),
        # so nobody could ever rotate again. An admin of the team starts a fresh key without history.
        if self.role_of(link.signer, link.time) != "admin":
            raise PolicyDenied(f"no member holds the key of team {self.name}: only one of its admins can re-key it")
        self.pending_share.pop(link.signer, None)
        self._new_generation(link.body.dict_("key"), link, members, org, org_seq, policy, fresh=True)
        self.rekeyed[self.generation] = link.signer

    # -- helpers -------------------------------------------------------------------------------

    def _drop_departed(self, link: Link, org: OrgState, org_seq: int) -> None:
        """Members removed from the organization (at the state this link names) leave the team with it.

        Organization removal is final (``org.admit`` refuses a removed member), so this only ever
        drops; a box such a member holds still makes the team rotate (``rotation_reasons``)."""
        for mid in [m for m in self.members if not org.admitted(m, org_seq)]:
            del self.members[mid]
            self.removed_at[mid] = link.seq
            self.pending_share.pop(mid, None)

    def _add_member(self, f: Fields, link: Link, org: OrgState, org_seq: int, policy: Policy) -> str:
        mid = f.str_("member", 64)
        role = f.str_("role", 16)
        until = f.opt_int("until", 0)
        if role not in TEAM_ROLE_NAMES:
            raise ChainError(f"unknown team role {role!r}")
        if not org.admitted(mid, org_seq):
            raise ChainError(f"member {mid} is not an admitted member of the organization")
        if not policy.may_hold_team_role(org.roles_of(mid, link.time, org_seq), role):
            raise PolicyDenied(f"member {mid} may not hold team role {role!r}")
        if mid in self.members and self.members[mid].active(link.time):
            raise ChainError(f"member {mid} is already in team {self.name}")
        if until is not None and until <= link.time:
            raise ChainError("role expiry is in the past")
        self.members[mid] = TeamMember(mid, role, until, link.time)
        self.removed_at.pop(mid, None)
        return mid

    def _one_box(self, key: Fields, member_id: str, link: Link, members: Mapping[str, MemberState],
                 org: OrgState, org_seq: int) -> None:
        if key.int_("gen") != self.generation:
            raise ChainError("key box for a generation that is not current")
        # Replaying a share: a PUK roll in the link's own second may postdate it (other chain,
        # other signer's clock), so judge that second leniently; clients and the server judge
        # new content strictly (from the roll's second on).
        if self.rotation_reasons(link.time, members, org, tolerant=True, org_seq=org_seq):
            raise ChainError("the team key must be rotated before it is shared")
        commits = _box_commits(key.list_("boxes", 1), self.generation)
        if set(commits) != {member_id}:
            raise ChainError("the link must carry exactly the new member's key box")
        self._record_boxes(commits, link, members)

    def _new_generation(self, key: Fields, link: Link, members: Mapping[str, MemberState], org: OrgState,
                        org_seq: int, policy: Policy, fresh: bool = False) -> None:
        gen = key.int_("gen", 1)
        if gen != self.generation + 1:
            raise ChainError(f"key generation {gen} does not follow {self.generation}")
        allowed = {"gen", "canary", "boxes", "prev"}
        if set(key.raw) - allowed:
            raise ChainError("unexpected fields in a key generation")
        prev = key.opt_bytes("prev", HISTORY_BLOB)
        if gen > 1 and self.history and not fresh and prev is None:
            raise ChainError("a team with history must carry the previous key in a rotation")
        if (gen == 1 or not self.history or fresh) and prev is not None:
            raise ChainError("this key generation must not carry a previous key")
        commits = _box_commits(key.list_("boxes", 1000), gen)
        if set(commits) != policy.key_recipients(self, org, org_seq, link.time):
            raise ChainError("key boxes do not match the team's membership (missing or extra box)")
        self._record_boxes(commits, link, members)
        self.generation = gen
        self.canaries[gen] = key.bytes_("canary", 32)
        if prev is not None:
            self.prev[gen] = prev
        self.pending_rotation = False  # members waiting for a share keep waiting (``key_recipients``)

    def _record_boxes(self, commits: dict[str, BoxCommitment], link: Link, members: Mapping[str, MemberState]) -> None:
        for mid, c in commits.items():
            ms = members.get(mid)
            if ms is None or c.puk_gen not in ms.puk_gens_at(link.time):
                raise ChainError(f"key box for {mid} is not sealed to the member's current key")
            self.boxes[(c.gen, mid)] = c


def _org_seq(b: Fields, org: OrgState, previous: int) -> int:
    seq = b.int_("org_seq", 1)
    if seq > org.seq or seq < previous:
        raise ChainError("team link refers to an organization state that does not exist or went back")
    return seq


def _box_commits(items: Iterable[Value], gen: int) -> dict[str, BoxCommitment]:
    out: dict[str, BoxCommitment] = {}
    for item in items:
        f = Fields(item, "key box commitment", {"member", "puk_gen", "hash"})
        mid = f.str_("member", 64)
        if mid in out:
            raise ChainError("duplicate key box for one member")
        out[mid] = BoxCommitment(gen, mid, f.int_("puk_gen", 1), f.bytes_("hash", 32))
    return out


def replay_team(links: list[Link], org: OrgState, members: Mapping[str, MemberState], policy: Policy,
                kinds: Iterable[str]) -> TeamState:
    if not links:
        raise ChainError("empty team chain")
    state = TeamState.create(links[0], org, members, policy, kinds)
    for link in links[1:]:
        state.apply(link, org, members, policy)
    return state
