"""The aiohttp application: thin handlers over storage, the directory and vault's checks.

Every handler either succeeds or raises a ``VaultError`` (or an aiohttp HTTP error),
which the error middleware turns into ``{"error": code, "message": text}`` with a 4xx
status; nothing is written before every check has passed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from security.authority import POLICY
from server.audit import note
from server.directory import Directory
from server.guard import FailureThrottle, Refusals, SourceLimiter, Throttled
from server.openapi import OPENAPI
from server.storage import Session, SQLiteStorage, StoredLink, StoredVersion
from server.usage import Allowance, check_allowance
from vault import __version__
from vault.acts import Act
from vault.auth import token_hash
from vault.chains import OrgState, TeamState
from vault.encoding import Fields, decode
from vault.envelope import MAGIC, MAX_PRELUDE, Core, Record
from vault.errors import (
    AuthError,
    BadSignature,
    ChainError,
    Conflict,
    EncodingError,
    IntegrityError,
    InviteError,
    NotFound,
    PolicyDenied,
    QuotaExceeded,
    Truncated,
    VaultError,
)
from vault.links import Link, parse_link, verify_invite_holder, verify_invite_signature
from vault.teamkeys import box_hash

log = logging.getLogger("mvault.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Config:
    data_dir: Path
    public_url: str = ""
    max_upload: int = 16 * 1024**3
    session_ttl: float = 3600.0
    nonce_ttl: float = 60.0
    clock_skew: float = 600.0
    purge_interval: float = 30.0  # seconds between background purges of expired thread messages
    # The operator's own per-member limits (keys of the protocols' [quotas]): each applies where it is
    # lower than the organization's; the protocols' values are never exceeded.
    quota_caps: dict[str, int] = field(default_factory=dict)
    # Requests without a session (PUBLIC routes), per source address: a token bucket of rate_burst
    # refilled at rate_per_second; at most rate_sources addresses are remembered (the oldest go first).
    rate_per_second: float = 20.0
    rate_burst: int = 200
    rate_sources: int = 10_000
    # Refusals of one member's requests recorded as events of their own per minute; the rest of that
    # minute are counted in one request.refusals event of the member (server/guard.py MemberRefusals).
    member_refusals: int = 10
    clock: Callable[[], float] = field(default=time.time)


STORAGE = web.AppKey("storage", SQLiteStorage)
DIRECTORY = web.AppKey("directory", Directory)
CONFIG = web.AppKey("config", Config)
LOCK = web.AppKey("lock", asyncio.Lock)
LAST_PURGE = web.AppKey("last_purge", list)  # [time of the last purge of expired login rows]
PURGE_EVERY = 60.0
SESSION_KEY = web.RequestKey("session", Session)
LIMITER = web.AppKey("limiter", SourceLimiter)
FAILURES = web.AppKey("failures", FailureThrottle)
REFUSALS = web.AppKey("refusals", Refusals)
NAMED_DEVICE = web.RequestKey("named_device", str)  # the known device an unauthenticated login named
KEY_HOLDER = web.RequestKey("key_holder", bool)  # the refused login proved it holds the key it named
# Routes (by their canonical pattern, never the raw path) that need no session.
CHALLENGE, LOGIN = "/api/v1/auth/challenge", "/api/v1/auth/login"
PUBLIC = {"/api/health", "/api/openapi.json", "/api/v1/info", "/api/v1/found", "/api/v1/join", "/api/v1/join/head",
          CHALLENGE, LOGIN, "/api/v1/device-links/{slot}/offer"}
MAX_JSON = 4 * 1024 * 1024
JSON_TIMEOUT = 60  # seconds a JSON request body may take to arrive


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: object, what: str, max_len: int = 2 * 1024 * 1024) -> bytes:
    if not isinstance(value, str) or len(value) > max_len:
        raise EncodingError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EncodingError(f"{what} is not valid base64") from e


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Throttled as e:
        response = error_response(e.status, e.code, e.message)
        response.headers["Retry-After"] = str(e.retry_after)
        return response
    except VaultError as e:
        response = error_response(e.status, e.code, e.message)
        if isinstance(e, QuotaExceeded) and e.retry_after is not None:
            response.headers["Retry-After"] = str(e.retry_after)
        return response
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(e.status, e.reason.lower().replace(" ", "_"), e.text or e.reason)
    except ConnectionResetError:
        # The client went away mid-request (an interrupted upload): nothing was stored and
        # nobody reads this answer; re-raising would make aiohttp log it as a server error.
        return error_response(Truncated.status, Truncated.code, "the connection closed before the request ended")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else request.path
    if canonical in PUBLIC or not canonical.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise AuthError("log in first (no session token)")
    storage, config = request.app[STORAGE], request.app[CONFIG]
    session = await storage.session(token_hash(header[7:].strip()))
    if session is None or session.expires <= config.clock():
        raise AuthError("session expired or unknown; log in again")
    from server.audit_api import CLAIMED  # noqa: PLC0415 (audit_api imports this module)

    request[CLAIMED] = (session.member, session.device)  # so a refusal below is recorded against them
    check_session(request.app, session)
    request[SESSION_KEY] = session
    return await handler(request)


def quotas(app: web.Application) -> dict[str, int]:
    """The per-member quotas in force: the organization's protocols, lowered by the operator's caps."""
    from server.audit_api import protocols_of  # noqa: PLC0415 (audit_api imports this module)

    caps = app[CONFIG].quota_caps
    return {key: min(value, caps.get(key, value)) for key, value in protocols_of(app).quotas.items()}


def check_session(app: web.Application, session: Session) -> None:
    """The session is unexpired, its device active and its member not removed. Handlers that
    wait for a request body call it again afterwards (a removal may land meanwhile)."""
    if session.expires <= app[CONFIG].clock():
        raise AuthError("session expired or unknown; log in again")
    directory = app[DIRECTORY]
    member = directory.members.get(session.member)
    if member is None or session.device not in member.devices or member.devices[session.device].revoked is not None:
        raise AuthError("this device is no longer active")
    if _removed(directory, session.member):
        raise AuthError("this member was removed from the organization")


def _removed(directory: Directory, member_id: str) -> bool:
    org = directory.org
    return org is not None and member_id in org.members and org.members[member_id].status == "removed"


def session_of(request: web.Request) -> Session:
    s = request.get(SESSION_KEY)
    if not isinstance(s, Session):
        raise AuthError("log in first (no session token)")
    return s


async def read_json(request: web.Request, allowed: set[str]) -> Fields:
    if request.content_length is not None and request.content_length > MAX_JSON:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON, actual_size=request.content_length)
    raw = bytearray()  # read() returns what has arrived so far: loop until the end of the body
    try:
        async with asyncio.timeout(JSON_TIMEOUT):
            while len(raw) <= MAX_JSON and (chunk := await request.content.read(MAX_JSON + 1 - len(raw))):
                raw += chunk
    except TimeoutError as e:
        raise EncodingError(f"the request body did not arrive within {JSON_TIMEOUT} s") from e
    if len(raw) > MAX_JSON:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON, actual_size=len(raw))
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested too deeply
        raise EncodingError("request body is not valid JSON") from e
    if not isinstance(value, dict):
        raise EncodingError("request body must be a JSON object")
    return Fields(value, "request", allowed)


def now_of(request: web.Request) -> float:
    return request.app[CONFIG].clock()


def check_link_time(request: web.Request, link: Link) -> None:
    now = now_of(request)
    skew = request.app[CONFIG].clock_skew
    if abs(link.time - now) > skew:
        raise ChainError(
            f"link time {link.time} is too far from the server's time {int(now)} "
            f"(allowed difference {int(skew)} s); check your clock"
        )


def parse_link_field(f: Fields, key: str) -> Link:
    return parse_link(unb64(f.raw.get(key), key))


# -- public ------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def info(request: web.Request) -> web.Response:
    org = request.app[DIRECTORY].org
    return web.json_response(
        {
            "version": __version__,
            "org_root": org.root.hex() if org else None,
            "time": int(now_of(request)),
        }
    )


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
    if inv.used_by is not None:
        raise InviteError("invite has already been used")
    if inv.expires <= int(now_of(request)):
        raise InviteError("invite has expired")
    return org


async def join_head(request: web.Request) -> web.Response:
    """The organization chain's head, for a joiner who proves it holds an open invite (review round 3: a
    stranger watched the organization grow through /api/v1/info)."""
    f = await read_json(request, {"invite", "time", "proof"})
    public = unb64(f.raw.get("invite"), "invite", 64)
    t = f.int_("time", 0)
    proof = unb64(f.raw.get("proof"), "proof", 128)
    if abs(t - int(now_of(request))) > request.app[CONFIG].clock_skew:
        raise EncodingError("the proof's time is too far from the server's")
    root = request.app[DIRECTORY].require_org().root
    org = _invite_holder(request, public, lambda: verify_invite_holder(public, root, t, proof))
    return web.json_response({"org_seq": org.seq, "org_head": b64(org.head)})


async def found(request: web.Request) -> web.Response:
    f = await read_json(request, {"member_link", "puk_box", "org_link"})
    app = request.app
    async with app[LOCK]:
        directory = app[DIRECTORY]
        if directory.org is not None:
            raise InviteError("this organization is already founded; the founder invite is used")
        founder_invite = await app[STORAGE].get_meta("founder_invite")
        member_link, org_link = parse_link_field(f, "member_link"), parse_link_field(f, "org_link")
        puk_box = unb64(f.raw.get("puk_box"), "puk_box", 4096)
        for link in (member_link, org_link):
            check_link_time(request, link)
        member, _ = directory.check_member_create(member_link)
        _check_puk_box(member, member_link.device, puk_box)
        org = directory.check_org_link(org_link, extra_member=member)
        if founder_invite is None or org.founder_invite != founder_invite:
            raise InviteError("the founder invite is not valid for this server")
        await app[STORAGE].append_links(
            [StoredLink(member.member_id, 1, "member", member_link.wire), StoredLink("org", 1, "org", org_link.wire)],
            [(member.member_id, 1, member_link.device, puk_box)], [],
        )
        directory.commit_member((member, member_link))
        directory.commit_org(org, org_link)
    note_links(request, member_link, org_link)
    return web.json_response({"org_root": org.root.hex(), "member": member.member_id}, status=201)


def _check_puk_box(member: Any, device: str, box: bytes) -> None:
    if member.puk_box_hashes.get(device) != box_hash(box):
        raise IntegrityError("the PUK box does not match the member chain's commitment")


async def join(request: web.Request) -> web.Response:
    f = await read_json(request, {"member_link", "puk_box", "join_link"})
    app = request.app
    async with app[LOCK]:
        directory = app[DIRECTORY]
        directory.require_org()
        member_link, join_link = parse_link_field(f, "member_link"), parse_link_field(f, "join_link")
        puk_box = unb64(f.raw.get("puk_box"), "puk_box", 4096)
        for link in (member_link, join_link):
            check_link_time(request, link)
        if join_link.type != "org.join":
            raise ChainError("expected an org.join link")
        # The invite first: nothing about the chain (its length, its head) to a caller without one.
        public = join_link.body.bytes_("invite", 32)
        _invite_holder(request, public, lambda: verify_invite_signature(join_link, public))
        member, _ = directory.check_member_create(member_link)
        _check_puk_box(member, member_link.device, puk_box)
        try:
            org = directory.check_org_link(join_link, extra_member=member)
        except ChainError as e:
            if "invite" in e.message:
                raise InviteError(e.message) from e
            raise
        await app[STORAGE].append_links(
            [StoredLink(member.member_id, 1, "member", member_link.wire),
             StoredLink("org", join_link.seq, "org", join_link.wire)],
            [(member.member_id, 1, member_link.device, puk_box)], [],
        )
        directory.commit_member((member, member_link))
        directory.commit_org(org, join_link)
    note_links(request, member_link, join_link)
    return web.json_response({"member": member.member_id, "status": org.members[member.member_id].status},
                             status=201)


# -- chains ------------------------------------------------------------------------------------


def _overseer(request: web.Request) -> bool:
    """NCC and the Security Team see every team chain (membership, not content: that needs a key box).
    Org roles as of now: an NCC term that ended is over."""
    org = request.app[DIRECTORY].require_org()
    return bool(org.roles_of(session_of(request).member, int(now_of(request))) & {"ncc", "security"})


def _visible_team(request: web.Request, team_id: str) -> Any:
    """A team the caller may address: one it is in (its role may have ended: the judge then refuses with
    403, which tells nothing new to a former member), or any team for NCC (which may sign membership
    changes anywhere). Anyone else gets 404, as for a team that does not exist."""
    directory = request.app[DIRECTORY]
    team = directory.team(team_id)
    me = session_of(request).member
    if me in team.members or "ncc" in directory.require_org().roles_of(me, int(now_of(request))):
        return team
    raise NotFound(f"unknown team {team_id}")


async def directory_view(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    org = directory.require_org()
    me = session_of(request).member
    now, overseer = int(now_of(request)), _overseer(request)
    teams: dict[str, Any] = {}
    for tid, t in directory.teams.items():
        served = directory.served_length(tid, me, now, overseer)
        if served is None:
            continue
        if served[1]:
            teams[tid] = {"name": t.name, "seq": t.seq, "head": t.head.hex(), "removed_at": None}
        else:  # removed, or the role ended: the chain up to then, to verify it
            teams[tid] = {"name": t.name, "seq": served[0], "removed_at": served[0]}
    return web.json_response(
        {
            "org": {"seq": org.seq, "head": org.head.hex(), "root": org.root.hex()},
            "members": {m: {"seq": s.seq, "head": s.head.hex(), "name": s.name} for m, s in directory.members.items()},
            "teams": teams,
        }
    )


def int_query(request: web.Request, name: str, default: int) -> int:
    """A non-negative integer query parameter (at most 12 digits), ``default`` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise EncodingError(f"{name} must be a non-negative integer")
    return int(raw)


def _after(request: web.Request) -> int:
    return int_query(request, "after", 0)


def _links_response(links: list[Link], after: int) -> web.Response:
    return web.json_response({"links": [b64(link.wire) for link in links[after:]]})


async def org_chain(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    directory.require_org()
    return _links_response(directory.org_links, _after(request))


async def member_chain(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    mid = request.match_info["member"]
    directory.member(mid)
    return _links_response(directory.member_links[mid], _after(request))


async def team_chain(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    team = directory.team(request.match_info["team"])
    served = directory.served_length(team.team_id, session_of(request).member, int(now_of(request)),
                                     _overseer(request))
    if served is None:
        raise NotFound(f"unknown team {team.team_id}")
    return _links_response(directory.team_links[team.team_id][:served[0]], _after(request))


async def append_org_link(request: web.Request) -> web.Response:
    _, link = await _signed_link(request, {"link"})
    if link.type == "org.join":
        raise ChainError("joins go through /api/v1/join")
    app = request.app
    async with app[LOCK]:
        directory = app[DIRECTORY]
        org = directory.require_org()
        if link.seq <= org.seq:
            raise Conflict("the organization chain moved on; fetch it and retry")
        directory.check_not_before(link)
        state = directory.check_org_link(link)
        await app[STORAGE].append_links([StoredLink("org", link.seq, "org", link.wire)], [], [])
        directory.commit_org(state, link)
    note_links(request, link)
    return web.json_response({"seq": state.seq}, status=201)


def _boxes(f: Fields) -> dict[str, bytes]:
    raw = f.raw.get("boxes", {})
    if not isinstance(raw, dict) or len(raw) > 1000:
        raise EncodingError("boxes must be an object of member id -> base64 box")
    return {str(k): unb64(v, "box", 4096) for k, v in raw.items()}


def _new_box_rows(before: Any, after: Any, boxes: dict[str, bytes]) -> list[tuple[str, int, str, bytes]]:
    old = before.boxes if before is not None else {}
    rows = []
    new = {k: c for k, c in after.boxes.items() if k not in old}
    if {mid for (_, mid) in new} != set(boxes) or len(new) != len(boxes):
        raise IntegrityError("uploaded key boxes do not match the link's box commitments")
    for (gen, mid), c in new.items():
        if box_hash(boxes[mid]) != c.hash:
            raise IntegrityError(f"key box for {mid} does not match its commitment")
        rows.append((after.team_id, gen, mid, boxes[mid]))
    return rows


def _require_fresh_org(request: web.Request, link: Link) -> None:
    """Team links must be made against the current organization state."""
    org = request.app[DIRECTORY].require_org()
    seq = link.body.raw.get("org_seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and seq < org.seq:
        raise Conflict("the organization chain moved on; fetch it and retry")


def _require_signer(request: web.Request, link: Link) -> None:
    s = session_of(request)
    if (link.signer, link.device) != (s.member, s.device):
        raise PolicyDenied("links must be signed by the logged-in device")


@contextlib.asynccontextmanager
async def running(job: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """A background job for the app's lifetime (inside a ``cleanup_ctx``): started on entry,
    cancelled and awaited on exit."""
    task = asyncio.create_task(job)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def note_links(request: web.Request, *links: Link) -> None:
    """One audit event per accepted chain link: its type, chain, position and hash (ids, never names)."""
    for link in links:
        res = {"chain": link.chain or "", "seq": str(link.seq), "link": link.hash.hex()}
        subject = link.body.raw.get("member")
        if link.type.startswith("team."):
            res["team"] = link.chain or ""
        if isinstance(subject, str):
            res["member"] = subject
        note(request, link.type, res, subject if isinstance(subject, str) else None,
             actor=link.signer, device=link.device)


async def _signed_link(request: web.Request, allowed: set[str]) -> tuple[Fields, Link]:
    """The request's link, signed by the logged-in device and dated near the server's clock."""
    f = await read_json(request, allowed)
    link = parse_link_field(f, "link")
    _require_signer(request, link)
    check_link_time(request, link)
    return f, link


async def create_team(request: web.Request) -> web.Response:
    f, link = await _signed_link(request, {"link", "boxes"})
    boxes = _boxes(f)
    app = request.app
    async with app[LOCK]:
        _require_fresh_org(request, link)
        state = app[DIRECTORY].check_team_create(link)
        rows = _new_box_rows(None, state, boxes)
        app[DIRECTORY].check_team_name(state)  # last: no other refusal may tell whether a name exists
        await app[STORAGE].append_links([StoredLink(state.team_id, 1, "team", link.wire)], [], rows)
        app[DIRECTORY].commit_team(state, link)
    note_links(request, link)
    return web.json_response({"team": state.team_id, "seq": 1}, status=201)


async def append_team_link(request: web.Request) -> web.Response:
    f, link = await _signed_link(request, {"link", "boxes"})
    boxes = _boxes(f)
    app = request.app
    async with app[LOCK]:
        team = _visible_team(request, request.match_info["team"])
        if link.chain != team.team_id:
            raise ChainError("link belongs to another chain")
        if link.seq <= team.seq:
            raise Conflict("the team chain moved on; fetch it and retry")
        _require_fresh_org(request, link)
        state = app[DIRECTORY].check_team_link(team.team_id, link)
        rows = _new_box_rows(team, state, boxes)
        await app[STORAGE].append_links([StoredLink(state.team_id, link.seq, "team", link.wire)], [], rows)
        app[DIRECTORY].commit_team(state, link)
    note_links(request, link)
    return web.json_response({"team": state.team_id, "seq": state.seq}, status=201)


async def append_member_link(request: web.Request) -> web.Response:
    f, link = await _signed_link(request, {"link", "puk_boxes"})
    if link.chain != request.match_info["member"]:
        raise ChainError("link belongs to another chain")
    raw = f.raw.get("puk_boxes", {})
    if not isinstance(raw, dict) or len(raw) > 64:
        raise EncodingError("puk_boxes must be an object of device id -> base64 box")
    boxes = {str(k): unb64(v, "puk box", 4096) for k, v in raw.items()}
    app = request.app
    async with app[LOCK]:
        directory = app[DIRECTORY]
        before = directory.member(link.chain or "")
        if link.seq <= before.seq:
            raise Conflict("your member chain moved on; fetch it and retry")
        directory.check_not_before(link)
        state, _ = directory.check_member_link(link)
        gen = state.puk_gen
        old = before.puks[gen].box_hashes if gen in before.puks else {}
        new = {d: h for d, h in state.puks[gen].box_hashes.items() if old.get(d) != h}
        if set(new) != set(boxes) or any(box_hash(boxes[d]) != h for d, h in new.items()):
            raise IntegrityError("uploaded PUK boxes do not match the link's commitments")
        await app[STORAGE].append_links([StoredLink(state.member_id, link.seq, "member", link.wire)],
                                        [(state.member_id, gen, d, boxes[d]) for d in new], [])
        directory.commit_member((state, link))
    note_links(request, link)
    return web.json_response({"seq": state.seq}, status=201)


LINK_SLOT_TTL = 600.0


def _slot(request: web.Request) -> str:
    slot = request.match_info["slot"]
    if len(slot) != 32 or any(c not in "0123456789abcdef" for c in slot):
        raise EncodingError("slot must be 32 lowercase hex characters")
    return slot


async def open_link_slot(request: web.Request) -> web.Response:
    s = session_of(request)
    slot = _slot(request)
    await request.app[STORAGE].open_slot(slot, s.member, now_of(request) + LINK_SLOT_TTL, now_of(request),
                                         quotas(request.app)["link_slots"])
    return web.json_response({"slot": slot, "expires": now_of(request) + LINK_SLOT_TTL}, status=201)


async def offer_link_slot(request: web.Request) -> web.Response:
    f = await read_json(request, {"payload"})
    payload = unb64(f.raw.get("payload"), "payload", 4096)
    await request.app[STORAGE].fill_slot(_slot(request), payload, now_of(request))
    return web.json_response({"ok": True}, status=201)


async def read_link_slot(request: web.Request) -> web.Response:
    payload = await request.app[STORAGE].read_slot(_slot(request), session_of(request).member, now_of(request))
    return web.json_response({"payload": b64(payload) if payload is not None else None})


async def my_team_boxes(request: web.Request) -> web.Response:
    team = _visible_team(request, request.match_info["team"])
    me = session_of(request).member
    note(request, "keys.team", {"team": team.team_id})
    rows = await request.app[STORAGE].team_boxes_for(team.team_id, me)
    return web.json_response({"boxes": [{"gen": g, "box": b64(b)} for g, b in rows]})


async def my_puk_boxes(request: web.Request) -> web.Response:
    s = session_of(request)
    note(request, "keys.member")
    rows = await request.app[STORAGE].puk_boxes_for(s.member, s.device)
    return web.json_response({"boxes": [{"puk_gen": g, "box": b64(b)} for g, b in rows]})


# -- documents ---------------------------------------------------------------------------------


def team_access(request: web.Request, action: str, denied: str) -> Any:
    """The route's team, if the caller may see it (else 404) and do ``action`` in it now (else 403:
    "you may not {denied} team NAME")."""
    team = _visible_team(request, request.match_info["team"])
    s = session_of(request)
    if not may_now(request.app, s, action, team):
        raise PolicyDenied(f"you may not {denied} team {team.name}")
    return team


def may_now(app: web.Application, s: Session, action: str, team: TeamState | None) -> bool:
    """May the session's member, with its device, do ``action`` now? The one judge decides."""
    directory = app[DIRECTORY]
    act = Act(s.member, s.device, int(app[CONFIG].clock()), action)
    return POLICY.entitled(act, directory.require_org(), directory.members, team)


def judge_act(request: web.Request, act: Act, team: TeamState | None) -> None:
    """The one judge (``security.authority``) on a signed act, exactly as every client will judge it."""
    directory = request.app[DIRECTORY]
    POLICY.judge(act, directory.require_org(), directory.members, team)


def _doc_access(request: web.Request, action: str) -> Any:
    return team_access(request, action, f"{action.split('.')[1]} documents in")


def hex_id(value: str, what: str) -> str:
    """A 32-character lowercase hex id from a route (documents, threads)."""
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise EncodingError(f"{what} id must be 32 lowercase hex characters")
    return value


def _check_doc_id(doc: str) -> str:
    return hex_id(doc, "document")


def _version_json(v: StoredVersion) -> dict[str, Any]:
    return {"vid": v.vid, "doc": v.doc, "seq": v.seq, "record": b64(v.record), "body_len": v.body_len}


async def list_docs(request: web.Request) -> web.Response:
    team = _doc_access(request, "doc.read")
    note(request, "doc.list", {"team": team.team_id})
    heads = await request.app[STORAGE].heads(team.team_id)
    return web.json_response({"docs": [_version_json(v) for v in heads]})


async def doc_versions(request: web.Request) -> web.Response:
    team = _doc_access(request, "doc.read")
    doc = _check_doc_id(request.match_info["doc"])
    note(request, "doc.list", {"team": team.team_id, "doc": doc})
    versions = await request.app[STORAGE].versions(team.team_id, doc)
    if not versions:
        raise NotFound("no such document in this team")
    return web.json_response({"versions": [_version_json(v) for v in versions]})


async def version_body(request: web.Request) -> web.StreamResponse:
    team = _doc_access(request, "doc.read")
    storage = request.app[STORAGE]
    event = note(request, "doc.read", {"team": team.team_id, "vid": request.match_info["vid"][:64]})
    v = await storage.version(team.team_id, request.match_info["vid"])
    if v is None:
        raise NotFound("no such document version in this team")
    event.res["doc"] = v.doc
    path = storage.blob_path(v.blob)
    if not path.exists():
        raise NotFound("document body is missing on the server")
    # 1 MiB reads: over TLS aiohttp cannot sendfile and reads the file in its executor, one trip per chunk.
    return web.FileResponse(path, chunk_size=1 << 20, headers={"Content-Type": "application/octet-stream"})


async def _read_exactly(request: web.Request, n: int, what: str) -> bytes:
    try:
        return await request.content.readexactly(n)
    except asyncio.IncompleteReadError as e:
        raise Truncated(f"upload ended inside the {what}") from e


async def put_version(request: web.Request) -> web.Response:
    team = _doc_access(request, "doc.write")
    doc = _check_doc_id(request.match_info["doc"])
    s = session_of(request)
    app = request.app
    event = note(request, "doc.write", {"team": team.team_id, "doc": doc})
    storage, directory, config = app[STORAGE], app[DIRECTORY], app[CONFIG]
    if await _read_exactly(request, len(MAGIC), "header") != MAGIC:
        raise EncodingError("upload does not start with the document magic")
    (n,) = struct.unpack(">I", await _read_exactly(request, 4, "header"))
    if n > MAX_PRELUDE:
        raise EncodingError("document header is too large")
    pre = Fields(decode(await _read_exactly(request, n, "header")), "document prelude", {"core", "wrapped", "meta"})
    core = Core.parse(pre.bytes_("core", max_size=2048))
    wrapped, meta = pre.bytes_("wrapped", 48), pre.bytes_("meta", max_size=4096 + 16)
    if (core.team, core.doc) != (team.team_id, doc):
        raise IntegrityError("document header names another team or document")
    if (core.author, core.device) != (s.member, s.device):
        raise PolicyDenied("document must be signed by the uploading device")
    if core.team_seq != team.seq:
        raise Conflict(f"the team changed (now at link {team.seq}); sync and retry")
    if core.gen != team.generation:
        raise Conflict(f"team key generation {core.gen} is not current ({team.generation}); sync and retry")
    reasons = team.rotation_reasons(int(now_of(request)), directory.members, directory.require_org())
    if reasons:
        raise Conflict(f"the team key must be rotated before new content ({reasons[0]}); "
                       "any team member's client does it on its next run")
    if abs(core.time - now_of(request)) > config.clock_skew:
        raise EncodingError(f"document time is too far from the server's time {int(now_of(request))}")
    if core.body_len > config.max_upload:
        raise web.HTTPRequestEntityTooLarge(max_size=config.max_upload, actual_size=core.body_len)
    # Quotas before the body arrives (its length is declared); checked again as the version is stored.
    limits = quotas(app)
    if core.body_len > limits["version_bytes"]:
        raise QuotaExceeded(f"quota version_bytes: a document version may have at most {limits['version_bytes']} "
                            f"bytes; this one has {core.body_len}", status=413)
    allowance = Allowance(s.member, limits["versions_per_day"], limits["stored_bytes"])
    check_allowance("version", allowance, await storage.usage(s.member, "version", int(now_of(request)),
                                                              allowance.per_day), core.body_len)
    existing = await storage.versions(team.team_id, doc)
    head_vid = existing[-1].vid if existing else None
    if core.parent != head_vid or core.seq != len(existing) + 1:
        raise Conflict(f"document changed on the server (now at version {len(existing)}); fetch, merge, put again")
    temp = storage.temp_path()
    placed: Path | None = None
    try:
        body_hash = await _receive_body(request, temp, core.body_len)
        sig = await _read_exactly(request, 64, "signature")
        if await request.content.read(1):
            raise EncodingError("upload has bytes after the signature")
        record = Record.build(core.raw, wrapped, meta, body_hash, sig)
        # The upload may have taken long: the writer must still be allowed, under the same team state.
        check_session(app, s)
        team = _doc_access(request, "doc.write")
        if (core.team_seq, core.gen) != (team.seq, team.generation):
            raise Conflict(f"the team changed during the upload (now at link {team.seq}); sync and put again")
        record.verify(directory.member(s.member).device(s.device).sign_public)
        judge_act(request, Act(core.author, core.device, core.time, "doc.write", team_seq=core.team_seq, gen=core.gen),
                  team)
        vid = record.version_id
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, storage.place_blob, temp, vid)
        placed = storage.blob_path(vid)
        await storage.add_version(
            StoredVersion(vid, team.team_id, doc, core.seq, record.raw, vid, core.body_len), core.parent,
            int(now_of(request)), team_seq=core.team_seq, allowance=allowance,
        )
        directory.note_signed(core.author, core.device, core.time)
        placed = None
        event.res["vid"] = vid
        event.detail.update({"gen": core.gen, "seq": core.seq})
    finally:
        temp.unlink(missing_ok=True)
        # A refused version's blob goes, unless an identical upload already made it a real version.
        if placed is not None and await storage.version(team.team_id, vid) is None:
            placed.unlink(missing_ok=True)
    return web.json_response({"vid": vid, "seq": core.seq}, status=201)


async def _receive_body(request: web.Request, temp: Path, length: int) -> bytes:
    """Hash the body on the event loop while a worker thread writes the previous piece (one write
    in flight, pieces gathered to ~1 MiB, so at most ~2 MiB held); small bodies are written inline
    (a thread trip costs more)."""
    hasher = hashlib.sha256()
    loop = asyncio.get_running_loop()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    writing: concurrent.futures.Future[None] | None = None
    batch: list[bytes] = []
    batched = 0
    try:
        remaining = length
        while remaining:
            chunk = await request.content.read(min(remaining, 1 << 20))
            if not chunk:
                raise Truncated(f"upload ended {remaining} bytes before the end of the document body")
            remaining -= len(chunk)
            hasher.update(chunk)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= 1 << 20 or not remaining:
                if writing is not None:
                    await asyncio.wrap_future(writing)
                    writing = None
                if batched < 65536:
                    _write_chunks(fd, batch)
                else:
                    writing = _WRITERS.submit(_write_chunks, fd, batch)
                batch, batched = [], 0
        if writing is not None:
            await asyncio.wrap_future(writing)
            writing = None
        await loop.run_in_executor(None, os.fsync, fd)  # never on the loop: it would stall every request
    finally:
        try:  # cancelled or failed: the worker must be done with fd first (at most one 1 MiB write)
            if writing is not None:
                concurrent.futures.wait([writing])
        finally:
            os.close(fd)
    return hasher.digest()


# Upload writes: our own pool, so a cancelled handler can still wait for its write (see above).
_WRITERS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mvault-upload")


def _write_chunks(fd: int, chunks: list[bytes]) -> None:
    for data in chunks:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]


# -- application -------------------------------------------------------------------------------


def make_app(storage: SQLiteStorage, directory: Directory, config: Config) -> web.Application:
    from server import login, threads  # noqa: PLC0415 (both import this module)
    from server.audit_api import audit_middleware, register  # noqa: PLC0415 (audit_api imports this module)

    app = web.Application(middlewares=[errors_middleware, audit_middleware, login.limit_middleware, auth_middleware],
                          client_max_size=MAX_JSON)
    app[STORAGE] = storage
    app[DIRECTORY] = directory
    app[CONFIG] = config
    app[LOCK] = asyncio.Lock()
    app[LAST_PURGE] = [0.0]
    app[LIMITER] = SourceLimiter(config.rate_per_second, config.rate_burst, config.rate_sources)
    app[FAILURES] = FailureThrottle(config.rate_sources)
    app[REFUSALS] = Refusals()
    r = app.router
    r.add_get("/api/health", health)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/api/v1/info", info)
    r.add_post("/api/v1/found", found)
    r.add_post("/api/v1/join", join)
    r.add_post("/api/v1/join/head", join_head)
    r.add_post(CHALLENGE, login.challenge)
    r.add_post(LOGIN, login.login)
    r.add_get("/api/v1/directory", directory_view)
    r.add_get("/api/v1/chains/org", org_chain)
    r.add_post("/api/v1/org/links", append_org_link)
    r.add_get("/api/v1/chains/member/{member}", member_chain)
    r.add_post("/api/v1/members/{member}/links", append_member_link)
    r.add_post("/api/v1/device-links/{slot}", open_link_slot)
    r.add_post("/api/v1/device-links/{slot}/offer", offer_link_slot)
    r.add_get("/api/v1/device-links/{slot}", read_link_slot)
    r.add_get("/api/v1/chains/team/{team}", team_chain)
    r.add_post("/api/v1/teams", create_team)
    r.add_post("/api/v1/teams/{team}/links", append_team_link)
    r.add_get("/api/v1/teams/{team}/boxes", my_team_boxes)
    r.add_get("/api/v1/puk-boxes", my_puk_boxes)
    r.add_get("/api/v1/teams/{team}/docs", list_docs)
    r.add_get("/api/v1/teams/{team}/docs/{doc}", doc_versions)
    r.add_post("/api/v1/teams/{team}/docs/{doc}", put_version)
    r.add_get("/api/v1/teams/{team}/versions/{vid}/body", version_body)
    register(app)
    threads.register(app)
    return app


async def open_app(config: Config) -> web.Application:
    from server.audit import AuditStore  # noqa: PLC0415
    from server.audit_api import AUDIT, STATE, load_state  # noqa: PLC0415

    storage = await SQLiteStorage.open(config.data_dir)
    try:
        directory = await Directory.load(storage)
        audit = await AuditStore.open(config.data_dir)
    except BaseException:
        await storage.close()
        raise
    try:
        state = await load_state(audit, directory)
    except BaseException:
        await audit.close()
        await storage.close()
        raise
    app = make_app(storage, directory, config)
    app[AUDIT] = audit
    app[STATE] = state

    async def close(app: web.Application) -> None:
        await app[AUDIT].close()
        await app[STORAGE].close()

    app.on_cleanup.append(close)
    return app
