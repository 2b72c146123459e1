"""The ``doc-export`` attestation (``POST /api/v1/audit/attest``): a member is about to export documents of a team
(docs/lifecycle.md "Who may export"). The server records it as the audit event ``doc.export`` only for a member who
may read the team now (404 for a team it cannot see, 403 otherwise) and, for a team of the ``exports`` rule's
``sensitive_kinds``, only under an export request in force (``vault/chains/exports.py``): the member's own, not
expired, approved by two Security Team members, naming the documents exported, and used once. Refused: 403 (409 for
a request used already), nothing recorded as done; the client writes nothing."""

from __future__ import annotations

from aiohttp import web
from msgspec import UnsetType

from server.access import may_now, protocols_of, session_of, visible_team
from server.context import CHAINS, DOCUMENTS, now_of
from server.notes import note
from vault.errors import Conflict, EncodingError, PolicyDenied
from vault.wire import schemas

USED = "export-request-used:"  # meta key prefix: a request whose export was recorded (once)


async def doc_export(request: web.Request, f: schemas.AttestRequest) -> None:
    if isinstance(f.team, UnsetType) or isinstance(f.count, UnsetType):
        raise EncodingError("request: a doc-export needs 'team' and 'count'")
    team = visible_team(request, f.team)
    s = session_of(request)
    if not may_now(request.app, s, "doc.read", team):
        raise PolicyDenied(f"you may not export from team {team.name}: you may not read it now")
    rule = protocols_of(request.app).rule("exports")
    sensitive = rule.enabled and team.kind in rule.strs("sensitive_kinds")
    res = {"team": team.team_id}
    if isinstance(f.request, UnsetType):
        if sensitive:
            raise PolicyDenied(f"team {team.name} is a {team.kind} team: exporting from it needs the Security Team's "
                               "approval under two-person (rule exports): an export request (`mvault export request`) "
                               "approved by two Security Team members, then `mvault export TEAM --request ID`")
        note(request, "doc.export", res, detail={"count": f.count})
        return
    if not may_now(request.app, s, "export.request", team):  # paused (a cut device, a suspected member): no export
        raise PolicyDenied(f"you may not export from team {team.name} now: your membership is paused by an incident "
                           "(the Security Team clears it with `mvault incident clear`)")
    found = team.exports.get(bytes.fromhex(f.request))
    why = ("it names no export request of this team" if found is None
           else found.refusal(s.member, int(now_of(request))))
    app = request.app
    if found is not None and why is None and (
            isinstance(f.docs, UnsetType) or len(set(f.docs)) != f.count or len(f.docs) != f.count
            or not found.covers(f.docs) or not set(f.docs) <= {v.doc for v in await app[DOCUMENTS].heads(team.team_id)}
    ):
        why = "the documents are not those of the request (documents of this team it names, as many as the count)"
    if why is not None:
        raise PolicyDenied(f"you may not export from team {team.name} under this request: {why}")
    if not await app[CHAINS].claim_meta(USED + f.request, s.member.encode()):  # once, whichever process
        raise Conflict(f"export request {f.request[:16]} was used already: an approved request allows one export")
    note(request, "doc.export", {**res, "request": f.request}, detail={"count": f.count})
