"""Chain links arriving in requests: parsed from a JSON field, dated against the server's clock,
signed by the logged-in device, and noted for the audit log once accepted."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from security.authority import POLICY
from server.access import session_of
from server.context import CONFIG, now_of
from server.http import read_body
from server.notes import LOGGED_LINKS, NOTES, Note
from vault.errors import ChainError, PolicyDenied
from vault.joinedspaces import LINK_TYPE as SPACES_LINK
from vault.links import Link, parse_link
from vault.wire import schemas

LinkBody = TypeVar("LinkBody", schemas.LinkRequest, schemas.MemberLinkRequest, schemas.TeamLinkRequest)


def clock_difference(signed: int, now: int) -> str:
    """How far a signer's clock is from the server's, for people: 'is 2h 0m ahead of the server's'."""
    diff = signed - now
    d = abs(diff)
    h, m, s = d // 3600, d % 3600 // 60, d % 60
    span = f"{h}h {m}m" if h else f"{m}m {s}s" if m else f"{s}s"
    return f"is {span} {'ahead of' if diff > 0 else 'behind'} the server's"


def check_link_time(request: web.Request, link: Link) -> None:
    """A link is dated by its signer's clock: refused (nothing stored) more than ``clock_skew`` from the server's,
    in either direction. The rules judge windows of days by when links were appended (security/rules/base.py), and
    this bound keeps a link's own time near that; ``clock_skew`` is at most half the judge's ``ALLOWANCE``."""
    now = int(now_of(request))
    skew = request.app[CONFIG].clock_skew
    # A link ending someone's rights (a cut, a device's or a role's revocation, a removal: ``POLICY.rights_ended``)
    # must be dated strictly after everything they signed, which may be dated ``skew`` ahead: it may be dated a
    # second beyond the window (review round 10: a thief posting ahead of the clock kept the cut out; review round
    # 24: and the member's own revocation of the seized device; review round 32: a role's end after a cosignature).
    # Only when what it must follow is dated that late: ``Directory.check_not_before`` refuses it otherwise (review 37).
    ahead = skew + 1 if POLICY.rights_ended(link.type, link.body.raw) else skew
    if link.time - now > ahead or now - link.time > skew:
        raise ChainError(
            f"this device's clock {clock_difference(link.time, now)} (link time {link.time}, server time {now}, "
            f"allowed difference {int(skew)} s); set the clock right and retry"
        )


def require_signer(request: web.Request, link: Link) -> None:
    s = session_of(request)
    if (link.signer, link.device) != (s.member, s.device):
        raise PolicyDenied("links must be signed by the logged-in device")


def link_note(link: Link) -> Note:
    """A chain link's audit event: its type, chain, position and hash (ids, never names)."""
    res = {"chain": link.chain or "", "seq": str(link.seq), "link": link.hash.hex()}
    subject = link.body.raw.get("member")
    if link.kind == "team":
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
    if link.type == SPACES_LINK and link.kind == "member":
        relayed_record(request, link)
    else:
        require_signer(request, link)
        check_link_time(request, link)
    return body, link


def relayed_record(request: web.Request, link: Link) -> None:
    """A ``member.spaces`` link (the record of a member's joined coalition spaces, vault/joinedspaces.py) may be
    posted by any device of its member, however long after it was made (never dated ahead of the clock): it changes
    no device, key or right, and a member's device carries the links another device made to a coalition space's
    host, where a later ``device.revoke`` must extend the chain (the chain's replay still checks its signature by a
    device active in it, and its place)."""
    if link.signer != session_of(request).member:
        raise PolicyDenied("links must be signed by the logged-in member")
    if link.time - int(now_of(request)) > request.app[CONFIG].clock_skew:
        raise ChainError("the link is dated ahead of the server's clock")

