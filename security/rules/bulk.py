"""The two parts of ``bulk-access`` beyond a burst of reads (``activity``): reads outside one's own teams, and bulk
access while a departure is pending. Alerts (counts, never content), not verdicts.

* **Outside one's own teams**: more than ``max_outside`` documents read in ``outside_days`` (up to now) in teams the
  reader was not an active member of at the read's time (an NCC member reading a circle's ciphertext, a member whose
  role in the team had ended). Only teams the auditor replayed are judged.
* **While a departure is pending**, for a member and a time: an ``org.remove`` of them proposed (signed by one NCC
  member, waiting for the second) and not yet in force, for at most ``departure_days`` after the proposal; or every
  organization role they hold ending within ``departure_days`` (their membership ends); or their role in the team they
  read ending within ``departure_days``. Then more than ``departing_reads`` reads within ``window_minutes`` is bulk
  access (a lower threshold than ``max_reads``: "limit access quietly" for someone about to leave).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

from security.events import Event
from security.protocols import Rule
from security.rules.base import ALERT, DAY, MINUTE, Context, Finding, body_str, dur, finding, ok_events
from security.rules.coalition import coalition_reads
from vault.chains import TeamSnapshot


class _Roles:
    """Team roles at a time, by the states the team's links made (dated up to that time): one sorted index per team,
    built once, bisected per read."""

    def __init__(self, ctx: Context) -> None:
        self.index: dict[str, tuple[list[int], list[TeamSnapshot]]] = {}
        for tid, team in ctx.inp.teams.items():
            snaps = sorted(team.snapshots.values(), key=lambda s: s.time)
            self.index[tid] = ([s.time for s in snaps], snaps)

    def at(self, team: str, member: str, t: int) -> tuple[bool, int | None]:
        """Was ``member`` an active member of ``team`` at ``t``, and until when did that role run (None: no end)?"""
        times, snaps = self.index.get(team, ([], []))
        i = bisect.bisect_right(times, t)
        if not i:
            return False, None
        role, until = snaps[i - 1].roles.get(member, (None, None))
        return role is not None and (until is None or t < until), until


def _outside(ctx: Context, rule: Rule, roles: _Roles) -> list[Finding]:
    limit, since = rule.int_("max_outside"), ctx.now - rule.int_("outside_days") * DAY
    outside: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for idx, ev in ok_events(ctx.actions("doc.read")):
        team = ctx.inp.teams.get(ev.res.get("team", ""))
        if team is None or not since < ev.time <= ctx.now or not ev.actor:
            continue
        if not roles.at(team.team_id, ev.actor, ev.time)[0]:
            outside[ev.actor].append((idx, team.team_id))
    out = []
    for actor, reads in sorted(outside.items()):
        if len(reads) > limit:
            teams = ", ".join(sorted({t for _, t in reads}))
            out.append(finding(rule, ALERT, f"member {actor} read {len(reads)} documents outside their own teams in "
                                f"the last {dur(ctx.now - since)} (more than {limit}; teams {teams})", actor,
                                [i for i, _ in reads]))
    return out


def _removal_proposals(ctx: Context) -> dict[str, list[int]]:
    """member -> times (appended) of ``org.remove`` links that only proposed their removal."""
    found: dict[str, list[int]] = defaultdict(list)
    cosigned = ctx.inp.org.cosigned
    for link in ctx.inp.org_links:
        if link.type == "org.remove" and link.seq in cosigned and cosigned[link.seq] is None:
            found[body_str(link, "member")].append(ctx.appended_at(link))
    return found


def _departing(ctx: Context, rule: Rule, roles: _Roles) -> Callable[[Event], str]:
    """Why the reader of a read event had a departure pending then ("" if none)."""
    ahead = rule.int_("departure_days") * DAY
    proposals = _removal_proposals(ctx)
    org = ctx.inp.org

    def why(ev: Event) -> str:
        t, who = ev.time, ev.actor
        om = org.members.get(who)
        removed = om.removed_at if om is not None and om.removed_at is not None else None
        for p in proposals.get(who, []):
            if p <= t < p + ahead and (removed is None or t < removed):
                return f"their removal was proposed {dur(t - p)} before"
        entry = None if om is None else om.entry_at(ctx.org_seq_at(t))
        terms = [u for u in entry.roles.values()] if entry is not None and entry.status == "admitted" else []
        if terms and all(u is not None and t < u <= t + ahead for u in terms):
            return f"their organization roles ended {dur(max(u for u in terms if u is not None) - t)} later"
        team = ev.res.get("team", "")
        active, until = roles.at(team, who, t)
        if active and until is not None and until <= t + ahead:
            return f"their role in team {team} ended {dur(until - t)} later"
        return ""

    return why


def _while_departing(ctx: Context, rule: Rule, densest: Callable[[list[tuple[int, int]], int], list[int]],
                     roles: _Roles) -> list[Finding]:
    limit, width = rule.int_("departing_reads"), rule.int_("window_minutes") * MINUTE
    why = _departing(ctx, rule, roles)
    reads: dict[str, list[tuple[int, int]]] = defaultdict(list)
    reasons: dict[int, str] = {}
    for idx, ev in ok_events(ctx.actions("doc.read")) + [(i, Event(t, member, "", "coalition.act"))
                                                          for t, i, member in coalition_reads(ctx)]:
        reason = why(ev) if ev.actor and ev.time <= ctx.now else ""
        if reason:
            reads[ev.actor].append((ev.time, idx))
            reasons[idx] = reason
    out = []
    for actor in sorted(reads):
        window = densest(reads[actor], width)
        if len(window) > limit:
            out.append(finding(rule, ALERT, f"member {actor} read {len(window)} documents within {dur(width)} while "
                                f"a departure was pending (more than {limit}; {reasons[window[0]]})", actor, window))
    return out


def bulk_beyond_bursts(ctx: Context, rule: Rule, densest: Callable[[list[tuple[int, int]], int], list[int]]) \
        -> list[Finding]:
    """The outside-teams and pending-departure alerts of ``bulk-access``."""
    roles = _Roles(ctx)
    return _outside(ctx, rule, roles) + _while_departing(ctx, rule, densest, roles)
