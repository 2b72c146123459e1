"""Live delivery across server processes over one database: what another process stored reaches this process's
followers (``server/live.py``) through this process's bus, as if it had been stored here.

A ``Feed`` (``server/events.py``; PostgreSQL ``LISTEN/NOTIFY``, ``server/store/postgres/listen.py``) hands over
notices, in the order their transactions committed; each names what was stored, never its content
(``server/store/notices.py``). The relay acts on them one batch at a time, in order, and reads from storage only
what this process's followers need, once for all of them:

- messages: read by position (consecutive notices of one thread in one read) and published as items; a follower
  skips the positions it has and reads a gap from storage, so every message reaches it once, in order, whichever
  process stored it and whether or not a notice came (the positions a follower holds are the truth it goes by);
- a new thread: its record read and published; a document version: published as the notice it is;
- the audit key (the audit log's meta row ``audit_key``): adopted here at once (``adopt_audit_key``), so that
  this process seals events to the key the Security Team published through another one;
- chain links: this process's directory replays them (``catch_up``), then every follower has its access
  judged again (``CHECK``): a member removed through another process is cut off here at once;
- ``Resync`` (the feed listens again after a loss, or a notice could not be read or acted on): chains replayed,
  the audit key read again, every follower reads what it may have missed from storage (``RESYNC``; a document
  follower reconnects).

With one process (SQLite) there is no feed and no relay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from server.access import catch_up
from server.context import BUS, CONFIG, THREADS, running
from server.events import CHECK, RESYNC, Feed, Item
from server.live import PAGE, frame, message_item
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

Span = tuple[int, int]  # the first and last positions of a thread's messages that notices named


class Relay:
    def __init__(self, app: web.Application) -> None:
        self.app = app
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
        """Each notice in order; consecutive message notices are read together, a thread's in one read."""
        spans: dict[tuple[str, str], Span] = {}
        for notice in batch:
            if isinstance(notice, MessagesStored):
                key = (notice.team, notice.thread)
                first, last = spans.get(key, (notice.first, notice.last))
                spans[key] = (min(first, notice.first), max(last, notice.last))
                continue
            await self._messages(spans)
            match notice:
                case ThreadStored(team, thread):
                    if self._followed(team):
                        t = await self.app[THREADS].thread(team, thread)
                        if t is not None:
                            self._publish(team, frame(schemas.ThreadFrame(thread=t.thread, record=t.record)))
                case VersionStored(team, doc, seq, vid):
                    self._publish(team, frame(schemas.DocFrame(doc=doc, seq=seq, vid=vid)))
                case LinksStored():
                    await catch_up(self.app)
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
        await self._messages(spans)

    async def _messages(self, spans: dict[tuple[str, str], Span]) -> None:
        now = int(self.app[CONFIG].clock())
        for (team, thread), (first, last) in spans.items():
            if self._followed(team):
                for m in await self.app[THREADS].messages(team, thread, first - 1, min(last - first + 1, PAGE), now):
                    self._publish(team, frame(message_item(m)))
        spans.clear()

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
