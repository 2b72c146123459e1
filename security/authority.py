"""The one judge of authority: may member m do act a at time t?

Every signed act is reduced to an ``Act`` (``vault.acts``) and judged here, by the server before
it accepts anything and by every client before it believes anything: chain links (through the
chain replay in ``vault.chains``, which receives this object as its policy), document versions,
thread records and messages, key shares and the set of key boxes a new generation must carry,
audit-key statements and checkpoint cosignatures (``security.auditkey``).

The rule (SECURITY.md "Authority", docs/format.md "Judging an act"): an act dated t by member m,
signed with device d, is valid only if

1. d was an active (not revoked) device of m at t;
2. the organization state the act is judged at is the one it names (team links, team.create),
   which must still have been current at t within ``ALLOWANCE``, or, for acts that name none
   (documents, thread records, messages, org links), the state current at t: the last
   organization link dated at or before t (a coalition guest's team link reaches this judge, on the
   host's side, naming the newer of its own and the state current at t - ``ALLOWANCE``:
   ``vault.chains.coalitionspace.guest_org_seq``);
3. the team state it names (documents, thread records and messages name one; a team link names
   the link before it) existed and was still current at t within ``ALLOWANCE``, and the key
   generation it uses was that state's generation;
4. at those states m was admitted (never removed: removal is final), and the org roles m held
   at t together with the team role m held at t (expiries included; a compa acts as a reader)
   allow the action under the policy table.

``ALLOWANCE`` is twice the server's clock window: an honest server accepts a link only within
its window of its own clock and only against the current heads, so an act it accepted never
becomes invalid when later links arrive (replay stays stable). A colluding server can at most
get an act accepted that names a state which ended less than ``ALLOWANCE`` before the act's
time; SECURITY.md lists that residue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from security.policy import INCIDENT_ACTIONS, PAUSED_ACTIONS, TEAM_ROLES, DefaultPolicy
from security.protocols import defaults, parse
from vault.acts import ALLOWANCE, Act
from vault.chains import MemberState, OrgState, TeamState
from vault.chains.coalition import GUEST_ROLE
from vault.errors import ChainError, PolicyDenied


def _verb(action: str) -> str:
    """A readable name for an action in refusals: 'doc.write' -> 'write documents'."""
    named = {"doc.write": "write documents", "thread.post": "post in threads", "org.admit": "admit members",
             "org.role": "grant or revoke roles", "org.remove": "remove members",
             "org.protocols": "change the security protocols",
             "org.audit_team": "designate the audit log's security team",
             "org.server": "move the organization's server",
             "audit.key": "publish the Security Team's audit key",
             "audit.cosign": "cosign the audit log for the Security Team",
             "restore.accept": "accept a server restored from an older backup",
             "org.vouch": "vouch for members", "org.verify": "record key verifications",
             "org.approve": "approve organization changes", "team.review": "review the member list",
             "team.approve": "approve team changes", "org.device.cut": "cut off a device",
             "org.clear": "clear a paused member", "org.suspect": "pause a suspected member",
             "org.roster": "export the roster",
             "export.request": "request an export",
             "export.approve": "approve an export", "org.coalition": "record a coalition key",
             "org.coalition.share": "share a coalition key with the NCC",
             "coalition.ally": "pin an allied organization",
             "coalition.server": "carry the host's server move into a coalition space",
             "org.close.propose": "propose closing the organization",
             "org.close.approve": "approve closing the organization",
             "org.close.exported": "record a closing's hand-over exports", "org.closed": "close the organization"}
    if action in named:
        return named[action]
    parts = action.split(".")
    if parts[:2] == ["team", "create"] and len(parts) == 3:
        return f"create a {parts[2]} team"
    if parts[:2] == ["org", "invite"] and len(parts) == 3:
        return f"invite with role {parts[2]!r}"
    if parts[:3] == ["org", "invite", "revoke"] and len(parts) == 4:
        return f"revoke another member's invite with role {parts[3]!r}"
    return parts[-1]  # team actions: 'add', 'remove', 'role', 'rotate', 'share', 'leave'


_PAUSES: Final = {"lost-device": "lost-device incident", "suspect": "incident: the Security Team paused them"}


class Authority(DefaultPolicy):
    """The policy table plus the judge; the same object on the server and every client."""

    def judge(self, act: Act, org: OrgState, members: Mapping[str, MemberState], team: TeamState | None, *,
              at_seq: int | None = None) -> None:
        """Refuse (``PolicyDenied``, ``ChainError``) an act its author was not entitled to (the rule above).
        ``at_seq``: judge it at that organization state instead of the one it names or the one current at its time
        (``judge_stored``)."""
        where = f" in team {team.name}" if team is not None else ""
        refused = f"member {act.author} may not {_verb(act.action)}{where}"
        ms = members.get(act.author)
        if ms is None and _vouched(act, org):  # a guest's directory need not list who signed the code's prefix
            return
        if ms is None:
            raise PolicyDenied(f"{refused}: not a known member")
        try:
            ms.device_at(act.device, act.time)
        except ChainError as e:
            raise PolicyDenied(f"{refused}: signed with a device that was not active at {act.time}") from e
        incidents = org.incidents
        cut = (incidents.refusal(ms, act.device, act.time, act.position) if act.author in incidents.by_member
               else None)
        if cut is not None:
            raise PolicyDenied(f"{refused}: {cut}")
        closed = org.closing.closed
        if closed is not None and act.time >= closed.time:
            raise PolicyDenied(f"{refused}: the organization was closed at {closed.time} (org.closed)")
        if org.outside is not None:
            self._judge_outside(act, org, team, refused)
            return
        org_seq = self._org_state(act, org, refused) if at_seq is None else at_seq
        # An allied organization's member in a coalition space (a guest): admitted by its own organization's
        # signed approval in the team chain, not by this organization; judged by its team role alone.
        guest = team is not None and act.author in team.guests
        if not guest and not org.admitted(act.author, org_seq):
            raise PolicyDenied(f"{refused}: not an admitted member of the organization at {act.time} "
                               "(removed, or not admitted yet)")
        org_roles = frozenset({GUEST_ROLE}) if guest else org.roles_of(act.author, act.time, org_seq)
        if team is None:
            if not self.org_allows(org_roles, act.action):
                raise PolicyDenied(f"{refused} (organization roles at {act.time}: "
                                   f"{', '.join(sorted(org_roles)) or 'none'})")
            if act.action in INCIDENT_ACTIONS and "security" not in org_roles and any(
                    "security" in org.roles_of(m, act.time, org_seq) for m in org.members):
                raise PolicyDenied(f"{refused}: the Security Team handles incidents (NCC only when it has no member)")
            return
        team_role = self._team_role(act, team, refused)
        if not self.team_allows(org_roles, team_role, act.action):
            raise PolicyDenied(f"{refused} (team role at {act.time}: {team_role or 'none'})")
        pause = incidents.paused_at(act.author, act.time) if act.author in incidents.paused else None
        if pause is not None and act.action in PAUSED_ACTIONS and team.kind in paused_kinds(org, act.time):
            raise PolicyDenied(f"{refused}: the member's sensitive memberships are paused since {pause.since} "
                               f"({_PAUSES[pause.kind]}) until the Security Team clears them")

    def judge_stored(self, act: Act, org: OrgState, members: Mapping[str, MemberState], team: TeamState | None,
                     stored: int | None = None) -> None:
        """The server's judge of an act it is about to take (or of its caller's rights now): ``judge``, and an act
        naming no organization state (a cosignature, an audit-key statement, a document, a thread record, a
        message, a right judged now) judged again at the organization chain as stored, its head, when links dated
        after the act are among it. A link ending someone's rights is dated after everything they signed
        (``ending_not_before``), so a subject who dated her act ahead pushes it ahead too (review 33: a role
        revocation dated 601 s ahead); once stored, it is in force at the server whatever the dates, as a device
        revocation is (``server.access.check_session``): her later acts dated before it are refused. Clients judge
        by dates only (``judge``): the server is stricter, so nothing it takes becomes invalid on replay.
        ``stored``: how many organization links were stored (the head by default; the Security Team's ``audit
        verify`` passes the last one logged before a checkpoint a cosignature signs: ``client.audit.log``)."""
        self.judge(act, org, members, team)
        seq = org.seq if stored is None else stored
        if act.org_seq is not None or org.outside is not None or org.seq_at(act.time) >= seq:
            return
        try:
            self.judge(act, org, members, team, at_seq=seq)
        except PolicyDenied as e:
            raise PolicyDenied(f"{e}, as the organization chain stood (link {seq}, dated {org.times[seq - 1]}, "
                               f"after the act's time {act.time}: a revocation or removal is in force once "
                               "stored)") from e

    def _judge_outside(self, act: Act, org: OrgState, team: TeamState | None, refused: str) -> None:
        """A guest's client, without the host's organization chain (vault/chains/outside.py): a link of the prefix
        its join code vouches for is taken as judged; past it, every member of the space by team role alone (a
        host member with no organization role: no NCC override), and no organization act."""
        if _vouched(act, org):
            return
        if team is None:
            raise PolicyDenied(f"{refused}: an organization act, which a client outside the host organization "
                               "cannot judge (a newer join code from a space admin vouches for it)")
        team_role = self._team_role(act, team, refused)
        org_roles = frozenset({GUEST_ROLE}) if act.author in team.guests else frozenset()
        if not self.team_allows(org_roles, team_role, act.action):
            raise PolicyDenied(f"{refused} (team role at {act.time}: {team_role or 'none'}; judged outside the host "
                               "organization: no organization role counts)")

    def _org_state(self, act: Act, org: OrgState, refused: str) -> int:
        if act.org_seq is None:
            seq = org.seq_at(act.time)
            if seq == 0:
                raise PolicyDenied(f"{refused}: dated {act.time}, before the organization existed")
            return seq
        if not 1 <= act.org_seq <= org.seq:
            raise ChainError(f"{refused}: names organization state {act.org_seq}, which does not exist")
        ended = org.superseded_at(act.org_seq)
        if ended is not None and act.time >= ended + ALLOWANCE:
            raise PolicyDenied(f"{refused}: dated {act.time}, but names organization state {act.org_seq}, "
                               f"which ended at {ended} (more than {ALLOWANCE} s before)")
        return act.org_seq

    def _team_role(self, act: Act, team: TeamState, refused: str) -> str | None:
        seq = team.seq if act.team_seq is None else act.team_seq
        snap = team.snapshots.get(seq)
        if snap is None or seq > team.seq:
            raise PolicyDenied(f"{refused}: names state {seq} of team {team.name}, which does not exist")
        ended = team.superseded_at(seq)
        if ended is not None and act.time >= ended + ALLOWANCE:
            raise PolicyDenied(f"{refused}: dated {act.time}, but names state {seq} of team {team.name}, "
                               f"which ended at {ended} (more than {ALLOWANCE} s before)")
        if act.gen is not None and act.gen != snap.generation:
            raise PolicyDenied(f"{refused}: uses key generation {act.gen}, not the generation {snap.generation} of the "
                               f"team state it names")
        role, until = snap.roles.get(act.author, (None, None))
        if until is not None and act.time >= until:
            return None
        return role

    def team_members(self, team: TeamState, org: OrgState, org_seq: int, t: int) -> set[str]:
        """The team's members at time ``t``: role not ended, admitted at org state ``org_seq``."""
        return {m for m, tm in team.members.items() if tm.active(t) and team.in_org(org, m, org_seq)}

    def key_recipients(self, team: TeamState, org: OrgState, org_seq: int, t: int,
                       members: Mapping[str, MemberState]) -> set[str]:
        """Exactly who a new key generation (made at org state ``org_seq``, time ``t``) is boxed to: the
        team's members, except those added by a non-holder and still waiting for a key share (a share
        is judged on its own: the adder must still be entitled when it is made; a rotation must not
        hand them the key behind that judgement's back), and those whose key (PUK) a cut device holds
        (``org.device.cut``): they wait for a share until their own chain revokes that device. A guest's view of a
        coalition space, which sees no incidents, leaves out those the space's chain names withheld instead (a
        rotation names them, session 17: ``coalitionspace.withheld``)."""
        cut = org.incidents.by_member
        if org.outside is not None:
            waiting = {m for m, gen in team.withheld.items() if gen == team.generation}
            return self.team_members(team, org, org_seq, t) - set(team.pending_share) - waiting
        return {m for m in self.team_members(team, org, org_seq, t) - set(team.pending_share)
                if m not in cut or m not in members or org.incidents.compromised(members[m], t) is None}

    def rights_ended(self, link_type: str, body: Mapping[str, object]) -> tuple[str, ...]:
        """Whose rights a link ends, from its own second on: the body fields naming them, ``"device"`` and/or
        ``"member"`` (empty: it ends none). A device revocation ends its device (``body["device"]``); a cut, the
        device and (its pause) the member; an organization removal, a role revocation, a compa grant and a suspicion
        (``org.suspect``: the same pause as a cut's, from its own second; review 37), the member. An ``org.clear``
        ends none: it ends a pause, so what was taken before it stays taken.

        The judge ends them in the link's own second, not after it: an act naming no organization state is judged at
        the state current at its time (``OrgState.seq_at``: the links dated at or before it), and a device is active
        before its revocation's second, not in it (``Device.active_at``). So such a link must be dated strictly after
        everything its subject signed that a server accepted (``ending_not_before``), or every replay refuses an act
        the server took (review 32: a cosignature dated in the second its signer's Security Team role ended stopped
        every client). The server refuses an earlier one (409, ``Directory.check_not_before``); the client signs it
        again dated then (``client.view.Chains.append_org``)."""
        if link_type == "org.device.cut":
            return ("device", "member")
        if link_type == "device.revoke":
            return ("device",)
        if link_type in ("org.remove", "org.suspect") or (link_type == "org.role" and (
                body.get("grant") is False or body.get("role") == "compa")):
            return ("member",)
        return ()

    def ending_not_before(self, signed: int) -> int:
        """The earliest time a link ending someone's rights (``rights_ended``) may be dated when they signed an act
        dated ``signed``: the next second."""
        return signed + 1

    def team_rights_ended(self, link_type: str, body: Mapping[str, object], team: TeamState,
                          signer: str) -> str | None:
        """Whose rights in ``team`` a team link (``link_type``, ``body``, signed by ``signer``) would end, the team
        counterpart of ``rights_ended`` (None: nobody's). A removal (``team.remove``; ``coalition.remove``, a
        space admin's, an ally's carried statement or a departed host member's), a member leaving (``team.leave``:
        the signer), and a ``team.role`` that lowers the member's role (admin > writer > reader) or gives it an end
        (``until``) it did not have or an earlier one. The judge ends them at the link's date: an act naming the
        team state before it is taken until that date + ``ALLOWANCE`` (``_team_role``), so such a link dated
        ahead keeps its subject in the team that much longer (review 37). Not a rotation, even one that boxes
        nobody for a member a removal or cut left out: it ends no right by the judge (the removal or the cut did,
        dated by its own bound; the rotation only follows them with a new key, and dated later it boxes the same
        members or fewer); nor a promotion, an add, a share, a review, an approval or a coalition key's carry."""
        if link_type in ("team.remove", "coalition.remove"):
            member = body.get("member")
            return member if isinstance(member, str) else None
        if link_type == "team.leave":
            return signer
        if link_type != "team.role":
            return None
        member, role, until = body.get("member"), body.get("role"), body.get("until")
        tm = team.members.get(member) if isinstance(member, str) else None
        if tm is None or role not in TEAM_ROLES or not (until is None or isinstance(until, int)):
            return None  # not a change the chain would take (``TeamState._role`` refuses it)
        lower = tm.role in TEAM_ROLES and TEAM_ROLES.index(role) > TEAM_ROLES.index(tm.role)
        ends = until is not None and (tm.until is None or until < tm.until)
        return tm.member_id if lower or ends else None

    def entitled(self, act: Act, org: OrgState, members: Mapping[str, MemberState],
                 team: TeamState | None, *, stored: bool = False) -> bool:
        """``judge`` (``judge_stored`` when ``stored``) as a yes or no."""
        try:
            (self.judge_stored if stored else self.judge)(act, org, members, team)
        except (PolicyDenied, ChainError):
            return False
        return True


POLICY: Final = Authority()

_PAUSED_KINDS: dict[bytes, tuple[str, ...]] = {}  # protocols digest (b"": the shipped defaults) -> paused_kinds


def paused_kinds(org: OrgState, t: int) -> tuple[str, ...]:
    """The team kinds a paused member adds no content to at ``t``: ``[rules.lost-device] paused_kinds`` of the
    protocols in force then (the last change approved at or before ``t``; the shipped defaults before any), a
    parameter the NCC changes like every other (two people)."""
    change = None
    for c in org.protocols_log:
        if c.approved_at is not None and c.approved_at <= t:
            change = c
    key = b"" if change is None else change.digest
    kinds = _PAUSED_KINDS.get(key)
    if kinds is None:
        protocols = defaults() if change is None else parse(change.text, "the security protocols in force")
        kinds = _PAUSED_KINDS[key] = protocols.rule("lost-device").strs("paused_kinds")
    return kinds


def paused_note(org: OrgState, member: str, team: TeamState, t: int) -> str:
    """Why ``member`` may not add content to ``team`` at ``t`` if a pause is the reason (``org.device.cut``), to
    append to a refusal the server or a client gives the member themselves ("" when it is not)."""
    pause = org.incidents.paused_at(member, t) if team.kind in paused_kinds(org, t) else None
    if pause is not None:
        return f": your sensitive memberships are paused ({_PAUSES[pause.kind]}) until the Security Team clears them"
    return ""


def _vouched(act: Act, org: OrgState) -> bool:
    """A link of a coalition space's chain up to a guest's join code, judged by a guest's client: taken as judged
    (the space admin's client that made the code judged it with the host's chain; docs/lifecycle.md)."""
    out, at = org.outside, act.position
    return out is not None and at is not None and out.vouches(*at)
