"""The server's view of the chains: replayed at start, extended only by valid links.

The server runs the same replay code as clients (``vault.chains``) with the same policy
(``security.policy``): a link is accepted only if it is correctly signed by a member
allowed to make it at that point. Candidate links are applied to a copy; the copy
replaces the live state only after storage committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from security.authority import POLICY
from security.policy import TEAM_KINDS
from server.holds import Holds, Subject
from server.store.protocols import ChainStore, Storage
from server.store.records import SignedCheck, StoredLink
from vault.chains import (
    MemberState,
    OrgState,
    TeamState,
    clone,
)
from vault.chains.incidents import cut_last, last_signed
from vault.chains.twoperson import void_devices
from vault.envelope import Record
from vault.errors import ChainError, Conflict, NotFound, PolicyDenied
from vault.links import Link, parse_link
from vault.messages import ThreadRecord


@dataclass
class Directory:
    members: dict[str, MemberState] = field(default_factory=dict)
    member_links: dict[str, list[Link]] = field(default_factory=dict)
    org: OrgState | None = None
    org_links: list[Link] = field(default_factory=list)
    teams: dict[str, TeamState] = field(default_factory=dict)
    team_links: dict[str, list[Link]] = field(default_factory=dict)
    # The latest time of anything each device / member signed that this server accepted (organization and team
    # links, document versions, thread records, messages, cosignatures, member chain links but those ending rights:
    # ``commit_member``):
    # a change that ends their rights must not be dated before it, or every client's replay would refuse what was
    # accepted (see ``check_not_before``).
    signed_by_device: dict[str, int] = field(default_factory=dict)
    signed_by_member: dict[str, int] = field(default_factory=dict)
    seen: int = 0  # the storage's order number (``ChainStore.links_after``) of the last link replayed here
    # Subjects held while a link ending their rights is signed again (server/holds.py); ``clock``: the server's.
    holds: Holds = field(default_factory=Holds)
    clock: Callable[[], float] = field(default=time.time)

    @classmethod
    async def load(cls, storage: Storage) -> Directory:
        d = cls()
        await d.catch_up(storage)
        await d._note_stored_acts(storage)
        return d

    async def catch_up(self, storage: ChainStore) -> int:
        """Replay the links stored since ``seen`` that this directory does not hold yet (another server process
        stored them, over one database); how many. The caller holds the application's chain lock."""
        applied = 0
        for order, stored in await storage.links_after(self.seen):
            if not self._holds(stored):
                self._replay(stored)
                applied += 1
            self.seen = order
        return applied

    def take_carried(self, after: int, links: Sequence[tuple[int, StoredLink]]) -> bool:
        """Replay the links a notice carried (another process stored them; ``after``: the order number of the newest
        link stored before them, ``links``: each with its own, increasing): True when this directory holds them now,
        False when it cannot tell that it missed none before them (``seen`` is not ``after``: read, ``catch_up``).
        Each is judged as one read from storage is. The caller holds the application's chain lock."""
        if not links or self.seen >= links[-1][0]:
            return True  # read already
        if self.seen != after:
            return False
        for order, stored in links:
            if not self._holds(stored):
                self._replay(stored)
            self.seen = order
        return True

    def _holds(self, stored: StoredLink) -> bool:
        held = (self.member_links.get(stored.chain, []) if stored.kind == "member" else
                self.org_links if stored.kind == "org" else self.team_links.get(stored.chain, []))
        return len(held) >= stored.seq

    def _replay(self, stored: StoredLink) -> None:
        link = parse_link(stored.wire)
        if stored.kind == "member":
            self.commit_member(self.check_member_create(link) if link.seq == 1 else self.check_member_link(link))
        elif stored.kind == "org":
            self.commit_org(self.check_org_link(link), link)
        else:
            state = self.check_team_create(link) if link.seq == 1 else self.check_team_link(stored.chain, link)
            self.commit_team(state, link)

    async def _note_stored_acts(self, storage: Storage) -> None:
        """``signed_by_*`` from the stored document versions, thread records and messages (links are
        noted as they are committed)."""
        owner = {dev: mid for mid, ms in self.members.items() for dev in ms.devices}
        for team in self.teams:
            for v in await storage.team_versions(team):
                core = Record.parse(v.record).core
                self.note_signed(core.author, core.device, core.time)
            for t in await storage.threads(team, 0):
                rec = ThreadRecord.parse(t.record)
                self.note_signed(rec.creator, rec.device, rec.time)
                after = 0
                while page := await storage.messages(team, t.thread, after, 1000, 0):
                    for m in page:
                        self.note_signed(owner.get(m.device, ""), m.device, m.time)
                    after = page[-1].pos

    # -- members ------------------------------------------------------------------------------

    def member(self, member_id: str) -> MemberState:
        m = self.members.get(member_id)
        if m is None:
            raise NotFound(f"unknown member {member_id}")
        return m

    def check_member_create(self, link: Link) -> tuple[MemberState, Link]:
        state = MemberState.create(link)
        if state.member_id in self.members:
            raise ChainError("member already exists")
        return state, link

    def check_member_link(self, link: Link) -> tuple[MemberState, Link]:
        state = clone(self.member(link.chain or ""))
        state.apply(link)
        return state, link

    def commit_member(self, checked: tuple[MemberState, Link]) -> None:
        state, link = checked
        self.members[state.member_id] = state
        self.member_links.setdefault(state.member_id, []).append(link)
        # Not a link that itself ends rights: counted, a seized device revoking a paper key it made, dated a second
        # beyond the window, pushed its own cut, its revocation and its member's removal beyond what any server takes
        # in that second (review 37). The others count (dated at most the window ahead, so a link ending their
        # signer's rights can always follow within the + 1): a device added by a device in or after the second of its
        # cut is inactive by every replay's dates (session 25: fix37a's first version counted no member link, and a
        # cut in the second of the lost laptop's device.add made the member's new device unusable).
        if not POLICY.rights_ended(link.type, link.body.raw):
            self.note_signed(link.signer, link.device, link.time)
        self.holds.end(self.ended_subjects(link))

    def note_signed(self, member_id: str, device_id: str, t: int) -> None:
        """Remember that ``device_id`` of ``member_id`` signed something dated ``t`` that was accepted."""
        if t > self.signed_by_device.get(device_id, 0):
            self.signed_by_device[device_id] = t
        if t > self.signed_by_member.get(member_id, 0):
            self.signed_by_member[member_id] = t

    async def learn_signed(self, storage: Storage, link: Link, skew: float) -> None:
        """Before ``check_not_before`` of a link that may end someone's rights: what its subject signed through
        other server processes over one database (versions, threads, messages: ``catch_up`` replays links only),
        read from the database into ``signed_by_*`` (review round 10). A version or thread is dated at most
        ``skew`` after it was stored: those stored before ``link.time - skew`` cannot be dated after the link."""
        check = self.signed_check(link, skew)
        if check is not None:
            for device, t in await storage.signed_since(check.member, check.devices, check.since):
                self.note_signed(check.member, device, t)

    def signed_check(self, link: Link, skew: float) -> SignedCheck | None:
        """``learn_signed``'s read and ``check_not_before`` on what it found, for the append's own transaction
        (``append_links``): a version, thread or message judged before the link was stored but stored since (its
        store's transaction holds the signer's chains, ``SignerHeads``) counts too (review 24, finding 3)."""
        if not POLICY.rights_ended(link.type, link.body.raw):
            return None
        member = link.chain if link.type == "device.revoke" else link.body.raw.get("member")
        ms = self.members.get(member) if isinstance(member, str) else None
        if ms is None:
            return None

        def judge(signed: list[tuple[str, int]]) -> None:
            for device, t in signed:
                self.note_signed(ms.member_id, device, t)
            self.check_not_before(link)

        return SignedCheck(ms.member_id, sorted(ms.devices), link.time - 2 * int(skew), judge)

    def signer_heads(self, member_id: str) -> dict[str, int]:
        """The chains an act of ``member_id`` is judged on, as held here (``SignerHeads``: the store re-checks)."""
        return {member_id: len(self.member_links.get(member_id, [])), "org": len(self.org_links)}

    def check_not_before(self, link: Link, window: tuple[int, int] | None = None) -> None:
        """A link that ends someone's rights is dated no earlier than what they already signed.

        Rights are judged at each act's own time (a device revoked from its revocation's time; a
        document at the organization state current at its time), so a revocation, removal or compa
        grant dated before an act the server already accepted would make every client refuse that
        act, and a whole chain or document with it (a member with two devices and a fast clock could
        do it on purpose). Refused with 409: sign it again with a later time.

        ``window``: (the server's clock, ``clock_skew``), given on the request's first judgement. ``check_link_time``
        lets such a link be dated one second beyond the window; it is taken so only when this check needs it (the
        earliest date it allows, ``floor``, is beyond the window): else anyone could date one there and push every
        link ending *their* rights a second beyond the window, where none is taken (review 37: a seized device
        revoking a paper key it made, every second, kept its own cut out)."""
        body = link.body.raw
        floor = self._head_time(link)
        if link.type.startswith("org."):
            floor = max(floor, self._check_not_void(link))
        if self.org is not None and link.chain in self.org.incidents.by_member:
            # A member link dated before a cut of that member would rewrite what the cut and the rotations after it
            # were judged on (a revocation dated before the cut, appended after it: review round 9).
            last_cut = max(c.time for c in self.org.incidents.cuts_of(link.chain))
            floor = max(floor, last_cut)
            if link.time < last_cut:
                raise Conflict(f"the Security Team cut a device of this member at {last_cut}, after this "
                               f"{link.type} ({link.time}): sign it again dated {last_cut} or later (check the clock)",
                               last_cut)
        if link.type == "org.device.cut":
            # The cut changes who may be boxed from its time on: a team link made before it was appended but dated
            # after it (a share, a rotation, a new team boxing the member) would be refused by every replay.
            # Strictly after: an act in the cut's own second counts as made by a cut device.
            newest = max([t.time for t in self.teams.values()], default=0)
            floor = max(floor, newest + 1)
            if link.time <= newest:
                raise Conflict(f"a team link is dated {newest}, not before this org.device.cut ({link.time}): sign "
                               f"it again dated after {newest} (check the clocks)", newest + 1)
            self._check_cut_last(link)
        elif link.type == "device.revoke" and self.org is not None:
            # a second signature put in force a proposal of that device (twoperson)
            put = max((self.org.times[seq - 1] for seq, d in self.org.cosigned_on.items()
                       if d == body.get("device")), default=0)
            floor = max(floor, put + 1)
            if link.time <= put:  # the judge voids a proposal of a device revoked at or before a link's time
                raise Conflict(f"a proposal this device signed was put in force at {put}, not before this "
                               f"device.revoke ({link.time}): sign it again dated {put + 1} or later (check the "
                               "clock)", put + 1)
        ended = self.ended_subjects(link)
        signed = [((self.signed_by_device if f == "device" else self.signed_by_member).get(who, 0), who)
                  for f, who in ended]
        # Strictly after, whatever ends (``POLICY.rights_ended``): the judge ends the rights in the link's own
        # second, so an act of the subject in that second would be refused by every replay (review 32: an
        # org.role revocation or org.remove in the second of a cosignature stopped every client)
        t, subject = max(signed, key=lambda x: x[0], default=(0, ""))
        not_before = POLICY.ending_not_before(t)
        floor = max(floor, not_before)
        if link.time < not_before:
            # Refused only for its subjects' own acts, and last (the caller's other checks came before): hold them
            # while the link is signed again dated ``not_before`` (server/holds.py; session 25); a held signer's link
            # is refused for its hold, placing none
            self.check_unheld(link.signer, link.device, link.time, link)
            self.holds.place(ended, not_before, self.clock(), link.type,
                             (("member", link.signer), ("device", link.device)))
            raise Conflict(f"{subject} signed something dated {t}, not before this {link.type} ({link.time}): "
                           f"sign it again dated after it, {not_before} or later (check the clocks)", not_before)
        if window is not None and link.time > window[0] + window[1] and floor < link.time:
            now, skew = window
            raise ChainError(
                f"this {link.type} is dated {link.time}, {link.time - now} s ahead of the server's clock ({now}); a "
                f"link ending someone's rights is taken beyond the allowed difference ({skew} s) only when what it "
                f"must follow is dated that late, and nothing here needs a date after {max(floor, now + skew)}: set "
                "the clock right and retry")

    @staticmethod
    def ended_subjects(link: Link) -> list[Subject]:
        """The members and devices whose rights ``link`` ends (``POLICY.rights_ended``), as ``Holds`` names them."""
        body = link.body.raw
        return [(f, v) for f in POLICY.rights_ended(link.type, body) if isinstance(v := body.get(f), str)]

    def check_unheld(self, member: str, device: str, t: int, link: Link | None = None) -> None:
        """Refuse (409) an act of ``member`` with ``device`` dated ``t`` while they are held (server/holds.py): a link
        ending their rights is being signed again. ``link``: the act, when it is a chain link (one ending a held
        subject's rights is taken). Called where the server judges every act it notes (``note_signed``)."""
        refusal = self.holds.refusal(member, device, t, self.clock(), self.ended_subjects(link) if link else ())
        if refusal is not None:
            raise refusal

    def _head_time(self, link: Link) -> int:
        """The time of the last link of ``link``'s chain held here (0: none): ``link`` is dated no earlier."""
        held = self.org_links if link.kind == "org" else self.member_links.get(link.chain or "", [])
        return held[-1].time if held else 0

    def _check_not_void(self, link: Link) -> int:
        """An org link does not put in force a two-person proposal (or a protocols change) whose proposing device this
        server holds revoked or cut at ANY date (review round 22). The judge voids by times only, and a revocation is
        dated by its signer (a thief forward-dates the member chain, so the honest revocation lands dated ahead): a
        second signature taken after the revocation was stored, dated before it, would put the thief's act in force on
        every replay. Refused with 409, ``not_before`` the revocation's (or cut's) time: signed again then, the judge
        has dropped the proposal and the link proposes the act anew. Returns the latest such time (0: none), a date
        a client may have to give the link."""
        org = self.org
        if org is None:
            return 0
        gone = void_devices(org, self.members)
        if not gone:
            return 0  # the common case: no clone
        state = clone(org)
        state.apply(link, self.members, POLICY)
        device = state.cosigned_on.get(link.seq)
        if device is not None and device in gone:
            since = gone[device]
            raise Conflict(f"this {link.type} would put in force a proposal signed by device {device}, which was "
                           f"revoked or cut (from {since}): that proposal is void; sign it again dated {since} or "
                           "later to propose the act anew", since)
        return max(gone.values())

    def _check_cut_last(self, link: Link) -> None:
        """A cut records the last link its device signed in each chain, exactly as this server holds them (a link
        the device appended since the cutter looked is a 409: fetch and sign again); every replay refuses what the
        device signed beyond them, whatever the dates (vault/chains/incidents.py)."""
        ms, device = self.members.get(str(link.body.raw.get("member"))), str(link.body.raw.get("device"))
        if ms is None:
            return  # the org chain's replay refuses it
        if cut_last(link) != last_signed(device, ms, self.teams.values()):
            raise Conflict(f"this org.device.cut does not name the last links device {device} signed as this server "
                           "holds them (it signed more since): fetch the chains and sign it again")

    # -- organization ----------------------------------------------------------------------------

    def check_org_link(self, link: Link, extra_member: MemberState | None = None) -> OrgState:
        members = self.members
        if extra_member is not None:
            members = {**members, extra_member.member_id: extra_member}
        if self.org is None:
            return OrgState.create(link, members)
        state = clone(self.org)
        state.apply(link, members, POLICY)
        if link.type == "org.audit_team":
            # The org chain does not know teams: the server checks the kind (clients do where they see it).
            team = self.teams.get(link.body.str_("team", 64))
            if team is None or team.kind != "security":
                raise PolicyDenied("the audit log's team must be an existing team of kind 'security'")
        return state

    def commit_org(self, state: OrgState, link: Link) -> None:
        self.org = state
        self.org_links.append(link)
        self.note_signed(link.signer, link.device, link.time)
        self.holds.end(self.ended_subjects(link))

    def require_org(self) -> OrgState:
        if self.org is None:
            raise NotFound("this server has no organization yet: the founder must join first")
        return self.org

    # -- teams ------------------------------------------------------------------------------------

    def team(self, team_id: str) -> TeamState:
        t = self.teams.get(team_id)
        if t is None:
            raise NotFound(f"unknown team {team_id}")
        return t

    def team_by_name(self, name: str) -> TeamState | None:
        for t in self.teams.values():
            if t.name == name:
                return t
        return None

    def check_team_create(self, link: Link) -> TeamState:
        """A valid team.create; its name is checked apart (``check_team_name``), after everything else,
        so that a refusal for any other reason tells nothing about which names exist."""
        state = TeamState.create(link, self.require_org(), self.members, POLICY, TEAM_KINDS)
        if state.team_id in self.teams:
            raise ChainError("team already exists")
        return state

    def check_team_name(self, state: TeamState) -> None:
        if self.team_by_name(state.name) is not None:
            raise ChainError(f"a team named {state.name!r} already exists")

    def served_length(self, team_id: str, member_id: str, now: int, overseer: bool) -> tuple[int, bool] | None:
        """How many links of a team chain a member may see, and whether that is all of it as a current
        member (None: the team is hidden from them).

        All of them while their team role lasts (and for NCC and the Security Team); for a member
        removed from the team, up to the link that removed them; for one whose role ended (a term's
        ``until`` passed), the links dated before the end. Either way they can verify what they saw,
        and nothing later (no new members, no new key generations)."""
        team = self.team(team_id)
        if overseer or team.role_of(member_id, now) is not None:
            return len(self.team_links[team_id]), True
        tm = team.members.get(member_id)
        if tm is not None and tm.until is not None:
            return sum(1 for link in self.team_links[team_id] if link.time < tm.until), False
        removed = team.removed_at.get(member_id)
        return None if removed is None else (removed, False)

    def check_team_link(self, team_id: str, link: Link, extra_member: MemberState | None = None) -> TeamState:
        members = self.members if extra_member is None else {**self.members, extra_member.member_id: extra_member}
        state = clone(self.team(team_id))
        state.apply(link, self.require_org(), members, POLICY)
        return state

    def commit_guest(self, member: MemberState, links: list[Link]) -> None:
        """A guest's member chain, stored with the ``team.add`` that let it in (``server/routes/guests.py``)."""
        self.members[member.member_id] = member
        self.member_links[member.member_id] = list(links)
        for link in links:
            self.note_signed(link.signer, link.device, link.time)

    def commit_team(self, state: TeamState, link: Link) -> None:
        self.teams[state.team_id] = state
        self.team_links.setdefault(state.team_id, []).append(link)
        self.note_signed(link.signer, link.device, link.time)
