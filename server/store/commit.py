"""Group commit: concurrent writes share one transaction (and one fsync), with one failure rule.

Every store that makes writes durable before answering uses a ``GroupCommitter``: the vault's
sessions and document versions (``store/sqlite/vault.py``), thread messages (``server/messagelog.py``)
and audit leaves (``store/sqlite/audit.py``). The store gives it a ``write`` that stores a batch of
items in one transaction and returns one outcome per item; callers ``submit`` an item and get its
outcome once the batch it joined is committed.

The rule:

- Items submitted while a batch is being written wait for the next batch; a batch is one
  transaction, committed by one ``write`` call, one at a time.
- ``write`` may refuse an item on its own (it returns ``Refused(error)`` for it and leaves nothing
  of it): that item fails alone with that error, the others of the batch are committed.
- If ``write`` raises (the transaction failed: nothing of the batch is stored), every item of the
  batch AND every item queued behind it fails with ``ServiceUnavailable`` (503; the cause is logged
  once), or with ``InsufficientStorage`` (507) when the disk is full (``server.store.space``): the
  next batch is tried afresh, so writes succeed again once space is freed. A store whose database went
  away raises ``StorageUnavailable``: the same, with that error (503), logged as a warning. ``on_failure`` runs
  first, with those items, so the store drops what it derived from them in memory (items queued
  behind were checked against that state, hence they fail too).
- A caller that stops waiting (a client hangs up) does not cancel its write: the batch goes on.
- ``close`` commits what is queued and refuses later items with ``ServiceUnavailable`` ("the server
  is shutting down; try again"). If the committing task itself is cancelled (the event loop stops),
  its batch and the queue fail with that error and ``on_failure`` runs: the batch may or may not
  have been committed, as for any request cut by a shutdown. A later ``submit`` starts a new task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from server.store.space import no_space, out_of_space
from vault.errors import ServiceUnavailable, StorageUnavailable

Item = TypeVar("Item")  # an item of a batch
R = TypeVar("R")

log = logging.getLogger("mvault.server")


@dataclass(frozen=True)
class Refused:
    """One item's own refusal, returned by a batch's ``write`` in that item's place."""

    error: Exception


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("the server is shutting down; try again")


class GroupCommitter(Generic[Item, R]):
    """Queues items and commits them in batches with ``write`` (see the module's rule).

    ``what`` names an item in the error a failed batch gives ("the message": "the server could not
    store the message; try again")."""

    def __init__(self, write: Callable[[list[Item]], Awaitable[Sequence[R | Refused]]], what: str,
                 on_failure: Callable[[list[Item]], None] | None = None) -> None:
        self._write = write
        self._what = what
        self._on_failure = on_failure
        self._queue: list[tuple[Item, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.observer: Callable[[int], None] | None = None  # told each committed batch's size (server/metrics.py)

    async def submit(self, item: Item) -> R:
        """Queue ``item`` for the next batch; its outcome once that batch is committed."""
        if self._closed:
            raise shutting_down()
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await asyncio.shield(done)  # a caller that hangs up does not cancel a write in flight

    async def close(self) -> None:
        """Commit what is queued; refuse what comes later."""
        self._closed = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                outcomes = await self._write([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} got {len(outcomes)} outcomes")
            except asyncio.CancelledError:
                self._fail(batch, shutting_down)
                raise
            except Exception as e:  # noqa: BLE001 - the transaction failed: the batch and the queue fail
                if isinstance(e, StorageUnavailable):  # the database went away: not this server's fault
                    log.warning("storing %d items (%s) failed: %s; they and %d queued behind them get 503",
                                len(batch), self._what, e, len(self._queue))
                    self._fail(batch, lambda: StorageUnavailable(
                        f"the server could not store {self._what}: its database is unavailable; try again shortly"))
                    continue
                if out_of_space(e):
                    log.error("storing %d items (%s) failed: the disk is full; they and %d queued behind them "
                              "get 507", len(batch), self._what, len(self._queue))
                    self._fail(batch, lambda: no_space(self._what))
                    continue
                log.error("storing %d items (%s) failed; they and %d queued behind them get 503",
                          len(batch), self._what, len(self._queue), exc_info=e)
                self._fail(batch, lambda: ServiceUnavailable(f"the server could not store {self._what}; try again"))
                continue
            if self.observer is not None:
                self.observer(len(batch))
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, Refused):
                    done.set_exception(outcome.error)
                else:
                    done.set_result(outcome)

    def _fail(self, batch: list[tuple[Item, asyncio.Future[R]]], error: Callable[[], Exception]) -> None:
        failed, self._queue = batch + self._queue, []
        if self._on_failure is not None:
            try:
                self._on_failure([item for item, _ in failed])
            except Exception:  # noqa: BLE001 - the waiters must still get their answer
                log.exception("dropping the state derived from a failed batch (%s) failed", self._what)
        for _, done in failed:
            if not done.done():
                done.set_exception(error())
