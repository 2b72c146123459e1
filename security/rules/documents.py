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
from vault.chains import TeamState
from vault.chains.exports import ExportRequest
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


def export_request(ctx: Context, ev: Event) -> tuple[TeamState | None, ExportRequest | None]:
    """The team of a ``doc.export`` event and the export request it names (None: none, or not in that team's chain
    as the auditor replayed it: a request the server made up is not in it)."""
    team = ctx.inp.teams.get(ev.res.get("team", ""))
    ref = ev.res.get("request", "")
    if team is None or len(ref) != 64 or any(c not in "0123456789abcdef" for c in ref):
        return team, None
    return team, team.exports.get(bytes.fromhex(ref))


def _exports(ctx: Context, rule: Rule) -> list[Finding]:
    """Rule ``exports``: a ``doc.export`` of a team of ``sensitive_kinds`` needs the Security Team's approval under
    two-person: an export request in the team's chain (``vault/chains/exports.py``) by the exporter, approved by two
    Security Team members (the chain judged each), not expired at the export, used once. The server refuses any
    other, so one in the log means a server that did not (or protocols changed meanwhile)."""
    kinds = rule.strs("sensitive_kinds")
    out = []
    used: set[str] = set()
    for idx, ev in ok_events(ctx.actions("doc.export")):
        team, req = export_request(ctx, ev)
        if team is None or team.kind not in kinds or ev.time > ctx.now:
            continue
        what = f"member {ev.actor} exported {ev.detail.get('count', '?')} documents of {team.kind} team {team.team_id}"
        ref = ev.res.get("request", "")
        why = ("without the Security Team's approval (no export request)" if req is None
               else f"under request {ref[:16]}, which was used before" if ref in used
               else f"under request {ref[:16]}: {problem}" if (problem := req.refusal(ev.actor, ev.time)) else None)
        used.add(ref)
        if why is not None:
            out.append(finding(rule, VIOLATION, f"{what} {why}", team.team_id, [idx]))
    return out


CHECKS: Final[Mapping[str, Check]] = {"document-review": _document_review, "exports": _exports}
