"""The watch loop (client/sync/watch.py) run in-process with a small ``run_pass`` that records what it was called
with (tests/test_sync_watch.py, tests/test_sync_ask.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from client.sync.live import Notice
from client.sync.watch import Hint, watch


class Recorder:
    """A ``run_pass`` that records each hint (and may act or fail), plus the emitted objects."""

    def __init__(self, act: Callable[[int], Any] | None = None, delay: float = 0.0) -> None:
        self.hints: list[Hint | None] = []
        self.emitted: list[dict[str, Any]] = []
        self.act, self.delay = act, delay
        self.running = 0
        self.most_at_once = 0
        self.cancelled = 0

    async def run_pass(self, hint: Hint | None) -> list[dict[str, Any]]:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.hints.append(hint)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            out = self.act(len(self.hints)) if self.act else None
            return out if isinstance(out, list) else [{"action": "pass", "n": len(self.hints)}]
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1

    def emit(self, obj: dict[str, Any]) -> None:
        self.emitted.append(obj)

    async def until(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.hints) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(self.hints) >= n, f"{len(self.hints)} passes of {n}: {self.hints}"


class Running:
    """``watch`` running as a task over ``folder``, stopped at the end."""

    def __init__(self, rec: Recorder, folder: Path, notices: AsyncGenerator[Notice, None] | None = None,
                 **options: Any) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.ensure_future(watch(rec.run_pass, folder, notices, rec.emit, self.stop, **options))

    async def __aenter__(self) -> Running:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 15)


async def queued(q: asyncio.Queue[Notice]) -> AsyncGenerator[Notice, None]:
    while True:
        yield await q.get()
