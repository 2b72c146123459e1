"""Audit endpoints and the middleware that turns every request's outcome into an event.

Handlers describe what they do with ``server.audit.note``; the middleware seals one
event per note when the handler has finished (result ``ok``, or ``denied``/``failed``
with the error code) and waits until it is durable before the answer leaves. A request of
someone with a session (or a session token that still names a member) refused with any 4xx
that no handler described becomes a ``request.denied`` event; beyond a member's first
``Config.member_refusals`` refusals in a minute, the rest of that minute are counted into one
``request.refusals`` event of the member instead (``server/guard.py``). Refusals of requests by
nobody in particular (no session: a failed login, a bad join, an unknown token) are not one
event each: they are counted per minute into one ``request.summary`` event (``server/guard.py``),
written when the minute closes (checked every few seconds, and at shutdown), so that anyone
on the network can add at most one event a minute. Failed logins count against the source
address (rule ``failed-logins``), never against the device they name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from security.auditkey import AuditKeyClaim, designated_at, judge_audit_key, judge_cosignature
from security.authority import POLICY
from security.events import (
    DAY,
    Event,
    Sealer,
    rules_for,
    seal_event,
    valid_box_public,
)
from security.protocols import Protocols, defaults, parse
from server.app import (
    CONFIG,
    DIRECTORY,
    FAILURES,
    KEY_HOLDER,
    LOGIN,
    NAMED_DEVICE,
    REFUSALS,
    SESSION_KEY,
    STORAGE,
    Handler,
    b64,
    int_query,
    now_of,
    read_json,
    running,
    session_of,
    unb64,
)
from server.audit import NOTES, AuditStore, Note, note, today
from server.directory import Directory
from server.guard import MemberRefusals, Summary, Throttled
from server.login import source_of
from server.storage import Session
from vault.acts import Act
from vault.encoding import Fields, decode, encode
from vault.errors import BadSignature, ChainError, EncodingError, NotFound, PolicyDenied, VaultError

AUDIT = web.AppKey("audit", AuditStore)
MEMBER_REFUSALS = web.AppKey("member_refusals", MemberRefusals)
log = logging.getLogger("mvault.server")


@dataclass
class AuditKey:
    gen: int = 0
    pub: bytes | None = None
    team: str = ""
    statement: bytes = b""
    sig: bytes = b""


@dataclass
class AuditState:
    key: AuditKey
    protocols: Protocols
    protocols_digest: bytes
    pruned_day: int = -1
    sealer: Sealer = field(default_factory=Sealer)
    broken: bool = False


STATE = web.AppKey("audit_state", AuditState)


class ServiceUnavailable(VaultError):
    code = "unavailable"
    status = 503


def protocols_of(app: web.Application) -> Protocols:
    st = app[STATE]
    org = app[DIRECTORY].org
    change = org.protocols if org is not None else None
    digest = change.digest if change is not None else b""
    if digest != st.protocols_digest:
        st.protocols = parse(change.text) if change is not None else defaults()
        st.protocols_digest = digest
    return st.protocols


async def record(app: web.Application, n: Note, result: str, session: Session | None) -> int:
    now = int(app[CONFIG].clock())
    actor = n.actor if n.actor is not None else (session.member if session else "")
    device = n.device if n.device is not None else (session.device if session else "")
    event = Event(now, actor, device, n.action, result, n.res, rules_for(n.action), n.detail)
    members = app[DIRECTORY].members
    readers = [m for m in dict.fromkeys([actor, n.subject or ""]) if m in members]
    st = app[STATE]
    st.sealer = st.sealer.used()
    key = usable_audit_key(app, now)
    leaf = seal_event(event, key.gen, key.pub, [members[m].puk_box_public for m in readers], st.sealer)
    return await app[AUDIT].append(leaf, now // DAY)


def usable_audit_key(app: web.Application, now: int) -> AuditKey:
    """The audit key events are sealed to now, or none (``AuditKey()``: only the actor and subject read them).

    Only a key of the designated team's current generation, with no rotation pending: once a member
    who holds that generation leaves (a removal, an expulsion, a revoked device, a role's end), new
    events are sealed to no audit key until a Security Team client publishes the next generation's
    key (it does so in the command that rotates). Review round 3: an expelled Security Team member
    with a copy of the server's data read the events recorded after the expulsion."""
    key = app[STATE].key
    if key.pub is None:
        return key
    directory = app[DIRECTORY]
    org, team = directory.org, directory.teams.get(key.team)
    if (org is None or team is None or org.audit_team not in (None, key.team) or team.generation != key.gen
            or team.rotation_reasons(now, directory.members, org)):
        return AuditKey()
    return key


def _result(status: int) -> str:
    return "denied" if status in (401, 403, 429) else "failed"


CLAIMED = web.RequestKey("audit_claimed", tuple)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside the auth middleware, so refused sessions are recorded too. Fails closed: if an
    event cannot be recorded, the server answers 503 to everything until it is restarted."""
    app = request.app
    st = app[STATE]
    if st.broken:
        raise ServiceUnavailable("the audit log cannot record events; an operator must fix the server")
    try:
        response = await handler(request)
    except (VaultError, web.HTTPException) as e:
        status = e.status
        if status < 400:
            raise
        code = e.code if isinstance(e, VaultError) else str(status)
        await _guarded(app, _record_failure(request, status, code))
        raise
    session = request.get(SESSION_KEY)
    for n in request.get(NOTES, []):
        if not n.failure_only:
            await _guarded(app, record(app, n, "ok", session))
    await _guarded(app, _prune(app))
    await _guarded(app, flush_refusals(app, app[CONFIG].clock()))
    return response


async def _guarded(app: web.Application, work: Awaitable[object]) -> None:
    """Run audit work; if it fails for any reason but a client error, stop serving (fail closed).
    Only failures to record trip this: a handler's own errors never pass through here."""
    try:
        await work
    except (VaultError, web.HTTPException, asyncio.CancelledError):
        raise
    except Exception as e:
        app[STATE].broken = True
        log.exception("could not record an audit event; refusing all requests from now on")
        raise ServiceUnavailable("the audit log cannot record events; an operator must fix the server") from e


async def _record_failure(request: web.Request, status: int, code: str) -> None:
    session = request.get(SESSION_KEY)
    claimed = request.get(CLAIMED)
    notes = request.get(NOTES, [])
    if session is None and claimed is None and not notes:
        await _count_refusal(request, status, code)
        return
    if not notes:
        # Refused requests by someone we can name (a member with a session, or a session token that
        # still names one), whatever the status: a 404 on a team route is a team the member may not
        # see (the server does not tell which), a 400 or 409 a refused change (e.g. a team.create the
        # chain rules refuse). One event each: members are accountable.
        res = {"route": _route(request)}
        if "team" in request.match_info:
            res["team"] = request.match_info["team"][:64]
        actor, device = (None, None) if claimed is None else claimed
        n = Note("request.denied", res, detail={"method": request.method, "status": status, "error": code},
                 actor=actor, device=device)
        await _record_member_refusal(request, n, _refusal_result(status), session, code)
        return
    for n in notes:
        n.detail["error"] = code
        if n.action == "auth.login":  # only after the signature verified: the key holder was refused
            n.action = "auth.fail"
        await _record_member_refusal(request, n, _result(status), session, code)


async def _record_member_refusal(request: web.Request, n: Note, result: str, session: Session | None,
                                 code: str) -> None:
    """A refusal we can attribute to a member: an event of its own for the first ``Config.member_refusals``
    of that member in a minute, the rest counted into the member's ``request.refusals`` event of that
    minute (so nobody, not even a member pending admission, grows the log by repeating a refused request)."""
    app = request.app
    actor = n.actor if n.actor is not None else (session.member if session else "")
    if actor:
        team = n.res.get("team", "") or request.match_info.get("team", "")[:64]
        login_device = (n.device or "") if n.action == "auth.fail" else ""
        if not app[MEMBER_REFUSALS].admit(app[CONFIG].clock(), actor, n.action, _route(request), code,
                                          result == "denied", team, login_device):
            return
    await record(app, n, result, session)


def _refusal_result(status: int) -> str:
    """``failed`` for what an honest client meets in normal use (a conflict with another writer, an upload
    over the size limit); ``denied`` for every other refusal (``bulk-access`` counts these)."""
    return "failed" if status in (409, 413) else "denied"


async def _count_refusal(request: web.Request, status: int, code: str) -> None:
    """An unauthenticated refusal: counted into this minute's summary; a failed login also counts
    against its source address (blocked for ``lock_minutes`` after ``max_failures`` in the window)."""
    app = request.app
    now = app[CONFIG].clock()
    source = source_of(request)
    route = _route(request)
    closed = app[REFUSALS].add(now, route, code, source, request.get(NAMED_DEVICE) if route == LOGIN else None,
                               status == Throttled.status)
    if route == LOGIN and status == 401 and not request.get(KEY_HOLDER):  # a key holder guessed nothing
        rule = protocols_of(app).rule("failed-logins")
        if rule.enabled and app[FAILURES].failure(source, now, rule.int_("max_failures"),
                                                  rule.int_("window_minutes") * 60.0,
                                                  rule.int_("lock_minutes") * 60.0):
            app[REFUSALS].blocked()
    if closed is not None:
        await _record_summary(app, closed)


async def _record_summary(app: web.Application, s: Summary) -> None:
    await record(app, Note("request.summary", {}, None, s.detail(), "", ""), "denied", None)


async def flush_refusals(app: web.Application, now: float) -> None:
    """Record the summaries of a minute that has closed (``now=math.inf``: the current one, at shutdown)."""
    closed = app[REFUSALS].take_closed(now)
    if closed is not None:
        await _record_summary(app, closed)
    for s in app[MEMBER_REFUSALS].take_closed(now):
        await record(app, Note("request.refusals", {}, None, s.detail(), s.member, ""),
                     "denied" if s.denied else "failed", None)


FLUSH_EVERY = 5.0  # seconds between checks for a closed minute of refusals


async def _flush_loop(app: web.Application) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        state = app.get(STATE)
        if state is None or state.broken:
            continue
        with contextlib.suppress(ServiceUnavailable):  # logged by _guarded; the server now refuses everything
            await _guarded(app, flush_refusals(app, app[CONFIG].clock()))


async def _refusal_flusher(app: web.Application) -> Any:
    async with running(_flush_loop(app)):
        yield
    state = app.get(STATE)
    if state is not None and not state.broken and AUDIT in app:
        try:
            await flush_refusals(app, math.inf)
        except Exception:
            log.exception("could not record the last summary of refused requests at shutdown")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "?"


async def _prune(app: web.Application) -> None:
    st = app[STATE]
    day = today(app[CONFIG].clock())
    if st.pruned_day == day:
        return
    st.pruned_day = day
    before = day - protocols_of(app).retention_days
    count = await app[AUDIT].prune(before)
    if count:
        await record(app, Note("audit.prune", {}, None, {"before_day": before, "count": count}, "", ""), "ok", None)


# -- endpoints ------------------------------------------------------------------------------


def _org_id(request: web.Request) -> str:
    org = request.app[DIRECTORY].org
    return org.org_id if org is not None else ""


async def checkpoint(request: web.Request) -> web.Response:
    app = request.app
    store = app[AUDIT]
    old = int_query(request, "from", 0)
    cp = await store.checkpoint(_org_id(request), int(now_of(request)))
    size = cp.checkpoint.size
    proof = store.tree.consistency_proof(old, size) if 0 < old <= size else []
    witness = None
    found = await store.witnessed()
    if found is not None:
        w, cosigs = found
        w_proof = store.tree.consistency_proof(w.checkpoint.size, size) if 0 < w.checkpoint.size <= size else []
        witness = {"checkpoint": b64(w.checkpoint.raw), "sig": b64(w.sig), "proof": [b64(h) for h in w_proof],
                   "cosigs": [{"member": c.member, "device": c.device, "sig": b64(c.sig), "time": c.time}
                              for c in cosigs]}
    return web.json_response({"checkpoint": b64(cp.checkpoint.raw), "sig": b64(cp.sig),
                              "proof": [b64(h) for h in proof], "witness": witness,
                              "log_key": b64(store.log_public)})


def _require_admitted(request: web.Request) -> str:
    me = session_of(request).member
    if not request.app[DIRECTORY].require_org().admitted(me):
        raise PolicyDenied("members still waiting for admission cannot read the audit log")
    return me


def _require_security(request: web.Request) -> str:
    me = session_of(request).member
    if "security" not in request.app[DIRECTORY].require_org().roles_of(me, int(now_of(request))):
        raise PolicyDenied("only the Security Team may do this")
    return me


async def leaves(request: web.Request) -> web.Response:
    _require_admitted(request)
    start, count = int_query(request, "start", 0), int_query(request, "count", 1000)
    rows = await request.app[AUDIT].leaves(start, count)
    note(request, "audit.read", detail={"start": start, "count": len(rows)})
    return web.json_response({"leaves": [{"index": i, "hash": b64(h), "leaf": b64(leaf) if leaf is not None else None}
                                         for i, h, leaf in rows]})


def _judge_now(request: web.Request, action: str) -> None:
    """The one judge on the logged-in device now, before the body is read (its signed time is judged later)."""
    s = session_of(request)
    directory = request.app[DIRECTORY]
    POLICY.judge(Act(s.member, s.device, int(now_of(request)), action), directory.require_org(), directory.members,
                 None)


async def cosign(request: web.Request) -> web.Response:
    _judge_now(request, "audit.cosign")
    f = await read_json(request, {"checkpoint", "sig", "time"})
    raw = unb64(f.raw.get("checkpoint"), "checkpoint", 4096)
    sig = unb64(f.raw.get("sig"), "sig", 128)
    t = f.int_("time", 0)
    s = session_of(request)
    store = request.app[AUDIT]
    directory = request.app[DIRECTORY]
    if abs(t - now_of(request)) > request.app[CONFIG].clock_skew:
        raise EncodingError("the cosignature's time is too far from the server's")
    issued = await store.issued(raw)
    if issued is None:
        raise NotFound("this server never issued that checkpoint for its current log")
    try:  # the one judge again, at the cosignature's signed time
        judge_cosignature(raw, s.member, s.device, t, sig, directory.require_org(), directory.members)
    except BadSignature as e:
        raise EncodingError("the cosignature does not verify with your device key") from e
    note(request, "audit.cosign", detail={"size": issued.checkpoint.size})
    await store.add_cosig(issued.checkpoint.size, s.member, s.device, sig, t)
    return web.json_response({"size": issued.checkpoint.size}, status=201)


async def get_key(request: web.Request) -> web.Response:
    key = request.app[STATE].key
    if key.pub is None:
        return web.json_response({"key": None})
    return web.json_response({"key": {"statement": b64(key.statement), "sig": b64(key.sig)}})


async def put_key(request: web.Request) -> web.Response:
    _judge_now(request, "audit.key")
    s = session_of(request)
    body = await read_json(request, {"statement", "sig"})
    raw = unb64(body.raw.get("statement"), "statement", 4096)
    sig = unb64(body.raw.get("sig"), "sig", 128)
    claim = AuditKeyClaim.parse(raw)
    key = AuditKey(claim.gen, claim.pub, claim.team, raw)
    if not valid_box_public(claim.pub):
        raise EncodingError("the audit public key is not a usable X25519 key")
    app = request.app
    directory = app[DIRECTORY]
    org = directory.require_org()
    now = int(now_of(request))
    if (claim.org, claim.member, claim.device) != (_org_id(request), s.member, s.device):
        raise PolicyDenied("the statement must name this organization and the logged-in device")
    if abs(claim.time - now) > app[CONFIG].clock_skew:
        raise EncodingError("the statement's time is too far from the server's")
    # The one judge (act audit.key at the statement's time), the designated team (the current one:
    # a statement for a team designated until a moment ago is refused), the team's kind.
    team = directory.team(claim.team)
    judge_audit_key(claim, sig, org, directory.members, team, org.audit_team)
    if key.gen != team.generation or not team.holds_key(s.member, now):
        raise ChainError(f"the audit key must be the team's current generation ({team.generation}), held by you")
    current = app[STATE].key
    if current.pub is not None and current.team == key.team and current.gen > key.gen:
        raise ChainError("a newer audit key is already in force")
    note(request, "audit.key", {"team": key.team}, detail={"gen": key.gen})
    key.sig = sig
    await app[AUDIT].set_meta("audit_key", encode({"statement": raw, "sig": sig}))
    app[STATE].key = key
    return web.json_response({"gen": key.gen}, status=201)


ATTEST_KINDS = {"keystore", "verify", "approve", "lost", "export", "report"}


async def attest(request: web.Request) -> web.Response:
    f = await read_json(request, {"kind", "time_cost", "memory_kib", "parallelism", "member", "device", "link",
                                  "fingerprint", "count", "violated"})
    kind = f.str_("kind", 16)
    if kind not in ATTEST_KINDS:
        raise EncodingError(f"kind must be one of {sorted(ATTEST_KINDS)}")
    directory = request.app[DIRECTORY]
    me = session_of(request).member
    now = int(now_of(request))
    if kind == "keystore":
        detail: dict[str, int | str] = {k: f.int_(k, 1, 2**32) for k in ("time_cost", "memory_kib", "parallelism")}
        note(request, "attest.keystore", detail=detail)
    elif kind == "verify":
        verified = directory.member(f.str_("member", 64)).member_id
        note(request, "attest.verify", {"member": verified}, verified, {"fingerprint": f.str_("fingerprint", 128)})
    elif kind == "approve":
        link = f.str_("link", 64)
        approved = next((x for x in directory.org_links if x.hash.hex() == link), None)
        if approved is None:
            raise NotFound("no organization link has that hash")
        if "ncc" not in directory.require_org().roles_of(me, now):
            raise PolicyDenied("only NCC members approve organization changes")
        if me in (approved.signer, approved.body.raw.get("member")):
            raise PolicyDenied("the second approver is neither the link's signer nor its subject")
        note(request, "attest.approve", {"link": link, "chain": ""})
    elif kind == "lost":
        target = directory.member(f.str_("member", 64))
        device = target.device(f.str_("device", 64)).device_id
        roles = directory.require_org().roles_of(me, now)
        if target.member_id != me and not roles & {"security", "ncc"}:
            raise PolicyDenied("only the device's member, the Security Team or the NCC report a device lost")
        # Sealed to the reporter and the Security Team only: a member under suspicion does not
        # learn who reported their device.
        note(request, "attest.lost", {"member": target.member_id, "device": device},
             target.member_id if target.member_id == me else None)
    elif kind == "report":
        # The Security Team's report found these rules violated: policy violations become events too.
        _require_security(request)
        note(request, "audit.report", detail={"violated": f.str_("violated", 1024), "count": f.int_("count", 0, 2**40)})
    else:
        note(request, "audit.export", detail={"count": f.int_("count", 0, 2**40)})
    return web.json_response({"ok": True}, status=201)


async def team_versions(request: web.Request) -> web.Response:
    """Every version's signed record (no body, no key) of one team: for exposure reports."""
    _require_security(request)
    team = request.app[DIRECTORY].team(request.match_info["team"])
    versions = await request.app[STORAGE].team_versions(team.team_id)
    note(request, "doc.list", {"team": team.team_id})
    return web.json_response({"versions": [{"vid": v.vid, "doc": v.doc, "seq": v.seq, "record": b64(v.record)}
                                           for v in versions]})


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/audit/checkpoint", checkpoint)
    r.add_get("/api/v1/audit/leaves", leaves)
    r.add_post("/api/v1/audit/cosign", cosign)
    r.add_get("/api/v1/audit/key", get_key)
    r.add_post("/api/v1/audit/key", put_key)
    r.add_post("/api/v1/audit/attest", attest)
    r.add_get("/api/v1/audit/teams/{team}/versions", team_versions)
    app[MEMBER_REFUSALS] = MemberRefusals(app[CONFIG].member_refusals)
    app.cleanup_ctx.append(_refusal_flusher)


async def load_state(store: AuditStore, directory: Directory) -> AuditState:
    """The audit state at start: the stored audit key only if it still checks (``stored_audit_key``)."""
    key = AuditKey()
    stored = await store.get_meta("audit_key")
    if stored is not None:
        try:
            key = stored_audit_key(stored, directory)
        except VaultError as e:
            # Safer than refusing to start: nothing is sealed to a key no entitled member published (whoever
            # could write audit.db may hold its secret), events stay readable by their actors, the Security
            # Team's next command publishes the key again, and `audit verify` flags the events sealed to
            # no audit key in between. A refusal to start would stop the whole vault until an operator
            # deleted the row by hand, which ends in this same state.
            log.error("the stored audit key does not check against the organization chain and is not used "
                      "(%s); events are sealed to no audit key until a Security Team member publishes it again "
                      "(their next command does)", e)
    return AuditState(key, defaults(), b"")


def stored_audit_key(stored: bytes, directory: Directory) -> AuditKey:
    """The stored audit-key statement, judged again as every client judges it before it believes it (the one
    judge at the statement's time, the team designated then, the team's kind, a generation the signer held);
    refused (``VaultError``) if it does not check: altered on disk, or never valid."""
    f = Fields(decode(stored), "stored audit key", {"statement", "sig"})
    raw, sig = f.bytes_("statement", max_size=4096), f.bytes_("sig", max_size=128)
    claim = AuditKeyClaim.parse(raw)
    if not valid_box_public(claim.pub):
        raise EncodingError("the audit public key is not a usable X25519 key")
    org = directory.require_org()
    team = directory.teams.get(claim.team)
    if team is None:
        raise ChainError(f"the statement names team {claim.team}, which is not a team of this organization")
    judge_audit_key(claim, sig, org, directory.members, team, designated_at(org, claim.time))
    return AuditKey(claim.gen, claim.pub, claim.team, raw, sig)


