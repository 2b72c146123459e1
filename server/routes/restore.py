"""The Security Team's acceptances of a restore from an older backup (docs/restore.md): stored here, judged
first (the one judge, at the acceptance's signed time), and served to every member, whose client judges
them again against its own pins before it follows one (client/restore.py)."""

from __future__ import annotations

from aiohttp import web

from security.restore import Acceptance, judge_acceptance
from server.access import judge_now, session_of
from server.context import AUDIT, CONFIG, DIRECTORY, Handler, now_of
from server.http import answer, read_body
from server.notes import note
from vault.errors import BadSignature, ChainError, EncodingError, IntegrityError, NotFound, PolicyDenied
from vault.wire import schemas


async def acceptances(request: web.Request) -> web.Response:
    session_of(request)
    rows = await request.app[AUDIT].acceptances()
    return answer(schemas.RestoreAcceptances(acceptances=[schemas.RestoreAcceptance(statement=raw, sig=sig)
                                                          for raw, sig in rows]))


async def accept(request: web.Request) -> web.Response:
    judge_now(request, "restore.accept")
    body = await read_body(request, schemas.RestoreAcceptRequest)
    try:
        acc = Acceptance.parse(body.statement)
    except IntegrityError as e:
        raise EncodingError(str(e)) from e
    if acc.heads is None:
        raise EncodingError("a restore acceptance of format 1 names no chain heads: sign it with a current client")
    s = session_of(request)
    app = request.app
    store, directory = app[AUDIT], app[DIRECTORY]
    org = directory.require_org()
    if (acc.member, acc.device) != (s.member, s.device):
        raise PolicyDenied("the acceptance must name the logged-in member and device")
    if abs(acc.time - now_of(request)) > app[CONFIG].clock_skew:
        raise EncodingError("the acceptance's time is too far from the server's")
    if acc.log_key != store.log_public:
        raise EncodingError("the acceptance names another checkpoint-signing key than this server's")
    try:
        acc.checkpoint.verify(acc.log_key, acc.cp_sig)
    except BadSignature as e:
        raise EncodingError("the checkpoint's signature in the acceptance does not verify") from e
    issued = await store.issued(acc.checkpoint.raw)
    if issued is None or issued.sig != acc.cp_sig:
        raise NotFound("this server never issued that checkpoint for its current log")
    links = directory.org_links
    if not 1 <= acc.org_seq <= len(links) or links[acc.org_seq - 1].hash != acc.org_head:
        raise NotFound("the acceptance names an organization chain head this server does not have")
    for chain, (seq, head) in acc.heads.items():
        chain_links = directory.member_links.get(chain) or directory.team_links.get(chain) or []
        if len(chain_links) < seq or chain_links[seq - 1].hash != head:
            raise NotFound("the acceptance names a chain head this server does not have")
    try:  # the one judge again, at the acceptance's signed time
        judge_acceptance(acc, body.sig, org, directory.members)
    except BadSignature as e:
        raise EncodingError("the acceptance does not verify with your device key") from e
    except ChainError as e:
        raise PolicyDenied(str(e)) from e
    note(request, "restore.accept", detail={"size": acc.checkpoint.size})
    await store.add_acceptance(acc.checkpoint.size, acc.time, acc.raw, body.sig)
    return answer(schemas.RestoreAccepted(size=acc.checkpoint.size), 201)


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {"restore_acceptances": acceptances, "restore_accept": accept}
