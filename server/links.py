"""Chain links arriving in requests: parsed from a JSON field, dated against the server's clock,
signed by the logged-in device, and noted for the audit log once accepted."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from server.access import session_of
from server.context import CONFIG, now_of
from server.http import read_body
from server.notes import LOGGED_LINKS, NOTES, Note
from vault.errors import ChainError, PolicyDenied
from vault.links import Link, parse_link
from vault.wire import schemas

LinkBody = TypeVar("LinkBody", schemas.LinkRequest, schemas.MemberLinkRequest, schemas.TeamLinkRequest)


def check_link_time(request: web.Request, link: Link) -> None:
    now = now_of(request)
    skew = request.app[CONFIG].clock_skew
    if abs(link.time - now) > skew:
        raise ChainError(
            f"link time {link.time} is too far from the server's time {int(now)} "
            f"(allowed difference {int(skew)} s); check your clock"
        )


def require_signer(request: web.Request, link: Link) -> None:
    s = session_of(request)
    if (link.signer, link.device) != (s.member, s.device):
        raise PolicyDenied("links must be signed by the logged-in device")


def link_note(link: Link) -> Note:
    """A chain link's audit event: its type, chain, position and hash (ids, never names)."""
    res = {"chain": link.chain or "", "seq": str(link.seq), "link": link.hash.hex()}
    subject = link.body.raw.get("member")
    if link.type.startswith("team."):
        res["team"] = link.chain or ""
    if isinstance(subject, str):
        res["member"] = subject
    return Note(link.type, res, subject if isinstance(subject, str) else None, actor=link.signer, device=link.device)


def note_links(request: web.Request, *links: Link) -> None:
    """One audit event per accepted chain link (``link_note``); once they are recorded the middleware tells
    the store (``LOGGED_LINKS``), which noted each link as unlogged when it stored it."""
    for link in links:
        request.setdefault(NOTES, []).append(link_note(link))
        request.setdefault(LOGGED_LINKS, []).append(link.hash)


async def signed_link(request: web.Request, shape: type[LinkBody]) -> tuple[LinkBody, Link]:
    """The request's link, signed by the logged-in device and dated near the server's clock."""
    body = await read_body(request, shape)
    link = parse_link(body.link)
    require_signer(request, link)
    check_link_time(request, link)
    return body, link

