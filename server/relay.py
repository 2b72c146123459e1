"""Live delivery across server processes over one database: what another process stored reaches this process's
followers (``server/live.py``) through this process's bus, as if it had been stored here.

A ``Feed`` (``server/events.py``; PostgreSQL ``LISTEN/NOTIFY``, ``server/store/postgres/listen.py``) hands over
notices, in the order their transactions committed; each names what was stored, and carries the stored records of
new messages and threads when they fit in one (``server/store/notices.py``). The relay acts on them one batch at a
time, in order, and reads from storage only what this process's followers need and no notice carried, once for
all of them:

- messages: published as items from the records a notice carries; those of a notice without records read by
  position (consecutive ones of one thread in one read); a follower skips the positions it has and reads a gap
  from storage, so every message reaches it once, in order, whichever process stored it and whether or not a
  notice came (the positions a follower holds are the truth it goes by; a record from a notice is the one stored,
  checked by the follower as one read from storage);
- a new thread: its record (carried, or read) published; a document version: published as the notice it is;
- the audit key (the audit log's meta row ``audit_key``): adopted here at once (``adopt_audit_key``), so that
  this process seals events to the key the Security Team published through another one;
- chain links: this process's directory replays them, then every follower has its access judged again
  (``CHECK``): a member removed through another process is cut off here at once. The links a notice carries are
  replayed as they are when they follow the last one this process read (``Directory.take_carried``); otherwise
  (this process stored links since, or missed a notice, or the links did not fit) it reads them (``catch_up``);
- ``Resync`` (the feed listens again after a loss, or a notice could not be read or acted on): chains replayed,
  the audit key read again, every follower reads what it may have missed from storage (``RESYNC``; a document
  follower reconnects).

With one process (SQLite) there is no feed and no relay. ``/api/metrics`` counts the messages relayed from notices
and from reads, and the reads (``mvault_live_relayed``, ``mvault_live_relay_reads``), and the links notices
replayed from their links or by a read (``mvault_live_link_notices``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from server.access import catch_up, take_carried
from server.context import BUS, CONFIG, THREADS, running
from server.events import CHECK, RESYNC, Feed, Item
from server.live import PAGE, frame, message_item
from server.metrics import METRICS
from server.recorder import adopt_audit_key
from server.store.notices import (
    AuditMetaStored,
    LinksStored,
    MessagesStored,
    Notice,
    Resync,
    ThreadStored,
    VersionStored,
)
from vault.errors import StorageUnavailable
from vault.wire import schemas

log = logging.getLogger("mvault.server")

WAITING = 10_000  # notices waiting to be acted on at most: beyond, they are forgotten for one Resync
BATCH = 1_000  # notices acted on together
RETRY = 1.0  # seconds before a Resync that failed (the database is away) is tried again



class Relay:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._metrics = app[METRICS]
        self.queue: asyncio.Queue[Notice | Resync] = asyncio.Queue()

    def take(self, notice: Notice | Resync) -> None:
        """A notice from the feed (called on the event loop, in the order they were sent)."""
        if self.queue.qsize() >= WAITING:  # this process is far behind: read the database instead
            while not self.queue.empty():
                self.queue.get_nowait()
            notice = Resync()
        self.queue.put_nowait(notice)

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self.act(batch)
            except StorageUnavailable as e:
                log.warning("live notices: %s; followers read from the database when it is back", e)
                asyncio.get_running_loop().call_later(RETRY, self.take, Resync())
            except Exception:  # a bug: said loudly, and the followers still read what they missed
                log.exception("live notices: acting on %d notices failed", len(batch))
                asyncio.get_running_loop().call_later(RETRY, self.take, Resync())

    async def act(self, batch: list[Notice | Resync]) -> None:
        """Each notice in order; consecutive message notices are taken together, thread by thread."""
        pending: dict[tuple[str, str], list[MessagesStored]] = {}
        for notice in batch:
            if isinstance(notice, MessagesStored):
                pending.setdefault((notice.team, notice.thread), []).append(notice)
                continue
            await self._messages(pending)
            match notice:
                case ThreadStored(team, thread, record):
                    if self._followed(team):
                        if record is None:
                            t = await self.app[THREADS].thread(team, thread)
                            record = None if t is None else t.record
                        if record is not None:
                            self._publish(team, frame(schemas.ThreadFrame(thread=thread, record=record)))
                case VersionStored(team, doc, seq, vid):
                    self._publish(team, frame(schemas.DocFrame(doc=doc, seq=seq, vid=vid)))
                case LinksStored(after, links):
                    carried = links is not None and await take_carried(self.app, after, links)
                    if not carried:
                        await catch_up(self.app)
                    self._metrics.link_notices.labels("notice" if carried else "read").inc()
                    self._offer_all(CHECK)
                case AuditMetaStored("audit_key"):
                    await catch_up(self.app)  # the key is judged on the chains as they are now
                    await adopt_audit_key(self.app)
                case AuditMetaStored():
                    pass
                case Resync():
                    await catch_up(self.app)
                    await adopt_audit_key(self.app)
                    self._offer_all(RESYNC)
        await self._messages(pending)

    async def _messages(self, pending: dict[tuple[str, str], list[MessagesStored]]) -> None:
        """Publish the messages of ``pending``'s notices, each thread's in the order its notices came: the records
        they carry as they are, the others read by position (consecutive ones in one read)."""
        for (team, thread), notices in pending.items():
            if not self._followed(team):
                continue
            span: tuple[int, int] | None = None  # positions to read, from notices without records
            for n in notices:
                if n.records is None:
                    span = (n.first, n.last) if span is None else (min(span[0], n.first), max(span[1], n.last))
                    continue
                if span is not None:
                    await self._read(team, thread, span)
                    span = None
                for pos, record in enumerate(n.records, n.first):
                    self._publish(team, frame(schemas.MessageItem(thread=thread, pos=pos, record=record)))
                self._metrics.relayed.labels("notice").inc(len(n.records))
            if span is not None:
                await self._read(team, thread, span)
        pending.clear()

    async def _read(self, team: str, thread: str, span: tuple[int, int]) -> None:
        first, last = span
        now = int(self.app[CONFIG].clock())
        msgs = await self.app[THREADS].messages(team, thread, first - 1, min(last - first + 1, PAGE), now)
        self._metrics.relay_reads.inc()
        self._metrics.relayed.labels("read").inc(len(msgs))
        for m in msgs:
            self._publish(team, frame(message_item(m)))

    def _followed(self, team: str) -> bool:
        return self.app[BUS].followed(team)

    def _publish(self, team: str, item: dict[str, Any]) -> None:
        self.app[BUS].publish(team, item)

    def _offer_all(self, item: Item) -> None:
        for f in self.app[BUS].followers():
            f.offer(item)


def relaying(feed: Feed) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's ``cleanup_ctx`` entry: the relay and its feed run while the app serves (the feed stops first)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        relay = Relay(app)
        async with running(relay.run()), running(feed.run(relay.take)):
            yield

    return ctx
