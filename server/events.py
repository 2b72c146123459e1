"""Live delivery of thread items and document notices to the members following a team: the ``EventBus``
interface and its in-process implementation.

A ``Follower`` is one open WebSocket (``server/live.py`` serves it) with a bounded queue;
the bus hands each published item to every follower subscribed to its team, encoded once. A
follower whose queue is full is marked ``lagged`` and reads what it missed from storage, so a bus
may drop items for a follower but never reorders them. A document notice (``{"type": "doc", ...}``) goes only
to the followers that asked for them (``docs``). ``InProcessBus`` serves one process's followers. Over a
database several processes share, what the others store reaches this process through a ``Feed`` (PostgreSQL
``LISTEN/NOTIFY``: ``server/store/postgres/listen.py``), which ``server/relay.py`` turns into items published
here: the bus and its followers do not know which backend, or how many processes, there are.

Two items are never sent to a follower: ``CHECK`` (judge its access again now: a chain changed in another
process) and ``RESYNC`` (items may have been missed: read the rest from storage, as a lagged follower does).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from server.store.notices import Notice, Resync
from server.store.records import AuthSession

QUEUE = 2000  # live items buffered per follower before it falls back to reading storage
QUEUE_BYTES = 8 * 1024 * 1024  # ... or this many bytes of them (Config.live_queue_bytes)

Item = tuple[dict[str, Any], str]  # a live item and its JSON text (encoded once for every follower)
CHECK: Item = ({"type": "check"}, "")
RESYNC: Item = ({"type": "resync"}, "")


@dataclass(eq=False)
class Follower:
    session: AuthSession
    ws: web.WebSocketResponse
    queue: asyncio.Queue[Item | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    lagged: bool = False
    docs: bool = False  # it asked for document notices
    # The last access check: the team, org and member states it judged (each replaced on every
    # change to it) and when.
    checked: tuple[object, object, object, float] | None = None
    limit: int = QUEUE_BYTES  # bytes of items waiting in the queue at most
    waiting: int = 0  # bytes of the items waiting in the queue

    def offer(self, item: Item) -> None:
        if item[0]["type"] == "doc" and not self.docs:
            return
        if item is RESYNC:
            self.lagged = True
        if self.waiting + len(item[1]) > self.limit:
            self.lagged = True  # it reads the rest from storage (a document follower is disconnected)
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged = True  # it reads the rest from storage
        else:
            self.waiting += len(item[1])

    def took(self, entry: Item | None) -> Item | None:
        """``entry``, just taken from the queue (its bytes no longer wait)."""
        if entry is not None:
            self.waiting -= len(entry[1])
        return entry


class Feed(Protocol):
    """What other server processes store, as they commit it (only over a database they share)."""

    async def run(self, take: Callable[[Notice | Resync], None]) -> None: ...


class EventBus(Protocol):
    """Where accepted thread items and stored document versions are published and followers of a team
    receive them."""

    def subscribe(self, team: str, follower: Follower) -> None: ...
    def unsubscribe(self, team: str, follower: Follower) -> None: ...
    def publish(self, team: str, item: dict[str, Any]) -> None: ...
    def followed(self, team: str) -> bool: ...
    def followers(self) -> Iterator[Follower]: ...


@dataclass
class InProcessBus:
    """Followers per team, in this process."""

    teams: dict[str, set[Follower]] = field(default_factory=dict)

    def subscribe(self, team: str, follower: Follower) -> None:
        self.teams.setdefault(team, set()).add(follower)

    def unsubscribe(self, team: str, follower: Follower) -> None:
        self.teams.get(team, set()).discard(follower)

    def publish(self, team: str, item: dict[str, Any]) -> None:
        followers = self.teams.get(team)
        if followers:
            entry = (item, json.dumps(item))
            for f in list(followers):
                f.offer(entry)

    def followed(self, team: str) -> bool:
        """Does anyone here follow ``team``?"""
        return bool(self.teams.get(team))

    def followers(self) -> Iterator[Follower]:
        """Every follower, team by team (each team's set copied as it is reached)."""
        for followers in list(self.teams.values()):
            yield from list(followers)


@dataclass
class Hub(InProcessBus):
    """The in-process bus, with what this process counts of live delivery: the connections each member
    holds (quota ``live_followers``) and the last purge of expired messages."""

    last_purge: float = float("-inf")
    live: dict[str, int] = field(default_factory=dict)  # member -> live connections held (quota live_followers)
