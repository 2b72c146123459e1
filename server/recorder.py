"""The middleware that turns every request's outcome into an audit event, and the audit state at start.

Handlers describe what they do with ``server.notes.note``
(the audit endpoints are in ``server/routes/audit.py``); the middleware seals one
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
from collections.abc import AsyncIterator, Awaitable

from aiohttp import web

from security.auditkey import AuditKeyClaim, judge_published_audit_key
from security.auditwindow import withheld_reasons
from security.events import DAY, Event, rules_for, seal_event, valid_box_public
from security.protocols import defaults
from server.access import protocols_of
from server.context import (
    AUDIT,
    CHAINS,
    CLAIMED,
    CONFIG,
    DIRECTORY,
    GUARD,
    KEY_HOLDER,
    LOGIN,
    MEMBER_REFUSALS,
    NAMED_DEVICE,
    REFUSALS,
    SESSION_KEY,
    STATE,
    AuditKey,
    AuditState,
    Handler,
    running,
)
from server.directory import Directory
from server.guard import Summary, minute_of
from server.http import source_of
from server.links import link_note
from server.notes import LOGGED_LINKS, NOTES, Note, today
from server.store.protocols import AuditLog
from server.store.records import AuthSession
from vault.encoding import Fields, decode
from vault.errors import (
    ChainError,
    EncodingError,
    InsufficientStorage,
    ServiceUnavailable,
    StorageUnavailable,
    Throttled,
    VaultError,
)
from vault.links import link_hash, parse_link

log = logging.getLogger("mvault.server")


async def record(app: web.Application, n: Note, result: str, session: AuthSession | None,
                 when: int | None = None) -> int:
    """Seal and append the event of note ``n``; its index once durable. ``when``: the time of an act recorded
    late (``record_unlogged_links``), otherwise now."""
    now = int(app[CONFIG].clock()) if when is None else when
    actor = n.actor if n.actor is not None else (session.member if session else "")
    device = n.device if n.device is not None else (session.device if session else "")
    event = Event(now, actor, device, n.action, result, n.res, rules_for(n.action), n.detail)
    members = app[DIRECTORY].members
    readers = [m for m in dict.fromkeys([actor, n.subject or ""]) if m in members]
    st = app[STATE]
    st.sealer = st.sealer.used()
    key = usable_audit_key(app, now)
    leaf = seal_event(event, key.gen, key.pub, [members[m].puk_box_public for m in readers], st.sealer,
                      n.claim if result == "ok" else None)
    try:
        await settle(app)
        return await app[AUDIT].append(leaf, now // DAY)
    except (InsufficientStorage, StorageUnavailable):
        # sealed events are never dropped: appended once there is space, or once the database is back
        st.owed.append((leaf, now // DAY))
        keep_owed(app)
        raise


def keep_owed(app: web.Application) -> None:
    """Write the owed state to its reserved file (``server/store/owed.py``) so that a crash before space comes
    back loses none of it; if the reserve cannot take it, it stays in memory only, said in the log."""
    st = app[STATE]
    if st.journal is None:
        return
    try:
        if st.journal.save(st.owed, st.owed_links):
            return
        why = "more than its reserved file holds"
    except OSError as e:
        why = f"its reserved file cannot be written: {e}"
    log.warning("%d audit events are owed and kept in memory only (%s): a crash before the disk has space again "
                "loses them", len(st.owed), why)


async def settle(app: web.Application) -> None:
    """Append the events owed since the disk was full, oldest first; ``InsufficientStorage`` (507) while it
    still is. The audit middleware settles before any handler runs: no act is done while events are owed."""
    st = app[STATE]
    if not st.owed:
        return
    async with st.settling:
        count = len(st.owed)
        while st.owed:
            await app[AUDIT].append(*st.owed[0])
            st.owed.pop(0)
        if count:
            log.warning("the disk has space again: recorded the %d audit events it had no room for", count)
        links, st.owed_links = st.owed_links, []
        await _links_logged(app, links)
        keep_owed(app)  # nothing owed now (a crash before this line appends the events once more at the next start)


async def record_outside_a_request(app: web.Application, n: Note, result: str, session: AuthSession | None) -> None:
    """``record`` for an event no request's middleware records (an expiry purge, a live connection's start):
    a failure to record stops the server serving (fail closed), exactly as in ``audit_middleware``."""
    await _guarded(app, record(app, n, result, session))


async def record_notes_now(request: web.Request) -> None:
    """Record the notes the handler has made so far now, in order, instead of once it returns: their events take
    their places in the log where the handler stands (``put_key``: where its checks pass, review 36). ``record``
    seals and queues a leaf before it first waits when nothing is owed. Fails closed as ``audit_middleware``."""
    notes = request.get(NOTES, [])
    request[NOTES] = [n for n in notes if n.failure_only]
    for n in notes:
        if not n.failure_only:
            await _guarded(request.app, record(request.app, n, "ok", request.get(SESSION_KEY)))


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
    if withheld_reasons(directory.org, directory.members, directory.teams.get(key.team), key.team, key.gen, now):
        return AuditKey()  # the rule every Security Team client replays (security/auditwindow.py)
    return key


def _result(status: int) -> str:
    return "denied" if status in (401, 403, 429) else "failed"


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside the auth middleware, so refused sessions are recorded too. Fails closed: if an
    event cannot be recorded, the server answers 503 to everything until it is restarted."""
    app = request.app
    st = app[STATE]
    if st.broken:
        raise ServiceUnavailable("the audit log cannot record events; an operator must fix the server")
    try:
        await settle(app)  # 507 while the disk is still full: nothing is done that could not be recorded
    except InsufficientStorage as e:
        raise InsufficientStorage("the server has no space left on its disk; nothing was done; try again once "
                                  "its operator has freed space") from e
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
    full: list[InsufficientStorage | StorageUnavailable] = []

    async def record_note(n: Note) -> None:
        try:
            if n.refused is not None:  # a batch item refused alone: its event says so (``server/routes/batch.py``)
                status, code = n.refused
                n.detail["error"] = code
                await _guarded(app, _record_member_refusal(request, n, _result(status), session, code))
            else:
                await _guarded(app, record(app, n, "ok", session))
        except (InsufficientStorage, StorageUnavailable) as e:  # the event is owed (``settle``): seal the others
            full.append(e)  # too, then refuse

    # Started in order (each seals and submits its leaf before it first waits): one group commit for them all.
    await asyncio.gather(*(record_note(n) for n in request.get(NOTES, []) if not n.failure_only))
    if full:
        st.owed_links += request.get(LOGGED_LINKS, [])
        keep_owed(app)
        if all(isinstance(e, StorageUnavailable) for e in full):
            raise StorageUnavailable("the server's database went away while this request was recorded in the "
                                     "audit log: what it did may be stored, unconfirmed; check before repeating "
                                     "it") from full[0]
        raise InsufficientStorage("the server has no space left on its disk to record this request in the audit "
                                  "log: what it did may be stored, unconfirmed; check before repeating it") from full[0]
    await _links_logged(app, request.get(LOGGED_LINKS, []))
    await _guarded(app, _prune(app))
    await _guarded(app, flush_refusals(app, app[CONFIG].clock()))
    return response


async def _links_logged(app: web.Application, hashes: list[bytes]) -> None:
    """The store noted these links as unlogged when it stored them; their events are recorded now. If this
    fails, the note stays and the next start records the events once more (an extra event, never a missing one)."""
    if not hashes:
        return
    try:
        await app[CHAINS].links_logged(hashes)
    except Exception as e:  # noqa: BLE001 - the request succeeded and its events are durable
        log.warning("could not clear the unlogged note of %d chain links (%s); the next start records their "
                    "events again", len(hashes), e)


async def settle_at_start(app: web.Application) -> int:
    """At start: append the events owed when the server stopped (a crash or kill -9 while the disk was full;
    ``server/store/owed.py``), oldest first, before anything else is recorded; how many. If the disk is still
    full they stay owed: the server starts and answers 507 until there is space (``audit_middleware``)."""
    count = len(app[STATE].owed)
    if not count:
        return 0
    try:
        await settle(app)
    except InsufficientStorage:
        log.warning("%d audit events are owed and the disk is still full: every request is refused until there is "
                    "space", count)
        return 0
    return count


async def record_unlogged_links(app: web.Application) -> int:
    """At start: record the events of the chain links stored just before the server stopped without
    recording them (a crash, kill -9, a power cut between the link's transaction and its audit append),
    dated when the server stored the link; how many. Every stored link then has its event, as members'
    ``audit verify`` checks. Failing here stops the start (the audit log must be able to record)."""
    pending = await app[CHAINS].unlogged_links()
    for wire, stored in pending:
        await record(app, link_note(parse_link(wire)), "ok", None, when=stored)
    if pending:
        await app[CHAINS].links_logged([link_hash(wire) for wire, _ in pending])
        log.warning("recorded the audit events of %d chain links stored just before the server stopped",
                    len(pending))
    return len(pending)


async def _guarded(app: web.Application, work: Awaitable[object]) -> None:
    """Run audit work; if it fails for any reason but a client error, stop serving (fail closed).
    Only failures to record trip this: a handler's own errors never pass through here."""
    try:
        await work
    except (VaultError, web.HTTPException, asyncio.CancelledError) as e:
        # ServiceUnavailable: the audit store's group commit failed (server.store.commit); but a database that
        # went away (StorageUnavailable) is the operator's to bring back: the event is owed (``record``)
        if isinstance(e, StorageUnavailable) or not isinstance(e, ServiceUnavailable):
            raise
        failure: BaseException = e
    except Exception as e:
        failure = e
    else:
        return
    app[STATE].broken = True
    log.error("could not record an audit event; refusing all requests from now on", exc_info=failure)
    raise ServiceUnavailable("the audit log cannot record events; an operator must fix the server") from failure


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


async def _record_member_refusal(request: web.Request, n: Note, result: str, session: AuthSession | None,
                                 code: str) -> None:
    """A refusal we can attribute to a member: an event of its own for the first ``Config.member_refusals``
    of that member in a minute, the rest counted into the member's ``request.refusals`` event of that
    minute (so nobody, not even a member pending admission, grows the log by repeating a refused request)."""
    app = request.app
    actor = n.actor if n.actor is not None else (session.member if session else "")
    if actor:
        team = n.res.get("team", "") or request.match_info.get("team", "")[:64]
        login_device = (n.device or "") if n.action == "auth.fail" else ""
        now, folded = app[CONFIG].clock(), app[MEMBER_REFUSALS]
        if not await app[GUARD].own_refusal(actor, minute_of(now), folded.per_minute):
            folded.fold(now, actor, n.action, _route(request), code, result == "denied", team, login_device)
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
        if rule.enabled and await app[GUARD].failure(source, now, rule.int_("max_failures"),
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
        # ServiceUnavailable: logged by _guarded, the server now refuses everything; InsufficientStorage: the
        # summary is owed (``settle``), the next round or request appends it once there is space
        with contextlib.suppress(ServiceUnavailable, InsufficientStorage):
            await _guarded(app, flush_refusals(app, app[CONFIG].clock()))


async def refusal_flusher(app: web.Application) -> AsyncIterator[None]:
    async with running(_flush_loop(app)):
        yield
    state = app.get(STATE)
    if state is not None and not state.broken and AUDIT in app:
        try:
            await flush_refusals(app, math.inf)
        except (InsufficientStorage, StorageUnavailable) as e:  # owed (``record``): appended at the next start
            log.warning("the last summary of refused requests at shutdown is owed: %s", e)
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


async def load_state(store: AuditLog, directory: Directory) -> AuditState:
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


async def adopt_audit_key(app: web.Application) -> None:
    """The audit key as stored now (another process published it: ``server/relay.py``), judged as at start
    (``stored_audit_key``) on this process's directory, which has replayed the links committed before it. One
    that does not check is not adopted (said in the log): the key in force stays."""
    stored = await app[AUDIT].get_meta("audit_key")
    if stored is None:
        return
    try:
        app[STATE].key = stored_audit_key(stored, app[DIRECTORY])
    except VaultError as e:
        log.error("the audit key another server process stored does not check against the organization chain and "
                  "is not used (%s)", e)


def stored_audit_key(stored: bytes, directory: Directory) -> AuditKey:
    """The stored audit-key statement, judged again as every client judges it before it believes it (the one
    judge at the statement's time, the team designated then within the clocks' allowance, the team's kind, a
    generation the signer held: ``judge_published_audit_key``); refused (``VaultError``) if it does not check:
    altered on disk, or never valid. A key of a team designated no longer is kept: ``usable_audit_key`` seals to
    no key until the designated team's key is published (as when it was stored, before a restart)."""
    f = Fields(decode(stored), "stored audit key", {"statement", "sig"})
    raw, sig = f.bytes_("statement", max_size=4096), f.bytes_("sig", max_size=128)
    claim = AuditKeyClaim.parse(raw)
    if not valid_box_public(claim.pub):
        raise EncodingError("the audit public key is not a usable X25519 key")
    org = directory.require_org()
    team = directory.teams.get(claim.team)
    if team is None:
        raise ChainError(f"the statement names team {claim.team}, which is not a team of this organization")
    judge_published_audit_key(claim, sig, org, directory.members, team)
    return AuditKey(claim.gen, claim.pub, claim.team, raw, sig)
