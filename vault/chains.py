"""Chain replay: member, organization and team chains as pure state machines.

Each ``*State.apply(link, ...)`` checks a link against the state *before* it (sequence,
previous hash, chain id, time order, signer's device, signer's right under the policy)
and then applies it. ``replay_*`` folds a whole chain. Server and clients run the same
code; a server that forges, alters, reorders or drops links is caught here.

Transitions (link type -> effect)::

    member.create  new member: first device, PUK generation 1 (self-signed)
    org.create     founds the organization; founder becomes member + ncc (invite-cosigned)
    org.invite     records a one-time invite key with the role it grants and its expiry
    org.join       a new member claims an invite (cosigned with the invite key)
    team.create    team with kind, initial members and key generation 1
    team.add       adds a member with a role (and optional expiry) and their key box
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from vault.crypto import labels
from vault.encoding import Fields, Value
from vault.errors import ChainError, EncodingError, PolicyDenied
from vault.keys import device_id_for, short_id
from vault.links import Link, check_sequence, verify_invite_signature, verify_link_signature

MAX_NAME = 64
ORG_INVITE_ROLES = ("member", "compa")


class Policy(Protocol):
    def org_allows(self, roles: frozenset[str], action: str) -> bool: ...

    def team_allows(self, org_roles: frozenset[str], team_role: str | None, action: str) -> bool: ...

    def may_hold_team_role(self, org_roles: frozenset[str], team_role: str) -> bool: ...


def member_id_for(first_device_sign_public: bytes) -> str:
    return short_id(labels.H_MEMBER_ID, first_device_sign_public)


def org_id_for(root: bytes) -> str:
    """The organization id: derived from the hash of its org.create link (its root)."""
    return short_id(labels.H_ORG_ID, root)


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
    revoked: bool = False


@dataclass
class MemberState:
    member_id: str
    name: str
    devices: dict[str, Device]
    puk_gen: int
    puk_sign_public: bytes
    puk_box_public: bytes
    puk_box_hashes: dict[str, bytes]
    root: bytes
    seq: int
    head: bytes
    time: int

    def device(self, device_id: str) -> Device:
        d = self.devices.get(device_id)
        if d is None or d.revoked:
            raise ChainError(f"device {device_id} is not an active device of member {self.member_id}")
        return d

    @classmethod
    def create(cls, link: Link) -> MemberState:
        if link.type != "member.create" or link.seq != 1 or link.prev is not None or link.chain:
            raise ChainError("a member chain must start with member.create")
        b = link.body
        try:
            dev = b.dict_("device", {"id", "sign_pk", "box_pk", "name"})
            puk = b.dict_("puk", {"gen", "sign_pk", "box_pk"})
            sign_pk = dev.bytes_("sign_pk", 32)
            device = Device(device_id_for(sign_pk), sign_pk, dev.bytes_("box_pk", 32),
                            check_name(dev.str_("name"), "device name"))
            if dev.str_("id") != device.device_id or link.device != device.device_id:
                raise ChainError("member.create names a device id that does not match its key")
            member_id = member_id_for(sign_pk)
            if link.signer != member_id:
                raise ChainError("member.create signer is not the member its key defines")
            if puk.int_("gen") != 1:
                raise ChainError("first PUK generation must be 1")
            boxes = _box_hashes(b.list_("puk_boxes", 64), "device")
            if set(boxes) != {device.device_id}:
                raise ChainError("member.create must box the PUK to exactly its device")
            state = cls(
                member_id=member_id,
                name=check_name(b.str_("name"), "member name"),
                devices={device.device_id: device},
                puk_gen=1,
                puk_sign_public=puk.bytes_("sign_pk", 32),
                puk_box_public=puk.bytes_("box_pk", 32),
                puk_box_hashes=boxes,
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
        raise ChainError(f"unsupported member link type {link.type!r}")


def _box_hashes(items: Iterable[Value], key: str) -> dict[str, bytes]:
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
class OrgMember:
    member_id: str
    roles: frozenset[str]
    status: str  # "admitted" | "pending"
    invited_by: str | None
    since: int
    member_head: bytes


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

    def roles_of(self, member_id: str) -> frozenset[str]:
        m = self.members.get(member_id)
        if m is None or m.status != "admitted":
            return frozenset()
        return m.roles

    def _signer(self, link: Link, members: Mapping[str, MemberState]) -> MemberState:
        ms = members.get(link.signer)
        if ms is None:
            raise ChainError(f"link signed by unknown member {link.signer}")
        verify_link_signature(link, ms.device(link.device).sign_public)
        return ms

    @classmethod
    def create(cls, link: Link, members: Mapping[str, MemberState]) -> OrgState:
        if link.type != "org.create" or link.seq != 1 or link.prev is not None or link.chain:
            raise ChainError("an organization chain must start with org.create")
        founder = members.get(link.signer)
        if founder is None:
            raise ChainError("org.create signed by an unknown member")
        verify_link_signature(link, founder.device(link.device).sign_public)
        try:
            invite_pk = link.body.bytes_("founder_invite", 32)
            name = check_name(link.body.str_("name"), "organization name")
            if link.body.bytes_("member_head", 32) != _first_head(founder):
                raise ChainError("org.create does not pin the founder's member chain")
        except EncodingError as e:
            raise ChainError(f"malformed org.create: {e}") from e
        verify_invite_signature(link, invite_pk)
        root = link.hash
        return cls(
            org_id=org_id_for(root),
            root=root,
            name=name,
            founder_invite=invite_pk,
            members={
                founder.member_id: OrgMember(
                    founder.member_id, frozenset({"member", "ncc"}), "admitted", None, link.time,
                    _first_head(founder),
                )
            },
            invites={},
            seq=1,
            head=root,
            time=link.time,
        )

    def apply(self, link: Link, members: Mapping[str, MemberState], policy: Policy) -> None:
        check_sequence(link, self.org_id, self.seq, self.head, self.time)
        try:
            if link.type == "org.invite":
                self._invite(link, members, policy)
            elif link.type == "org.join":
                self._join(link, members, policy)
            else:
                raise ChainError(f"unsupported organization link type {link.type!r}")
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.seq, self.head, self.time = link.seq, link.hash, link.time

    def _invite(self, link: Link, members: Mapping[str, MemberState], policy: Policy) -> None:
        self._signer(link, members)
        b = link.body
        role = b.str_("role", 16)
        if role not in ORG_INVITE_ROLES:
            raise ChainError(f"an invite grants one of {ORG_INVITE_ROLES}, not {role!r}")
        roles = self.roles_of(link.signer)
        if not policy.org_allows(roles, f"org.invite.{role}"):
            raise PolicyDenied(f"member {link.signer} may not invite with role {role!r}")
        pk = b.bytes_("invite", 32)
        if pk in self.invites or pk == self.founder_invite:
            raise ChainError("invite key is already recorded")
        expires = b.int_("expires", 0)
        if expires <= link.time:
            raise ChainError("invite expires before it is issued")
        self.invites[pk] = Invite(pk, role, b.str_("note", 256), expires, link.signer)

    def _join(self, link: Link, members: Mapping[str, MemberState], policy: Policy) -> None:
        ms = self._signer(link, members)
        pk = link.body.bytes_("invite", 32)
        inv = self.invites.get(pk)
        if inv is None:
            raise ChainError("org.join claims an unknown invite")
        if inv.used_by is not None:
            raise ChainError("invite has already been used")
        if link.time >= inv.expires:
            raise ChainError("invite has expired")
        if link.signer in self.members:
            raise ChainError("member has already joined")
        if link.body.bytes_("member_head", 32) != _first_head(ms):
            raise ChainError("org.join does not pin the member's chain")
        verify_invite_signature(link, pk)
        inv.used_by = link.signer
        # An invite from someone allowed to admit is an admission; otherwise it waits.
        admitted = policy.org_allows(self.roles_of(inv.by), "org.admit")
        self.members[link.signer] = OrgMember(
            link.signer, frozenset({inv.role}), "admitted" if admitted else "pending", inv.by,
            link.time, _first_head(ms),
        )


def _first_head(ms: MemberState) -> bytes:
    # The member-chain hash an org link pins: the member.create link (the identity root).
    return ms.root


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
    seq: int = 0
    head: bytes = b""
    time: int = 0

    def role_of(self, member_id: str, now: int) -> str | None:
        m = self.members.get(member_id)
        if m is None or not m.active(now):
            return None
        return m.role

    @classmethod
    def create(cls, link: Link, org: OrgState, members: Mapping[str, MemberState],
               policy: Policy, kinds: Iterable[str]) -> TeamState:
        if link.type != "team.create" or link.seq != 1 or link.prev is not None or link.chain:
            raise ChainError("a team chain must start with team.create")
        _verify_member_link(link, members)
        try:
            b = link.body
            if b.str_("org") != org.org_id:
                raise ChainError("team belongs to another organization")
            kind = b.str_("kind", 16)
            if kind not in kinds:
                raise ChainError(f"unknown team kind {kind!r}")
            if not policy.org_allows(org.roles_of(link.signer), f"team.create.{kind}"):
                raise PolicyDenied(f"member {link.signer} may not create a {kind} team")
            team_id = team_id_for(org.org_id, b.bytes_("nonce", 16))
            state = cls(
                team_id=team_id,
                org_id=org.org_id,
                name=check_name(b.str_("name"), "team name"),
                kind=kind,
                history=b.bool_("history"),
                members={},
                generation=0,
                canaries={},
            )
            for item in b.list_("members", 1000):
                m = Fields(item, "team member", {"member", "role", "until"})
                state._add_member(m, link, org, policy)
            if state.role_of(link.signer, link.time) != "admin":
                raise ChainError("the creator of a team must be one of its admins")
            state._new_generation(b.dict_("key", {"gen", "canary", "boxes"}), members, link.time)
        except EncodingError as e:
            raise ChainError(f"malformed team.create: {e}") from e
        state.seq, state.head, state.time = 1, link.hash, link.time
        return state

    def apply(self, link: Link, org: OrgState, members: Mapping[str, MemberState],
              policy: Policy) -> None:
        check_sequence(link, self.team_id, self.seq, self.head, self.time)
        _verify_member_link(link, members)
        try:
            if link.type == "team.add":
                self._authorize(link, org, policy, "team.add")
                self._add_member(link.body, link, org, policy)
                key = link.body.dict_("key", {"gen", "boxes"})
                if key.int_("gen") != self.generation:
                    raise ChainError("team.add boxes a generation that is not current")
                added = link.body.str_("member")
                commits = _team_boxes(key.list_("boxes", 1), self.generation)
                if set(commits) != {added}:
                    raise ChainError("team.add must carry exactly the new member's key box")
                self._record_boxes(commits, members)
            else:
                raise ChainError(f"unsupported team link type {link.type!r}")
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.seq, self.head, self.time = link.seq, link.hash, link.time

    def _authorize(self, link: Link, org: OrgState, policy: Policy, action: str) -> None:
        role = self.role_of(link.signer, link.time)
        if not policy.team_allows(org.roles_of(link.signer), role, action):
            raise PolicyDenied(f"member {link.signer} may not {action.split('.', 1)[1]} in team {self.name}")

    def _add_member(self, f: Fields, link: Link, org: OrgState, policy: Policy) -> None:
        mid = f.str_("member", 64)
        role = f.str_("role", 16)
        until = f.opt_int("until", 0)
        if role not in ("admin", "writer", "reader"):
            raise ChainError(f"unknown team role {role!r}")
        if mid not in org.members or org.members[mid].status != "admitted":
            raise ChainError(f"member {mid} is not an admitted member of the organization")
        if not policy.may_hold_team_role(org.roles_of(mid), role):
            raise PolicyDenied(f"member {mid} may not hold team role {role!r}")
        if mid in self.members and self.members[mid].active(link.time):
            raise ChainError(f"member {mid} is already in team {self.name}")
        if until is not None and until <= link.time:
            raise ChainError("role expiry is in the past")
        self.members[mid] = TeamMember(mid, role, until, link.time)

    def _new_generation(self, key: Fields, members: Mapping[str, MemberState], now: int) -> None:
        gen = key.int_("gen", 1)
        if gen != self.generation + 1:
            raise ChainError(f"key generation {gen} does not follow {self.generation}")
        self.generation = gen
        self.canaries[gen] = key.bytes_("canary", 32)
        commits = _team_boxes(key.list_("boxes", 1000), gen)
        current = {m for m, tm in self.members.items() if tm.active(now)}
        if set(commits) != current:
            raise ChainError("key boxes do not match the team's membership (missing or extra box)")
        self._record_boxes(commits, members)

    def _record_boxes(self, commits: dict[str, BoxCommitment], members: Mapping[str, MemberState]) -> None:
        for mid, c in commits.items():
            ms = members.get(mid)
            if ms is None or c.puk_gen != ms.puk_gen:
                raise ChainError(f"key box for {mid} is not sealed to the member's current key")
            self.boxes[(c.gen, mid)] = c


def team_id_for(org_id: str, nonce: bytes) -> str:
    return short_id(labels.H_TEAM_ID, org_id.encode() + b"\x00" + nonce)


def _team_boxes(items: Iterable[Value], gen: int) -> dict[str, BoxCommitment]:
    out: dict[str, BoxCommitment] = {}
    for item in items:
        f = Fields(item, "key box commitment", {"member", "puk_gen", "hash"})
        mid = f.str_("member", 64)
        if mid in out:
            raise ChainError("duplicate key box for one member")
        out[mid] = BoxCommitment(gen, mid, f.int_("puk_gen", 1), f.bytes_("hash", 32))
    return out


def _verify_member_link(link: Link, members: Mapping[str, MemberState]) -> None:
    ms = members.get(link.signer)
    if ms is None:
        raise ChainError(f"link signed by unknown member {link.signer}")
    verify_link_signature(link, ms.device(link.device).sign_public)


def replay_team(links: list[Link], org: OrgState, members: Mapping[str, MemberState],
                policy: Policy, kinds: Iterable[str]) -> TeamState:
    if not links:
        raise ChainError("empty team chain")
    state = TeamState.create(links[0], org, members, policy, kinds)
    for link in links[1:]:
        state.apply(link, org, members, policy)
    return state


T = TypeVar("T")


def clone(state: T) -> T:
    """A deep copy to apply a candidate link to without touching the original."""
    return copy.deepcopy(state)
