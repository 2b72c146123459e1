"""The routes anyone may call without a session: health, the API description, the server's info,
founding the organization, and joining it with an invite (only a holder learns anything)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from server.context import CHAINS, CONFIG, DIRECTORY, LOCK, Handler, now_of
from server.http import answer, read_body
from server.links import check_link_time, note_links
from server.openapi import OPENAPI
from server.replies import check_appended
from server.store.records import StoredLink
from vault import __version__
from vault.chains import MemberState, OrgState
from vault.errors import BadSignature, ChainError, EncodingError, IntegrityError, InviteError, InviteNotOpen
from vault.links import Link, parse_link, verify_invite_holder, verify_invite_signature
from vault.teamkeys import box_hash
from vault.wire import schemas


async def health(request: web.Request) -> web.Response:
    return answer(schemas.Health(status="ok", version=__version__))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def info(request: web.Request) -> web.Response:
    org = request.app[DIRECTORY].org
    return answer(schemas.Info(version=__version__, org_root=org.root.hex() if org else None,
                               time=int(now_of(request))))


def _invite_holder(request: web.Request, public: bytes, prove: Callable[[], None]) -> OrgState:
    """The organization, once the caller proved it holds the secret of invite ``public`` (``prove`` raises
    otherwise) and the invite is open. Only a holder is told what is wrong with its invite, and nobody
    learns anything about the chain (its length, its head) without one."""
    org = request.app[DIRECTORY].require_org()
    try:
        prove()
    except (BadSignature, ChainError) as e:
        raise InviteError("the invite proof does not verify") from e
    inv = org.invites.get(public)
    if inv is None:
        raise InviteError("unknown invite")
    why = inv.refusal(int(now_of(request)))  # used, revoked or expired: the chain replay's own answer
    if why is not None:
        raise InviteError(why)
    return org


async def join_head(request: web.Request) -> web.Response:
    """The organization chain's head, for a joiner who proves it holds an open invite (review round 3: a
    stranger watched the organization grow through /api/v1/info)."""
    body = await read_body(request, schemas.JoinHeadRequest)
    public, t, proof = body.invite, body.time, body.proof
    if abs(t - int(now_of(request))) > request.app[CONFIG].clock_skew:
        raise EncodingError("the proof's time is too far from the server's")
    root = request.app[DIRECTORY].require_org().root
    org = _invite_holder(request, public, lambda: verify_invite_holder(public, root, t, proof))
    return answer(schemas.JoinHead(org_seq=org.seq, org_head=org.head))


async def found(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.FoundRequest)
    app = request.app
    async with app[LOCK]:
        directory = app[DIRECTORY]
        if directory.org is not None:
            raise InviteError("this organization is already founded; the founder invite is used")
        founder_invite = await app[CHAINS].get_meta("founder_invite")
        member_link, org_link = _newcomer_links(request, body.member_link, body.org_link)
        puk_box = body.puk_box
        member, _ = directory.check_member_create(member_link)
        _check_puk_box(member, member_link.device, puk_box)
        org = directory.check_org_link(org_link, extra_member=member)
        if founder_invite is None or org.founder_invite != founder_invite:
            raise InviteError("the founder invite is not valid for this server")
        await _store_newcomer(app, member, member_link, puk_box, org, org_link)
    note_links(request, member_link, org_link)
    return answer(schemas.Founded(org_root=org.root.hex(), member=member.member_id), 201)


def _newcomer_links(request: web.Request, member_raw: bytes, org_raw: bytes) -> tuple[Link, Link]:
    """A newcomer's first member link and its organization link, both dated near the server's clock."""
    member_link, org_link = parse_link(member_raw), parse_link(org_raw)
    for link in (member_link, org_link):
        check_link_time(request, link)
    return member_link, org_link


async def _store_newcomer(app: web.Application, member: MemberState, member_link: Link, puk_box: bytes,
                          org: OrgState, org_link: Link) -> None:
    """A newcomer's first member link with its PUK box, and the organization link that admits it (the
    founding one or a join): stored together, then the directory's states (under ``LOCK``)."""
    check_appended(await app[CHAINS].append_links(
        [StoredLink(member.member_id, 1, "member", member_link.wire),
         StoredLink("org", org_link.seq, "org", org_link.wire)],
        [(member.member_id, 1, member_link.device, puk_box)], [],
    ))
    app[DIRECTORY].commit_member((member, member_link))
    app[DIRECTORY].commit_org(org, org_link)


def _check_puk_box(member: MemberState, device: str, box: bytes) -> None:
    if member.puk_box_hashes.get(device) != box_hash(box):
        raise IntegrityError("the PUK box does not match the member chain's commitment")


async def join(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.JoinRequest)
    app = request.app
    async with app[LOCK]:
        directory = app[DIRECTORY]
        directory.require_org()
        member_link, join_link = _newcomer_links(request, body.member_link, body.join_link)
        puk_box = body.puk_box
        if join_link.type != "org.join":
            raise ChainError("expected an org.join link")
        # The invite first: nothing about the chain (its length, its head) to a caller without one.
        public = join_link.body.bytes_("invite", 32)
        _invite_holder(request, public, lambda: verify_invite_signature(join_link, public))
        member, _ = directory.check_member_create(member_link)
        _check_puk_box(member, member_link.device, puk_box)
        try:
            org = directory.check_org_link(join_link, extra_member=member)
        except InviteNotOpen as e:
            raise InviteError(e.message) from e
        await _store_newcomer(app, member, member_link, puk_box, org, join_link)
    note_links(request, member_link, join_link)
    return answer(schemas.Joined(member=member.member_id, status=org.members[member.member_id].status), 201)


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "health": health, "openapi": openapi, "info": info, "found": found, "join_head": join_head, "join": join,
}
