"""Live delivery of thread items to the members following a team, in this process.

A ``Follower`` is one open WebSocket (``server/routes/threads.py`` runs it); the ``Hub``
hands each published item to every follower of its team, encoded once. A follower whose
queue is full is marked ``lagged`` and reads what it missed from storage.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.store.records import AuthSession

QUEUE = 2000  # live items buffered per follower before it falls back to reading storage

Item = tuple[dict[str, Any], str]  # a live item and its JSON text (encoded once for every follower)


@dataclass(eq=False)
class Follower:
    session: AuthSession
    ws: web.WebSocketResponse
    queue: asyncio.Queue[Item | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    lagged: bool = False
    # The last access check: the team, org and member states it judged (each replaced on every
    # change to it) and when.
    checked: tuple[object, object, object, float] | None = None

    def offer(self, item: Item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged = True  # it reads the rest from storage


@dataclass
class Hub:
    """Followers per team (one process; delivery across processes comes with scale-out)."""

    teams: dict[str, set[Follower]] = field(default_factory=dict)
    last_purge: float = float("-inf")
    live: dict[str, int] = field(default_factory=dict)  # member -> live connections held (quota live_followers)

    def publish(self, team: str, item: dict[str, Any]) -> None:
        followers = self.teams.get(team)
        if followers:
            entry = (item, json.dumps(item))
            for f in list(followers):
                f.offer(entry)
