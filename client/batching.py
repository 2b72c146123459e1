"""Single requests of one kind gathered into batch requests: the batch upload (``client/uploadbatch.py``) and the
batch download (``client/downloadbatch.py``).

``Batcher.submit`` queues one item and returns its own outcome once the batch it went in is answered. A batch
goes once ``items`` are waiting (or ``max_size`` of their ``size``), or ``gather_s`` after the first one came,
while fewer than ``in_flight`` batches are out; the next goes as one is answered. With ``hold``, a batch that is not
full goes only while none is out and the submitters are nearly done with the items answered before: each calls
``done`` once it is (whatever its ``submit`` returned or raised), and a batch that is not full goes once fewer
than a quarter of ``items`` answered items are still with them (by the timer, by an answer or by a ``done``). A
fetch batch's pulls come back to the batcher a few at a time, as the workers finish their files: sent by a timer
or at each answer, they went in many small requests (each costing the server one), and the sooner the event loop
got to them the smaller (docs/performance.md, issue 16 sessions 21 and 22). The ``send`` function gets a
batch's items and returns one outcome per item, in order (a result, or the exception that item fails with); if
it raises, or answers another number of outcomes, every item of that batch fails with that error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from vault.errors import IntegrityError

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Items sent in batches by ``send`` (see the module's docstring)."""

    def __init__(self, send: Callable[[list[T]], Awaitable[list[R | BaseException]]], *, items: int, in_flight: int,
                 gather_s: float, size: Callable[[T], int] = lambda _: 0, max_size: int = 0, hold: bool = False,
                 ) -> None:
        self._send_batch, self._items, self._in_flight, self._gather_s = send, items, in_flight, gather_s
        self._hold = hold
        self._open = 0  # with ``hold``: items submitted whose submitter has not called ``done`` yet
        self._out = 0  # items in the batches out
        self._sizes: dict[asyncio.Task[None], int] = {}
        self._size, self._max_size = size, max_size
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._waiting_size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Send ``item`` in the next batch; its outcome (or the error it fails with, raised)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, done))
        self._waiting_size += self._size(item)
        self._open += self._hold
        if self._full():
            self._send()
        elif self._timer is None and (not self._hold or self._may_go()):  # else: at an answer or a ``done``
            self._timer = loop.call_later(self._gather_s, self._timed)
        return await done

    def done(self) -> None:
        """With ``hold``: the submitter of one item is done with its outcome (once per ``submit``, in a ``finally``).
        A batch held for it goes if it may now."""
        self._open -= 1
        if self._waiting and self._may_go():
            self._send()

    def _full(self) -> bool:
        return len(self._waiting) >= self._items or bool(self._max_size and self._waiting_size >= self._max_size)

    def _may_go(self) -> bool:
        """(``hold``) Whether a batch that is not full may go: none is out, and fewer than a quarter of ``items``
        answered items are still with their submitters (items submitted, less those waiting or out, less done)."""
        return not self._sending and self._open - len(self._waiting) - self._out < max(1, self._items // 4)

    def _timed(self) -> None:
        self._timer = None
        if not self._hold or self._may_go():
            self._send()

    def _fits(self, n: int, size: int) -> bool:
        """Whether the ``n``-th waiting item still goes in a batch whose first ``n`` items weigh ``size``."""
        return n == 0 or not self._max_size or size + self._size(self._waiting[n][0]) <= self._max_size

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self._sending) >= self._in_flight or not self._waiting:
            return  # the next batch goes when one of those out is answered
        n, size = 0, 0
        while n < len(self._waiting) and n < self._items and self._fits(n, size):
            size += self._size(self._waiting[n][0])
            n += 1
        batch, self._waiting = self._waiting[:n], self._waiting[n:]
        self._waiting_size -= size
        task = asyncio.create_task(self._request(batch))
        self._sending.add(task)
        self._sizes[task] = n
        self._out += n
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._out -= self._sizes.pop(task)
        if self._waiting and (not self._hold or self._full() or self._may_go()):
            self._send()

    async def _request(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._send_batch([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise IntegrityError(f"the server answered {len(outcomes)} outcomes to a batch of {len(batch)}")
        except BaseException as e:
            for _, done in batch:
                if not done.done():
                    done.set_exception(e)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():
                continue
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)
