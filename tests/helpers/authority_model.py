"""A reference model of "who may do this, at this time", written from the rule, not from the judge.

It knows only what an organization's history says (who joined, who was admitted or removed, which
org roles with which terms, which teams with which members, roles and expiries, which devices and
member keys, and when) and answers the rule of SECURITY.md "Authority" from that. It shares the
policy *table* (``security.policy``) and ``ALLOWANCE`` with the code under test, nothing else: no
``vault.chains`` state and no call into ``security.authority``.
"""

from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass, field

from security.policy import INCIDENT_ACTIONS, MAX_TEAM_ROLE, ORG_RULES, PAUSED_ACTIONS, TEAM_OVERRIDES, TEAM_RULES
from vault.acts import ALLOWANCE

Roles = dict[str, int | None]  # role -> until (None: no end)


@dataclass
class OrgEntry:
    status: str  # "admitted" | "pending" | "removed"
    roles: Roles


@dataclass
class MInvite:
    """An invite as the model sees it: open until used, revoked, or past its expiry."""

    by: str
    role: str
    expires: int
    used: bool = False
    revoked: bool = False

    def open(self, t: int) -> bool:
        return not self.used and not self.revoked and t < self.expires


@dataclass
class TeamSnap:
    time: int
    gen: int
    org_seq: int
    roles: dict[str, tuple[str, int | None]]  # member -> (role, until)


@dataclass
class MTeam:
    """One team as the model sees it."""

    index: int
    members: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    snaps: list[TeamSnap] = field(default_factory=list)  # by seq - 1
    gen: int = 1
    boxed: dict[int, dict[str, int]] = field(default_factory=dict)  # gen -> member -> puk gen of its box
    awaiting: set[str] = field(default_factory=set)  # added by a non-holder, waiting for a share
    unrotated: bool = False  # a removal without rotation or a leave happened since the last generation
    org_seq: int = 0  # the org state the last link named

    @property
    def seq(self) -> int:
        return len(self.snaps)

    def view(self, model: Model, org_seq: int) -> dict[str, tuple[str, int | None]]:
        """The members as a link naming ``org_seq`` finds them: whoever left the organization is out."""
        return {m: r for m, r in self.members.items() if model.admitted(m, org_seq)}


class Model:
    def __init__(self) -> None:
        self.org: list[dict[str, OrgEntry]] = []  # org state by seq - 1
        self.org_times: list[int] = []
        self.devices: dict[str, dict[str, tuple[int, int | None]]] = {}  # member -> device -> (added, revoked)
        self.puks: dict[str, list[int]] = {}  # member -> since-time of each PUK generation (gen = index + 1)
        self.teams: list[MTeam] = []
        self.invites: dict[bytes, MInvite] = {}  # invite public key -> invite
        # (member, device, time, chain -> seq of the last link the device had signed there) of each org.device.cut
        self.cuts: list[tuple[str, str, int, dict[str, int]]] = []
        self.adds: dict[str, dict[str, tuple[str | None, int]]] = {}  # member -> device -> (added by, member seq)
        self.revokers: dict[str, dict[str, str]] = {}  # member -> revoked device -> the device that revoked it
        self.pauses: dict[str, list[list[int | None]]] = {}  # member -> [since, cleared or None] (every model team
        # is a circle: sensitive)

    # -- recording history --

    def org_link(self, t: int, change: dict[str, OrgEntry] | None = None) -> None:
        state = copy.deepcopy(self.org[-1]) if self.org else {}
        state.update(change or {})
        self.org.append(state)
        self.org_times.append(t)

    def entry(self, m: str, seq: int | None = None) -> OrgEntry | None:
        return self.org[(seq or len(self.org)) - 1].get(m)

    def team_link(self, mt: MTeam, t: int, org_seq: int) -> None:
        mt.snaps.append(TeamSnap(t, mt.gen, org_seq, dict(mt.members)))
        mt.org_seq = org_seq

    # -- questions --

    @property
    def org_seq(self) -> int:
        return len(self.org)

    def org_seq_at(self, t: int) -> int:
        return bisect.bisect_right(self.org_times, t)

    def admitted(self, m: str, seq: int | None = None) -> bool:
        e = self.entry(m, seq)
        return e is not None and e.status == "admitted"

    def org_roles(self, m: str, seq: int, t: int) -> frozenset[str]:
        e = self.entry(m, seq)
        if e is None or e.status != "admitted":
            return frozenset()
        roles = {r for r, until in e.roles.items() if until is None or t < until}
        if "ncc" in e.roles and "ncc" not in roles:  # the caretaker: nobody else holds NCC, their term ended last
            terms = [x.roles["ncc"] for x in self.org[(seq or len(self.org)) - 1].values()
                     if x.status == "admitted" and "ncc" in x.roles]
            bounded = [u for u in terms if u is not None]
            if len(bounded) == len(terms) and t >= max(bounded) and e.roles["ncc"] == max(bounded):
                roles.add("ncc")
        return frozenset(roles)

    def device_active(self, m: str, device: str, t: int) -> bool:
        d = self.devices.get(m, {}).get(device)
        return d is not None and d[0] <= t and (d[1] is None or t < d[1])

    def device_known(self, m: str, device: str, t: int) -> bool:
        """A device of ``m`` added at or before ``t``, revoked since or not (what a cut may name: a revocation
        appended after the cut may be dated before it, review round 9)."""
        d = self.devices.get(m, {}).get(device)
        return d is not None and d[0] <= t

    def rogue(self, m: str, cd: str, last: dict[str, int]) -> set[str]:
        """The devices the cut device ``cd`` added to ``m``'s chain after its last member link at the cut, and those
        they added (the thief's, whatever their dates)."""
        out: set[str] = set()
        for dev, (by, seq) in sorted(self.adds.get(m, {}).items(), key=lambda kv: kv[1][1]):
            if by in out or (by == cd and seq > last.get(m, 0)):
                out.add(dev)
        return out

    def cut_refused(self, m: str, device: str, t: int, position: tuple[str, int] | None = None) -> bool:
        """A device cut off (from the cut's time, and in a chain, ``position``, beyond the last link it had signed
        there at the cut whatever the date), one it added after its last member link at the cut, or one added at
        or after a cut while the cut device was still in the member's chain: nothing it signs is believed."""
        for cm, cd, tc, last in self.cuts:
            if cm != m:
                continue
            lost_revoked = self.devices[m][cd][1]
            if device == cd and (t >= tc or position is not None and position[1] > last.get(position[0], 0)):
                return True
            if self.devices[m][device][0] >= tc and (lost_revoked is None
                                                     or lost_revoked > self.devices[m][device][0]):
                return True
            if device in self.rogue(m, cd, last):
                return True
        return False

    def compromised(self, m: str, t: int) -> bool:
        """A device of ``m`` cut at or before ``t``, and those it added after the cut, hold their PUK unless ``m``'s
        own chain revoked them all by then, the last of them from a device that is none of them."""
        for cm, cd, tc, last in self.cuts:
            if cm != m or tc > t:
                continue
            held = {cd} | self.rogue(m, cd, last)
            ended = [self.devices[m][x][1] for x in held]
            if any(r is None or r > t for r in ended):
                return True
            final = max(r for r in ended if r is not None)
            if any(self.revokers[m].get(x) in held for x in held if self.devices[m][x][1] == final):
                return True
        return False

    def paused(self, m: str, t: int) -> bool:
        return any(since is not None and since <= t and (cleared is None or t < cleared)
                   for since, cleared in self.pauses.get(m, []))

    def puk_gen_at(self, m: str, t: int) -> int:
        return max([1] + [g + 1 for g, since in enumerate(self.puks[m]) if since <= t])

    @staticmethod
    def may_hold(org_roles: frozenset[str], team_role: str) -> bool:
        return all(team_role in allowed for r, allowed in MAX_TEAM_ROLE.items() if r in org_roles)

    def team_allows(self, org_roles: frozenset[str], team_role: str | None, action: str) -> bool:
        if team_role is not None and not self.may_hold(org_roles, team_role):
            team_role = "reader"  # a compa acts as a reader
        if team_role is not None and team_role in TEAM_RULES.get(action, frozenset()):
            return True
        return bool(org_roles & TEAM_OVERRIDES.get(action, frozenset()))

    @staticmethod
    def fresh(ended: int | None, t: int) -> bool:
        """A named state was current at ``t`` within ALLOWANCE: the link after it is dated > t - ALLOWANCE."""
        return ended is None or ended > t - ALLOWANCE

    def entitled(self, m: str, device: str, t: int, action: str, *, org_seq: int | None = None,
                 team: MTeam | None = None, team_seq: int | None = None, gen: int | None = None,
                 position: tuple[str, int] | None = None) -> bool:
        """The rule, clause by clause (``position``: a team link's chain and seq)."""
        if not self.device_active(m, device, t) or self.cut_refused(m, device, t, position):  # 1
            return False
        if org_seq is None:  # 2
            org_seq = self.org_seq_at(t)
            if org_seq == 0:
                return False
        elif not 1 <= org_seq <= self.org_seq or not self.fresh(
                self.org_times[org_seq] if org_seq < self.org_seq else None, t):
            return False
        if not self.admitted(m, org_seq):  # 4
            return False
        roles = self.org_roles(m, org_seq, t)
        if team is None:
            if action in INCIDENT_ACTIONS and "security" not in roles and any(  # the Security Team, else NCC
                    "security" in self.org_roles(x, org_seq, t) for x in self.org[org_seq - 1]):
                return False
            return bool(roles & ORG_RULES.get(action, frozenset()))
        seq = team.seq if team_seq is None else team_seq  # 3
        if not 1 <= seq <= team.seq:
            return False
        snap = team.snaps[seq - 1]
        if not self.fresh(team.snaps[seq].time if seq < team.seq else None, t):
            return False
        if gen is not None and gen != snap.gen:
            return False
        role, until = snap.roles.get(m, (None, None))
        if until is not None and t >= until:
            role = None
        return self.team_allows(roles, role, action) and not (action in PAUSED_ACTIONS and self.paused(m, t))

    def entitled_stored(self, m: str, device: str, t: int, action: str, *, team: MTeam | None = None,
                        team_seq: int | None = None, gen: int | None = None) -> bool:
        """What the server takes (SECURITY.md "Revocations are dated after what they revoke", review 33): an act
        naming no organization state, entitled at ``t``, and, when an organization link is dated after ``t``, at
        the last organization state too (a revocation or removal stored is in force whatever its date)."""
        ok = self.entitled(m, device, t, action, team=team, team_seq=team_seq, gen=gen)
        if ok and self.org_seq_at(t) < self.org_seq:
            ok = self.entitled(m, device, t, action, org_seq=self.org_seq, team=team, team_seq=team_seq, gen=gen)
        return ok

    def may_revoke(self, m: str, device: str, t: int, invite: bytes) -> bool:
        """An open invite may be withdrawn by its author, with the right to issue one of its role, and by whoever
        the policy lets withdraw others' invites of that role."""
        inv = self.invites.get(invite)
        if inv is None or not inv.open(t):
            return False
        return self.entitled(m, device, t, f"org.invite.{inv.role}" if m == inv.by else f"org.invite.revoke.{inv.role}")

    def removed_from_org(self, m: str, t: int) -> None:
        """An organization removal ends the member's open invites at its time."""
        for inv in self.invites.values():
            if inv.by == m and inv.open(t):
                inv.expires = t

    def key_recipients(self, mt: MTeam, org_seq: int, t: int,
                       members: dict[str, tuple[str, int | None]] | None = None) -> set[str]:
        """Who a new generation made at org state ``org_seq``, time ``t`` is boxed to."""
        return {m for m in self.team_members(mt, org_seq, t, members) - mt.awaiting if not self.compromised(m, t)}

    def team_members(self, mt: MTeam, org_seq: int, t: int,
                     members: dict[str, tuple[str, int | None]] | None = None) -> set[str]:
        """The team's members at ``t``: role not ended, admitted at ``org_seq``."""
        members = mt.view(self, org_seq) if members is None else members
        return {m for m, (_, until) in members.items() if (until is None or t < until) and self.admitted(m, org_seq)}

    def holds_key(self, mt: MTeam, m: str, t: int, members: dict[str, tuple[str, int | None]] | None = None) -> bool:
        members = mt.members if members is None else members
        until = members[m][1] if m in members else None
        return m in members and (until is None or t < until) and m in mt.boxed.get(mt.gen, {})

    def rotation_pending(self, mt: MTeam, t: int, org_seq: int | None = None, *, tolerant: bool = False,
                         members: dict[str, tuple[str, int | None]] | None = None) -> bool:
        """The current generation must not be used: someone not entitled to it (or a key they revoked) holds it."""
        org_seq = self.org_seq if org_seq is None else org_seq
        entitled = self.team_members(mt, org_seq, t, members)

        def gens(m: str) -> set[int]:  # a PUK roll in the very second counts either way when tolerant
            return {self.puk_gen_at(m, t - 1), self.puk_gen_at(m, t)} if tolerant else {self.puk_gen_at(m, t)}

        def exposed(m: str, pg: int) -> bool:  # a device that could open this box was cut off
            return any(cm == m and tc <= t and pg <= self.puk_gen_at(m, tc) for cm, _, tc, _ in self.cuts)

        return mt.unrotated or any(m not in entitled or pg not in gens(m) or exposed(m, pg)
                                   for m, pg in mt.boxed[mt.gen].items())

    def admins(self, members: dict[str, tuple[str, int | None]], t: int) -> set[str]:
        return {m for m, (role, until) in members.items() if role == "admin" and (until is None or t < until)}


@dataclass
class MRequest:
    """An export request as the model sees it (issue 18, rule exports): who asked, until when, who approved."""

    requester: str
    expires: int
    approvers: list[str] = field(default_factory=list)

    def may_approve(self, m: str, t: int) -> bool:
        """Beyond the judge's entitlement (the Security Team role at ``t``): not the requester, not twice, in time."""
        return m != self.requester and m not in self.approvers and t < self.expires

    def export_entitled(self, m: str, t: int) -> bool:
        """An export of a sensitive team under this request: its requester, before its expiry, two approvers."""
        return m == self.requester and t < self.expires and len(set(self.approvers)) >= 2
