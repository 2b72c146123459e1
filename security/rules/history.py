"""What held at each time: the part of offboarding, rotate-on-removal and need-to-know that judges history.

The checks in ``membership`` judge the current state (a removed member still holding the current key, a team
that still has to rotate, a compa in a sensitive team now); once the late rotation or removal is done they stop
reporting it. These add what happened in between, from the replayed chains, so a breach stays reported:

* ``offboarding``: a member removed from the organization kept the key of a team longer than ``hours``
  (the first key generation made after the removal came late); a guest (an ally's member) removed from a
  coalition space (``coalition.remove``, by either side: the space is all of its membership) likewise, and while
  it still holds the current key (``guest_removals``);
* ``rotate-on-removal``: a team rotated later than ``hours`` after a team removal (``team.remove`` or
  ``coalition.remove``), a leave or a device revocation of a member who held its key then;
* ``need-to-know``: a compa entered a sensitive team (and is no longer in it: the current check reports those
  still in it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from security.protocols import Rule
from security.rules.base import (
    HOUR,
    REMOVALS,
    VIOLATION,
    Context,
    Finding,
    body_str,
    dur,
    finding,
    obligation,
    rotate_command,
    starts_generation,
)
from vault.chains import TeamState
from vault.links import Link


@dataclass(frozen=True)
class Entry:
    """A member put into a team by a link."""

    team: str
    kind: str
    member: str
    time: int  # when the link was appended (``Context.appended_at``), not the time its signer wrote in it
    link: Link
    org_seq: int  # the organization state the link names: what the chains held when it was signed


def entries(ctx: Context) -> Iterator[Entry]:
    """Every entry into every team, in chain order (the creator of a team does not enter it: it makes it)."""
    for tid, team in ctx.inp.teams.items():
        for link in ctx.team_links(tid):
            snap = team.snapshots.get(link.seq)
            org_seq = snap.org_seq if snap is not None else 0
            if link.type == "team.add":
                yield Entry(tid, team.kind, body_str(link, "member"), ctx.appended_at(link), link, org_seq)
            elif link.type == "team.create":
                items = link.body.raw.get("members")
                for item in items if isinstance(items, list) else []:
                    mid = item.get("member") if isinstance(item, dict) else None
                    if isinstance(mid, str) and mid != link.signer:
                        yield Entry(tid, team.kind, mid, ctx.appended_at(link), link, org_seq)


def _generation_at(team: TeamState, links: Sequence[Link], t: int) -> int | None:
    """The team's key generation at time ``t`` (None: the team did not exist yet)."""
    seq = max((lk.seq for lk in links if lk.time <= t), default=0)
    snap = team.snapshots.get(seq)
    return None if snap is None else snap.generation


def _next_generation(links: Sequence[Link], after: Link | None, t: int) -> Link | None:
    """The first link starting a new key generation after ``after`` (or, without one, dated after ``t``)."""
    later = [lk for lk in links if (lk.seq > after.seq if after is not None else lk.time >= t)]
    return next((lk for lk in later if starts_generation(lk)), None)


def _late(ctx: Context, rule: Rule, team: TeamState, subject: str, trigger_time: int, trigger: Link | None,
          what: str, events: tuple[int, ...]) -> Iterator[Finding]:
    """A violation when the team's first new generation after the trigger came more than ``hours`` after it."""
    limit = rule.int_("hours") * HOUR
    links = ctx.team_links(team.team_id)
    rotated = _next_generation(links, trigger, trigger_time)
    if rotated is not None and rotated.time - trigger_time > limit:
        yield finding(rule, VIOLATION, f"team {team.team_id} moved to a new key generation "
                      f"{dur(rotated.time - trigger_time)} after {what} (limit {dur(limit)})", subject,
                      [*events, *ctx.link_event(rotated)])


def late_offboarding(ctx: Context, rule: Rule) -> list[Finding]:
    out: list[Finding] = []
    for link in ctx.inp.org_links:
        if link.type != "org.remove" or ctx.inp.org.members.get(body_str(link, "member")) is None:
            continue
        mid = body_str(link, "member")
        if ctx.inp.org.members[mid].removed_at != link.time:
            continue  # a proposal (two people), not the removal
        for team in ctx.inp.teams.values():
            gen = _generation_at(team, ctx.team_links(team.team_id), link.time)
            if gen is not None and (gen, mid) in team.boxes:
                out.extend(_late(ctx, rule, team, mid, link.time, None, f"member {mid} was removed from the "
                                 f"organization by {link.signer}", ctx.link_event(link)))
    return out


def guest_removals(ctx: Context, rule: Rule) -> list[Finding]:
    """Rule ``offboarding`` for guests: a ``coalition.remove`` of a guest not rotated in its own link is a removal
    whose key must rotate within ``hours``: a warning, then a violation while the guest still holds the current key,
    and a violation in history when the next generation came late."""
    limit = rule.int_("hours") * HOUR
    out: list[Finding] = []
    for tid, team in ctx.inp.teams.items():
        for link in ctx.team_links(tid):
            guest = body_str(link, "member")
            if link.type != "coalition.remove" or guest not in team.guests or link.body.raw.get("key") is not None:
                continue
            what = f"guest {guest} was removed from coalition space {tid} by {link.signer}"
            if (team.generation, guest) in team.boxes:
                age = ctx.now - link.time
                out.append(obligation(rule, age > limit, guest, ctx.link_event(link),
                                      f"{what} {dur(age)} ago but still holds its key (limit {dur(limit)})",
                                      f"{what} {dur(age)} ago and still holds its key: rotate within "
                                      f"{dur(limit - age)}", rotate_command(tid)))
            else:
                out.extend(_late(ctx, rule, team, guest, link.time, link, what, ctx.link_event(link)))
    return out


def late_rotations(ctx: Context, rule: Rule) -> list[Finding]:
    out: list[Finding] = []
    for tid, team in ctx.inp.teams.items():
        links = ctx.team_links(tid)
        for link in links:
            if link.type in REMOVALS and link.body.raw.get("key") is None:
                who = body_str(link, "member")
                out.extend(_late(ctx, rule, team, tid, link.time, link, f"{who} was removed by {link.signer}"
                                 + (" from the coalition space" if link.type == "coalition.remove" else ""),
                                 ctx.link_event(link)))
            elif link.type == "team.leave":
                out.extend(_late(ctx, rule, team, tid, link.time, link, f"{link.signer} left", ctx.link_event(link)))
        for mid, member_links in ctx.inp.member_links.items():
            for revoke in member_links:
                if revoke.type != "device.revoke":
                    continue
                gen = _generation_at(team, links, revoke.time)
                if gen is not None and (gen, mid) in team.boxes:
                    out.extend(_late(ctx, rule, team, tid, revoke.time, None, f"{mid} revoked device "
                                     f"{body_str(revoke, 'device')}", ctx.link_event(revoke)))
    return out


def compa_entries(ctx: Context, rule: Rule) -> list[Finding]:
    """Compas who entered a sensitive team and are no longer in it (the current check reports those still in)."""
    kinds = rule.strs("sensitive_kinds")
    out = []
    for e in entries(ctx):
        if e.kind not in kinds or e.member in ctx.inp.teams[e.team].active_members(ctx.now):
            continue
        if "compa" in ctx.inp.org.roles_of(e.member, e.time, ctx.org_seq_at(e.time)):
            out.append(finding(rule, VIOLATION, f"compa {e.member} was put into {e.kind} team {e.team} by "
                               f"{e.link.signer} (since left)", e.member, ctx.link_event(e.link)))
    return out
