"""Device and key rules: dormant-devices, lost-device, key-verification and keystore-kdf."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Final

from security.events import Event
from security.protocols import Rule
from security.rules.base import (
    DAY,
    HOUR,
    KEY_CHANGE_LINKS,
    VIOLATION,
    WARNING,
    Check,
    Context,
    Finding,
    as_int,
    body_str,
    dur,
    finding,
    obligation,
    ok_events,
    revoke_command,
    rotate_command,
    starts_generation,
)
from vault.chains import Record, TeamState, records_of
from vault.keys import key_fingerprint
from vault.links import Link

# -- dormant-devices ----------------------------------------------------------------------------------


def _dormant_devices(ctx: Context, rule: Rule) -> list[Finding]:
    """Active devices unseen (no successful login; else since added) for ``warn_days``/``revoke_days``."""
    warn, revoke = rule.int_("warn_days") * DAY, rule.int_("revoke_days") * DAY
    last_login: dict[tuple[str, str], tuple[int, int]] = {}  # (member, device) -> (time, index)
    for idx, ev in ok_events(ctx.actions("auth.login")):
        key = (ev.actor, ev.device)
        if key not in last_login or ev.time >= last_login[key][0]:
            last_login[key] = (ev.time, idx)
    out = []
    for om, ms in ctx.current_members():
        for d in ms.active_devices():
            if d.kind != "device":
                continue
            seen, idx = last_login.get((om.member_id, d.device_id), (d.added, -1))
            events = [idx] if idx >= 0 else []
            how = "last login" if idx >= 0 else "added, never logged in,"
            idle = ctx.now - seen
            if idle > revoke:
                out.append(finding(rule, VIOLATION, f"device {d.device_id} of member {om.member_id} {how} "
                                    f"{dur(idle)} ago: revoke it (limit {dur(revoke)})", d.device_id, events,
                                    revoke_command(d.device_id)))
            elif idle > warn:
                out.append(finding(rule, WARNING, f"device {d.device_id} of member {om.member_id} {how} "
                                    f"{dur(idle)} ago (revoked at {dur(revoke)})", d.device_id, events))
    return out


# -- lost-device --------------------------------------------------------------------------------------


def _member_at(ctx: Context, team: TeamState, member_id: str, t: int) -> bool:
    """Was ``member_id`` an active member of ``team`` at time ``t`` (by the team's snapshots)?"""
    links = ctx.team_links(team.team_id)
    if not links:
        return member_id in team.active_members(t)
    seq = max((lk.seq for lk in links if lk.time <= t), default=0)
    snap = team.snapshots.get(seq)
    if snap is None or member_id not in snap.roles:
        return False
    until = snap.roles[member_id][1]
    return until is None or t < until


def _lost_device(ctx: Context, rule: Rule) -> list[Finding]:
    """A device reported lost: revoked (by its member, or cut off by the Security Team: ``org.device.cut``) within
    ``revoke_hours``, its member's teams rotated within ``rotate_hours`` of that, and nothing done by the device
    after the report; a member paused by a cut and not cleared yet is a warning (the pause waits for the Security
    Team's ``mvault incident clear``)."""
    revoke_win, rotate_win = rule.int_("revoke_hours") * HOUR, rule.int_("rotate_hours") * HOUR
    now = ctx.now
    out = [_paused(rule, p.member, p.since, p.seq, ctx) for p in ctx.inp.org.incidents.pauses if p.cleared_at is None]
    for rep_idx, rep in ctx.actions("attest.lost"):
        mid, did, t = rep.res.get("member", ""), rep.res.get("device", ""), rep.time
        ms = ctx.inp.members.get(mid)
        device = None if ms is None else ms.devices.get(did)
        cut = ctx.inp.org.incidents.cut_of(mid, did)
        revoked = _earliest(None if device is None else device.revoked, None if cut is None else cut.time)
        deadline = t + revoke_win
        revoke_link = next((lk for lk in ctx.member_links(mid)
                            if lk.type == "device.revoke" and body_str(lk, "device") == did), None)
        if cut is not None and revoked == cut.time:
            revoke_link = ctx.org_by_seq.get(cut.seq)
        rev_events = [rep_idx, *ctx.link_event(revoke_link)]
        if device is None:
            out.append(finding(rule, VIOLATION, f"device {did} reported lost is not a device of member {mid}",
                                did, [rep_idx]))
        elif revoked is None and now > deadline:
            out.append(finding(rule, VIOLATION, f"device {did} of member {mid} was reported lost {dur(now - t)} ago "
                                f"and is not revoked (limit {dur(revoke_win)})", did, rev_events, revoke_command(did)))
        elif revoked is None:
            out.append(finding(rule, WARNING, f"device {did} of member {mid} was reported lost: revoke it within "
                                f"{dur(deadline - now)}", did, rev_events, revoke_command(did)))
        elif revoked > deadline:
            out.append(finding(rule, VIOLATION, f"device {did} of member {mid} was revoked {dur(revoked - t)} after "
                                f"it was reported lost (limit {dur(revoke_win)})", did, rev_events))
        if revoked is not None:
            out.extend(_lost_device_rotations(ctx, rule, mid, did, revoked, rotate_win, rev_events))
        after = [i for i, ev in ctx.inp.events
                 if ev.device == did and i != rep_idx and (ev.time > t or (ev.time == t and i > rep_idx))]
        if after:
            used = set(after)
            actions = sorted({ev.action for i, ev in ctx.inp.events if i in used})
            out.append(finding(rule, VIOLATION, f"device {did} of member {mid} was used after it was reported lost: "
                                f"{len(after)} event(s) ({', '.join(actions)})", did, [rep_idx, *after]))
    return out


def _earliest(*times: int | None) -> int | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _paused(rule: Rule, member: str, since: int, seq: int, ctx: Context) -> Finding:
    day = datetime.datetime.fromtimestamp(since, datetime.UTC).strftime("%Y-%m-%d")
    return finding(rule, WARNING, f"member {member} paused since {day} ({dur(ctx.now - since)} ago): their "
                   "sensitive memberships refuse new content until the Security Team clears them "
                   "(`mvault incident clear`)", member, ctx.link_event(ctx.org_by_seq.get(seq)))


def _lost_device_rotations(ctx: Context, rule: Rule, mid: str, did: str, revoked: int, rotate_win: int,
                           rev_events: list[int]) -> list[Finding]:
    out = []
    deadline = revoked + rotate_win
    for tid, team in ctx.inp.teams.items():
        if not _member_at(ctx, team, mid, revoked):
            continue
        changes = [lk for lk in ctx.team_links(tid) if starts_generation(lk) and lk.time >= revoked]
        if any(lk.time <= deadline for lk in changes):
            continue
        if changes:
            late = changes[0]
            out.append(finding(rule, VIOLATION, f"team {tid} rotated {dur(late.time - revoked)} after lost device "
                                f"{did} of member {mid} was revoked (limit {dur(rotate_win)})", tid,
                                [*rev_events, *ctx.link_event(late)]))
        elif ctx.now > deadline:
            out.append(finding(rule, VIOLATION, f"team {tid} has not rotated since lost device {did} of member {mid} "
                                f"was revoked {dur(ctx.now - revoked)} ago (limit {dur(rotate_win)})", tid,
                                rev_events, rotate_command(tid)))
        else:
            out.append(finding(rule, WARNING, f"team {tid} must rotate within {dur(deadline - ctx.now)} (lost device "
                                f"{did} of member {mid} was revoked)", tid, rev_events, rotate_command(tid)))
    return out


# -- key-verification ---------------------------------------------------------------------------------


def _key_changes(ctx: Context, member_id: str) -> list[tuple[int, Link | None]]:
    links = ctx.member_links(member_id)
    if links:
        return [(lk.time, lk) for lk in links if lk.type in KEY_CHANGE_LINKS]
    ms = ctx.inp.members.get(member_id)
    if ms is None:
        return []
    created = ms.puks[min(ms.puks)].since
    times = {d.added for d in ms.devices.values() if d.added != created}
    times |= {d.revoked for d in ms.devices.values() if d.revoked is not None}
    return [(t, None) for t in sorted(times)]


def _fingerprint_matches(ctx: Context, member_id: str, rec: Record) -> bool:
    """Does the verified fingerprint name the member's keys at the verification's time?"""
    ms = ctx.inp.members.get(member_id)
    if ms is None:
        return False
    t = rec.time
    devices = [(d.device_id, d.sign_public) for d in ms.devices.values() if d.active_at(t)]
    gens = [g for g, puk in ms.puks.items() if puk.since <= t]
    if not gens:
        return False
    expected = key_fingerprint(member_id, devices, ms.puks[max(gens)].sign_public).hex()
    return rec.detail == expected


def _key_verification(ctx: Context, rule: Rule) -> list[Finding]:
    """Members of sensitive teams verify an admin within ``join_days`` and re-verify within ``grace_days``
    of that admin's key change."""
    kinds = rule.strs("sensitive_kinds")
    join, grace = rule.int_("join_days") * DAY, rule.int_("grace_days") * DAY
    now = ctx.now
    # (verifier, verified) -> newest (time, audit index or None): signed org.verify links, replayed with the chain
    verified: dict[tuple[str, str], tuple[int, int | None]] = {}
    for rec in records_of(ctx.inp.org, "org.verify"):
        key = (rec.signer, rec.subject)
        if not _fingerprint_matches(ctx, key[1], rec):
            continue  # a verification of keys that were not the member's keys then counts for nothing
        if rec.time <= now and (key not in verified or rec.time >= verified[key][0]):
            idx = ctx.link_event(ctx.org_by_seq.get(rec.seq))
            verified[key] = (rec.time, idx[0] if idx else None)
    out = []
    for tid, team in ctx.inp.teams.items():
        if team.kind not in kinds:
            continue
        admins = team.admins(now)
        for mid in sorted(team.active_members(now)):
            others = sorted(admins - {mid})
            if not others:
                continue
            since = team.members[mid].since
            done = [a for a in others if (mid, a) in verified]
            if not done and now - since > join:
                out.append(finding(rule, VIOLATION, f"member {mid} joined {team.kind} team {tid} {dur(now - since)} "
                                    f"ago and has not verified any of its admins ({', '.join(others)}) in person "
                                    f"(limit {dur(join)})", mid, (), f"mvault verify {others[0]}"))
            for a in done:
                tv, vidx = verified[(mid, a)]
                changes = [(tc, lk) for tc, lk in _key_changes(ctx, a) if tc > tv]
                if not changes:
                    continue
                tc, lk = min(changes, key=lambda c: c[0])
                events = [*([] if vidx is None else [vidx]), *ctx.link_event(lk)]
                out.append(obligation(rule, now - tc > grace, mid, events,
                                      f"member {mid} of {team.kind} team {tid} has not re-verified "
                                      f"admin {a}, whose keys changed {dur(now - tc)} ago (grace {dur(grace)})",
                                      f"member {mid} of {team.kind} team {tid} must re-verify admin "
                                      f"{a} within {dur(grace - (now - tc))} (keys changed)", f"mvault verify {a}"))
    return out


# -- keystore-kdf -------------------------------------------------------------------------------------


def _keystore_kdf(ctx: Context, rule: Rule) -> list[Finding]:
    """The newest keystore attestation of every active device meets the minimum Argon2id parameters."""
    minimum = {"time_cost": rule.int_("min_time_cost"), "memory_kib": rule.int_("min_memory_kib"),
               "parallelism": rule.int_("min_parallelism")}
    newest: dict[tuple[str, str], tuple[int, int, Event]] = {}
    for idx, ev in ok_events(ctx.actions("attest.keystore")):
        key = (ev.actor, ev.device)
        if key not in newest or ev.time >= newest[key][0]:
            newest[key] = (ev.time, idx, ev)
    out = []
    for om, ms in ctx.current_members():
        for d in ms.active_devices():
            if d.kind != "device":
                continue
            found = newest.get((om.member_id, d.device_id))
            if found is None:
                out.append(finding(rule, WARNING, f"device {d.device_id} of member {om.member_id} has not attested "
                                    "its keystore parameters", d.device_id))
                continue
            _, idx, ev = found
            low = []
            for param, least in minimum.items():
                value = as_int(ev.detail.get(param))
                if value is None or value < least:
                    low.append(f"{param} {ev.detail.get(param, 'missing')} < {least}")
            if low:
                out.append(finding(rule, VIOLATION, f"device {d.device_id} of member {om.member_id} protects its "
                                    f"keys with weak keystore parameters: {', '.join(low)}", d.device_id, [idx]))
    return out


CHECKS: Final[Mapping[str, Check]] = {
    "dormant-devices": _dormant_devices,
    "lost-device": _lost_device,
    "key-verification": _key_verification,
    "keystore-kdf": _keystore_kdf,
}
