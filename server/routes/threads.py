"""Team threads on the server: create, post, read, live delivery over a WebSocket, expiry.

The server stores signed thread records and signed, encrypted messages; it checks what
it can without keys (signatures, the sender is the session's device, the team state and
key generation are current, each device's messages chain) and hands messages out in the
order it accepted them, and publishes each accepted item on the team's bus. Live delivery
(``GET /api/v1/teams/{team}/live``): the route judges the request and counts the connection
(quota ``live_followers``), then ``server/live.py`` serves it.

Expiry: expired messages are no longer served; ``server/expiry.py`` deletes them (``purge_due``,
called here before messages are listed or read, and in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import assert_never

from aiohttp import web

from server import expiry, live, replies
from server.access import (
    check_current_team,
    check_no_rotation_due,
    check_session_now,
    judge_act,
    judged_again,
    quotas,
    session_of,
    stored_judged,
    team_access,
)
from server.context import BUS, CONFIG, DIRECTORY, GUARD, HUB, LOG, THREADS, Handler, now_of, running
from server.guard import LIVE_RENEW
from server.http import answer, hex_id, int_query, read_body
from server.live import PAGE, frame, message_item
from server.messagelog import SignerChanged
from server.notes import note
from server.store.records import (
    SignerHeads,
    SignerMoved,
    StoredMessage,
    StoredThread,
    ThreadAdded,
    ThreadExists,
    ThreadOutcome,
)
from server.usage import Allowance, OverDailyCount, OverStoredBytes
from vault.acts import Act
from vault.chains import TeamState
from vault.errors import (
    Conflict,
    EncodingError,
    IntegrityError,
    PolicyDenied,
    QuotaExceeded,
    StorageUnavailable,
)
from vault.messages import MAX_RECORD, Message, ThreadRecord
from vault.wire import schemas

log = logging.getLogger("mvault.server")


def _team_for(request: web.Request, action: str) -> TeamState:
    return team_access(request, action, "post in threads of" if action == "thread.post" else "read threads of")


def _thread_id(raw: str) -> str:
    return hex_id(raw, "thread id")


def _check_time(request: web.Request, t: int, what: str) -> None:
    now = now_of(request)
    if abs(t - now) > request.app[CONFIG].clock_skew:
        raise EncodingError(f"{what} time {t} is too far from the server's time {int(now)}; check your clock")


def _thread(t: StoredThread) -> schemas.Thread:
    return schemas.Thread(thread=t.thread, record=t.record, next_pos=t.next_pos, last_time=t.last_time,
                          count=t.count)


# -- handlers ---------------------------------------------------------------------------------------


async def create_thread(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.post")
    s = session_of(request)
    event = note(request, "thread.create", {"team": team.team_id})
    rec = ThreadRecord.parse((await read_body(request, schemas.ThreadCreate)).record)
    event.res["thread"] = rec.thread[:64]
    _thread_id(rec.thread)
    await check_session_now(request, s)  # as things are now that the body arrived

    def judge() -> TeamState:
        team = _team_for(request, "thread.post")
        if rec.team != team.team_id:
            raise IntegrityError("thread record names another team")
        if (rec.creator, rec.device) != (s.member, s.device):
            raise PolicyDenied("a thread must be signed by the creating device")
        check_current_team(request, team, rec.team_seq, rec.gen)
        _check_time(request, rec.time, "thread")
        judge_act(request, Act(rec.creator, rec.device, rec.time, "thread.post", team_seq=rec.team_seq, gen=rec.gen),
                  team)
        return team

    team = judge()
    rec.verify(request.app[DIRECTORY].member(s.member).device(s.device).sign_public)
    signer = request.app[DIRECTORY].signer_heads(s.member)  # as judged: stored only while they are still so
    t = StoredThread(team.team_id, rec.thread, rec.raw, rec.expire, 1, rec.time)
    allowance = Allowance(s.member, quotas(request.app)["threads_per_day"])

    async def add(signer: SignerHeads) -> ThreadOutcome:
        return await request.app[THREADS].add_thread(t, int(now_of(request)), allowance, signer)

    # a revocation dated before it may be stored meanwhile: review 24, finding 3
    added = await stored_judged(add, lambda: judged_again(request, s, judge), signer)
    match added:
        case ThreadAdded():
            pass
        case ThreadExists():
            raise replies.thread_exists()
        case SignerMoved():
            raise replies.signer_moved()
        case OverStoredBytes() | OverDailyCount():
            raise replies.over_quota(added)
        case _:
            assert_never(added)
    request.app[DIRECTORY].note_signed(rec.creator, rec.device, rec.time)
    event.detail["expire"] = rec.expire
    request.app[BUS].publish(team.team_id, frame(schemas.ThreadFrame(thread=rec.thread, record=rec.raw)))
    return answer(schemas.ThreadCreated(thread=rec.thread), 201)


async def list_threads(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.read")
    note(request, "thread.list", {"team": team.team_id})
    await expiry.purge_due(request.app)
    threads = await request.app[THREADS].threads(team.team_id, int(now_of(request)))
    return answer(schemas.ThreadList(threads=[_thread(t) for t in threads]))


async def _stored_thread(request: web.Request, team: TeamState) -> StoredThread:
    tid = _thread_id(request.match_info["thread"])
    t = await request.app[THREADS].thread(team.team_id, tid)
    if t is None:
        raise replies.no_such_thread()
    return t


async def read_messages(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.read")
    event = note(request, "msg.read", {"team": team.team_id, "thread": request.match_info["thread"][:64]})
    t = await _stored_thread(request, team)
    after = int_query(request, "after", 0)
    limit = min(int_query(request, "limit", PAGE), PAGE) or PAGE
    await expiry.purge_due(request.app)
    storage, s = request.app[THREADS], session_of(request)
    msgs = await storage.messages(team.team_id, t.thread, after, limit, int(now_of(request)))
    mine = await storage.last_sent(team.team_id, t.thread, s.device)
    event.detail.update({"after": after, "count": len(msgs)})
    return answer(schemas.MessagePage(
        thread=_thread(t),
        messages=[message_item(m) for m in msgs],
        more=len(msgs) == limit,
        mine=None if mine is None else schemas.LastSent(seq=mine[0], id=mine[1], time=mine[2]),
    ))


async def post_message(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.post")
    s = session_of(request)
    app = request.app
    event = note(request, "msg.post", {"team": team.team_id, "thread": request.match_info["thread"][:64]})
    thread = _thread_id(request.match_info["thread"])
    ref = await app[LOG].ref(team.team_id, thread)  # a thread's record never changes: kept after the first post
    if ref is None:
        raise replies.no_such_thread()
    if request.content_length is not None and request.content_length > 2 * MAX_RECORD:
        raise web.HTTPRequestEntityTooLarge(max_size=2 * MAX_RECORD, actual_size=request.content_length)
    # A record over MAX_RECORD is 413 (schemas.MessageBytes), as the body over twice that just above.
    m = Message.parse((await read_body(request, schemas.MessagePost, oversize=frozenset({"message"}))).message)
    h = m.header
    event.res["msg"] = m.id
    event.detail.update({"gen": h.gen, "seq": h.seq})
    if (h.team, h.thread) != (team.team_id, thread):
        raise IntegrityError("message header names another team or thread")
    if h.rec != ref:
        raise IntegrityError("message header names another record of this thread")
    # Judged again as things are now (a removal or a team change may have landed while the body
    # arrived); from here to the append nothing waits, so messages are stored in the order of the
    # team states they name, and only while their sender may post.
    await check_session_now(request, s)

    def judge() -> TeamState:
        team = _team_for(request, "thread.post")
        if (h.sender, h.device) != (s.member, s.device):
            raise PolicyDenied("a message must be signed by the posting device")
        if h.gen != team.generation:
            raise Conflict(f"team key generation {h.gen} is not current ({team.generation}); "
                           "messages under an old key are refused")
        if h.team_seq != team.seq:
            raise Conflict(f"the team changed (now at link {team.seq}); sync and retry")
        check_no_rotation_due(request, team)
        _check_time(request, h.time, "message")
        judge_act(request, Act(h.sender, h.device, h.time, "thread.post", team_seq=h.team_seq, gen=h.gen), team)
        return team

    team = judge()
    m.verify(app[DIRECTORY].member(s.member).device(s.device).sign_public)
    stored = StoredMessage(team.team_id, thread, 0, m.id, h.device, h.seq, h.time, m.raw)
    signer = app[DIRECTORY].signer_heads(s.member)  # as judged: stored only while they are still so

    async def append(signer: SignerHeads) -> int | SignerChanged:
        try:
            return await app[LOG].append(stored, h.prev, signer)
        except SignerChanged as changed:  # a revocation dated before it may be stored meanwhile: review 24, finding 3
            return changed

    pos = await stored_judged(append, lambda: judged_again(request, s, judge), signer)
    if isinstance(pos, SignerChanged):
        raise pos
    app[DIRECTORY].note_signed(h.sender, h.device, h.time)
    event.detail["pos"] = pos
    app[BUS].publish(team.team_id, frame(message_item(replace(stored, pos=pos))))
    return answer(schemas.Posted(id=m.id, pos=pos), 201)


# -- live delivery (served by server/live.py) ------------------------------------------------------


async def follow(request: web.Request) -> web.StreamResponse:
    """A live connection, refused before the upgrade if the member already holds as many as the
    quota ``live_followers`` allows (reserved here, with nothing awaited between check and count)."""
    team = _team_for(request, "thread.read")
    s, hub, guard = session_of(request), request.app[HUB], request.app[GUARD]
    limit = quotas(request.app)["live_followers"]
    if not await guard.hold_live(s.member, limit, now_of(request)):  # every server process's count together
        raise QuotaExceeded(f"quota live_followers: at most {limit} live connections per member; "
                            "close one (another mvault thread follow) first")
    hub.live[s.member] = hub.live.get(s.member, 0) + 1  # this process's (metrics)
    try:
        return await live.deliver(request, team, s)
    finally:
        hub.live[s.member] -= 1
        if not hub.live[s.member]:
            del hub.live[s.member]
        with contextlib.suppress(StorageUnavailable):  # counted here at once; in the database at the next renewal
            await guard.release_live(s.member)


async def _renew_live(app: web.Application) -> None:
    while True:
        try:
            await app[GUARD].renew_live(app[CONFIG].clock())
        except StorageUnavailable as e:  # the database is away: the next round writes the counts as they are
            log.warning("renewing the count of live connections failed: %s", e)
        except Exception:  # logged; the next round tries again
            log.exception("renewing the count of live connections failed")
        await asyncio.sleep(LIVE_RENEW)


async def renewing_live(app: web.Application) -> AsyncIterator[None]:
    """This process's live connections kept counted for every process (``GuardStore.renew_live``)."""
    async with running(_renew_live(app)):
        yield


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "list_threads": list_threads, "create_thread": create_thread, "read_messages": read_messages,
    "post_message": post_message, "follow": follow,
}


# -- wiring -----------------------------------------------------------------------------------------


def register(app: web.Application) -> None:
    """The threads' background work (``HUB``, ``BUS`` and ``LOG`` are wired by ``server.app``)."""
    app.cleanup_ctx.append(expiry.purging)
    app.cleanup_ctx.append(renewing_live)
    app.on_shutdown.append(live.close_followers)
