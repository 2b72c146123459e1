"""Activity rules over the audit events: bulk-access, log-integrity, failed-logins, retention and
small-threads."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Final

from security.events import Event
from security.protocols import Rule
from security.rules.base import (
    ALERT,
    DAY,
    HOUR,
    MINUTE,
    VIOLATION,
    WARNING,
    Check,
    Context,
    Finding,
    as_int,
    dur,
    finding,
    ok_events,
)
from security.rules.bulk import bulk_beyond_bursts
from security.rules.coalition import coalition_reads

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


def _bulk_access(ctx: Context, rule: Rule) -> list[Finding]:
    """Alerts: more than ``max_reads`` reads within ``window_minutes``; more than ``max_denied`` refusals within
    ``denied_days``, per actor; reads outside one's own teams and bulk access while a departure is pending
    (``security.rules.bulk``)."""
    max_reads, width = rule.int_("max_reads"), rule.int_("window_minutes") * MINUTE
    max_denied, days = rule.int_("max_denied"), rule.int_("denied_days")
    reads: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for idx, ev in ok_events(ctx.actions("doc.read")):
        reads[ev.actor].append((ev.time, idx))
    for t, idx, member in coalition_reads(ctx):  # reads in coalition spaces, as this organization's members recorded
        reads[member].append((t, idx))
    denied: dict[str, list[int]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    since = ctx.now - days * DAY
    for idx, ev in ctx.inp.events:
        if ev.result == "denied" and ev.actor and since < ev.time <= ctx.now:
            # A member's refusals beyond the first few of a minute are counted in one request.refusals event.
            n = (as_int(ev.detail.get("denied")) or 0) if ev.action == "request.refusals" else 1
            if n > 0:
                denied[ev.actor].append(idx)
                counts[ev.actor] += n
    out = []
    for actor in sorted(reads):
        window = _densest(reads[actor], width)
        if len(window) > max_reads:
            in_window = set(window)
            teams = sorted({e.res.get("team", "") for i, e in ctx.inp.events if i in in_window} - {""})
            out.append(finding(rule, ALERT, f"member {actor} read {len(window)} documents within "
                                f"{dur(width)} (more than {max_reads}; teams {', '.join(teams) or '-'})",
                                actor, window))
    for actor in sorted(denied):
        if counts[actor] > max_denied:
            out.append(finding(rule, ALERT, f"member {actor} was refused access {counts[actor]} times in the "
                                f"last {days}d (more than {max_denied})", actor, denied[actor]))
    return out + bulk_beyond_bursts(ctx, rule, _densest)


# -- log-integrity ------------------------------------------------------------------------------------


WITNESS: Final = "mvault audit witness"  # the Security Team verifies the log and cosigns its checkpoint


def _log_integrity(ctx: Context, rule: Rule) -> list[Finding]:
    """Violations: the log does not verify; neither the Security Team nor an outside witness the protocols list
    (``witness_keys``, a C2SP cosignature/v1) cosigned it within ``witness_hours``; a chain link the log should
    hold has no append event although a later link of its chain has one (``Context.unlogged``: the server failed
    to log it; the rules judge its windows by the log's later clock, never by its signer's date)."""
    window = rule.int_("witness_hours") * HOUR
    out = []
    if not ctx.inp.log_ok:
        out.append(finding(rule, VIOLATION, "the audit log does not verify against an accepted checkpoint: "
                            f"{ctx.inp.log_problem or 'unknown problem'}", ""))
    cosigns = [i for i, _ in ctx.actions("audit.cosign")][-1:]
    times = [t for t in (ctx.inp.last_witness, ctx.inp.last_outside_witness) if t is not None]
    if not times:
        out.append(finding(rule, VIOLATION, "the audit log has never been cosigned by the Security Team or a "
                            "listed witness", "", next_command=WITNESS))
    elif ctx.now - max(times) > window:
        out.append(finding(rule, VIOLATION, f"the audit log was last cosigned by the Security Team or a listed "
                            f"witness {dur(ctx.now - max(times))} ago (at least every {dur(window)})", "",
                            cosigns, WITNESS))
    for u in ctx.unlogged.values():
        if not u.certain:
            continue  # the last links of its chain: perhaps appended after the checkpoint the log was read to
        link = u.link
        org_chain = link.chain == ctx.inp.org.org_id
        where = ("the organization chain" if org_chain else
                 f"team {link.chain}" if link.chain in ctx.inp.teams else f"the member chain of {link.chain}")
        out.append(finding(rule, VIOLATION, f"link {link.seq} of {where} ({link.type}, signed by {link.signer}) "
                            "has no append event in the audit log: the server failed to log it",
                            "" if org_chain else link.chain or ""))
    return out


# -- failed-logins ------------------------------------------------------------------------------------


def _failed_logins(ctx: Context, rule: Rule) -> list[Finding]:
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
        until = as_int(ev.detail.get("until"))
        until = ev.time + lock if until is None else until
        out.append(finding(rule, VIOLATION, f"device {ev.device} of member {ev.actor or '?'} was locked out after "
                            f"repeated failed logins (for {dur(until - ev.time)})", ev.device, [idx]))
    fails = failed_login_counts(ctx)
    for idx, ev in _summaries(ctx):
        blocked = as_int(ev.detail.get("blocked_sources")) or 0
        if blocked:
            t = _summary_start(ev)
            out.append(finding(rule, ALERT, f"{blocked} source address(es) failed more than {max_failures} logins "
                                f"within {dur(width)} and were throttled (minute from {t})", "", [idx]))
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
                out.append(finding(rule, ALERT, f"device {device} of member {owner.get(device, '?')} was named in "
                                    f"{total} failed logins within {dur(width)} (more than {max_failures}); the "
                                    "sources are throttled, the device is not locked", device, window))
                break
    return out


def _summaries(ctx: Context) -> list[tuple[int, Event]]:
    return sorted([*ctx.actions("request.summary"), *ctx.actions("request.refusals")], key=lambda x: x[0])


def _summary_start(ev: Event) -> int:
    start = as_int(ev.detail.get("from"))
    return ev.time if start is None else start


def failed_login_counts(ctx: Context) -> dict[str, list[tuple[int, int, int]]]:
    """device id -> (time, failed logins, event index) of every failed login that named it, oldest first:
    ``auth.fail`` events (one each) and the ``d:<device>`` counts of the per-minute summaries."""
    fails: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for idx, ev in ctx.actions("auth.fail"):
        if ev.detail.get("error") != "locked":  # refused while locked (older servers): not a guess
            fails[ev.device].append((ev.time, 1, idx))
    for idx, ev in _summaries(ctx):
        for key, value in ev.detail.items():
            n = as_int(value)
            if key.startswith("d:") and key != "d:other" and n:
                fails[key[2:]].append((_summary_start(ev), n, idx))
    return {device: sorted(items) for device, items in fails.items()}


# -- retention and small-threads (team threads) ---------------------------------------------------------


def _threads(ctx: Context) -> dict[str, tuple[int, Event]]:
    """Every thread the log saw created: thread id -> (event index, thread.create event)."""
    return {ev.res["thread"]: (idx, ev) for idx, ev in ok_events(ctx.actions("thread.create"))
            if ev.res.get("thread") and ev.res.get("team") in ctx.inp.teams}


def _retention(ctx: Context, rule: Rule) -> list[Finding]:
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
        expire = as_int(ev.detail.get("expire"))
        if limit is None or expire is None:
            continue
        if expire == 0 or expire > limit:
            kept = "forever" if expire == 0 else f"for {dur(expire)}"
            out.append(finding(rule, VIOLATION, f"thread {tid} of {team.kind} team {team.team_id}, created by "
                                f"member {ev.actor or '?'}, keeps messages {kept}; at most {dur(limit)} is "
                                "allowed", tid, [idx]))
    return out


def _small_threads(ctx: Context, rule: Rule) -> list[Finding]:
    """Sensitive threads are read by few members; idle threads are flagged for closing."""
    kinds, most, idle = set(rule.strs("sensitive_kinds")), rule.int_("max_members"), rule.int_("idle_days") * DAY
    last: dict[str, tuple[int, int]] = {}
    for idx, ev in ok_events(ctx.actions("msg.post")):
        tid = ev.res.get("thread", "")
        if tid and (tid not in last or ev.time >= last[tid][0]):
            last[tid] = (ev.time, idx)
    out = []
    for tid, (idx, ev) in _threads(ctx).items():
        team = ctx.inp.teams[ev.res["team"]]
        readers = len(team.active_members(ctx.now))
        if team.kind in kinds and readers > most:
            out.append(finding(rule, VIOLATION, f"thread {tid} of {team.kind} team {team.team_id} is read by "
                                f"{readers} members; at most {most}", tid, [idx]))
        t, at = last.get(tid, (ev.time, idx))
        if ctx.now - t > idle:
            out.append(finding(rule, WARNING, f"thread {tid} of team {team.team_id} has been idle for "
                                f"{dur(ctx.now - t)}; close it (more than {dur(idle)})", tid, [at]))
    return out


CHECKS: Final[Mapping[str, Check]] = {
    "bulk-access": _bulk_access,
    "log-integrity": _log_integrity,
    "failed-logins": _failed_logins,
    "retention": _retention,
    "small-threads": _small_threads,
}
