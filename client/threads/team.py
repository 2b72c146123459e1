"""Team threads on the client: create, post, read, list, follow live.

Every message is checked before it is shown: the sender's device signature (the device as
it was when the message was written), that the sender could post at the team state the
header names, the key generation, the decryption, and the thread's ordering
(``vault.messages.ThreadChecker``: drops, reorders, replays, splices). What we accepted is
kept in an encrypted cache per team (``client.threads.cache``): messages, read positions
(unread counts), and the checker's state, so a later read also catches a server that rolls a
thread back. Who created a thread and its expiry: ``client.threads.info``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from client.api import decode_frame
from client.client import Client
from client.session import REVOKED_NEXT
from client.threads.cache import MAX_CACHED, CachedThread, Shown, ThreadCache
from client.threads.info import ThreadExists, ThreadInfo, check_expected_expire, thread_info
from client.view import View
from security.authority import POLICY
from vault.acts import ALLOWANCE, Act
from vault.chains import TeamState
from vault.errors import (
    AuthError,
    ChainError,
    Conflict,
    DecryptionFailed,
    DeviceRevoked,
    EncodingError,
    IntegrityError,
    NotFound,
    PolicyDenied,
    TransportError,
    VaultError,
)
from vault.messages import (
    Attachment,
    Body,
    Message,
    ThreadChecker,
    ThreadRecord,
    make_message,
    make_thread,
    thread_id,
)
from vault.wire.schemas import (
    ClosedFrame,
    DocFrame,
    ErrorFrame,
    FollowStart,
    LiveEvent,
    LiveFrame,
    MessageItem,
    MessagePage,
    MessagePost,
    MessagesFrame,
    Posted,
    ThreadCreate,
    ThreadCreated,
    ThreadFrame,
    ThreadList,
)

UNREADABLE = "[unreadable: this message, signed by its sender, does not decrypt]"


# -- checks -------------------------------------------------------------------------------------


def _device_key(view: View, member_id: str, device_id: str, t: int, what: str) -> bytes:
    ms = view.members.get(member_id)
    if ms is None:
        raise IntegrityError(f"{what} signed by an unknown member")
    try:
        return ms.device_at(device_id, t).sign_public
    except ChainError as e:
        raise IntegrityError(f"{what} signed by a device that was not active then") from e


def _could_post(view: View, team: TeamState, member: str, device: str, team_seq: int, gen: int, t: int) -> bool:
    """Could ``member`` post (or create a thread) at team state ``team_seq`` under ``gen``, at time ``t``?
    The one judge decides (a message dated well after the next team link was written after it)."""
    return POLICY.entitled(Act(member, device, t, "thread.post", team_seq=team_seq, gen=gen), view.org, view.members,
                           team)


async def open_thread_record(s: Client, team: TeamState, raw: bytes) -> tuple[ThreadRecord, str | None]:
    """A thread record checked (creator's signature and right to post, name and id): (record, name;
    None when the name is under a key generation we do not hold)."""
    try:
        rec = ThreadRecord.parse(raw)
    except EncodingError as e:
        raise IntegrityError(f"the server sent a malformed thread record: {e}") from e
    if rec.team != team.team_id:
        raise IntegrityError("the server sent a thread of another team")
    view = await s.chains.view()
    rec.verify(_device_key(view, rec.creator, rec.device, rec.time, "thread"))
    if not _could_post(view, team, rec.creator, rec.device, rec.team_seq, rec.gen, rec.time):
        raise IntegrityError("thread created by someone who could not post in the team then")
    try:
        key = await s.keys.team_key(team, rec.gen)
    except PolicyDenied:  # created under a generation we hold no key for (we joined later, without history)
        return rec, None
    return rec, rec.name(key)


async def _check_message(s: Client, team: TeamState, m: Message) -> Body | None:
    """Signature and right to post; the decrypted body (None when we hold no key for its generation)."""
    h = m.header
    view = await s.chains.view()
    if h.team_seq > team.seq:  # written after a team change we have not seen yet
        view = await s.chains.view(refresh=True)
        team = view.teams.get(team.team_id, team)
    m.verify(_device_key(view, h.sender, h.device, h.time, "message"))
    if not _could_post(view, team, h.sender, h.device, h.team_seq, h.gen, h.time):
        raise IntegrityError("message posted by someone who could not post then, or under a key generation "
                             "that was not current")
    try:
        key = await s.keys.team_key(team, h.gen)
    except PolicyDenied:
        return None
    try:
        return m.open(key)
    except (DecryptionFailed, IntegrityError):
        # Header and ciphertext carry the sender's valid signature and the key matches its canary:
        # the sender wrote it broken. Shown as such; the thread goes on.
        return Body(UNREADABLE)


def _served(item: MessageItem) -> Message:
    try:
        return Message.parse(item.record)
    except VaultError as e:
        raise IntegrityError(f"the server sent a malformed message: {e}") from e


def _live_event(data: str) -> LiveEvent:
    """A live frame's text as its frame type (``IntegrityError`` if it is none of them)."""
    event: LiveEvent = decode_frame(data, LiveEvent)
    return event


# -- the thread session ---------------------------------------------------------------------------


class Threads:
    """Thread operations of one session in one team."""

    def __init__(self, s: Client, team: TeamState) -> None:
        self.s = s
        self.team = team
        self.cache = ThreadCache(s, team.team_id)
        self.base = f"/api/v1/teams/{team.team_id}/threads"

    @classmethod
    async def open(cls, s: Client, team_name: str) -> Threads:
        view = await s.chains.view()
        return cls(s, view.team_by_name(team_name))

    async def thread_of(self, name: str) -> str:
        """The id of a thread name (the name key is the same in every generation we hold)."""
        return thread_id((await self.s.keys.keys_for(self.team))[0], name)

    async def create(self, name: str, expire: int) -> str:
        t = self.s.session.now()
        view = await self.s.chains.view()
        if not _could_post(view, self.team, self.s.session.me, self.s.session.device.device_id, self.team.seq,
                           self.team.generation, t):
            raise PolicyDenied(f"you may not create threads in team {self.team.name}")
        if self.team.rotation_reasons(t, view.members, view.org):
            raise Conflict(f"team {self.team.name} needs a key rotation first and you could not do it")
        key = await self.s.keys.team_key(self.team, self.team.generation)
        tid = thread_id(key, name)
        await self._taken(tid, name)  # nothing signed
        rec = make_thread(key, name, team_seq=self.team.seq, expire=expire, creator=self.s.session.me,
                          device=self.s.session.device, time=t)
        try:
            await self.s.session.api.post(self.base, ThreadCreate(rec.raw), ThreadCreated)
        except Conflict:
            await self._taken(tid, name)  # someone created it meanwhile: say who
            raise
        return rec.thread

    async def _taken(self, tid: str, name: str) -> None:
        """Raise ``ThreadExists`` (naming its creator and expiry) if the server lists thread ``tid``."""
        for item in (await self.s.session.api.get(self.base, ThreadList)).threads:
            if item.thread == tid:
                rec, _ = await open_thread_record(self.s, self.team, item.record)
                if rec.thread != tid:
                    raise IntegrityError("the server listed a thread under another id")
                raise ThreadExists(name, self.team.name, await self._info(rec))

    async def _info(self, rec: ThreadRecord) -> ThreadInfo:
        return thread_info((await self.s.chains.view()).members, self.team, rec, self.s.session.now())

    async def info(self, ct: CachedThread) -> ThreadInfo:
        """Who created a thread and its signed expiry (from the record we verified when we first met it)."""
        return await self._info(ThreadRecord.parse(ct.record))

    async def about(self, name: str) -> ThreadInfo:
        """``info`` of the thread ``name`` (read from the server if we do not hold it yet)."""
        return await self.info(self.cache.threads.get(await self.thread_of(name)) or await self.resolve(name))

    async def list(self) -> list[dict[str, Any]]:
        out = []
        for item in (await self.s.session.api.get(self.base, ThreadList)).threads:
            try:
                rec, name = await open_thread_record(self.s, self.team, item.record)
                if item.thread != rec.thread:
                    raise IntegrityError("the server listed a thread under another id")
            except VaultError as e:  # one bad record does not hide the others; it is reported
                self.s.session.warnings.append(f"a thread of team {self.team.name} cannot be shown: {e.message}")
                continue
            ct = await self.sync(rec.thread, name=name, record=rec)
            out.append({**(await self._info(rec)).to_json(), "thread": rec.thread,
                        "name": name or ct.name or None, "expire": rec.expire,
                        "last_time": ct.messages[-1].time if ct.messages else rec.time, "messages": len(ct.messages),
                        "unread": ct.unread(self.s.session.me)})
        self.cache.save()
        return out

    async def _cached(self, tid: str, name: str | None, record: ThreadRecord | None) -> CachedThread:
        ct = self.cache.threads.get(tid)
        if ct is not None:
            return ct
        if record is None:  # the record from the thread list: fetching no message for it
            listed = {t.thread: t for t in (await self.s.session.api.get(self.base, ThreadList)).threads}
            if tid not in listed:
                raise NotFound("no such thread in this team")
            record, name = await open_thread_record(self.s, self.team, listed[tid].record)
        if record.thread != tid:
            raise IntegrityError("the server sent another thread's record")
        ct = CachedThread(name or "", record.raw,
                          ThreadChecker(self.team.team_id, tid, record.expire, team_seq=record.team_seq,
                                        rec=record.ref))
        self.cache.threads[tid] = ct
        return ct

    async def accept(self, ct: CachedThread, pos: int, m: Message) -> Shown | None:
        """One served message, in order: checked, decrypted, remembered (None: already had it)."""
        if pos <= ct.pos:
            return None  # delivered twice (a reconnect): shown once
        ct.checker.check_place(m)  # before the signature and the judge, which read the header as this team's
        body = await _check_message(self.s, self.team, m)
        ct.checker.accept(m, self.s.session.now())
        h = m.header
        shown = Shown(pos, m.id, h.time, h.sender, h.device, h.seq,
                      body.text if body is not None else "[no key for this message's generation]",
                      [{"name": a.name, "doc": a.doc, "vid": a.vid} for a in body.attach] if body else [], h.gen)
        ct.pos = pos
        ct.messages.append(shown)
        del ct.messages[:-MAX_CACHED]
        return shown

    async def sync(self, tid: str, name: str | None = None, record: ThreadRecord | None = None) -> CachedThread:
        """Fetch and check everything after what we have; detect a thread rolled back."""
        ct = await self._cached(tid, name, record)
        while True:
            try:
                res = await self.s.session.api.get(f"{self.base}/{tid}/messages?after={ct.pos}", MessagePage)
            except NotFound as e:
                if ct.pos:
                    raise IntegrityError("the server no longer shows a thread we read before") from e
                raise
            if res.thread.record != ct.record:
                raise IntegrityError("the server changed the thread's record")
            if res.thread.next_pos <= ct.pos and ct.pos:
                raise IntegrityError("the server rolled the thread back (it is shorter than we saw)")
            if res.more and not res.messages:  # else the reader would ask for the same page forever
                raise IntegrityError("the server says more messages follow but sent none")
            for item in res.messages:
                if item.pos <= ct.pos:
                    raise IntegrityError("the server sent messages out of order")
                await self.accept(ct, item.pos, _served(item))
            mine = res.mine
            last = ct.checker.senders.get(self.s.session.device.device_id)
            if last is not None and not ct.checker.expired(last.time, self.s.session.now()) and (
                    mine is None or mine.seq < last.seq):
                raise IntegrityError("the server withheld our own messages (the thread was rolled back)")
            if not res.more:
                served = last.seq if last else 0
                if ct.own is not None and served < ct.own[0] and not ct.checker.expired(ct.own[2],
                                                                                        self.s.session.now()):
                    raise IntegrityError("the server acknowledged one of our messages but does not serve it "
                                         "(it was dropped)")
                return ct

    async def resolve(self, name: str) -> CachedThread:
        tid = await self.thread_of(name)
        try:
            ct = await self.sync(tid, name=None)
        except NotFound as e:
            raise NotFound(f"no thread named {name!r} in team {self.team.name}; create it with "
                           f"`mvault thread create {self.team.name} {name}`") from e
        if not ct.name:
            ct.name = name  # its id is the keyed hash of this name: that proves it
        elif ct.name != name:
            raise IntegrityError("the thread's encrypted name does not match the requested name")
        return ct

    async def post(self, name: str, text: str, attach: builtins.list[Attachment] | None = None,
                   expect_expire: int | None = None, resolved: CachedThread | None = None) -> Shown:
        """Post (after reading what is new, so ``seen`` and our sequence are current); with
        ``expect_expire``, only if the thread's signed expiry is that (``Conflict`` otherwise).
        ``resolved``: the thread as ``resolve(name)`` just returned it in this session, so that the first
        attempt does not read it again (a retry after a conflict always does)."""
        tried: set[str] = set()  # ids of earlier attempts: one may have landed though we saw a refusal
        for attempt in range(4):
            view = await self.s.chains.view(refresh=attempt > 0)
            self.team = view.team_by_name(self.team.name)
            t = self.s.session.now()
            if not _could_post(view, self.team, self.s.session.me, self.s.session.device.device_id, self.team.seq,
                               self.team.generation, t):
                raise PolicyDenied(f"you may not post in team {self.team.name}")
            ct = resolved if attempt == 0 and resolved is not None else await self.resolve(name)
            if expect_expire is not None:
                check_expected_expire(await self.info(ct), expect_expire, name)
            landed = [m for m in ct.messages if m.id in tried]
            if landed:
                self.cache.save()
                return landed[0]
            if self.team.rotation_reasons(t, view.members, view.org):
                raise Conflict(f"team {self.team.name} needs a key rotation first and you could not do it")
            key = await self.s.keys.team_key(self.team, self.team.generation)
            me = self.s.session.device.device_id
            last = ct.checker.senders.get(me)
            seq, prev, prev_time = (last.seq + 1, last.id, last.time) if last else (1, None, 0)
            if ct.own is not None and ct.own[0] >= seq:  # acknowledged, expired since: chain to it all the same
                seq, prev, prev_time = ct.own[0] + 1, ct.own[1], ct.own[2]
            if last is None and ct.own is None:
                mine = (await self.s.session.api.get(f"{self.base}/{ct.checker.thread}/messages?after={ct.pos}&limit=1",
                                                     MessagePage)).mine
                if mine is not None:  # never posted from this cache: the server's word for our last
                    if mine.time > t + ALLOWANCE:  # we would sign the server's date (time >= prev_time)
                        raise IntegrityError(f"the server says this device's last message in the thread is dated "
                                             f"{mine.time - t} s ahead of this device's clock")
                    seq, prev, prev_time = mine.seq + 1, mine.id, mine.time
            m = make_message(key, Body(text, tuple(attach or ())), thread=ct.checker.thread, rec=ct.checker.rec,
                             team_seq=self.team.seq, sender=self.s.session.me, device=self.s.session.device,
                             seq=seq, prev=prev, prev_time=prev_time,
                             seen=ct.checker.newest_seen(me), time=max(t, prev_time))
            tried.add(m.id)
            try:
                res = await self.s.session.api.post(f"{self.base}/{ct.checker.thread}/messages", MessagePost(m.raw),
                                                    Posted)
            except Conflict:
                if attempt == 3:
                    raise
                continue  # the team changed, or we raced ourselves: read again and retry
            if res.id != m.id:
                raise IntegrityError("the server acknowledged a different message than we sent")
            ct.own = (seq, m.id, m.header.time)  # before anything else: never reuse this number
            shown = await self.accept(ct, res.pos, m) if res.pos == ct.pos + 1 else None
            self.cache.save()
            return shown or Shown(res.pos, m.id, m.header.time, self.s.session.me, me, seq, text,
                                  [a.__dict__ for a in attach or ()], key.gen)
        raise AssertionError("unreachable")

    async def read(self, name: str, since: int | None = None) -> builtins.list[Shown]:
        ct = await self.resolve(name)
        ct.read = ct.pos
        self.cache.save()
        return [m for m in ct.messages if since is None or m.time >= since]

    # -- live ---------------------------------------------------------------------------------

    async def follow(self, name: str | None, on_message: Callable[[str, Shown], Awaitable[None]],
                     on_state: Callable[[str], Awaitable[None]] | None = None, stop: asyncio.Event | None = None,
                     max_retries: int | None = None) -> None:
        """Deliver every new message (after what we have) until ``stop`` is set; reconnect by itself."""
        scope: dict[str, CachedThread] = {}
        if name is not None:
            ct = await self.resolve(name)
            scope[ct.checker.thread] = ct
        else:
            for item in await self.list():
                scope[item["thread"]] = self.cache.threads[item["thread"]]
        for tid, ct in scope.items():  # what arrived since we last read: shown first
            for m in ct.messages:
                if m.pos > ct.read:
                    await on_message(tid, m)
            ct.read = ct.pos
        self.cache.save()
        stop = stop or asyncio.Event()
        failures = 0
        while not stop.is_set():
            try:
                await self._follow_once(scope, name is None, on_message, on_state, stop)
                failures = 0
            except DeviceRevoked:
                raise
            except AuthError:
                await self.s.login()  # the session expired: a new one
            except (TimeoutError, TransportError, aiohttp.ClientError, ConnectionError) as e:
                failures += 1
                if max_retries is not None and failures > max_retries:
                    raise TransportError(f"live delivery stopped: {e}") from e
                if on_state:
                    await on_state(f"connection lost ({e}); reconnecting")
            if not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(5.0, 0.2 * 2 ** min(failures, 5)))

    async def _follow_once(self, scope: dict[str, CachedThread], follow_all: bool,
                           on_message: Callable[[str, Shown], Awaitable[None]],
                           on_state: Callable[[str], Awaitable[None]] | None, stop: asyncio.Event) -> None:
        ws = await self.s.session.api.websocket(f"/api/v1/teams/{self.team.team_id}/live")
        try:
            await ws.send_json(msgspec.to_builtins(FollowStart({tid: ct.pos for tid, ct in scope.items()}, follow_all)))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    receiving = asyncio.ensure_future(ws.receive())
                    done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if stopping in done:
                        receiving.cancel()
                        return
                    msg = receiving.result()
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                                    aiohttp.WSMsgType.ERROR):
                        raise TransportError("the server closed the live connection")
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise IntegrityError("the server sent a malformed live frame")
                    await self._frame(_live_event(msg.data), scope, follow_all, on_message, on_state)
            finally:
                stopping.cancel()
        finally:
            await ws.close()

    async def _frame(self, frame: LiveEvent, scope: dict[str, CachedThread], follow_all: bool,
                     on_message: Callable[[str, Shown], Awaitable[None]],
                     on_state: Callable[[str], Awaitable[None]] | None) -> None:
        if isinstance(frame, MessagesFrame):  # several at once: each is a msg or thread frame
            for item in frame.items:
                await self._frame(item, scope, follow_all, on_message, on_state)
        elif isinstance(frame, LiveFrame):
            if on_state:
                await on_state("live")
        elif isinstance(frame, ThreadFrame):
            if follow_all:
                rec, name = await open_thread_record(self.s, self.team, frame.record)
                if rec.thread not in scope:
                    scope[rec.thread] = await self._cached(rec.thread, name, rec)
        elif isinstance(frame, MessageItem):
            ct = scope.get(frame.thread)
            if ct is None:
                raise IntegrityError("the server delivered a message of a thread we do not follow")
            shown = await self.accept(ct, frame.pos, _served(frame))  # accept checks the header names ct's thread
            if shown is not None:
                ct.read = ct.pos
                self.cache.save()
                await on_message(frame.thread, shown)
        elif isinstance(frame, ClosedFrame):
            if frame.error == "unauthorized":
                raise AuthError(frame.message)  # the session ended: follow logs in again and reconnects
            if frame.error == DeviceRevoked.code:  # a new login would be refused alike: stop, and say what to do
                raise DeviceRevoked(f"{frame.message}; {REVOKED_NEXT}")
            raise PolicyDenied(frame.message)
        elif isinstance(frame, ErrorFrame):
            raise VaultError(frame.message)
        elif isinstance(frame, DocFrame):
            raise IntegrityError("the server sent a document notice to a thread follower that did not ask for one")


def attachment_for(path_or_name: str) -> tuple[Path | None, str]:
    p = Path(path_or_name)
    return (p, p.name) if p.is_file() else (None, path_or_name)
