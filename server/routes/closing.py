"""A closed organization (issue 20, docs/lifecycle.md "Running it"): the shredding that follows an accepted
``org.closed``, the refusal every login and session meets from then on, and the one answer left to give: the
organization chain and the member chains, for a member's client to verify the closing against its pins
(client/closing.py). Nothing the server says here makes a client wipe anything: the signatures do."""

from __future__ import annotations

from aiohttp import web

from server.access import forget_teams
from server.context import AUDIT, DIRECTORY, STORAGE, Handler
from server.http import answer
from vault.errors import NotFound
from vault.wire import schemas


async def shred(app: web.Application) -> int:
    """Delete every blob, box, version, thread, message, session and team chain (both backends), prune every
    audit event body, and forget the teams held in memory. Called with the chain lock held, right after the
    ``org.closed`` link was stored; how many rows went."""
    gone = await app[STORAGE].shred_closed()
    if AUDIT in app:
        gone += await app[AUDIT].shred()
    forget_teams(app)
    return gone


async def closing(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    if directory.org is None or directory.org.closing.closed is None:
        raise NotFound("this organization is not closed")
    return answer(schemas.ClosingChains(org=[link.wire for link in directory.org_links],
                                        members={m: [link.wire for link in links]
                                                 for m, links in directory.member_links.items()}))


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {"closing": closing}
