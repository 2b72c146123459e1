"""Live document notices of one team: the hints that wake a pass of ``mvault sync --watch``.

``doc_notices(client, team)`` follows the team's live channel (WebSocket ``GET /api/v1/teams/{team}/live``,
first frame ``{"docs": true}``; server/live.py) and yields a ``DocNotice`` for every document version the
server says it stored, ``Missed`` each time it is connected again (the first time too), once the server
says it is live: notices sent while it was not connected are lost, so a full check is due; and ``Lost`` each
time a connection ended (a sync watcher answers "in step" only while connected: client/sync/serve.py). It reconnects by
itself (backoff up to ``retry_max`` seconds; a session that expired is renewed) and ends only with an error
when following cannot go on: ``PolicyDenied`` when this member lost access to the team (removed, role
ended), ``DeviceRevoked`` for a revoked device, ``IntegrityError`` for a frame that is none of the
protocol's, ``QuotaExceeded`` when the member holds every live connection the quota allows.

A notice is a hint, nothing more: it is not signed, and the pass it wakes lists, fetches and checks every
version itself, so a false, late or missing notice costs only time. Stop following by cancelling the task
that iterates (or closing the iterator): the connection is closed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import aiohttp
import msgspec

from client.api import decode_frame
from client.client import Client
from client.session import REVOKED_NEXT
from vault.chains import TeamState
from vault.errors import AuthError, DeviceRevoked, IntegrityError, NotFound, PolicyDenied, TransportError, VaultError
from vault.wire.schemas import ClosedFrame, DocFrame, ErrorFrame, FollowStart, LiveFrame

RETRY_MAX = 5.0  # seconds between two attempts to reconnect, at most

# What the server may send a follower of documents only (a thread frame is a protocol violation here).
DocEvent = DocFrame | LiveFrame | ClosedFrame | ErrorFrame


@dataclass(frozen=True)
class DocNotice:
    """The server says it stored version ``seq`` (id ``vid``) of document ``doc`` (ids in hex)."""

    doc: str
    seq: int
    vid: str


@dataclass(frozen=True)
class Missed:
    """Notices may have been lost (the connection was new or restored): every document needs a check."""


@dataclass(frozen=True)
class Lost:
    """The connection ended (it is being made again): until the next ``Missed``, notices are not arriving."""


Notice = DocNotice | Missed | Lost


async def doc_notices(s: Client, team: TeamState, *, retry_max: float = RETRY_MAX) -> AsyncGenerator[Notice, None]:
    """The notices of ``team`` for as long as the caller iterates: see the module's docstring."""
    failures, renew = 0, False
    while True:
        try:
            if renew:
                await s.login()  # a login refused is an AuthError that ends the notices (below)
                renew = False
            async with contextlib.aclosing(_follow_once(s, team)) as notices:
                async for notice in notices:
                    failures = 0
                    yield notice
        except DeviceRevoked:
            raise
        except AuthError:
            if renew:
                raise
            renew = True  # the session expired: a new one, at once
            yield Lost()
            continue
        except (PolicyDenied, NotFound) as e:  # refused at the upgrade (403/404) or closed by the server
            raise PolicyDenied(f"document notices of team {team.name} stopped: you no longer have access to it "
                               f"({e})") from e
        except (TransportError, aiohttp.ClientError, ConnectionError, TimeoutError):
            failures += 1
        yield Lost()
        await asyncio.sleep(min(retry_max, 0.2 * 2 ** min(failures, 5)))


async def _follow_once(s: Client, team: TeamState) -> AsyncGenerator[Notice, None]:
    """One connection's notices; ends with the error that ended it."""
    ws = await s.session.api.websocket(f"/api/v1/teams/{team.team_id}/live")
    try:
        await ws.send_json(msgspec.to_builtins(FollowStart(docs=True)))
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.ERROR):
                raise TransportError("the server closed the live connection")
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise IntegrityError("the server sent a malformed live frame")
            frame = _doc_event(msg.data)
            if isinstance(frame, DocFrame):
                yield DocNotice(frame.doc, frame.seq, frame.vid)
            elif isinstance(frame, LiveFrame):
                yield Missed()
            elif isinstance(frame, ClosedFrame):
                if frame.error == DeviceRevoked.code:
                    raise DeviceRevoked(f"{frame.message}; {REVOKED_NEXT}")
                if frame.error == AuthError.code:
                    raise AuthError(frame.message)
                raise PolicyDenied(frame.message)
            else:
                raise VaultError(f"the server refused to send document notices: {frame.message}")
    finally:
        await ws.close()


def _doc_event(data: str) -> DocEvent:
    """A frame's text as a frame a document follower may get (``IntegrityError`` if it is none of them)."""
    event: DocEvent = decode_frame(data, DocEvent)
    return event
