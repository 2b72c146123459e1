"""The team chain: a team's kind, members with team roles and expiries, and its key generations.

Transitions: ``team.create``, ``team.add``, ``team.share``, ``team.remove``, ``team.leave``,
``team.role``, ``team.rotate``, ``team.review`` (an admin confirms the member list) and
``team.approve`` (a second person approves an earlier team link; see ``vault.chains``); in a team of kind
``coalition`` also ``coalition.ally`` and ``coalition.remove``, and a ``team.add`` of an ally's member carrying
its organization's ``coalition.admit`` (``vault.chains.coalition``). Team links carry ``org_seq``: the organization
chain head they were made against, so the signer's organization roles are judged as they were at that point.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from vault.acts import Act
from vault.chains.coalition import GUEST_ROLE, Ally, Guest, Rekey
from vault.chains.coalitionspace import (
    admit,
    change_role,
    check_host_in_force,
    drop_departed,
    guest_org_seq,
    pin_ally,
    rekey,
    removal_statement,
)
from vault.chains.coalitionspace import withheld as named_withheld
from vault.chains.common import check_name, roster_digest, team_id_for
from vault.chains.exports import EXPORT_TYPES, ExportRequest, apply_export
from vault.chains.incidents import check_named
from vault.chains.member import MemberState, verify_signer
from vault.chains.org import OrgPolicy, OrgState
from vault.chains.records import Signed, approved_link
from vault.chains.spacemove import SpacePlace, apply_move
from vault.encoding import Fields, Value
from vault.errors import ChainError, EncodingError, PolicyDenied
from vault.links import Link, check_no_cosignature, check_sequence

TEAM_ROLE_NAMES = ("admin", "writer", "reader")
HISTORY_BLOB = 24 + 32 + 16


class Policy(OrgPolicy, Protocol):
    """What the chains ask of the policy (``security.policy.DefaultPolicy`` through ``security.authority``)."""

    def team_allows(self, org_roles: frozenset[str], team_role: str | None, action: str) -> bool: ...

    def may_hold_team_role(self, org_roles: frozenset[str], team_role: str) -> bool: ...

    def judge(self, act: Act, org: OrgState, members: Mapping[str, MemberState], team: TeamState | None) -> None:
        """Refuse (``PolicyDenied``/``ChainError``) an act its author was not entitled to at its time."""
        ...

    def team_members(self, team: TeamState, org: OrgState, org_seq: int, t: int) -> set[str]:
        """The team's members at time ``t`` (role not ended, admitted at org state ``org_seq``)."""
        ...

    def key_recipients(self, team: TeamState, org: OrgState, org_seq: int, t: int,
                       members: Mapping[str, MemberState]) -> set[str]:
        """Who must receive a box of a new key generation made at org state ``org_seq``, time ``t``."""
        ...


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
    # members a rotation gave no box because a cut device holds their PUK -> that generation; any key holder
    # shares with them once their own chain revoked the device (org.device.cut, SECURITY.md)
    withheld: dict[str, int] = field(default_factory=dict)
    removed_at: dict[str, int] = field(default_factory=dict)  # member -> seq of the link that removed them
    rekeyed: dict[int, str] = field(default_factory=dict)  # gen -> admin who re-keyed the team (no member held it)
    org_seq: int = 0
    seq: int = 0
    head: bytes = b""
    time: int = 0
    snapshots: dict[int, TeamSnapshot] = field(default_factory=dict)
    reviews: list[tuple[int, str, int]] = field(default_factory=list)  # (seq, admin, time) of each team.review
    exports: dict[bytes, ExportRequest] = field(default_factory=dict)  # request hash -> it (vault/chains/exports.py)
    # hash of every link -> its seq, signer, subject (what a team.approve needs); shared like the snapshots
    signed: dict[bytes, Signed] = field(default_factory=dict)
    approvals: dict[bytes, list[tuple[int, str, int]]] = field(default_factory=dict)  # hash -> (seq, by, time)
    # device -> (seq, hash) of the last link of this chain it signed (what an org.device.cut records)
    last_signed: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    # a coalition space: the allied organizations pinned (org root -> Ally), every ally member ever admitted (kept
    # after removal: their past acts are still judged as a guest's), and the hash of every coalition statement used
    allies: dict[bytes, Ally] = field(default_factory=dict)
    guests: dict[str, Guest] = field(default_factory=dict)
    statements_used: set[bytes] = field(default_factory=set)
    ally_proposals: dict[tuple[bytes, bytes, str], str] = field(default_factory=dict)  # pin -> proposer (two-person)
    ally_pins: dict[int, bytes] = field(default_factory=dict)  # seq of each coalition.ally put in force -> its key
    rekeys: dict[bytes, Rekey] = field(default_factory=dict)  # an ally's retired coalition key -> its rekey
    host_key: bytes | None = None  # a coalition space's host coalition key (team.create): host members' entry needs it
    host_removed: set[str] = field(default_factory=set)  # host members a host coalition.remove dropped
    approved: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # member -> role, end its approval named
    host_retired: dict[bytes, int] = field(default_factory=dict)  # host keys a host coalition.rekey retired -> seq
    server: SpacePlace | None = None  # the host's place for guests: the last coalition.server (chains/spacemove.py)

    def __deepcopy__(self, memo: dict[int, Any]) -> TeamState:
        """Everything copied except the past snapshots, which are shared: nothing changes a snapshot
        once made (a link only adds one), and a team grown one member at a time holds a snapshot of
        every member's role per link (O(members^2); copying them made a removal from a 500-member
        team cost ~0.4 s)."""
        fields = {f.name: copy.deepcopy(getattr(self, f.name), memo) for f in dataclasses.fields(self)
                  if f.name not in ("snapshots", "signed")}
        return TeamState(**fields, snapshots=dict(self.snapshots), signed=dict(self.signed))

    def _snapshot(self) -> None:
        self.snapshots[self.seq] = TeamSnapshot(
            self.generation, self.org_seq, {m: (tm.role, tm.until) for m, tm in self.members.items()}, self.time)

    def in_org(self, org: OrgState, member_id: str, org_seq: int | None = None) -> bool:
        """Whether ``member_id`` may take part in the team as far as organizations go: admitted to the host
        organization at ``org_seq``, or a guest (an ally's member, admitted by its own organization's approval)."""
        return member_id in self.guests or org.outside is not None or org.admitted(member_id, org_seq)

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
            elif not self.in_org(org, mid, org_seq):
                reasons.append(f"{mid} was removed from the organization but holds the current key")
            elif not self.members[mid].active(now):
                reasons.append(f"{mid}'s role ended but they hold the current key")
            elif mid in members and (c.puk_gen not in members[mid].puk_gens_at(now) if tolerant
                                     else c.puk_gen != members[mid].puk_gen_at(now)):
                reasons.append(f"{mid} revoked a device that could open the current key")
            elif mid in org.incidents.by_member and mid in members and any(
                    cut.time <= now and c.puk_gen <= members[mid].puk_gen_at(cut.time)
                    for cut in org.incidents.cuts_of(mid)):
                reasons.append(f"a device of {mid} that could open the current key was cut off")
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
            team_id = team_id_for(org.org_id, b.bytes_("nonce", 16))
            policy.judge(Act(link.signer, link.device, link.time, f"team.create.{kind}", org_seq=org_seq,
                             position=(team_id, 1)), org, members, None)
            state = cls(team_id, org.org_id,
                        check_name(b.str_("name"), "team name"), kind, b.bool_("history"), {}, 0, {})
            state.org_seq = org_seq
            state.host_key = b.opt_bytes("host_key", 32)
            if state.host_key is not None and kind != "coalition":
                raise ChainError("team.create: only a coalition space carries host_key")
            check_host_in_force(state, org, org_seq)  # outside: in the prefix the join code vouches for
            for item in b.list_("members", 1000):
                m = Fields(item, "team member", {"member", "role", "until"})
                state._add_member(m, link, org, org_seq, policy)
            if state.role_of(link.signer, link.time) != "admin":
                raise ChainError("the creator of a team must be one of its admins")
            state._new_generation(b.dict_("key"), link, members, org, org_seq, policy)
        except EncodingError as e:
            raise ChainError(f"malformed team.create: {e}") from e
        check_named(org.incidents, state.team_id, 1, link.hash)
        state.seq, state.head, state.time = 1, link.hash, link.time
        state._snapshot()
        state.signed[link.hash] = Signed(1, link.signer, None)
        state.last_signed[link.device] = (1, link.hash)
        return state

    def apply(self, link: Link, org: OrgState, members: Mapping[str, MemberState], policy: Policy) -> None:
        check_sequence(link, self.team_id, self.seq, self.head, self.time)
        if not vouched(org, self.team_id, link, members):
            verify_signer(link, members)
        check_named(org.incidents, self.team_id, link.seq, link.hash)
        handlers = {"team.add": self._add, "team.share": self._share, "team.remove": self._remove,
                    "team.leave": self._leave, "team.role": self._role, "team.rotate": self._rotate,
                    "team.review": self._review, "team.approve": self._approve,
                    "coalition.ally": self._coalition, "coalition.remove": self._coalition_remove,
                    "coalition.rekey": self._coalition, "coalition.server": self._coalition}
        handlers.update(dict.fromkeys(EXPORT_TYPES, self._export))
        handler = handlers.get(link.type)
        if handler is None:
            raise ChainError(f"unsupported team link type {link.type!r}")
        try:
            named = _org_seq(link.body, org, self.org_seq)
            org_seq = guest_org_seq(self, link, org, named)  # a guest's: judged at a settled state (review 17)
            self._drop_departed(link, org, org_seq)
            handler(link, org, org_seq, members, policy)
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.org_seq = named
        self.seq, self.head, self.time = link.seq, link.hash, link.time
        self._snapshot()
        subject = link.body.raw.get("member")
        self.signed[link.hash] = Signed(link.seq, link.signer, subject if isinstance(subject, str) else None)
        self.last_signed[link.device] = (link.seq, link.hash)

    # -- transitions --------------------------------------------------------------------------

    def _authorize(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState], policy: Policy,
                   action: str) -> None:
        """The signer's right to this link, judged by the one judge at the states the link names (this
        team state, the organization state ``org_seq``)."""
        policy.judge(Act(link.signer, link.device, link.time, action, org_seq=org_seq, team_seq=self.seq,
                         position=(self.team_id, link.seq)), org, members, self)

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
        waiting = target in self.pending_share or self.withheld.get(target) == self.generation
        if not waiting or target not in policy.team_members(self, org, org_seq, link.time):
            raise ChainError(f"member {target} is not waiting for the team key")
        self._one_box(link.body.dict_("key", {"gen", "boxes"}), target, link, members, org, org_seq)
        self.pending_share.pop(target, None)
        self.withheld.pop(target, None)

    def _remove(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                policy: Policy) -> None:
        self._authorize(link, org, org_seq, members, policy, "team.remove")
        self._drop_member(link, link.body.str_("member", 64), org, org_seq, members, policy)

    def _drop_member(self, link: Link, target: str, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                     policy: Policy, final: bool = False) -> None:
        """``final``: a removal carrying the target's organization's statement (an expulsion is final: even of the
        space's last admin, on every side alike; review 17)."""
        if target not in self.members:
            raise ChainError(f"member {target} is not in team {self.name}")
        if not final and self.admins(link.time) == {target}:
            raise ChainError("cannot remove the last admin of a team; make someone else admin first")
        holder = self.holds_key(link.signer, link.time) and link.signer != target
        del self.members[target]
        self.removed_at[target] = link.seq
        self.pending_share.pop(target, None)
        self._rotate_on_drop(link, org, org_seq, members, policy, holder)

    def _rotate_on_drop(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                        policy: Policy, holder: bool | None = None) -> None:
        """A removal's key: a holder rotates in the same link, else a rotation is due."""
        holder = self.holds_key(link.signer, link.time) if holder is None else holder
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
        # a guest is capped as at its entry (review round 11: a guest has no host roles, which capped nothing)
        if not policy.may_hold_team_role(self._org_roles(org, target, link.time, org_seq), role):
            raise PolicyDenied(f"member {target} may not hold team role {role!r}")
        if (m.role, m.until) == (role, until):
            raise ChainError("nothing to change")
        if self.kind == "coalition":  # a promotion, or past an approved role or end: the organization's act too
            change_role(self, b.opt_dict("approval"), target, role, until, m.role, link, org, org_seq)
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

    def _review(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                policy: Policy) -> None:
        """An admin confirms the member list (rule membership-review): the link carries the digest of the
        list it confirms, which must be the team's list at the state before it (``roster_digest``)."""
        self._authorize(link, org, org_seq, members, policy, "team.review")
        if link.body.bytes_("roster", 32) != self.roster():
            raise ChainError("team.review confirms a member list that is not the team's")
        self.reviews.append((link.seq, link.signer, link.time))

    def _coalition(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                   policy: Policy) -> None:
        """``coalition.ally`` (the host's NCC pins an ally: root and coalition key), ``coalition.rekey`` (any member
        carries an ally's new coalition key, or the host's: ``coalitionspace.rekey``), ``coalition.server`` (any
        member carries the host's signed server move: ``spacemove.apply_move``)."""
        self._authorize(link, org, org_seq, members, policy, link.type)
        act = pin_ally if link.type == "coalition.ally" else rekey if link.type == "coalition.rekey" else apply_move
        act(self, link, org, org_seq)

    def _coalition_remove(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                          policy: Policy) -> None:
        """A removal from a coalition space: by a space admin (the host's side, ``team.remove``'s right), or by any
        member of the space carrying the ally's signed ``coalition.remove`` of one of its own members."""
        target = link.body.str_("member", 64)
        carried = link.body.opt_dict("statement")
        if link.body.has("departed"):  # a host member the host's organization removed (session 17, review 17)
            self._authorize(link, org, org_seq, members, policy, "coalition.remove")
            if drop_departed(self, link, target, carried, org, org_seq):  # with a key: it rotates now
                self._rotate_on_drop(link, org, org_seq, members, policy)
            return None
        if carried is None:
            self._authorize(link, org, org_seq, members, policy, "team.remove")
        else:
            self._authorize(link, org, org_seq, members, policy, "coalition.remove")
            removal_statement(self, carried, target, org, org_seq)
        self._drop_member(link, target, org, org_seq, members, policy, final=carried is not None)

    def _approve(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                 policy: Policy) -> None:
        """A second person approves an earlier link of this team (rule two-person: admin grants and removals):
        neither that link's signer nor its subject, once. It puts nothing in force."""
        self._authorize(link, org, org_seq, members, policy, "team.approve")
        target, signed = approved_link(self.signed, link)
        if any(by == link.signer for _, by, _ in self.approvals.get(target, [])):
            raise ChainError("team.approve: the same record is already in the chain")
        self.approvals.setdefault(target, []).append((link.seq, link.signer, link.time))

    def _export(self, link: Link, org: OrgState, org_seq: int, members: Mapping[str, MemberState],
                policy: Policy) -> None:
        """``export.request`` / ``export.approve``: judged as the act of that name, then ``vault.chains.exports``."""
        self._authorize(link, org, org_seq, members, policy, link.type)
        apply_export(self.exports, link)

    def roster(self, org: OrgState | None = None) -> bytes:
        """The digest a ``team.review`` made now carries: of the members still admitted at the head of ``org``
        (a review made against it drops those the organization removed since the last team link)."""
        return roster_digest({m: (tm.role, tm.until) for m, tm in self.members.items()
                              if org is None or self.in_org(org, m)})

    # -- helpers -------------------------------------------------------------------------------

    def _drop_departed(self, link: Link, org: OrgState, org_seq: int) -> None:
        """Members removed from the organization (at the state this link names) leave the team with it.

        Organization removal is final (``org.admit`` refuses a removed member), so this only ever
        drops; a box such a member holds still makes the team rotate (``rotation_reasons``). Not in a coalition
        space: there a host member leaves only by a link a guest can judge (``coalitionspace.departed``)."""
        for mid in [m for m in self.members if self.kind != "coalition" and not self.in_org(org, m, org_seq)]:
            del self.members[mid]
            self.removed_at[mid] = link.seq
            self.pending_share.pop(mid, None)

    def _add_member(self, f: Fields, link: Link, org: OrgState, org_seq: int, policy: Policy) -> str:
        mid = f.str_("member", 64)
        role = f.str_("role", 16)
        until = f.opt_int("until", 0)
        if role not in TEAM_ROLE_NAMES:
            raise ChainError(f"unknown team role {role!r}")
        approval = f.opt_dict("approval")
        if approval is not None:
            admit(self, approval, mid, role, until, link, org, org_seq)
            self.approved[mid] = (role, until)  # what a later team.role may not go past without a new one
        elif self.host_key is not None and link.type != "team.create":
            raise ChainError(f"member {mid}'s entry to coalition space {self.name} needs the host's coalition.admit "
                             "(signed with its coalition key: its NCC's approval)")
        elif org.outside is None and not org.admitted(mid, org_seq):  # (outside: a space admin's word, outside.py)
            raise ChainError(f"member {mid} is not an admitted member of the organization")
        if not policy.may_hold_team_role(self._org_roles(org, mid, link.time, org_seq), role):
            raise PolicyDenied(f"member {mid} may not hold team role {role!r}")
        if mid in self.members and self.members[mid].active(link.time):
            raise ChainError(f"member {mid} is already in team {self.name}")
        if until is not None and until <= link.time:
            raise ChainError("role expiry is in the past")
        self.members[mid] = TeamMember(mid, role, until, link.time)
        self.removed_at.pop(mid, None)
        return mid

    def _org_roles(self, org: OrgState, mid: str, t: int, org_seq: int) -> frozenset[str]:
        """The organization roles that cap ``mid``'s team role: a guest's; none outside the host (outside.py)."""
        if mid in self.guests:
            return frozenset({GUEST_ROLE})
        return frozenset() if org.outside is not None else org.roles_of(mid, t, org_seq)

    def _one_box(self, key: Fields, member_id: str, link: Link, members: Mapping[str, MemberState],
                 org: OrgState, org_seq: int) -> None:
        if key.int_("gen") != self.generation:
            raise ChainError("key box for a generation that is not current")
        # Replaying a share: a PUK roll in the link's own second may postdate it (other chain,
        # other signer's clock), so judge that second leniently; clients and the server judge
        # new content strictly (from the roll's second on).
        if self.rotation_reasons(link.time, members, org, tolerant=True, org_seq=org_seq):
            raise ChainError("the team key must be rotated before it is shared")
        if member_id in members and org.incidents.compromised(members[member_id], link.time) is not None:
            raise ChainError(f"member {member_id}'s key is held by a device that was cut off: they revoke it first")
        commits = _box_commits(key.list_("boxes", 1), self.generation)
        if set(commits) != {member_id}:
            raise ChainError("the link must carry exactly the new member's key box")
        self._record_boxes(commits, link, members)

    def _new_generation(self, key: Fields, link: Link, members: Mapping[str, MemberState], org: OrgState,
                        org_seq: int, policy: Policy, fresh: bool = False) -> None:
        gen = key.int_("gen", 1)
        if gen != self.generation + 1:
            raise ChainError(f"key generation {gen} does not follow {self.generation}")
        allowed = {"gen", "canary", "boxes", "prev"} | ({"withheld"} if self.kind == "coalition" else set())
        if set(key.raw) - allowed:
            raise ChainError("unexpected fields in a key generation")
        prev = key.opt_bytes("prev", HISTORY_BLOB)
        if gen > 1 and self.history and not fresh and prev is None:
            raise ChainError("a team with history must carry the previous key in a rotation")
        if (gen == 1 or not self.history or fresh) and prev is not None:
            raise ChainError("this key generation must not carry a previous key")
        commits = _box_commits(key.list_("boxes", 1000), gen)
        recipients = policy.key_recipients(self, org, org_seq, link.time, members)
        # A member cut at or before this rotation may be left out even when their chain now shows the cut answered:
        # the revocation that answers it can be appended after this rotation yet dated before it (review round 9:
        # a clock within the server's window); left out, they wait for a share like any withheld member.
        optional = {m for m in recipients if any(c.time <= link.time for c in org.incidents.cuts_of(m))}
        owed = policy.team_members(self, org, org_seq, link.time) - set(self.pending_share)
        named, recipients, optional = named_withheld(self, key, set(commits), owed, recipients, optional, org, org_seq)
        if not recipients - optional <= set(commits) <= recipients:
            raise ChainError("key boxes do not match the team's membership (missing or extra box)")
        self._record_boxes(commits, link, members)
        self.withheld = dict.fromkeys(named, gen) if named is not None else dict.fromkeys(
            owed - set(commits), gen) if org.incidents.by_member else {}
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
    if org.outside is not None:  # the host's chain is not known outside it: only that it never goes back
        if seq < previous:
            raise ChainError("team link refers to an organization state that went back")
        return seq
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


def vouched(org: OrgState, team: str, link: Link, members: Mapping[str, MemberState]) -> bool:
    """A link of a coalition space's chain up to a guest's join code signed by someone the guest's directory does not
    list (the host's NCC member who put an ally's pin in force need not be in the space): taken on the code's word,
    unchecked. The guest's client checks that the chain holds the code's link (its seq and hash) before any replay,
    and each link names the hash of the one before, so the host's server can change no byte of that prefix. Past the
    code every signer must be one the guest can check (docs/lifecycle.md, "The guest's view")."""
    return org.outside is not None and org.outside.vouches(team, link.seq) and link.signer not in members
