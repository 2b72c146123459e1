"""Rule ``document-review``: sensitive documents carry a review-by date; overdue ones are flagged.

The date itself is in the version's encrypted metadata (``vault/review.py``); the rule reads only the month the
``doc.write`` event records (``detail.review``). For each document of a team of ``sensitive_kinds`` whose newest
event is a ``doc.write`` (a new version resets the date): a violation once its month has ended, a warning when that
version carries no review month. A document whose newest event is a deletion is not judged; one whose newest version
is a move, a restore or a conflict copy is not judged either (those versions carry no month yet)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from security.events import Event
from security.protocols import Rule
from security.rules.base import VIOLATION, WARNING, Check, Context, Finding, dur, finding, ok_events
from vault.errors import EncodingError
from vault.review import month_end

_VERSION_EVENTS: Final = ("doc.write", "doc.delete", "doc.move", "doc.restore", "doc.conflict")


def _document_review(ctx: Context, rule: Rule) -> list[Finding]:
    kinds = rule.strs("sensitive_kinds")
    newest: dict[tuple[str, str], tuple[int, Event]] = {}
    for action in _VERSION_EVENTS:
        for idx, ev in ok_events(ctx.actions(action)):
            key = (ev.res.get("team", ""), ev.res.get("doc", ""))
            if key not in newest or idx > newest[key][0]:
                newest[key] = (idx, ev)
    out = []
    for (tid, doc), (idx, ev) in sorted(newest.items()):
        team = ctx.inp.teams.get(tid)
        if team is None or team.kind not in kinds or ev.action != "doc.write" or ev.time > ctx.now:
            continue
        month = ev.detail.get("review")
        if not isinstance(month, str):
            out.append(finding(rule, WARNING, f"document {doc} of {team.kind} team {tid} was stored without a "
                                f"review-by date (`mvault put --review-by`)", tid, [idx]))
            continue
        try:
            due = month_end(month)
        except EncodingError:
            out.append(finding(rule, WARNING, f"document {doc} of team {tid}: malformed review month", tid, [idx]))
            continue
        if ctx.now >= due:
            out.append(finding(rule, VIOLATION, f"document {doc} of {team.kind} team {tid} was due for review in "
                                f"{month} ({dur(ctx.now - due)} overdue): store a reviewed version", tid, [idx]))
    return out


def _exports(ctx: Context, rule: Rule) -> list[Finding]:
    """Rule ``exports``: a ``doc.export`` of a team of ``sensitive_kinds`` needs the Security Team's approval under
    two-person. No approval can be recorded yet and the server refuses such exports, so each one in the log is a
    violation (a server that did not refuse, or protocols changed meanwhile)."""
    kinds = rule.strs("sensitive_kinds")
    out = []
    for idx, ev in ok_events(ctx.actions("doc.export")):
        tid = ev.res.get("team", "")
        team = ctx.inp.teams.get(tid)
        if team is not None and team.kind in kinds and ev.time <= ctx.now:
            out.append(finding(rule, VIOLATION, f"member {ev.actor} exported {ev.detail.get('count', '?')} documents "
                                f"of {team.kind} team {tid} without the Security Team's approval", tid, [idx]))
    return out


CHECKS: Final[Mapping[str, Check]] = {"document-review": _document_review, "exports": _exports}
