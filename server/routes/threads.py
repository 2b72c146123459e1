"""Team threads on the server: create, post, read, live delivery over a WebSocket, expiry.

The server stores signed thread records and signed, encrypted messages; it checks what
it can without keys (signatures, the sender is the session's device, the team state and
key generation are current, each device's messages chain) and hands messages out in the
order it accepted them. Live delivery: ``GET /api/v1/teams/{team}/live`` upgrades to a
WebSocket; the client's first frame says where it is (``{"after": {thread: pos}, "all":
bool}``); the server sends what it missed, then ``{"type": "live"}``, then every new message
as it is accepted. A follower that loses the connection reconnects with the positions it
has and receives the rest exactly once, in order. Access is checked again before every
delivery: a member removed from the team stops receiving at once.

Expiry: a thread's record names how long its messages are kept; expired messages are no
longer served, and are deleted (one ``msg.expire`` audit event per thread and purge) at
most a second after they expire whenever the server is asked for messages, and every
``Config.purge_interval`` seconds in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, cast

import msgspec
from aiohttp import WSMsgType, web

from server.access import (
    check_current_team,
    check_no_rotation_due,
    check_session,
    judge_act,
    may_now,
    quotas,
    session_of,
    team_access,
)
from server.context import BUS, CONFIG, DIRECTORY, HUB, LOG, THREADS, Handler, now_of, running
from server.events import Follower
from server.http import answer, hex_id, int_query, read_body
from server.notes import Note, note
from server.recorder import record
from server.store.records import AuthSession, StoredMessage, StoredThread
from server.usage import Allowance
from vault.acts import Act
from vault.chains import TeamState
from vault.errors import (
    AuthError,
    Conflict,
    EncodingError,
    IntegrityError,
    NotFound,
    PolicyDenied,
    QuotaExceeded,
    VaultError,
)
from vault.messages import MAX_RECORD, Message, ThreadRecord
from vault.wire import schemas

log = logging.getLogger("mvault.server")
PAGE = 1000
BATCH = 64  # live items sent together in one frame when a follower has several waiting ...
BATCH_BYTES = 1 << 20  # ... up to about this many bytes (clients accept frames of 4 MiB)


def _team_for(request: web.Request, action: str) -> TeamState:
    return team_access(request, action, "post in threads of" if action == "thread.post" else "read threads of")


def _thread_id(raw: str) -> str:
    return hex_id(raw, "thread")


def _check_time(request: web.Request, t: int, what: str) -> None:
    now = now_of(request)
    if abs(t - now) > request.app[CONFIG].clock_skew:
        raise EncodingError(f"{what} time {t} is too far from the server's time {int(now)}; check your clock")


def _thread(t: StoredThread) -> schemas.Thread:
    return schemas.Thread(thread=t.thread, record=t.record, next_pos=t.next_pos, last_time=t.last_time,
                          count=t.count)


def _message(m: StoredMessage) -> schemas.MessageItem:
    return schemas.MessageItem(thread=m.thread, pos=m.pos, record=m.record)


def _json(frame: schemas.Wire) -> dict[str, Any]:
    """A live frame (or an item published to the followers) as the JSON object it is sent as."""
    return cast(dict[str, Any], msgspec.to_builtins(frame))


async def purge_due(app: web.Application, force: bool = False) -> None:
    """Delete expired messages (at most once a second unless forced) and audit each deletion."""
    hub, now = app[HUB], app[CONFIG].clock()
    if not force and now - hub.last_purge < 1.0:
        return
    hub.last_purge = now
    for team, thread, count in await app[THREADS].purge_messages(int(now)):
        await record(app, Note("msg.expire", {"team": team, "thread": thread}, detail={"count": count},
                               actor="", device=""), "ok", None)


# -- handlers ---------------------------------------------------------------------------------------


async def create_thread(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.post")
    s = session_of(request)
    event = note(request, "thread.create", {"team": team.team_id})
    rec = ThreadRecord.parse((await read_body(request, schemas.ThreadCreate)).record)
    event.res["thread"] = rec.thread[:64]
    _thread_id(rec.thread)
    check_session(request.app, s)  # as things are now that the body arrived
    team = _team_for(request, "thread.post")
    if rec.team != team.team_id:
        raise IntegrityError("thread record names another team")
    if (rec.creator, rec.device) != (s.member, s.device):
        raise PolicyDenied("a thread must be signed by the creating device")
    check_current_team(request, team, rec.team_seq, rec.gen)
    _check_time(request, rec.time, "thread")
    judge_act(request, Act(rec.creator, rec.device, rec.time, "thread.post", team_seq=rec.team_seq, gen=rec.gen), team)
    rec.verify(request.app[DIRECTORY].member(s.member).device(s.device).sign_public)
    t = StoredThread(team.team_id, rec.thread, rec.raw, rec.expire, 1, rec.time)
    allowance = Allowance(s.member, quotas(request.app)["threads_per_day"])
    await request.app[THREADS].add_thread(t, int(now_of(request)), allowance)
    request.app[DIRECTORY].note_signed(rec.creator, rec.device, rec.time)
    event.detail["expire"] = rec.expire
    request.app[BUS].publish(team.team_id, _json(schemas.ThreadFrame(thread=rec.thread, record=rec.raw)))
    return answer(schemas.ThreadCreated(thread=rec.thread), 201)


async def list_threads(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.read")
    note(request, "thread.list", {"team": team.team_id})
    await purge_due(request.app)
    threads = await request.app[THREADS].threads(team.team_id, int(now_of(request)))
    return answer(schemas.ThreadList(threads=[_thread(t) for t in threads]))


async def _stored_thread(request: web.Request, team: TeamState) -> StoredThread:
    tid = _thread_id(request.match_info["thread"])
    t = await request.app[THREADS].thread(team.team_id, tid)
    if t is None:
        raise NotFound("no such thread in this team")
    return t


async def read_messages(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.read")
    event = note(request, "msg.read", {"team": team.team_id, "thread": request.match_info["thread"][:64]})
    t = await _stored_thread(request, team)
    after = int_query(request, "after", 0)
    limit = min(int_query(request, "limit", PAGE), PAGE) or PAGE
    await purge_due(request.app)
    storage, s = request.app[THREADS], session_of(request)
    msgs = await storage.messages(team.team_id, t.thread, after, limit, int(now_of(request)))
    mine = await storage.last_sent(team.team_id, t.thread, s.device)
    event.detail.update({"after": after, "count": len(msgs)})
    return answer(schemas.MessagePage(
        thread=_thread(t),
        messages=[_message(m) for m in msgs],
        more=len(msgs) == limit,
        mine=None if mine is None else schemas.LastSent(seq=mine[0], id=mine[1], time=mine[2]),
    ))


async def post_message(request: web.Request) -> web.Response:
    team = _team_for(request, "thread.post")
    s = session_of(request)
    app = request.app
    event = note(request, "msg.post", {"team": team.team_id, "thread": request.match_info["thread"][:64]})
    thread = _thread_id(request.match_info["thread"])
    head = await app[LOG].head(team.team_id, thread)  # the thread exists (kept in memory after the first post)
    if request.content_length is not None and request.content_length > 2 * MAX_RECORD:
        raise web.HTTPRequestEntityTooLarge(max_size=2 * MAX_RECORD, actual_size=request.content_length)
    # A record over MAX_RECORD is 413 (schemas.MessageBytes), as the body over twice that just above.
    m = Message.parse((await read_body(request, schemas.MessagePost, oversize=frozenset({"message"}))).message)
    h = m.header
    event.res["msg"] = m.id
    event.detail.update({"gen": h.gen, "seq": h.seq})
    if (h.team, h.thread) != (team.team_id, thread):
        raise IntegrityError("message header names another team or thread")
    if h.rec != head.ref:
        raise IntegrityError("message header names another record of this thread")
    # Judged again as things are now (a removal or a team change may have landed while the body
    # arrived); from here to the append nothing waits, so messages are stored in the order of the
    # team states they name, and only while their sender may post.
    check_session(app, s)
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
    m.verify(app[DIRECTORY].member(s.member).device(s.device).sign_public)
    stored = StoredMessage(team.team_id, thread, 0, m.id, h.device, h.seq, h.time, m.raw)
    pos = await app[LOG].append(stored, h.prev)
    app[DIRECTORY].note_signed(h.sender, h.device, h.time)
    event.detail["pos"] = pos
    app[BUS].publish(team.team_id, _json(_message(replace(stored, pos=pos))))
    return answer(schemas.Posted(id=m.id, pos=pos), 201)


# -- live delivery ----------------------------------------------------------------------------------


def _access_problem(app: web.Application, team_id: str, f: Follower) -> VaultError | None:
    """Why the follower may no longer read (None: it may): session expired, device revoked, member
    removed, team role ended. Judged again whenever the team, org or member state changed (the
    directory replaces a state object on every link) and at least once a second."""
    directory = app[DIRECTORY]
    team = directory.teams.get(team_id)
    org = directory.org
    member = f.session.member
    ms = directory.members.get(member)
    if team is None or org is None or ms is None:
        return PolicyDenied("you no longer have access to this team")
    now = app[CONFIG].clock()
    c = f.checked
    if c is not None and c[0] is team and c[1] is org and c[2] is ms and now - c[3] < 1.0:
        return None
    f.checked = None
    try:
        check_session(app, f.session)
    except AuthError as e:
        return e
    if not may_now(app, f.session, "thread.read", team):
        return PolicyDenied("you no longer have access to this team")
    f.checked = (team, org, ms, now)
    return None


async def _close_for(ws: web.WebSocketResponse, problem: VaultError) -> None:
    """Tell the follower why delivery stops (``unauthorized``: log in again; ``forbidden``: access ended)."""
    await ws.send_json(_json(schemas.ClosedFrame(error=problem.code, message=problem.message)))
    await ws.close(code=4401 if isinstance(problem, AuthError) else 4403)


async def _first_frame(ws: web.WebSocketResponse) -> tuple[dict[str, int], bool]:
    try:
        msg = await ws.receive(timeout=30)
    except TimeoutError as e:
        raise EncodingError("send where you are first: {\"after\": {thread: pos}, \"all\": bool}") from e
    if msg.type != WSMsgType.TEXT:
        raise EncodingError("the first frame must be JSON text")
    try:
        value = json.loads(msg.data)
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
        raise EncodingError("the first frame is not valid JSON") from e
    if not isinstance(value, dict) or set(value) - {"after", "all"}:
        raise EncodingError("the first frame takes only 'after' and 'all'")
    after = value.get("after", {})
    follow_all = value.get("all", False)
    if not isinstance(after, dict) or len(after) > 10_000 or not isinstance(follow_all, bool):
        raise EncodingError("'after' maps thread ids to positions; 'all' is true or false")
    out = {}
    for tid, pos in after.items():
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos < 2**62:
            raise EncodingError("positions are non-negative integers")
        out[_thread_id(tid)] = pos
    if not out and not follow_all:
        raise EncodingError("follow at least one thread, or all")
    return out, follow_all


async def follow(request: web.Request) -> web.StreamResponse:
    """A live connection, refused before the upgrade if the member already holds as many as the
    quota ``live_followers`` allows (reserved here, with nothing awaited between check and count)."""
    team = _team_for(request, "thread.read")
    s, hub = session_of(request), request.app[HUB]
    limit = quotas(request.app)["live_followers"]
    held = hub.live.get(s.member, 0)
    if held >= limit:
        raise QuotaExceeded(f"quota live_followers: at most {limit} live connections per member; "
                            "close one (another mvault thread follow) first")
    hub.live[s.member] = held + 1
    try:
        return await _follow(request, team, s)
    finally:
        hub.live[s.member] -= 1
        if not hub.live[s.member]:
            del hub.live[s.member]


async def _follow(request: web.Request, team: TeamState, s: AuthSession) -> web.StreamResponse:
    app = request.app
    storage, bus = app[THREADS], app[BUS]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024)
    await ws.prepare(request)
    delivered = 0
    done = note(request, "thread.unfollow", {"team": team.team_id})
    try:
        after, follow_all = await _first_frame(ws)
    except VaultError as e:
        await ws.send_json(_json(schemas.ErrorFrame(error=e.code, message=e.message)))
        await ws.close(code=4400)
        return ws
    me = Follower(s, ws)
    bus.subscribe(team.team_id, me)  # before listing: a thread created meanwhile is not missed
    problem = _access_problem(app, team.team_id, me)  # judged again after the wait for the first frame
    if problem is not None:
        bus.unsubscribe(team.team_id, me)
        await _close_for(ws, problem)
        return ws
    threads = {t.thread: t for t in await storage.threads(team.team_id, int(now_of(request)))}
    unknown = [tid for tid in after if tid not in threads]
    if unknown:
        bus.unsubscribe(team.team_id, me)
        await ws.send_json(_json(schemas.ErrorFrame(error="not_found", message="no such thread in this team")))
        await ws.close(code=4404)
        return ws
    await record(app, Note("thread.follow", {"team": team.team_id}, detail={"threads": len(after),
                                                                         "all": int(follow_all)}), "ok", s)
    sent: dict[str, int] = {tid: after.get(tid, 0) for tid in (threads if follow_all else after)}

    async def new_threads() -> None:
        """After a lag (dropped live items): threads created meanwhile are announced from storage."""
        if follow_all:
            for t in await storage.threads(team.team_id, int(now_of(request))):
                if t.thread not in sent:
                    sent[t.thread] = 0
                    await ws.send_json(_json(schemas.ThreadFrame(thread=t.thread, record=t.record)))

    async def reader() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
        me.lagged = True
        with contextlib.suppress(asyncio.QueueFull):
            me.queue.put_nowait(None)  # wake the sender loop: the follower is gone

    async def catch_up(tid: str) -> int:
        n = 0
        while True:
            msgs = await storage.messages(team.team_id, tid, sent[tid], PAGE, int(now_of(request)))
            for m in msgs:
                await ws.send_json(_json(_message(m)))
                sent[tid] = m.pos
                n += 1
            if len(msgs) < PAGE:
                return n

    reading = asyncio.create_task(reader())
    try:
        if follow_all:
            for t in threads.values():
                await ws.send_json(_json(schemas.ThreadFrame(thread=t.thread, record=t.record)))
        for tid in list(sent):
            delivered += await catch_up(tid)
        await ws.send_json(_json(schemas.LiveFrame()))
        out: list[str] = []

        async def flush() -> None:
            """What is ready goes out as one frame (a ``msgs`` frame when there are several)."""
            if len(out) == 1:
                await ws.send_str(out[0])
            elif out:
                await ws.send_str('{"type": "msgs", "items": [' + ",".join(out) + "]}")
            out.clear()

        while not ws.closed:
            batch = [await me.queue.get()]
            size = 0
            while len(batch) < BATCH and size < BATCH_BYTES and not me.queue.empty():
                entry = me.queue.get_nowait()
                size += len(entry[1]) if entry is not None else 0
                batch.append(entry)
            if any(entry is None for entry in batch) or ws.closed:
                break
            problem = _access_problem(app, team.team_id, me)
            if problem is not None:
                await _close_for(ws, problem)
                break
            for entry in batch:
                assert entry is not None
                item, text = entry
                tid = str(item["thread"])
                if item["type"] == "thread":
                    if follow_all and tid not in sent:
                        sent[tid] = 0
                        out.append(text)
                    continue
                if tid not in sent or int(item["pos"]) <= sent[tid]:
                    continue  # already sent from storage
                if int(item["pos"]) != sent[tid] + 1 or me.lagged:
                    me.lagged = False
                    await flush()
                    await new_threads()
                    for t_id in list(sent):
                        delivered += await catch_up(t_id)
                    continue
                out.append(text)
                sent[tid] = int(item["pos"])
                delivered += 1
            await flush()
    except (ConnectionResetError, RuntimeError):
        pass  # the follower went away mid-send
    finally:
        bus.unsubscribe(team.team_id, me)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading
        if not ws.closed:
            await ws.close()
        done.detail["delivered"] = delivered
    return ws


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "list_threads": list_threads, "create_thread": create_thread, "read_messages": read_messages,
    "post_message": post_message, "follow": follow,
}


# -- wiring -----------------------------------------------------------------------------------------


async def _purge_loop(app: web.Application) -> None:
    interval = app[CONFIG].purge_interval
    while True:
        await asyncio.sleep(interval)
        try:
            await purge_due(app, force=True)
        except Exception:  # logged; the next round tries again
            log.exception("purging expired messages failed")


async def _start(app: web.Application) -> AsyncIterator[None]:
    async with running(_purge_loop(app)):
        yield


async def _close_followers(app: web.Application) -> None:
    """At shutdown: every live connection closes (clients reconnect to the next server)."""
    for f in app[BUS].followers():
        with contextlib.suppress(Exception):
            await f.ws.close(code=1001, message=b"server shutting down")


def register(app: web.Application) -> None:
    """The threads' background work (``HUB``, ``BUS`` and ``LOG`` are wired by ``server.app``)."""
    app.cleanup_ctx.append(_start)
    app.on_shutdown.append(_close_followers)
