"""What the rules count of this organization's members' acts in coalition spaces on other organizations' servers:
the ``coalition.act`` events, each carrying the member's device-signed record (``vault/coalitionact.py``; judged by
``security/coalitionact.py``). Used by three rules:

* ``need-to-know``: an event whose record is missing, malformed, not signed by the event's member with a device they
  held, or not an act they were entitled to (the server made or altered it); and, when ``coalition`` is one of the
  rule's ``sensitive_kinds``, a compa acting in a coalition space.
* ``offboarding``: a member removed from the organization who is still in a coalition space as far as the log shows
  (an ``approve`` naming them or an act of theirs, with no ``remove`` naming them after): the NCC's
  ``coalition.remove`` must reach the host within ``hours``. The member's own ``leave`` does not end it (review
  round 13: any member can sign one before being expelled, and stay a guest of the host's space).
* ``bulk-access``: reads in coalition spaces (``read``, ``count`` each) are reads like ``doc.read``.

A record (its exact bytes) logged more than once counts once; each further copy is a need-to-know warning (review
round 13: the server replaying a member's valid record made bulk-access blame them for reads they never did).

What the log cannot show: acts a member's client did not record (a rogue or old client skips the record)."""

from __future__ import annotations

from security.coalitionact import judge_act
from security.protocols import Rule
from security.rules.base import (
    HOUR,
    VIOLATION,
    WARNING,
    Context,
    Finding,
    dur,
    finding,
    obligation,
    ok_events,
    signed_record,
)
from vault.coalitionact import NCC_ACTS, CoalitionAct
from vault.errors import EncodingError, VaultError

_LEAVING = ("remove",)  # the NCC's; a member's own "leave" is its word only


def _judged(ctx: Context) -> tuple[list[tuple[int, CoalitionAct]], list[Finding]]:
    """The valid records of the log's ``coalition.act`` events (index, record), and a finding (rule need-to-know,
    filled in by the caller) for each event without a valid one, or whose record was logged before (counted once)."""
    valid: list[tuple[int, CoalitionAct]] = []
    bad: list[Finding] = []
    first: dict[bytes, int] = {}  # record -> the index of the event that logged it first
    for idx, ev in ok_events(ctx.actions("coalition.act")):
        try:
            raw, sig = signed_record(ev.detail)
            record = CoalitionAct.parse(raw)
            if record.member != ev.actor:
                raise EncodingError(f"the record is signed by member {record.member}, not by the event's member")
            judge_act(record, sig, ctx.inp.org, ctx.inp.members)
        except VaultError as e:
            bad.append(Finding("need-to-know", VIOLATION, f"a coalition act of member {ev.actor or '?'} was logged "
                               f"without a valid signed record of their device: {e}", ev.actor, (idx,)))
            continue
        if raw in first:
            bad.append(Finding("need-to-know", WARNING, f"the coalition act record of member {ev.actor} in event "
                               f"{first[raw]} was logged again (replayed by the server, or two identical acts in one "
                               "second): counted once", ev.actor, (first[raw], idx)))
            continue
        first[raw] = idx
        valid.append((idx, record))
    return valid, bad


def coalition_reads(ctx: Context) -> list[tuple[int, int, str]]:
    """(time, event index, member) once per read a valid record stands for (bulk-access)."""
    return [(r.time, idx, r.member) for idx, r in _judged(ctx)[0] if r.act == "read" for _ in range(r.count)]


def coalition_need_to_know(ctx: Context, rule: Rule) -> list[Finding]:
    valid, bad = _judged(ctx)
    out = [finding(rule, f.level, f.message, f.subject, f.events) for f in bad]
    if "coalition" not in rule.strs("sensitive_kinds"):
        return out
    for idx, r in valid:
        if r.act not in NCC_ACTS and "compa" in ctx.inp.org.roles_of(r.member, r.time):
            out.append(finding(rule, VIOLATION, f"compa {r.member} acted ({r.act}) in coalition space "
                               f"{r.coalition} at {r.time}", r.member, [idx]))
    return out


def coalition_offboarding(ctx: Context, rule: Rule) -> list[Finding]:
    limit = rule.int_("hours") * HOUR
    last: dict[tuple[str, str], tuple[int, int, str]] = {}
    for idx, r in sorted(_judged(ctx)[0], key=lambda x: (x[1].time, x[0])):
        who = r.subject if r.subject is not None else r.member
        last[(who, r.coalition)] = (r.time, idx, r.act)
    out = []
    for (who, name), (_, idx, act) in sorted(last.items()):
        om = ctx.inp.org.members.get(who)
        if act in _LEAVING or om is None or om.removed_at is None:
            continue
        age = ctx.now - om.removed_at
        out.append(obligation(rule, age > limit, who, [idx],
                              f"member {who} was removed from the organization {dur(age)} ago and is still in "
                              f"coalition space {name} as far as the log shows (limit {dur(limit)})",
                              f"member {who} was removed from the organization {dur(age)} ago and is still in "
                              f"coalition space {name}: have the host remove them within {dur(limit - age)} (the "
                              "NCC's coalition.remove)"))
    return out
