"""Membership rules: offboarding, rotate-on-removal, role-terms, need-to-know, admin-count,
two-person, pending-shares and circle-shape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Final

from security.protocols import Rule
from security.rules.base import (
    DAY,
    HOUR,
    REMOVALS,
    VIOLATION,
    WARNING,
    Check,
    Context,
    Finding,
    adding_link,
    admitted_at,
    approve_command,
    body_str,
    dur,
    finding,
    obligation,
    ok_events,
    rotate_command,
    sets_member,
    starts_generation,
)
from security.rules.coalition import coalition_need_to_know, coalition_offboarding
from security.rules.documents import export_request
from security.rules.history import compa_entries, guest_removals, late_offboarding, late_rotations
from vault.chains import OrgMember, Record, TeamState, records_of
from vault.chains.exports import APPROVALS_NEEDED
from vault.links import Link

# -- offboarding ------------------------------------------------------------------------------------


def _offboarding(ctx: Context, rule: Rule) -> list[Finding]:
    """A removed member still holding a team's current key more than ``hours`` after the removal (warning
    before that)."""
    limit = rule.int_("hours") * HOUR
    removal_events: dict[str, int] = {}
    for idx, ev in ctx.actions("org.remove"):
        mid = ev.res.get("member", "")
        if mid:
            removal_events.setdefault(mid, idx)
    for link in ctx.inp.org_links:
        if link.type == "org.remove":
            idx_t = ctx.link_event(link)
            if idx_t:
                removal_events[body_str(link, "member")] = idx_t[0]
    out = []
    for mid, om in ctx.inp.org.members.items():
        if om.status != "removed" or om.removed_at is None:
            continue
        age = ctx.now - om.removed_at
        events = [removal_events[mid]] if mid in removal_events else []
        for tid, team in ctx.inp.teams.items():
            # Organization removal takes a member out of every team at once (security.authority): no
            # role, no box in any later generation. What is left to do is the rotation: until then the
            # member still holds the key new content would be written under.
            if (team.generation, mid) not in team.boxes:
                continue
            out.append(obligation(rule, age > limit, mid, events,
                                  f"member {mid} was removed from the organization {dur(age)} ago "
                                  f"but is still in team {tid} (limit {dur(limit)})",
                                  f"member {mid} was removed from the organization {dur(age)} ago "
                                  f"and is still in team {tid}: remove within {dur(limit - age)}",
                                  rotate_command(tid)))
    return out + late_offboarding(ctx, rule) + guest_removals(ctx, rule) + coalition_offboarding(ctx, rule)


# -- rotate-on-removal --------------------------------------------------------------------------------


def _rotation_triggers(ctx: Context, team: TeamState) -> list[tuple[int, str, tuple[int, ...]]]:
    """(time, what, events) of everything that makes the current key generation unusable."""
    now, members = ctx.now, ctx.inp.members
    links = ctx.team_links(team.team_id)
    last_gen = max((i for i, lk in enumerate(links) if starts_generation(lk)), default=-1)
    triggers: list[tuple[int, str, tuple[int, ...]]] = []
    removed_after: set[str] = set()
    for link in links[last_gen + 1:]:
        if link.type in REMOVALS:
            who = body_str(link, "member")
            removed_after.add(who)
            triggers.append((link.time, f"{who} was removed by {link.signer}", ctx.link_event(link)))
        elif link.type == "team.leave":
            removed_after.add(link.signer)
            triggers.append((link.time, f"{link.signer} left", ctx.link_event(link)))
    if team.pending_rotation and not triggers:
        triggers.append((team.time, "a member was removed or left", ()))
    for (gen, mid), c in team.boxes.items():
        if gen != team.generation:
            continue
        tm = team.members.get(mid)
        if tm is None:
            if mid not in removed_after:
                seq = team.removed_at.get(mid)
                removal = next((lk for lk in links if lk.seq == seq), None)
                triggers.append((team.time if removal is None else removal.time, f"{mid} was removed",
                                 ctx.link_event(removal)))
        elif not tm.active(now):
            assert tm.until is not None
            triggers.append((tm.until, f"{mid}'s team role ended", ()))
        elif mid in members and c.puk_gen != members[mid].puk_gen_at(now):
            ms = members[mid]
            later = [g for g in ms.puks if g > c.puk_gen]
            if not later:
                continue
            since = ms.puks[min(later)].since
            revoke = next((lk for lk in ctx.member_links(mid) if lk.type == "device.revoke" and lk.time == since),
                          None)
            device = "" if revoke is None else f" {body_str(revoke, 'device')}"
            triggers.append((since, f"{mid} revoked device{device}", ctx.link_event(revoke)))
    return triggers


def _rotate_on_removal(ctx: Context, rule: Rule) -> list[Finding]:
    """A team whose key must rotate (removal, leave, role end, device revocation) and has not: late after ``hours``."""
    limit = rule.int_("hours") * HOUR
    out = []
    for tid, team in ctx.inp.teams.items():
        reasons = team.rotation_reasons(ctx.now, ctx.inp.members, ctx.inp.org)
        if not reasons:
            continue
        triggers = _rotation_triggers(ctx, team)
        first = min((t for t, _, _ in triggers), default=team.time)
        what = "; ".join(w for _, w, _ in sorted(triggers)) or "; ".join(reasons)
        events = [i for _, _, evs in triggers for i in evs]
        age = ctx.now - first
        out.append(obligation(rule, age > limit, tid, events,
                              f"team {tid} still uses key generation {team.generation} "
                              f"{dur(age)} after it had to rotate (limit {dur(limit)}): {what}",
                              f"team {tid} must rotate key generation {team.generation} "
                              f"within {dur(limit - age)}: {what}", rotate_command(tid)))
    return out + late_rotations(ctx, rule)


# -- role-terms ---------------------------------------------------------------------------------------


def _grant_seq(om: OrgMember, role: str) -> int | None:
    """The seq of the role entry that (last) added ``role`` or changed its term."""
    found = None
    prev: dict[str, int | None] = {}
    for entry in om.log:
        if role in entry.roles and (role not in prev or prev[role] != entry.roles[role]):
            found = entry.seq
        prev = entry.roles
    return found


def _role_terms(ctx: Context, rule: Rule) -> list[Finding]:
    """Term-limited org roles need an end within ``max_term_days``; organizers a term within the range."""
    term_roles = rule.strs("term_roles")
    max_term = rule.int_("max_term_days") * DAY
    now = ctx.now
    out = []
    for mid, om in ctx.inp.org.members.items():
        if om.status != "admitted":
            continue
        for role, until in om.log[-1].roles.items():
            if role not in term_roles or (until is not None and until <= now):
                continue
            seq = _grant_seq(om, role)
            granted = om.since if seq is None else ctx.org_time(seq, om.since)
            link = None if seq is None else ctx.org_by_seq.get(seq)
            events = ctx.link_event(link)
            if until is None:
                out.append(finding(rule, VIOLATION, f"member {mid} holds org role {role!r} without an end date "
                                    f"(granted {dur(now - granted)} ago; at most {dur(max_term)})", mid, events))
            elif until - granted > max_term:
                out.append(finding(rule, VIOLATION, f"member {mid} holds org role {role!r} for a term of "
                                    f"{dur(until - granted)} (at most {dur(max_term)})", mid, events))
    org = ctx.inp.org
    for mid in sorted(org.caretakers(org.seq, now)):
        until = org.members[mid].log[-1].roles.get("ncc")
        out.append(finding(rule, VIOLATION, f"member {mid}'s NCC term ended {dur(now - (until or now))} ago and no "
                            "one holds NCC since: they stay NCC as caretaker until they grant NCC to another member",
                            mid, ctx.link_event(ctx.org_by_seq.get(_grant_seq(org.members[mid], "ncc") or 0))))
    kinds = rule.strs("organizer_kinds")
    lo, hi = rule.int_("organizer_min_days") * DAY, rule.int_("organizer_max_days") * DAY
    for tid, team in ctx.inp.teams.items():
        if team.kind not in kinds:
            continue
        links = ctx.team_links(tid)
        for mid in sorted(team.admins(now)):
            tm = team.members[mid]
            setting = [lk for lk in links if sets_member(lk, mid) and lk.time <= now]
            start = setting[-1].time if setting else tm.since
            events = ctx.link_event(setting[-1] if setting else None)
            if tm.until is None:
                out.append(finding(rule, VIOLATION, f"member {mid} is an admin of {team.kind} team {tid} without an "
                                    f"end date (terms of {dur(lo)} to {dur(hi)})", mid, events))
            elif not lo <= tm.until - start <= hi:
                out.append(finding(rule, VIOLATION, f"member {mid} is an admin of {team.kind} team {tid} for a term "
                                    f"of {dur(tm.until - start)} (terms of {dur(lo)} to {dur(hi)})", mid, events))
    return out


# -- need-to-know -------------------------------------------------------------------------------------


def _need_to_know(ctx: Context, rule: Rule) -> list[Finding]:
    """No compa and no member on probation (``probation_days`` after admission) in a sensitive team.

    The founder (admitted by the org.create link itself, invited by nobody) has no probation."""
    kinds = rule.strs("sensitive_kinds")
    probation = rule.int_("probation_days") * DAY
    now = ctx.now
    out = []
    for tid, team in ctx.inp.teams.items():
        if team.kind not in kinds:
            continue
        links = ctx.team_links(tid)
        for mid in sorted(team.active_members(now)):
            om = ctx.inp.org.members.get(mid)
            if om is None or om.status == "removed":
                continue  # offboarding reports removed members
            events = ctx.link_event(adding_link(links, mid))
            leave = f"mvault team remove {tid} {mid}"
            if "compa" in ctx.inp.org.roles_of(mid, now):
                out.append(finding(rule, VIOLATION, f"compa {mid} is a member of {team.kind} team {tid}", mid,
                                    events, leave))
                continue
            admitted = admitted_at(ctx, om)
            if om.invited_by is None or admitted is None:
                continue
            if now - admitted < probation:
                out.append(finding(rule, VIOLATION, f"member {mid} is in {team.kind} team {tid} while on probation "
                                    f"(admitted {dur(now - admitted)} ago; probation {dur(probation)})", mid,
                                    events, leave))
    return out + compa_entries(ctx, rule) + coalition_need_to_know(ctx, rule)


# -- admin-count --------------------------------------------------------------------------------------


def _admin_count(ctx: Context, rule: Rule) -> list[Finding]:
    lo, hi = rule.int_("min"), rule.int_("max")
    out = []
    for tid, team in ctx.inp.teams.items():
        n = len(team.admins(ctx.now))
        if n < lo or n > hi:
            out.append(finding(rule, VIOLATION, f"team {tid} ({team.kind}) has {n} active admin(s); "
                                f"it needs {lo} to {hi}", tid))
    return out


# -- two-person ---------------------------------------------------------------------------------------


def _two_person(ctx: Context, rule: Rule) -> list[Finding]:
    """Grants and revocations of ``roles`` need an approval by another NCC member (not the signer, not the subject)
    within ``hours``; protocol changes need an approver other than the proposer; a designation of the audit
    log's security team or a server move signed by a lone NCC member needs another NCC member's approval once there
    is one."""
    roles = rule.strs("roles")
    window = rule.int_("hours") * HOUR
    now = ctx.now
    approvals = _approvals(ctx)
    out = []
    cosigned = ctx.inp.org.cosigned
    for link in ctx.inp.org_links:
        if link.seq in cosigned:
            continue  # two NCC signatures in the chain itself: a proposal (in force only once approved) or its approval
        if link.type == "org.remove":
            # Removing a member who held a guarded role ends that role: it needs the same approval.
            subject = body_str(link, "member")
            held = sorted(set(roles) & ctx.inp.org.roles_of(subject, link.time, link.seq - 1))
            if not held:
                continue
            role, grant = held[0], False
        elif link.type != "org.role" or body_str(link, "role") not in roles:
            continue
        else:
            subject, role = body_str(link, "member"), body_str(link, "role")
            grant = link.body.raw.get("grant") is True
        valid = [(i, rec) for i, rec in approvals.get(link.hash.hex(), []) if rec.signer not in (link.signer, subject)]
        made = ctx.appended_earliest(link)  # the window opens as early as the log allows, closes as late
        if any(_appended(ctx, rec) - made <= window for _, rec in valid):
            continue
        # The link hash is what `mvault audit approve` takes; the org seq is said beside it for people.
        what = (f"{'grant' if grant else 'revocation'} of {role!r} to {subject} by {link.signer} "
                f"(org seq {link.seq}, link {link.hash.hex()[:16]})")
        events = [*ctx.link_event(link), *(i for i, _ in valid if i is not None)]
        if now - made > window:
            late = f"; only late approval(s) by {', '.join(sorted({rec.signer for _, rec in valid}))}" if valid else ""
            out.append(finding(rule, VIOLATION, f"the {what} has no second NCC approval within {dur(window)}{late}",
                                subject, events))
        else:
            out.append(finding(rule, WARNING, f"the {what} needs a second NCC approval within "
                                f"{dur(made + window - now)} (`{approve_command(link)}`)", subject, events,
                                approve_command(link)))
    for change in ctx.inp.org.protocols_log:
        if change.approver is None or change.approver == change.proposer:
            out.append(finding(rule, VIOLATION, f"security protocols version {change.version} was put in force by "
                                f"{change.proposer} without a second NCC approver", change.proposer))
    out.extend(_lone_signed(ctx, rule, approvals, window))
    out.extend(_team_admin_changes(ctx, rule, window))
    out.extend(_export_approvals(ctx, rule))
    return out


def _export_approvals(ctx: Context, rule: Rule) -> list[Finding]:
    """An export made under a request (``doc.export`` naming one) needs two distinct Security Team approvers,
    neither the requester (the chain refuses any other approval): one with fewer, or none in the chain, is
    reported. Sensitive exports without any request are the ``exports`` rule's."""
    out = []
    for idx, ev in ok_events(ctx.actions("doc.export")):
        ref = ev.res.get("request")
        if ref is None or ev.time > ctx.now:
            continue
        _, req = export_request(ctx, ev)
        n = 0 if req is None else len({a.member for a in req.approvals})
        if n < APPROVALS_NEEDED:
            out.append(finding(rule, VIOLATION, f"member {ev.actor} exported documents of team "
                                f"{ev.res.get('team', '?')} under request {ref[:16]}, which has {n} of the "
                                f"{APPROVALS_NEEDED} Security Team approvals it needs", ev.actor, [idx]))
    return out


def _admin_changes(team: TeamState, link: Link) -> list[tuple[str, str]]:
    """(member, "grant" or "removal") of the team admin role that ``link`` signs (stepping down is not one)."""
    if link.type == "team.create":
        items = link.body.raw.get("members")
        return [(str(i.get("member")), "grant") for i in (items if isinstance(items, list) else [])
                if isinstance(i, dict) and i.get("role") == "admin" and i.get("member") != link.signer]
    member = body_str(link, "member")
    before = team.snapshots.get(link.seq - 1)
    was_admin = before is not None and before.roles.get(member, ("", None))[0] == "admin"
    if link.type == "team.add" and body_str(link, "role") == "admin":
        return [(member, "grant")]
    if link.type == "team.role" and (body_str(link, "role") == "admin") != was_admin:
        return [(member, "removal" if was_admin else "grant")]
    if link.type == "team.remove" and was_admin:
        return [(member, "removal")]
    return []


def _team_admin_changes(ctx: Context, rule: Rule, window: int) -> list[Finding]:
    """Grants and removals of the admin role in teams of ``team_admin_kinds`` need a second person's signed
    ``team.approve`` (an admin of the team or NCC; the chain refuses the signer and the subject) within ``hours``."""
    kinds = rule.strs("team_admin_kinds")
    out = []
    for tid, team in ctx.inp.teams.items():
        if team.kind not in kinds:
            continue
        by_seq = {lk.seq: lk for lk in ctx.team_links(tid)}
        for link in ctx.team_links(tid):
            for subject, what in _admin_changes(team, link):
                # Not by the subject: the chain records one subject per link, none for a team.create, whose
                # co-admins could otherwise approve their own grant (review round 8).
                approvals = [a for a in team.approvals.get(link.hash, []) if a[1] not in (subject, link.signer)]
                made = ctx.appended_earliest(link)
                if any(ctx.appended_at(by_seq[seq]) - made <= window for seq, _, _ in approvals if seq in by_seq):
                    continue
                h = link.hash.hex()[:16]
                desc = (f"admin {what} of {subject} in {team.kind} team {tid} by {link.signer} (team seq {link.seq}, "
                        f"link {h})")
                command = f"mvault team approve {tid} {h}"
                if ctx.now - made > window:
                    late = f"; only late approval(s) by {', '.join(sorted({by for _, by, _ in approvals}))}" \
                        if approvals else ""
                    out.append(finding(rule, VIOLATION, f"the {desc} has no second approval within {dur(window)}"
                                        f"{late}", subject, ctx.link_event(link)))
                else:
                    out.append(finding(rule, WARNING, f"the {desc} needs a second approval (an admin of the team or "
                                        f"NCC) within {dur(made + window - ctx.now)} (`{command}`)", subject,
                                        ctx.link_event(link), command))
    return out


def _second_ncc_since(ctx: Context, signer: str, link: Link) -> int | None:
    """When a member other than ``signer`` first held ``ncc`` at or after ``link`` (None: nobody yet)."""
    found: int | None = None
    for mid, om in ctx.inp.org.members.items():
        if mid == signer:
            continue
        for entry in om.log:
            if entry.seq < link.seq or entry.status != "admitted" or "ncc" not in entry.roles:
                continue
            granting = ctx.org_by_seq.get(entry.seq)
            t = link.time if granting is None else ctx.appended_earliest(granting)
            until = entry.roles["ncc"]
            if until is None or t < until:
                found = t if found is None else min(found, t)
                break
    return found


def _appended(ctx: Context, rec: Record) -> int:
    """When the organization link of the signed record ``rec`` was appended (``Context.appended_at``)."""
    link = ctx.org_by_seq.get(rec.seq)
    return min(rec.time, ctx.now) if link is None else ctx.appended_at(link)


def _approvals(ctx: Context) -> dict[str, list[tuple[int | None, Record]]]:
    """Approvals by link hash (hex): the signed ``org.approve`` links of the replayed organization chain, with the
    audit index of each (None: not in the log read). The chain judged each (an NCC member then, neither the
    approved link's signer nor its subject), so a server cannot make one up."""
    approvals: dict[str, list[tuple[int | None, Record]]] = defaultdict(list)
    for rec in records_of(ctx.inp.org, "org.approve"):
        idx = ctx.link_event(ctx.org_by_seq.get(rec.seq))
        approvals[rec.subject].append((idx[0] if idx else None, rec))
    return approvals


def _lone_acts(ctx: Context) -> list[tuple[Link, str]]:
    """The two-person org acts in force on one signature (the chain allows that while the signer is the only NCC
    member), each with what it did: designations of the audit log's security team (``org.audit_team``) and server
    moves (``org.server``). A link of either kind missing from ``cosigned`` took effect alone."""
    org = ctx.inp.org
    acts = [(link, f"designation of team {team} as the audit log's security team")
            for seq, team in org.audit_team_log if (link := ctx.org_by_seq.get(seq)) is not None]
    acts += [(link, f"move of the server to {body_str(link, 'url')}") for link in ctx.inp.org_links
             if link.type == "org.server"]
    return sorted(((link, what) for link, what in acts if link.seq not in org.cosigned), key=lambda a: a[0].seq)


def _lone_signed(ctx: Context, rule: Rule, approvals: Mapping[str, list[tuple[int | None, Record]]],
                       window: int) -> list[Finding]:
    """Two-person org acts put in force by one signature (``_lone_acts``). Each is reported until another NCC
    member approves its link (``mvault audit approve``): a warning while there is no second NCC member, then
    within ``hours`` of there being one, a violation after."""
    now = ctx.now
    out = []
    for link, act in _lone_acts(ctx):
        signer, h = link.signer, link.hash.hex()
        valid = [(i, rec) for i, rec in approvals.get(h, []) if rec.signer != signer]
        what = f"{act} by member {signer} alone (the only NCC member then; org seq {link.seq}, link {h[:16]})"
        events = [*ctx.link_event(link), *(i for i, _ in valid if i is not None)]
        second = _second_ncc_since(ctx, signer, link)
        if second is None:
            out.append(finding(rule, WARNING, f"the {what} needs a second NCC member's approval once there is one "
                                f"(`{approve_command(link)}`)", signer, events, approve_command(link)))
            continue
        deadline = second + window
        if any(_appended(ctx, rec) <= deadline for _, rec in valid):
            continue
        if now > deadline:
            late = f"; only late approval(s) by {', '.join(sorted({rec.signer for _, rec in valid}))}" if valid else ""
            out.append(finding(rule, VIOLATION, f"the {what} has no second NCC approval within {dur(window)} of "
                                f"there being a second NCC member{late}", signer, events))
        else:
            out.append(finding(rule, WARNING, f"the {what} needs a second NCC approval within "
                                f"{dur(deadline - now)} (`{approve_command(link)}`)", signer, events,
                                approve_command(link)))
    return out


# -- pending-shares -----------------------------------------------------------------------------------


def _pending_shares(ctx: Context, rule: Rule) -> list[Finding]:
    """A member added without a key box waits at most ``hours`` for a key holder's team.share."""
    limit = rule.int_("hours") * HOUR
    out = []
    for tid, team in ctx.inp.teams.items():
        links = ctx.team_links(tid)
        for mid, by in sorted(team.pending_share.items()):
            added = adding_link(links, mid)
            t = team.members[mid].since if mid in team.members else (team.time if added is None else added.time)
            age = ctx.now - t
            events = ctx.link_event(added)
            out.append(obligation(rule, age > limit, mid, events,
                                  f"member {mid} was added to team {tid} by {by} {dur(age)} ago "
                                  f"and still has no key (limit {dur(limit)})",
                                  f"member {mid} added to team {tid} by {by} waits for a key "
                                  f"holder to share it (within {dur(limit - age)})"))
    return out


# -- circle-shape -------------------------------------------------------------------------------------------


def _circle_shape(ctx: Context, rule: Rule) -> list[Finding]:
    """Circles have ``min_members`` to ``max_members`` active members; nobody is in more than ``max_circles``."""
    lo, hi, most = rule.int_("min_members"), rule.int_("max_members"), rule.int_("max_circles")
    removed = {mid for mid, om in ctx.inp.org.members.items() if om.status == "removed"}
    circles_of: dict[str, list[str]] = defaultdict(list)
    out = []
    for tid, team in sorted(ctx.inp.teams.items()):
        if team.kind != "circle":
            continue
        members = team.active_members(ctx.now) - removed
        for mid in members:
            circles_of[mid].append(tid)
        if not lo <= len(members) <= hi:
            out.append(finding(rule, VIOLATION, f"circle {tid} has {len(members)} active members; it needs "
                                f"{lo} to {hi}", tid))
    for mid, tids in sorted(circles_of.items()):
        if len(tids) > most:
            out.append(finding(rule, VIOLATION, f"member {mid} is in {len(tids)} circles ({', '.join(tids)}); "
                                f"at most {most}", mid))
    return out


CHECKS: Final[Mapping[str, Check]] = {
    "offboarding": _offboarding,
    "rotate-on-removal": _rotate_on_removal,
    "role-terms": _role_terms,
    "need-to-know": _need_to_know,
    "admin-count": _admin_count,
    "two-person": _two_person,
    "pending-shares": _pending_shares,
    "circle-shape": _circle_shape,
}
