"""Live delivery of a team's thread items and document notices to one follower (``GET /api/v1/teams/{team}/live``,
a WebSocket), beside the bus it reads from (``server/events.py``); ``server/routes/threads.py`` judges the
request, counts the connection and hands it over to ``deliver``.

The client's first frame says where it is and what it follows (``{"after": {thread: pos}, "all": bool, "docs":
bool}``); the server sends what it missed from storage, then ``{"type": "live"}``, then every new item as it is
accepted, several ready ones as one ``msgs`` frame. A follower that loses the connection reconnects with the
positions it has and receives the rest exactly once, in order; one whose queue overflowed (``lagged``) or that
sees a gap in positions reads the rest from storage, as does every follower of a process that may have missed
what another process stored (``server/relay.py``). Access is judged again before every delivery and every ``RECHECK``
seconds without one (``_access_problem``): a member removed from the team stops receiving at once, and its
connection is closed with the reason.

With ``"docs": true`` the follower also receives ``{"type": "doc", "doc", "seq", "vid"}`` for every document
version stored in the team from the moment it is live (``routes/docs.py`` publishes it once the version is
committed; nothing is caught up from storage: a client that (re)connects checks the documents itself). A
notice is a hint: the server saw the upload, so it tells nothing new, and a client acts only on versions it
fetched and checked. A document follower whose queue overflowed is disconnected (close code 1013) instead
of being caught up: notices may have been lost, so it reconnects and checks everything.

A follower that does not read holds at most ``Config.live_queue_bytes`` of waiting items (more: it is lagged, and
reads the rest from storage once it reads again) and one frame in the connection's buffers: a frame that waits
``Config.live_send_timeout`` seconds for the follower to take it drops the connection (``Stalled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, cast

import msgspec
from aiohttp import WSMsgType, web

from server import replies
from server.access import check_session, closed_refusal, may_now
from server.context import BUS, CONFIG, DIRECTORY, THREADS, now_of
from server.events import Follower
from server.http import hex_id
from server.notes import Note, note
from server.recorder import record_outside_a_request
from server.store.records import AuthSession, StoredMessage
from vault.chains import TeamState
from vault.errors import AuthError, EncodingError, PolicyDenied, VaultError
from vault.wire import schemas

PAGE = 1000  # messages read from storage at a time
BATCH = 64  # live items sent together in one frame when a follower has several waiting ...
BATCH_BYTES = 1 << 20  # ... up to about this many bytes (clients accept frames of 4 MiB)
RECHECK = 5.0  # seconds: a follower with nothing to receive has its access judged again this often


class Stalled(Exception):
    """The follower took no frame for ``Config.live_send_timeout`` seconds."""


async def _send(ws: web.WebSocketResponse, text: str, limit: float) -> None:
    """One frame, or ``Stalled`` when the follower has not taken it within ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            await ws.send_str(text)
    except TimeoutError as e:
        raise Stalled from e


def message_item(m: StoredMessage) -> schemas.MessageItem:
    """A stored message as it is published, delivered and read."""
    return schemas.MessageItem(thread=m.thread, pos=m.pos, record=m.record)


def frame(value: schemas.Wire) -> dict[str, Any]:
    """A live frame (or an item published to the followers) as the JSON object it is sent as."""
    return cast(dict[str, Any], msgspec.to_builtins(value))


def _access_problem(app: web.Application, team_id: str, f: Follower) -> VaultError | None:
    """Why the follower may no longer read (None: it may): session expired, device revoked, member
    removed, team role ended. Judged again whenever the team, org or member state changed (the
    directory replaces a state object on every link) and at least once a second."""
    directory = app[DIRECTORY]
    shut = closed_refusal(directory)
    if shut is not None:  # before the team: a closed organization's teams are gone from memory
        return shut
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
    for action in ("thread.read", "doc.read") if f.docs else ("thread.read",):
        if not may_now(app, f.session, action, team):
            return PolicyDenied("you no longer have access to this team")
    f.checked = (team, org, ms, now)
    return None


async def _close_for(ws: web.WebSocketResponse, problem: VaultError, limit: float) -> None:
    """Tell the follower why delivery stops (``unauthorized``: log in again; ``forbidden``: access ended)."""
    await _send(ws, json.dumps(frame(schemas.ClosedFrame(error=problem.code, message=problem.message))), limit)
    await ws.close(code=4401 if isinstance(problem, AuthError) else 4403)


async def _first_frame(ws: web.WebSocketResponse) -> tuple[dict[str, int], bool, bool]:
    """What the follower asked for: its position in each thread, every thread, document notices."""
    try:
        msg = await ws.receive(timeout=30)
    except TimeoutError as e:
        raise EncodingError('send where you are first: {"after": {thread: pos}, "all": bool, "docs": bool}') from e
    if msg.type != WSMsgType.TEXT:
        raise EncodingError("the first frame must be JSON text")
    try:
        value = json.loads(msg.data)
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
        raise EncodingError("the first frame is not valid JSON") from e
    if not isinstance(value, dict) or set(value) - {"after", "all", "docs"}:
        raise EncodingError("the first frame takes only 'after', 'all' and 'docs'")
    after = value.get("after", {})
    follow_all = value.get("all", False)
    docs = value.get("docs", False)
    if not isinstance(after, dict) or len(after) > 10_000 or not isinstance(follow_all, bool) \
            or not isinstance(docs, bool):
        raise EncodingError("'after' maps thread ids to positions; 'all' and 'docs' are true or false")
    out = {}
    for tid, pos in after.items():
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos < 2**62:
            raise EncodingError("positions are non-negative integers")
        out[hex_id(tid, "thread id")] = pos
    if not out and not follow_all and not docs:
        raise EncodingError("follow at least one thread, all threads, or documents")
    return out, follow_all, docs


async def deliver(request: web.Request, team: TeamState, s: AuthSession) -> web.StreamResponse:
    """Serve one live connection (the route has judged the request and counted it): see the module's docstring."""
    app = request.app
    storage, bus = app[THREADS], app[BUS]
    limit = app[CONFIG].live_send_timeout

    async def send(value: dict[str, Any] | str) -> None:
        await _send(ws, value if isinstance(value, str) else json.dumps(value), limit)

    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024)
    await ws.prepare(request)
    delivered = 0
    done = note(request, "thread.unfollow", {"team": team.team_id})
    try:
        after, follow_all, docs = await _first_frame(ws)
    except VaultError as e:
        await ws.send_json(frame(schemas.ErrorFrame(error=e.code, message=e.message)))
        await ws.close(code=4400)
        return ws
    me = Follower(s, ws, docs=docs, limit=app[CONFIG].live_queue_bytes)
    bus.subscribe(team.team_id, me)  # before listing: a thread created meanwhile is not missed
    problem = _access_problem(app, team.team_id, me)  # judged again after the wait for the first frame
    if problem is not None:
        bus.unsubscribe(team.team_id, me)
        with contextlib.suppress(Stalled):  # nothing was sent yet: the buffers hold this small frame
            await _close_for(ws, problem, limit)
        return ws
    threads = {t.thread: t for t in await storage.threads(team.team_id, int(now_of(request)))}
    unknown = [tid for tid in after if tid not in threads]
    if unknown:
        bus.unsubscribe(team.team_id, me)
        missing = replies.no_such_thread()
        await ws.send_json(frame(schemas.ErrorFrame(error=missing.code, message=missing.message)))
        await ws.close(code=4404)
        return ws
    started = Note("thread.follow", {"team": team.team_id}, detail={"threads": len(after), "all": int(follow_all),
                                                                   "docs": int(docs)})
    await record_outside_a_request(app, started, "ok", s)
    sent: dict[str, int] = {tid: after.get(tid, 0) for tid in (threads if follow_all else after)}

    async def new_threads() -> None:
        """After a lag (dropped live items): threads created meanwhile are announced from storage."""
        if follow_all:
            for t in await storage.threads(team.team_id, int(now_of(request))):
                if t.thread not in sent:
                    sent[t.thread] = 0
                    await send(frame(schemas.ThreadFrame(thread=t.thread, record=t.record)))

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
                await send(frame(message_item(m)))
                sent[tid] = m.pos
                n += 1
            if len(msgs) < PAGE:
                return n

    reading = asyncio.create_task(reader())
    try:
        if follow_all:
            for t in threads.values():
                await send(frame(schemas.ThreadFrame(thread=t.thread, record=t.record)))
        for tid in list(sent):
            delivered += await catch_up(tid)
        await send(frame(schemas.LiveFrame()))
        out: list[str] = []

        async def flush() -> None:
            """What is ready goes out as one frame (a ``msgs`` frame when there are several)."""
            if len(out) == 1:
                await send(out[0])
            elif out:
                await send('{"type": "msgs", "items": [' + ",".join(out) + "]}")
            out.clear()

        while not ws.closed:
            try:
                async with asyncio.timeout(RECHECK):
                    first = me.took(await me.queue.get())
            except TimeoutError:  # nothing arrived: a removed member is told now, not at the team's next item
                problem = _access_problem(app, team.team_id, me)
                if problem is not None:
                    await _close_for(ws, problem, limit)
                    break
                continue
            batch = [first]
            size = 0
            while len(batch) < BATCH and size < BATCH_BYTES and not me.queue.empty():
                entry = me.took(me.queue.get_nowait())
                size += len(entry[1]) if entry is not None else 0
                batch.append(entry)
            if any(entry is None for entry in batch) or ws.closed:
                break
            problem = _access_problem(app, team.team_id, me)
            if problem is not None:
                await _close_for(ws, problem, limit)
                break
            if me.docs and me.lagged:  # document notices were dropped: the follower reconnects and checks all
                await ws.close(code=1013, message=b"lagged behind: reconnect")
                break
            if me.lagged:  # items were dropped or may have been missed: the rest comes from storage
                me.lagged = False
                await new_threads()
                for t_id in list(sent):
                    delivered += await catch_up(t_id)
            for entry in batch:
                assert entry is not None
                item, text = entry
                if item["type"] in ("check", "resync"):  # not for the follower (server/events.py)
                    continue
                if item["type"] == "doc":  # only a docs follower was offered one (Follower.offer)
                    await flush()  # in order with the thread items before it
                    await send(text)
                    continue
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
    except Stalled:  # it reads nothing: its connection goes now, with whatever its buffers hold
        if request.transport is not None:
            request.transport.abort()
    finally:
        bus.unsubscribe(team.team_id, me)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading
        if not ws.closed:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await ws.close()
        done.detail["delivered"] = delivered
    return ws


async def close_followers(app: web.Application) -> None:
    """At shutdown: every live connection closes (clients reconnect to the next server)."""
    for f in app[BUS].followers():
        with contextlib.suppress(Exception):
            await f.ws.close(code=1001, message=b"server shutting down")
