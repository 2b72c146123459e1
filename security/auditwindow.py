"""When events are sealed to no audit key (generation 0): one rule for the server that seals and the clients that check.

The server seals an event to the published audit key only while that key is the designated team's current
generation with no rotation pending (``withheld_reasons``; review round 3: a departed Security Team member with a
copy of the server's data must not read the events recorded after the departure). Until a Security Team client
publishes the next generation's key, events are sealed to no audit key: only their actor and subject read them.

A Security Team member's ``audit verify`` replays the same rule at past times (``SealingWindows``): an event sealed
to generation 0 after the first publication is a fault of the log unless the rule withheld the key at the event's
time, judged from the verified chains, and no later publication had ended that window before the event was
logged (review round 27: every departure from the Security Team otherwise stopped its witnessing for good). The
publications it replays are those the verifier judged at their place in the log against the designations in chain
order (``designations``, ``designated_near``; review round 30), the rule never replayed before the
designation of its team a publication was made under (review round 31), and the last publication is in force for the
designated team only if it names that team's current generation (``unpublished``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vault.acts import ALLOWANCE
from vault.chains import MemberState, OrgState, TeamState, replay_team
from vault.chains.team import Policy
from vault.links import Link

SKEW = ALLOWANCE // 2
"""Seconds the server's clock, by which events are dated, may differ from the signers' by which links are dated."""


def withheld_reasons(org: OrgState | None, members: Mapping[str, MemberState], team: TeamState | None,
                     key_team: str | None, key_gen: int, now: int, org_seq: int | None = None) -> list[str]:
    """Why events at ``now`` are sealed to no audit key (empty: to the key of ``key_team``'s generation
    ``key_gen``, the one published). ``team``: ``key_team``'s state then; ``org_seq``: the organization state
    then (None: ``org`` as it is, the server's case)."""
    if key_gen < 1 or key_team is None:
        return ["no audit key was published"]
    if org is None or team is None:
        return ["the audit key's team is unknown"]
    designated = org.audit_team if org_seq is None else org.audit_team_at(org_seq)
    if designated not in (None, key_team):
        return [f"team {designated} is designated, the key is team {key_team}'s"]
    if team.generation != key_gen:
        return [f"team {team.name} is at key generation {team.generation}, the published key is {key_gen}"]
    return team.rotation_reasons(now, members, org, org_seq=org_seq)


@dataclass(frozen=True)
class Publication:
    """An ``audit.key`` event as logged: its index, time, team and generation; ``epoch`` to ``latest``: the
    designations it may have been made under (indexes into ``designations``; 0: before any; its place in the log is
    known to ``SKEW``)."""

    index: int
    time: int
    team: str
    gen: int
    epoch: int = 0
    latest: int = 0


def designations(org: OrgState) -> list[tuple[int, str | None]]:
    """Each designation of the audit log's team in force, in chain order: (its link's time, team); the first, (0,
    None), is the time before any (any team of kind ``security`` then)."""
    return [(0, None), *((org.times[seq - 1], team) for seq, team in org.audit_team_log)]


def designated_near(marks: list[tuple[int, str | None]], lo: int, hi: int) -> list[tuple[int, str | None]]:
    """The designations (epoch, team) in force at some time from ``lo`` to ``hi`` (links are dated by their
    signers' clocks, events by the server's: a place in the log is known to ``SKEW``). Designation k is in force from
    its link's time up to, not including, the next one's (an organization state is in force from the time of its
    last link on: ``OrgState.seq_at``, "dated at or before"); one whose link is dated within ``lo`` to ``hi`` counts
    even when the next is dated the same second. The one answer for the verifier (``marks``: ``designations``) and
    for ``security.auditkey.designated_around`` (session 23: the two differed by a second at ``lo``)."""
    out = []
    for k, (start, team) in enumerate(marks):
        end = marks[k + 1][0] if k + 1 < len(marks) else None
        if start <= hi and (end is None or end > lo or start >= lo):
            out.append((k, team))
    return out


class SealingWindows:
    """``withheld_reasons`` replayed at past times from verified chains: the team's state at ``t`` is its chain up
    to the last link dated at or before ``t`` (at least up to the generation last published), the members' and the
    organization's states are their own time-indexed replays."""

    def __init__(self, org: OrgState, members: Mapping[str, MemberState], team_links: Mapping[str, list[Link]],
                 publications: Iterable[Publication], policy: Policy, kinds: Iterable[str]) -> None:
        self.org, self.members, self.policy, self.kinds = org, members, policy, tuple(kinds)
        self.team_links = team_links
        self.publications = sorted(publications, key=lambda p: p.index)
        self._states: dict[tuple[str, int], TeamState] = {}
        self._judged: dict[tuple[int, int], list[str]] = {}  # (time, publication index) -> reasons
        self._gens: dict[str, list[int]] = {}  # team -> its generation after each prefix of its chain
        self.placed: dict[str, int] = {}  # link hash (hex) -> index of its event, for the events read here
        times = set(org.times) | {pg.since for m in members.values() for pg in m.puks.values()}
        times |= {cut.time for cuts in org.incidents.by_member.values() for cut in cuts}
        for team_id, links in team_links.items():
            if not links:
                continue
            state = replay_team(links[:1], org, members, policy, self.kinds)
            gens = [state.generation]
            for link in links[1:]:
                state.apply(link, org, members, policy)
                gens.append(state.generation)
            self._gens[team_id] = gens
            times |= {link.time for link in links}
            # a role's end changes the rule with no link
            times |= {until for snap in state.snapshots.values() for _, until in snap.roles.values()
                      if until is not None}
            times |= {m.until for m in state.members.values() if m.until is not None}
        self.changes = sorted(times)

    def generation_logged_before(self, team_id: str, index: int, t: int) -> int:
        """``team_id``'s generation at place ``index`` of the log, in log order (review 34): after the last of its
        links whose event is read here and logged before ``index`` (``placed``: link hash -> index), or, for a link
        whose event is not read here (sealed to no key, to a key not held here, pruned), dated at or before ``t``
        (the caller's bound: its place less the clocks' allowance). 0: none, or a chain not seen here."""
        links, gens = self.team_links.get(team_id), self._gens.get(team_id)
        count = 0
        for k, link in enumerate(links or ()):
            at = self.placed.get(link.hash.hex())
            if (at < index) if at is not None else (link.time <= t):
                count = k + 1
        return gens[count - 1] if gens and count else 0

    def publication_before(self, index: int | None, t: int) -> Publication | None:
        """The last ``audit.key`` publication logged before event ``index`` (None: the last dated at or before
        ``t``, for an act whose event's place in the log is unknown)."""
        found = None
        for p in self.publications:
            if p.index >= index if index is not None else p.time > t:
                break
            found = p
        return found

    def _team_at(self, team_id: str, t: int, gen: int) -> TeamState | None:
        links, gens = self.team_links.get(team_id), self._gens.get(team_id)
        if not links or not gens:
            return None
        count = sum(1 for link in links if link.time <= t)
        reached = next((k + 1 for k, g in enumerate(gens) if g >= gen), len(links))
        count = max(count, reached, 1)
        if (team_id, count) not in self._states:
            self._states[team_id, count] = replay_team(links[:count], self.org, self.members, self.policy,
                                                       self.kinds)
        return self._states[team_id, count]

    def unpublished(self, now: int, designated: str | None = None) -> tuple[str, int, int] | None:
        """The audit key's team (``designated``; none designated: the team of the last publication) and its current
        generation on its chain when the publication in force (the last one read) is not that team's generation,
        more than ``SKEW`` after the later of that designation's link and the link
        that made the generation (team, generation, that later time), or None. A Security Team client publishes
        right after it rotates the team or the team is designated (the same command; else the next one): the
        server's rule seals events to no audit key until the publication is logged, so one never logged keeps that
        window open for good (review 28); and a publication no longer in force (an older generation, or another
        team's) closes none (review 30). The same team's publication made before another designation is in force
        when no other team's was logged after it: the server still holds that key and seals to it once the team is
        designated again (review 31). With no publication read, the designated team has none in force: a server
        that stores and serves the organization's first publication but never logs it, and seals every event to no
        key, is caught (review 32; a pruned one is read as the first event opened with the key, ``sealing_windows``);
        none designated and none read: no team to judge (the server takes no publication before a designation)."""
        last = self.publications[-1] if self.publications else None
        team = designated or (last.team if last is not None else None)
        if team is None:
            return None
        links, gens = self.team_links.get(team), self._gens.get(team)
        # the last publication logged is the key the server holds: in force whenever its team is designated, under
        # the designation it was made under or a later one of the same team (review 31: sec -> sec2 -> sec with no
        # publication of sec2 logged between; the server seals to sec's key again, the client has nothing to post)
        if not links or not gens or (last is not None and (last.team, last.gen) == (team, gens[-1])):
            return None
        made = next(link.time for link, g in zip(links, gens, strict=True) if g == gens[-1])
        if designated is not None:
            made = max(made, designations(self.org)[-1][0])
        return (team, gens[-1], made) if now > made + SKEW else None

    def withheld_at(self, t: int, index: int | None) -> list[str]:
        """Why the server had to seal an event dated ``t``, logged at ``index``, to no audit key (empty: it had
        to seal it to the key published before ``index``; ``index`` None: the key published at ``t``)."""
        return self._withheld_under(t, self.publication_before(index, t))

    def _withheld_under(self, t: int, pub: Publication | None) -> list[str]:
        if pub is None:
            return ["no audit key was published"]
        if (t, pub.index) not in self._judged:
            team = self._team_at(pub.team, t, pub.gen)
            # a team whose chain this member cannot see: nothing vouches for the server's sealing
            self._judged[t, pub.index] = [] if team is None else withheld_reasons(
                self.org, self.members, team, pub.team, pub.gen, t, self.org.seq_at(t))
        return self._judged[t, pub.index]

    def designated_since(self, pub: Publication) -> int:
        """The link time of the earliest designation of ``pub``'s team it may have been made under (0: none names
        its team, a publication before any designation). The server writes the publication's time: replayed before
        that designation, the rule finds another team designated and withholds the key (review 31: a publication
        dated a second before its designation let every later event, dated within ``SKEW`` of it, be sealed to no
        key for good)."""
        marks = designations(self.org)
        return next((marks[k][0] for k in range(pub.epoch, pub.latest + 1) if marks[k][1] == pub.team), 0)

    def _times(self, lo: int, hi: int, index: int, clamp: bool) -> list[int] | None:
        """The times from ``lo`` to ``hi`` where the rule may change, for an event logged at ``index`` under a
        publication (None: none in force, or an empty range); ``clamp``: from the publication's time and its
        designation's on, as in ``withheld_between``."""
        if (pub := self.publication_before(index, hi)) is None:
            return None
        if clamp:
            lo = max(lo, pub.time, self.designated_since(pub))
        return [lo, *(c for c in self.changes if lo < c <= hi)] if lo <= hi else None

    def withheld_throughout(self, lo: int, hi: int, index: int) -> list[str]:
        """The reasons the rule withheld every key at every time from ``lo`` to ``hi`` from an event logged at
        ``index`` under the publication before it (empty: at some time it sealed to that publication's key, or no
        publication is in force). An event sealed to that key is then a fault, whoever verifies (review 34). Not
        clamped to the publication's time as ``withheld_between`` is: the times before it only make this answer more
        lenient, and a publication signed by a clock ahead followed by a rotation signed by a clock behind leaves no
        time after it unwithheld (review 34's second finding)."""
        times = self._times(lo, hi, index, False)
        if times is None:
            return []
        first: list[str] = []
        for t in times:
            if not (reasons := self.withheld_at(t, index)):
                return []
            first = first or reasons
        return first

    def reopened_between(self, lo: int, hi: int, index: int) -> bool:
        """Whether the rule, under the publication before ``index``, goes from withholding the key to sealing to it
        at some time from ``lo`` to ``hi`` (a designation back to its team; nothing else but a publication ends a
        window). The server's state moves in log order: an event sealed to no key, then one sealed to the key
        under the same publication, needs such a time between them. Clamped as ``withheld_between``: before the
        publication's time the replay forces its team to the published generation against an older organization
        state (a member not admitted yet: withheld), a reopening that never was. A designation back made after the
        publication but dated before its signed time (the publisher's clock ahead of the NCC's) is not seen here: a
        false alarm in that case, not a miss."""
        times = self._times(lo, hi, index, True)
        if times is None:
            return True
        shut = False
        for t in times:
            if self.withheld_at(t, index):
                shut = True
            elif shut:
                return True
        return not shut

    def withheld_between(self, lo: int, hi: int, index: int | None) -> list[str]:
        """``withheld_at`` for an event logged at ``index`` dated anywhere from ``lo`` to ``hi`` (its time unknown
        or uncertain): the reasons at the first time in that range where there are some (empty: none). Never
        before the publication logged last before ``index``: the window that publication closed stays closed; and
        never before the earliest designation of its team it may have been made under (``designated_since``)."""
        if index is not None and (pub := self.publication_before(index, hi)) is not None:
            lo = max(lo, pub.time, self.designated_since(pub))
        if lo > hi:
            return []
        times = [lo, *(c for c in self.changes if lo < c <= hi)]
        if index is not None:
            return next((reasons for t in times if (reasons := self.withheld_at(t, index))), [])
        # an act whose event's place in the log is unknown (a chain link whose event does not open here): at ``t`` the
        # server may still have sealed to any publication in force since ``lo``. Links are dated by their signers'
        # clocks and publications by the publishers': a removal, its rotation (dated at the removal, a link never
        # dated before its chain's head) and a publication dated before both otherwise showed no time at which the
        # key was withheld (review 31's "has no audit event" false alarm; session 23, clocks 30 s apart)
        first = self.publication_before(None, lo)
        for t in times:
            for pub in [first, *(p for p in self.publications if lo < p.time <= t)]:
                if reasons := self._withheld_under(t, pub):
                    return reasons
        return []
