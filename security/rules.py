"""Evaluation of the security-protocol rules: pure functions of chain state and audit events.

``evaluate(AuditInput, Protocols)`` returns one ``RuleResult`` per rule of the protocols, in
their order. A result's status is the first that applies of: ``disabled`` (the rule is
switched off), ``violated`` (any violation), ``alert`` (any alert: suspicious counts, not a
verdict), ``warning`` (an obligation whose window is still open, or a missing attestation),
``ok``. Every parameter comes from the protocols; nothing here does I/O.

Times are unix seconds. Findings name member, team and device ids (never names) and the
audit log indices of the events behind them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from security.events import Event
from security.protocols import Protocols, Rule
from vault.chains import MemberState, OrgMember, OrgState, TeamState
from vault.keys import key_fingerprint
from vault.links import Link

MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400

VIOLATION: Final = "violation"
WARNING: Final = "warning"
ALERT: Final = "alert"

CHAIN_LINK_PREFIXES: Final = frozenset({"member", "device", "org", "team"})
KEY_CHANGE_LINKS: Final = ("device.add", "device.revoke")


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str  # "violation" | "warning" | "alert"
    message: str  # one line; names member/team/device ids
    subject: str  # the member, team or device id it is about ("" if none)
    events: tuple[int, ...] = ()  # audit log indices of the events behind it

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "level": self.level, "message": self.message, "subject": self.subject,
                "events": list(self.events)}


@dataclass(frozen=True)
class RuleResult:
    rule: str
    severity: str
    enabled: bool
    status: str  # "disabled" | "violated" | "alert" | "warning" | "ok"
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "enabled": self.enabled, "status": self.status,
                "findings": [f.to_json() for f in self.findings]}


@dataclass(frozen=True)
class AuditInput:
    now: int
    org: OrgState
    members: Mapping[str, MemberState]
    teams: Mapping[str, TeamState]
    org_links: Sequence[Link]
    team_links: Mapping[str, Sequence[Link]]  # team id -> links
    member_links: Mapping[str, Sequence[Link]]  # member id -> links
    events: Sequence[tuple[int, Event]]  # (log index, decrypted event), in log order
    log_ok: bool = True  # did the log verify against every checkpoint
    log_problem: str = ""
    last_witness: int | None = None  # time of the newest verified Security Team cosignature


def status_of(enabled: bool, findings: Iterable[Finding]) -> str:
    if not enabled:
        return "disabled"
    levels = {f.level for f in findings}
    for level, status in ((VIOLATION, "violated"), (ALERT, "alert"), (WARNING, "warning")):
        if level in levels:
            return status
    return "ok"


def evaluate(inp: AuditInput, protocols: Protocols) -> list[RuleResult]:
    """One result per rule in ``protocols.rules``, in that order."""
    ctx = _Context.build(inp)
    results: list[RuleResult] = []
    for rule_id, rule in protocols.rules.items():
        if not rule.enabled:
            results.append(RuleResult(rule_id, rule.severity, False, "disabled", ()))
            continue
        check = CHECKS.get(rule_id)
        if check is None:
            findings: tuple[Finding, ...] = (
                Finding(rule_id, WARNING, f"rule {rule_id} is not checked by this version of the vault", ""),)
        else:
            findings = tuple(check(ctx, rule))
        results.append(RuleResult(rule_id, rule.severity, True, status_of(True, findings), findings))
    return results


# -- shared lookups ---------------------------------------------------------------------------------


@dataclass
class _Context:
    inp: AuditInput
    now: int
    link_events: dict[str, int]  # hex hash of a chain link -> index of the event that recorded it
    org_by_seq: dict[int, Link]
    org_times: list[int]  # times of org links, in chain order (non-decreasing)
    org_seqs: list[int]
    by_action: dict[str, list[tuple[int, Event]]] = field(default_factory=dict)

    @classmethod
    def build(cls, inp: AuditInput) -> _Context:
        link_events: dict[str, int] = {}
        by_action: dict[str, list[tuple[int, Event]]] = defaultdict(list)
        for idx, ev in inp.events:
            by_action[ev.action].append((idx, ev))
            link = ev.res.get("link")
            if link and ev.action.split(".", 1)[0] in CHAIN_LINK_PREFIXES:
                link_events.setdefault(link, idx)
        org_links = sorted(inp.org_links, key=lambda lk: lk.seq)
        return cls(inp, inp.now, link_events, {lk.seq: lk for lk in org_links}, [lk.time for lk in org_links],
                   [lk.seq for lk in org_links], dict(by_action))

    def actions(self, action: str) -> list[tuple[int, Event]]:
        return self.by_action.get(action, [])

    def link_event(self, link: Link | None) -> tuple[int, ...]:
        if link is None:
            return ()
        idx = self.link_events.get(link.hash.hex())
        return () if idx is None else (idx,)

    def org_time(self, seq: int, default: int) -> int:
        link = self.org_by_seq.get(seq)
        return default if link is None else link.time

    def org_seq_at(self, t: int) -> int:
        """The organization chain head in force at time ``t`` (0: none yet)."""
        i = bisect.bisect_right(self.org_times, t)
        return self.org_seqs[i - 1] if i else 0

    def team_links(self, team_id: str) -> Sequence[Link]:
        return self.inp.team_links.get(team_id, ())

    def member_links(self, member_id: str) -> Sequence[Link]:
        return self.inp.member_links.get(member_id, ())

    def current_members(self) -> list[tuple[OrgMember, MemberState]]:
        """Organization members who are not removed, with their member chain state."""
        out = []
        for mid, om in self.inp.org.members.items():
            ms = self.inp.members.get(mid)
            if ms is not None and om.status != "removed" and om.removed_at is None:
                out.append((om, ms))
        return out


def _finding(rule: Rule, level: str, message: str, subject: str, events: Iterable[int] = ()) -> Finding:
    return Finding(rule.id, level, message, subject, tuple(sorted(set(events))))


def _dur(seconds: int) -> str:
    """A coarse human duration: 3d 4h, 5h 10m, 12m, 40s."""
    s = max(0, int(seconds))
    d, h, m = s // DAY, s % DAY // HOUR, s % HOUR // MINUTE
    if d:
        return f"{d}d {h}h" if h else f"{d}d"
    if h:
        return f"{h}h {m}m" if m else f"{h}h"
    if m:
        return f"{m}m"
    return f"{s}s"


def _body_str(link: Link, key: str) -> str:
    v = link.body.raw.get(key)
    return v if isinstance(v, str) else ""


def _as_int(v: int | str | None) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None


def _starts_generation(link: Link) -> bool:
    """Does this team link start a new key generation?"""
    if link.type in ("team.create", "team.rotate"):
        return True
    return link.type == "team.remove" and link.body.raw.get("key") is not None


def _sets_member(link: Link, member_id: str) -> bool:
    """Does this team link set ``member_id``'s role or term (create, add, role)?"""
    if link.type in ("team.add", "team.role"):
        return _body_str(link, "member") == member_id
    if link.type == "team.create":
        items = link.body.raw.get("members")
        return isinstance(items, list) and any(isinstance(i, dict) and i.get("member") == member_id for i in items)
    return False


def _adding_link(links: Sequence[Link], member_id: str) -> Link | None:
    """The last team.create/team.add that put ``member_id`` into the team."""
    found = None
    for link in links:
        if link.type in ("team.create", "team.add") and _sets_member(link, member_id):
            found = link
    return found


def _ok_events(events: Iterable[tuple[int, Event]]) -> list[tuple[int, Event]]:
    return [(i, e) for i, e in events if e.result == "ok"]


# -- offboarding ------------------------------------------------------------------------------------


def _offboarding(ctx: _Context, rule: Rule) -> list[Finding]:
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
                removal_events[_body_str(link, "member")] = idx_t[0]
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
            if age > limit:
                out.append(_finding(rule, VIOLATION, f"member {mid} was removed from the organization {_dur(age)} ago "
                                    f"but is still in team {tid} (limit {_dur(limit)})", mid, events))
            else:
                out.append(_finding(rule, WARNING, f"member {mid} was removed from the organization {_dur(age)} ago "
                                    f"and is still in team {tid}: remove within {_dur(limit - age)}", mid, events))
    return out


# -- rotate-on-removal --------------------------------------------------------------------------------


def _rotation_triggers(ctx: _Context, team: TeamState) -> list[tuple[int, str, tuple[int, ...]]]:
    """(time, what, events) of everything that makes the current key generation unusable."""
    now, members = ctx.now, ctx.inp.members
    links = ctx.team_links(team.team_id)
    last_gen = max((i for i, lk in enumerate(links) if _starts_generation(lk)), default=-1)
    triggers: list[tuple[int, str, tuple[int, ...]]] = []
    removed_after: set[str] = set()
    for link in links[last_gen + 1:]:
        if link.type == "team.remove":
            who = _body_str(link, "member")
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
            device = "" if revoke is None else f" {_body_str(revoke, 'device')}"
            triggers.append((since, f"{mid} revoked device{device}", ctx.link_event(revoke)))
    return triggers


def _rotate_on_removal(ctx: _Context, rule: Rule) -> list[Finding]:
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
        if age > limit:
            out.append(_finding(rule, VIOLATION, f"team {tid} still uses key generation {team.generation} "
                                f"{_dur(age)} after it had to rotate (limit {_dur(limit)}): {what}", tid, events))
        else:
            out.append(_finding(rule, WARNING, f"team {tid} must rotate key generation {team.generation} "
                                f"within {_dur(limit - age)}: {what}", tid, events))
    return out


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


def _role_terms(ctx: _Context, rule: Rule) -> list[Finding]:
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
                out.append(_finding(rule, VIOLATION, f"member {mid} holds org role {role!r} without an end date "
                                    f"(granted {_dur(now - granted)} ago; at most {_dur(max_term)})", mid, events))
            elif until - granted > max_term:
                out.append(_finding(rule, VIOLATION, f"member {mid} holds org role {role!r} for a term of "
                                    f"{_dur(until - granted)} (at most {_dur(max_term)})", mid, events))
    org = ctx.inp.org
    for mid in sorted(org.caretakers(org.seq, now)):
        until = org.members[mid].log[-1].roles.get("ncc")
        out.append(_finding(rule, VIOLATION, f"member {mid}'s NCC term ended {_dur(now - (until or now))} ago and no "
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
            setting = [lk for lk in links if _sets_member(lk, mid) and lk.time <= now]
            start = setting[-1].time if setting else tm.since
            events = ctx.link_event(setting[-1] if setting else None)
            if tm.until is None:
                out.append(_finding(rule, VIOLATION, f"member {mid} is an admin of {team.kind} team {tid} without an "
                                    f"end date (terms of {_dur(lo)} to {_dur(hi)})", mid, events))
            elif not lo <= tm.until - start <= hi:
                out.append(_finding(rule, VIOLATION, f"member {mid} is an admin of {team.kind} team {tid} for a term "
                                    f"of {_dur(tm.until - start)} (terms of {_dur(lo)} to {_dur(hi)})", mid, events))
    return out


# -- dormant-devices ----------------------------------------------------------------------------------


def _dormant_devices(ctx: _Context, rule: Rule) -> list[Finding]:
    """Active devices unseen (no successful login; else since added) for ``warn_days``/``revoke_days``."""
    warn, revoke = rule.int_("warn_days") * DAY, rule.int_("revoke_days") * DAY
    last_login: dict[tuple[str, str], tuple[int, int]] = {}  # (member, device) -> (time, index)
    for idx, ev in _ok_events(ctx.actions("auth.login")):
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
                out.append(_finding(rule, VIOLATION, f"device {d.device_id} of member {om.member_id} {how} "
                                    f"{_dur(idle)} ago: revoke it (limit {_dur(revoke)})", d.device_id, events))
            elif idle > warn:
                out.append(_finding(rule, WARNING, f"device {d.device_id} of member {om.member_id} {how} "
                                    f"{_dur(idle)} ago (revoked at {_dur(revoke)})", d.device_id, events))
    return out


# -- lost-device --------------------------------------------------------------------------------------


def _member_at(ctx: _Context, team: TeamState, member_id: str, t: int) -> bool:
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


def _lost_device(ctx: _Context, rule: Rule) -> list[Finding]:
    """A device reported lost: revoked within ``revoke_hours``, its member's teams rotated within ``rotate_hours``
    of the revocation, and nothing done by the device after the report."""
    revoke_win, rotate_win = rule.int_("revoke_hours") * HOUR, rule.int_("rotate_hours") * HOUR
    now = ctx.now
    out = []
    for rep_idx, rep in ctx.actions("attest.lost"):
        mid, did, t = rep.res.get("member", ""), rep.res.get("device", ""), rep.time
        ms = ctx.inp.members.get(mid)
        device = None if ms is None else ms.devices.get(did)
        revoked = None if device is None else device.revoked
        deadline = t + revoke_win
        revoke_link = next((lk for lk in ctx.member_links(mid)
                            if lk.type == "device.revoke" and _body_str(lk, "device") == did), None)
        rev_events = [rep_idx, *ctx.link_event(revoke_link)]
        if device is None:
            out.append(_finding(rule, VIOLATION, f"device {did} reported lost is not a device of member {mid}",
                                did, [rep_idx]))
        elif revoked is None and now > deadline:
            out.append(_finding(rule, VIOLATION, f"device {did} of member {mid} was reported lost {_dur(now - t)} ago "
                                f"and is not revoked (limit {_dur(revoke_win)})", did, rev_events))
        elif revoked is None:
            out.append(_finding(rule, WARNING, f"device {did} of member {mid} was reported lost: revoke it within "
                                f"{_dur(deadline - now)}", did, rev_events))
        elif revoked > deadline:
            out.append(_finding(rule, VIOLATION, f"device {did} of member {mid} was revoked {_dur(revoked - t)} after "
                                f"it was reported lost (limit {_dur(revoke_win)})", did, rev_events))
        if revoked is not None:
            out.extend(_lost_device_rotations(ctx, rule, mid, did, revoked, rotate_win, rev_events))
        after = [i for i, ev in ctx.inp.events
                 if ev.device == did and i != rep_idx and (ev.time > t or (ev.time == t and i > rep_idx))]
        if after:
            used = set(after)
            actions = sorted({ev.action for i, ev in ctx.inp.events if i in used})
            out.append(_finding(rule, VIOLATION, f"device {did} of member {mid} was used after it was reported lost: "
                                f"{len(after)} event(s) ({', '.join(actions)})", did, [rep_idx, *after]))
    return out


def _lost_device_rotations(ctx: _Context, rule: Rule, mid: str, did: str, revoked: int, rotate_win: int,
                           rev_events: list[int]) -> list[Finding]:
    out = []
    deadline = revoked + rotate_win
    for tid, team in ctx.inp.teams.items():
        if not _member_at(ctx, team, mid, revoked):
            continue
        changes = [lk for lk in ctx.team_links(tid) if _starts_generation(lk) and lk.time >= revoked]
        if any(lk.time <= deadline for lk in changes):
            continue
        if changes:
            late = changes[0]
            out.append(_finding(rule, VIOLATION, f"team {tid} rotated {_dur(late.time - revoked)} after lost device "
                                f"{did} of member {mid} was revoked (limit {_dur(rotate_win)})", tid,
                                [*rev_events, *ctx.link_event(late)]))
        elif ctx.now > deadline:
            out.append(_finding(rule, VIOLATION, f"team {tid} has not rotated since lost device {did} of member {mid} "
                                f"was revoked {_dur(ctx.now - revoked)} ago (limit {_dur(rotate_win)})", tid,
                                rev_events))
        else:
            out.append(_finding(rule, WARNING, f"team {tid} must rotate within {_dur(deadline - ctx.now)} (lost device "
                                f"{did} of member {mid} was revoked)", tid, rev_events))
    return out


# -- key-verification ---------------------------------------------------------------------------------


def _key_changes(ctx: _Context, member_id: str) -> list[tuple[int, Link | None]]:
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


def _fingerprint_matches(ctx: _Context, member_id: str, ev: Event) -> bool:
    """Does the attested fingerprint name the member's keys at the attestation's time?"""
    ms = ctx.inp.members.get(member_id)
    if ms is None:
        return False
    t = ev.time
    devices = [(d.device_id, d.sign_public) for d in ms.devices.values() if d.active_at(t)]
    gens = [g for g, puk in ms.puks.items() if puk.since <= t]
    if not gens:
        return False
    expected = key_fingerprint(member_id, devices, ms.puks[max(gens)].sign_public).hex()
    return ev.detail.get("fingerprint") == expected


def _key_verification(ctx: _Context, rule: Rule) -> list[Finding]:
    """Members of sensitive teams verify an admin within ``join_days`` and re-verify within ``grace_days``
    of that admin's key change."""
    kinds = rule.strs("sensitive_kinds")
    join, grace = rule.int_("join_days") * DAY, rule.int_("grace_days") * DAY
    now = ctx.now
    verified: dict[tuple[str, str], tuple[int, int]] = {}  # (verifier, verified) -> newest (time, index)
    for idx, ev in _ok_events(ctx.actions("attest.verify")):
        key = (ev.actor, ev.res.get("member", ""))
        if not _fingerprint_matches(ctx, key[1], ev):
            continue  # a verification of keys that were not the member's keys then counts for nothing
        if ev.time <= now and (key not in verified or ev.time >= verified[key][0]):
            verified[key] = (ev.time, idx)
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
                out.append(_finding(rule, VIOLATION, f"member {mid} joined {team.kind} team {tid} {_dur(now - since)} "
                                    f"ago and has not verified any of its admins ({', '.join(others)}) in person "
                                    f"(limit {_dur(join)})", mid))
            for a in done:
                tv, vidx = verified[(mid, a)]
                changes = [(tc, lk) for tc, lk in _key_changes(ctx, a) if tc > tv]
                if not changes:
                    continue
                tc, lk = min(changes, key=lambda c: c[0])
                events = [vidx, *ctx.link_event(lk)]
                if now - tc > grace:
                    out.append(_finding(rule, VIOLATION, f"member {mid} of {team.kind} team {tid} has not re-verified "
                                        f"admin {a}, whose keys changed {_dur(now - tc)} ago (grace {_dur(grace)})",
                                        mid, events))
                else:
                    out.append(_finding(rule, WARNING, f"member {mid} of {team.kind} team {tid} must re-verify admin "
                                        f"{a} within {_dur(grace - (now - tc))} (keys changed)", mid, events))
    return out


# -- need-to-know -------------------------------------------------------------------------------------


def _admitted_at(ctx: _Context, om: OrgMember) -> int | None:
    entry = next((e for e in om.log if e.status == "admitted"), None)
    return None if entry is None else ctx.org_time(entry.seq, om.since)


def _need_to_know(ctx: _Context, rule: Rule) -> list[Finding]:
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
            events = ctx.link_event(_adding_link(links, mid))
            if "compa" in ctx.inp.org.roles_of(mid, now):
                out.append(_finding(rule, VIOLATION, f"compa {mid} is a member of {team.kind} team {tid}", mid,
                                    events))
                continue
            admitted = _admitted_at(ctx, om)
            if om.invited_by is None or admitted is None:
                continue
            if now - admitted < probation:
                out.append(_finding(rule, VIOLATION, f"member {mid} is in {team.kind} team {tid} while on probation "
                                    f"(admitted {_dur(now - admitted)} ago; probation {_dur(probation)})", mid,
                                    events))
    return out


# -- admin-count --------------------------------------------------------------------------------------


def _admin_count(ctx: _Context, rule: Rule) -> list[Finding]:
    lo, hi = rule.int_("min"), rule.int_("max")
    out = []
    for tid, team in ctx.inp.teams.items():
        n = len(team.admins(ctx.now))
        if n < lo or n > hi:
            out.append(_finding(rule, VIOLATION, f"team {tid} ({team.kind}) has {n} active admin(s); "
                                f"it needs {lo} to {hi}", tid))
    return out


# -- two-person ---------------------------------------------------------------------------------------


def _two_person(ctx: _Context, rule: Rule) -> list[Finding]:
    """Grants and revocations of ``roles`` need an approval by another NCC member (not the signer, not the subject)
    within ``hours``; protocol changes need an approver other than the proposer; a designation of the audit
    log's security team signed by a lone NCC member needs another NCC member's approval once there is one."""
    roles = rule.strs("roles")
    window = rule.int_("hours") * HOUR
    now = ctx.now
    approvals: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for idx, ev in _ok_events(ctx.actions("attest.approve")):
        approvals[ev.res.get("link", "")].append((idx, ev))
    out = []
    cosigned = ctx.inp.org.cosigned
    for link in ctx.inp.org_links:
        if link.seq in cosigned:
            continue  # two NCC signatures in the chain itself: a proposal (in force only once approved) or its approval
        if link.type == "org.remove":
            # Removing a member who held a guarded role ends that role: it needs the same approval.
            subject = _body_str(link, "member")
            held = sorted(set(roles) & ctx.inp.org.roles_of(subject, link.time, link.seq - 1))
            if not held:
                continue
            role, grant = held[0], False
        elif link.type != "org.role" or _body_str(link, "role") not in roles:
            continue
        else:
            subject, role = _body_str(link, "member"), _body_str(link, "role")
            grant = link.body.raw.get("grant") is True
        valid = [(i, ev) for i, ev in approvals.get(link.hash.hex(), [])
                 if ev.actor not in (link.signer, subject)
                 and "ncc" in ctx.inp.org.roles_of(ev.actor, ev.time, ctx.org_seq_at(ev.time))]
        in_time = [i for i, ev in valid if abs(ev.time - link.time) <= window]
        if in_time:
            continue
        what = f"{'grant' if grant else 'revocation'} of {role!r} to {subject} by {link.signer} (org seq {link.seq})"
        events = [*ctx.link_event(link), *(i for i, _ in valid)]
        if now - link.time > window:
            late = f"; only late approval(s) by {', '.join(sorted({ev.actor for _, ev in valid}))}" if valid else ""
            out.append(_finding(rule, VIOLATION, f"the {what} has no second NCC approval within {_dur(window)}{late}",
                                subject, events))
        else:
            out.append(_finding(rule, WARNING, f"the {what} needs a second NCC approval within "
                                f"{_dur(link.time + window - now)}", subject, events))
    for change in ctx.inp.org.protocols_log:
        if change.approver is None or change.approver == change.proposer:
            out.append(_finding(rule, VIOLATION, f"security protocols version {change.version} was put in force by "
                                f"{change.proposer} without a second NCC approver", change.proposer))
    out.extend(_lone_designations(ctx, rule, approvals, window))
    return out


def _second_ncc_since(ctx: _Context, signer: str, link: Link) -> int | None:
    """When a member other than ``signer`` first held ``ncc`` at or after ``link`` (None: nobody yet)."""
    found: int | None = None
    for mid, om in ctx.inp.org.members.items():
        if mid == signer:
            continue
        for entry in om.log:
            if entry.seq < link.seq or entry.status != "admitted" or "ncc" not in entry.roles:
                continue
            t = ctx.org_time(entry.seq, link.time)
            until = entry.roles["ncc"]
            if until is None or t < until:
                found = t if found is None else min(found, t)
                break
    return found


def _lone_designations(ctx: _Context, rule: Rule, approvals: Mapping[str, list[tuple[int, Event]]],
                       window: int) -> list[Finding]:
    """Designations of the audit log's security team (``org.audit_team``) put in force by one signature: the
    chain allows that while the signer is the only NCC member. Each is reported until another NCC member
    approves its link (``mvault audit approve``): a warning while there is no second NCC member, then within
    ``hours`` of there being one, a violation after."""
    org, now = ctx.inp.org, ctx.now
    out = []
    for seq, team in org.audit_team_log:
        link = ctx.org_by_seq.get(seq)
        if seq in org.cosigned or link is None:
            continue  # two signatures in the chain
        signer, h = link.signer, link.hash.hex()
        valid = [(i, ev) for i, ev in approvals.get(h, [])
                 if ev.actor != signer and "ncc" in org.roles_of(ev.actor, ev.time, ctx.org_seq_at(ev.time))]
        what = (f"designation of team {team} as the audit log's security team by member {signer} alone (the only "
                f"NCC member then; org seq {seq}, link {h[:16]})")
        events = [*ctx.link_event(link), *(i for i, _ in valid)]
        second = _second_ncc_since(ctx, signer, link)
        if second is None:
            out.append(_finding(rule, WARNING, f"the {what} needs a second NCC member's approval once there is one "
                                f"(`mvault audit approve {h[:16]}`)", signer, events))
            continue
        deadline = second + window
        if any(ev.time <= deadline for _, ev in valid):
            continue
        if now > deadline:
            late = f"; only late approval(s) by {', '.join(sorted({ev.actor for _, ev in valid}))}" if valid else ""
            out.append(_finding(rule, VIOLATION, f"the {what} has no second NCC approval within {_dur(window)} of "
                                f"there being a second NCC member{late}", signer, events))
        else:
            out.append(_finding(rule, WARNING, f"the {what} needs a second NCC approval within "
                                f"{_dur(deadline - now)} (`mvault audit approve {h[:16]}`)", signer, events))
    return out


# -- bulk-access --------------------------------------------------------------------------------------


def _densest(items: list[tuple[int, int]], width: int) -> list[int]:
    """The indices of the most events (time, index) within any window of ``width`` seconds."""
    items = sorted(items)
    best: tuple[int, int] = (0, 0)
    i = 0
    for j in range(len(items)):
        while items[j][0] - items[i][0] >= width:
            i += 1
        if j + 1 - i > best[1] - best[0]:
            best = (i, j + 1)
    return [idx for _, idx in items[best[0]:best[1]]]


def _bulk_access(ctx: _Context, rule: Rule) -> list[Finding]:
    """Alerts: more than ``max_reads`` reads within ``window_minutes``; more than ``max_denied`` refusals within
    ``denied_days``, per actor."""
    max_reads, width = rule.int_("max_reads"), rule.int_("window_minutes") * MINUTE
    max_denied, days = rule.int_("max_denied"), rule.int_("denied_days")
    reads: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for idx, ev in _ok_events(ctx.actions("doc.read")):
        reads[ev.actor].append((ev.time, idx))
    denied: dict[str, list[int]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    since = ctx.now - days * DAY
    for idx, ev in ctx.inp.events:
        if ev.result == "denied" and ev.actor and since < ev.time <= ctx.now:
            # A member's refusals beyond the first few of a minute are counted in one request.refusals event.
            n = (_as_int(ev.detail.get("denied")) or 0) if ev.action == "request.refusals" else 1
            if n > 0:
                denied[ev.actor].append(idx)
                counts[ev.actor] += n
    out = []
    for actor in sorted(reads):
        window = _densest(reads[actor], width)
        if len(window) > max_reads:
            in_window = set(window)
            teams = sorted({e.res.get("team", "") for i, e in ctx.inp.events if i in in_window} - {""})
            out.append(_finding(rule, ALERT, f"member {actor} read {len(window)} documents within "
                                f"{_dur(width)} (more than {max_reads}; teams {', '.join(teams) or '-'})",
                                actor, window))
    for actor in sorted(denied):
        if counts[actor] > max_denied:
            out.append(_finding(rule, ALERT, f"member {actor} was refused access {counts[actor]} times in the "
                                f"last {days}d (more than {max_denied})", actor, denied[actor]))
    return out


# -- log-integrity ------------------------------------------------------------------------------------


def _log_integrity(ctx: _Context, rule: Rule) -> list[Finding]:
    window = rule.int_("witness_hours") * HOUR
    out = []
    if not ctx.inp.log_ok:
        out.append(_finding(rule, VIOLATION, "the audit log does not verify against an accepted checkpoint: "
                            f"{ctx.inp.log_problem or 'unknown problem'}", ""))
    cosigns = [i for i, _ in ctx.actions("audit.cosign")][-1:]
    if ctx.inp.last_witness is None:
        out.append(_finding(rule, VIOLATION, "the audit log has never been cosigned by the Security Team", ""))
    elif ctx.now - ctx.inp.last_witness > window:
        out.append(_finding(rule, VIOLATION, f"the audit log was last cosigned by the Security Team "
                            f"{_dur(ctx.now - ctx.inp.last_witness)} ago (at least every {_dur(window)})", "",
                            cosigns))
    return out


# -- failed-logins ------------------------------------------------------------------------------------


def _failed_logins(ctx: _Context, rule: Rule) -> list[Finding]:
    """Alerts: a device named in more than ``max_failures`` failed logins within ``window_minutes`` (someone
    who knows its ids is trying; the server throttles the sources, it never locks a device); source addresses
    the server throttled. Violations: device lockouts (``auth.lockout``, only in logs of older servers).

    Failed logins are ``auth.fail`` events (the key holder was refused, e.g. a revoked device) and the
    ``d:<device>`` counts of ``request.summary`` events (unauthenticated failures, counted per minute) and of
    ``request.refusals`` events (a member's refusals beyond the first few of a minute, ``auth.fail`` among them)."""
    max_failures, width = rule.int_("max_failures"), rule.int_("window_minutes") * MINUTE
    lock = rule.int_("lock_minutes") * MINUTE
    out = []
    for idx, ev in ctx.actions("auth.lockout"):
        until = _as_int(ev.detail.get("until"))
        until = ev.time + lock if until is None else until
        out.append(_finding(rule, VIOLATION, f"device {ev.device} of member {ev.actor or '?'} was locked out after "
                            f"repeated failed logins (for {_dur(until - ev.time)})", ev.device, [idx]))
    fails: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # device -> (time, count, event index)
    for idx, ev in ctx.actions("auth.fail"):
        if ev.detail.get("error") != "locked":  # refused while locked (older servers): not a guess
            fails[ev.device].append((ev.time, 1, idx))
    summaries = sorted([*ctx.actions("request.summary"), *ctx.actions("request.refusals")], key=lambda x: x[0])
    for idx, ev in summaries:
        start = _as_int(ev.detail.get("from"))
        t = ev.time if start is None else start
        for key, value in ev.detail.items():
            n = _as_int(value)
            if key.startswith("d:") and key != "d:other" and n:
                fails[key[2:]].append((t, n, idx))
        blocked = _as_int(ev.detail.get("blocked_sources")) or 0
        if blocked:
            out.append(_finding(rule, ALERT, f"{blocked} source address(es) failed more than {max_failures} logins "
                                f"within {_dur(width)} and were throttled (minute from {t})", "", [idx]))
    owner = {d.device_id: mid for mid, ms in ctx.inp.members.items() for d in ms.devices.values()}
    for device in sorted(fails):
        items = sorted(fails[device])
        i, total = 0, 0
        for j in range(len(items)):
            total += items[j][1]
            while items[j][0] - items[i][0] >= width:
                total -= items[i][1]
                i += 1
            if total > max_failures:
                window = [idx for _, _, idx in items[i:j + 1]]
                out.append(_finding(rule, ALERT, f"device {device} of member {owner.get(device, '?')} was named in "
                                    f"{total} failed logins within {_dur(width)} (more than {max_failures}); the "
                                    "sources are throttled, the device is not locked", device, window))
                break
    return out


# -- pending-shares -----------------------------------------------------------------------------------


def _pending_shares(ctx: _Context, rule: Rule) -> list[Finding]:
    """A member added without a key box waits at most ``hours`` for a key holder's team.share."""
    limit = rule.int_("hours") * HOUR
    out = []
    for tid, team in ctx.inp.teams.items():
        links = ctx.team_links(tid)
        for mid, by in sorted(team.pending_share.items()):
            added = _adding_link(links, mid)
            t = team.members[mid].since if mid in team.members else (team.time if added is None else added.time)
            age = ctx.now - t
            events = ctx.link_event(added)
            if age > limit:
                out.append(_finding(rule, VIOLATION, f"member {mid} was added to team {tid} by {by} {_dur(age)} ago "
                                    f"and still has no key (limit {_dur(limit)})", mid, events))
            else:
                out.append(_finding(rule, WARNING, f"member {mid} added to team {tid} by {by} waits for a key "
                                    f"holder to share it (within {_dur(limit - age)})", mid, events))
    return out


# -- keystore-kdf -------------------------------------------------------------------------------------


def _keystore_kdf(ctx: _Context, rule: Rule) -> list[Finding]:
    """The newest keystore attestation of every active device meets the minimum Argon2id parameters."""
    minimum = {"time_cost": rule.int_("min_time_cost"), "memory_kib": rule.int_("min_memory_kib"),
               "parallelism": rule.int_("min_parallelism")}
    newest: dict[tuple[str, str], tuple[int, int, Event]] = {}
    for idx, ev in _ok_events(ctx.actions("attest.keystore")):
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
                out.append(_finding(rule, WARNING, f"device {d.device_id} of member {om.member_id} has not attested "
                                    "its keystore parameters", d.device_id))
                continue
            _, idx, ev = found
            low = []
            for param, least in minimum.items():
                value = _as_int(ev.detail.get(param))
                if value is None or value < least:
                    low.append(f"{param} {ev.detail.get(param, 'missing')} < {least}")
            if low:
                out.append(_finding(rule, VIOLATION, f"device {d.device_id} of member {om.member_id} protects its "
                                    f"keys with weak keystore parameters: {', '.join(low)}", d.device_id, [idx]))
    return out


# -- circle-shape -------------------------------------------------------------------------------------------


def _circle_shape(ctx: _Context, rule: Rule) -> list[Finding]:
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
            out.append(_finding(rule, VIOLATION, f"circle {tid} has {len(members)} active members; it needs "
                                f"{lo} to {hi}", tid))
    for mid, tids in sorted(circles_of.items()):
        if len(tids) > most:
            out.append(_finding(rule, VIOLATION, f"member {mid} is in {len(tids)} circles ({', '.join(tids)}); "
                                f"at most {most}", mid))
    return out


# -- retention and small-threads (team threads) ---------------------------------------------------------


def _threads(ctx: _Context) -> dict[str, tuple[int, Event]]:
    """Every thread the log saw created: thread id -> (event index, thread.create event)."""
    return {ev.res["thread"]: (idx, ev) for idx, ev in _ok_events(ctx.actions("thread.create"))
            if ev.res.get("thread") and ev.res.get("team") in ctx.inp.teams}


def _retention(ctx: _Context, rule: Rule) -> list[Finding]:
    """Threads keep messages no longer than their team's class allows, and never forever. The
    finding names the thread's creator, who chose its expiry (a writer who took a likely name first
    with "keep" is named here; a shorter expiry than a team expects is within the protocol)."""
    limits = {k: rule.int_("sensitive_max_days") * DAY for k in rule.strs("sensitive_kinds")}
    for k in rule.strs("internal_kinds"):
        limits.setdefault(k, rule.int_("internal_max_days") * DAY)
    out = []
    for tid, (idx, ev) in _threads(ctx).items():
        team = ctx.inp.teams[ev.res["team"]]
        limit = limits.get(team.kind)
        expire = _as_int(ev.detail.get("expire"))
        if limit is None or expire is None:
            continue
        if expire == 0 or expire > limit:
            kept = "forever" if expire == 0 else f"for {_dur(expire)}"
            out.append(_finding(rule, VIOLATION, f"thread {tid} of {team.kind} team {team.team_id}, created by "
                                f"member {ev.actor or '?'}, keeps messages {kept}; at most {_dur(limit)} is "
                                "allowed", tid, [idx]))
    return out


def _small_threads(ctx: _Context, rule: Rule) -> list[Finding]:
    """Sensitive threads are read by few members; idle threads are flagged for closing."""
    kinds, most, idle = set(rule.strs("sensitive_kinds")), rule.int_("max_members"), rule.int_("idle_days") * DAY
    last: dict[str, tuple[int, int]] = {}
    for idx, ev in _ok_events(ctx.actions("msg.post")):
        tid = ev.res.get("thread", "")
        if tid and (tid not in last or ev.time >= last[tid][0]):
            last[tid] = (ev.time, idx)
    out = []
    for tid, (idx, ev) in _threads(ctx).items():
        team = ctx.inp.teams[ev.res["team"]]
        readers = len(team.active_members(ctx.now))
        if team.kind in kinds and readers > most:
            out.append(_finding(rule, VIOLATION, f"thread {tid} of {team.kind} team {team.team_id} is read by "
                                f"{readers} members; at most {most}", tid, [idx]))
        t, at = last.get(tid, (ev.time, idx))
        if ctx.now - t > idle:
            out.append(_finding(rule, WARNING, f"thread {tid} of team {team.team_id} has been idle for "
                                f"{_dur(ctx.now - t)}; close it (more than {_dur(idle)})", tid, [at]))
    return out


CHECKS: Final[Mapping[str, Callable[[_Context, Rule], list[Finding]]]] = {
    "offboarding": _offboarding,
    "rotate-on-removal": _rotate_on_removal,
    "role-terms": _role_terms,
    "dormant-devices": _dormant_devices,
    "lost-device": _lost_device,
    "key-verification": _key_verification,
    "need-to-know": _need_to_know,
    "admin-count": _admin_count,
    "two-person": _two_person,
    "bulk-access": _bulk_access,
    "log-integrity": _log_integrity,
    "failed-logins": _failed_logins,
    "pending-shares": _pending_shares,
    "keystore-kdf": _keystore_kdf,
    "circle-shape": _circle_shape,
    "retention": _retention,
    "small-threads": _small_threads,
}
