"""One read for many concurrent callers, each of which must see what was stored before it asked.

A server process over a database other processes share reads, before it judges a request, whether they stored
chain links since it last looked (``server/access.py`` ``catch_up``): twice a request. Requests that ask while a
read is under way cannot use its answer (it started before they asked: a link stored in between would be missed);
they share the next read, started once the running one ends, so that under load one round trip serves every
request that asked meanwhile instead of one each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    """``await shared()``: the answer of a ``read()`` that started after this call (at once if none is under
    way; else the next one, shared by every caller that came while the current one ran). A failed read fails
    the callers sharing it, never a later one. A caller that stops waiting does not cancel the read."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Future[T] | None = None  # started: serves the callers that came before it
        self._next: asyncio.Future[T] | None = None  # to start when ``_running`` ends: callers since it started
        self.reads = 0  # reads started (the figures of bench/pgcount.py; tests)

    async def __call__(self) -> T:
        if self._running is None or self._running.done():
            return await asyncio.shield(self._start())
        if self._next is None:
            self._next = asyncio.ensure_future(self._after(self._running))
            self._next.add_done_callback(_retrieved)
        return await asyncio.shield(self._next)

    def _start(self) -> asyncio.Future[T]:
        self.reads += 1
        self._running = asyncio.ensure_future(self._read())
        self._running.add_done_callback(_retrieved)
        return self._running

    async def _after(self, running: asyncio.Future[T]) -> T:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(running)  # its failure is its own callers'
        self._next = None  # callers from here on (this read has not started) share the one after it, or this one
        return await self._start()


def _retrieved(done: asyncio.Future[T]) -> None:
    """Mark a failure as seen (it was raised to the callers waiting, if any were): no "never retrieved" warning."""
    if not done.cancelled():
        done.exception()
