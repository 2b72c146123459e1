"""Rules about who enters which team, and who keeps an eye on it: probation, vouching, membership-review and
dormant-members.

Probation and vouching judge history: every entry into a team (a ``team.create`` member other than its creator, a
``team.add``) is judged at its own time, so a breach stays reported after the member left or the probation ended.
Vouches and reviews are signed links replayed with the chains (``org.vouch``, ``team.review``), never server
records, so a server cannot satisfy these rules on a member's behalf."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from security.protocols import Rule
from security.rules.base import (
    DAY,
    VIOLATION,
    WARNING,
    Check,
    Context,
    Finding,
    admitted_at,
    dur,
    finding,
    ok_events,
)
from security.rules.history import entries
from vault.chains import records_of

# -- probation ----------------------------------------------------------------------------------------


def _probation(ctx: Context, rule: Rule) -> list[Finding]:
    """Nobody enters a sensitive team within ``days`` of their admission (the founder has no probation)."""
    kinds, days = rule.strs("sensitive_kinds"), rule.int_("days") * DAY
    out = []
    for e in entries(ctx):
        om = ctx.inp.org.members.get(e.member)
        if e.kind not in kinds or om is None or om.invited_by is None:
            continue
        admitted = admitted_at(ctx, om)
        entered = ctx.appended_earliest(e.link)  # an entry the log skipped: as soon as it can have been
        if admitted is not None and entered - admitted < days:
            out.append(finding(rule, VIOLATION, f"member {e.member} entered {e.kind} team {e.team} "
                                f"{dur(max(0, entered - admitted))} after admission (probation {dur(days)}), "
                                f"added by {e.link.signer}", e.member, ctx.link_event(e.link)))
    return out


# -- vouching -----------------------------------------------------------------------------------------


def _vouching(ctx: Context, rule: Rule) -> list[Finding]:
    """An entry into a team of ``kinds`` needs ``min_vouches`` signed vouches for the member, recorded before it, by
    distinct members other than the member and whoever adds them (independent of the grant).

    "Before" is chain order, not the times the signers wrote: a vouch counts if it is in the organization state the
    entry's link names (its ``org_seq``, which the adder signed), so a vouch appended later and dated back does not."""
    kinds, needed = rule.strs("kinds"), rule.int_("min_vouches")
    vouches = records_of(ctx.inp.org, "org.vouch")
    out = []
    for e in entries(ctx):
        if e.kind not in kinds:
            continue
        by = sorted({v.signer for v in vouches
                     if v.subject == e.member and v.seq <= e.org_seq and v.signer not in (e.member, e.link.signer)})
        if len(by) < needed:
            got = f" (only {', '.join(by)})" if by else ""
            out.append(finding(rule, VIOLATION, f"member {e.member} entered {e.kind} team {e.team} with "
                                f"{len(by)} independent vouch(es) recorded before, {needed} needed{got}; added by "
                                f"{e.link.signer}", e.member, ctx.link_event(e.link)))
    return out


# -- membership-review --------------------------------------------------------------------------------


def _membership_review(ctx: Context, rule: Rule) -> list[Finding]:
    """An admin confirms (``mvault team review``) each sensitive team's list every ``sensitive_days``, every other
    team's every ``other_days``; counted from the newest review, else from the team's creation. A warning in the
    last 7 days before it is due."""
    kinds = rule.strs("sensitive_kinds")
    out = []
    for tid, team in ctx.inp.teams.items():
        every = rule.int_("sensitive_days" if team.kind in kinds else "other_days") * DAY
        links = ctx.team_links(tid)
        created = ctx.appended_at(links[0]) if links else min(s.time for s in team.snapshots.values())
        by_seq = {lk.seq: lk for lk in links}
        reviewed = [(t, by_seq[seq]) for seq, _, _ in team.reviews if seq in by_seq
                    and (t := ctx.appended_at(by_seq[seq])) <= ctx.now]
        last, review_link = max(reviewed, key=lambda r: r[0], default=(created, None))
        what = "reviewed" if last != created else "created, never reviewed,"
        due = last + every
        if ctx.now > due:
            out.append(finding(rule, VIOLATION, f"{team.kind} team {tid} was {what} {dur(ctx.now - last)} ago: an "
                                f"admin confirms its members every {dur(every)}", tid, ctx.link_event(review_link),
                                f"mvault team review {tid}"))
        elif due - ctx.now <= 7 * DAY:
            out.append(finding(rule, WARNING, f"{team.kind} team {tid} needs an admin's review of its members within "
                                f"{dur(due - ctx.now)}", tid, ctx.link_event(review_link),
                                f"mvault team review {tid}"))
    return out


# -- dormant-members ----------------------------------------------------------------------------------


def _dormant_members(ctx: Context, rule: Rule) -> list[Finding]:
    """A member with no successful login (from any device) for ``days`` (else since they joined the team) is still
    in a sensitive team: they should leave it."""
    kinds, days = rule.strs("sensitive_kinds"), rule.int_("days") * DAY
    seen: dict[str, tuple[int, int]] = {}  # member -> newest (login time, index)
    for idx, ev in ok_events(ctx.actions("auth.login")):
        if ev.actor not in seen or ev.time >= seen[ev.actor][0]:
            seen[ev.actor] = (ev.time, idx)
    out = []
    for tid, team in ctx.inp.teams.items():
        if team.kind not in kinds:
            continue
        for mid in sorted(team.active_members(ctx.now)):
            if not ctx.inp.org.admitted(mid):
                continue  # offboarding reports removed members
            last, idx = seen.get(mid, (team.members[mid].since, -1))
            if ctx.now - last > days:
                how = "last logged in" if idx >= 0 else "has not logged in since joining,"
                out.append(finding(rule, VIOLATION, f"member {mid} {how} {dur(ctx.now - last)} ago and is still "
                                    f"in {team.kind} team {tid} (limit {dur(days)})", mid,
                                    [idx] if idx >= 0 else [], f"mvault team remove {tid} {mid}"))
    return out


CHECKS: Final[Mapping[str, Check]] = {
    "probation": _probation,
    "vouching": _vouching,
    "membership-review": _membership_review,
    "dormant-members": _dormant_members,
}
