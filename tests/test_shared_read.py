"""server/sharedread.py: concurrent callers share reads, and none gets the answer of a read that started before it
asked (the guarantee ``catch_up`` needs: a link another process stored before a request arrived is replayed before
the request is judged)."""

from __future__ import annotations

import asyncio

import pytest

from server.sharedread import SharedRead


class Store:
    """A value that changes, read slowly (each read answers the value as it was when the read started)."""

    def __init__(self) -> None:
        self.value = 0
        self.gate: asyncio.Event = asyncio.Event()
        self.started = 0

    async def read(self) -> int:
        seen = self.value
        self.started += 1
        await self.gate.wait()
        return seen


async def started(store: Store, n: int) -> None:
    while store.started < n:
        await asyncio.sleep(0)


async def test_a_caller_during_a_read_gets_a_later_read() -> None:
    store = Store()
    shared = SharedRead(store.read)
    first = asyncio.ensure_future(shared())
    await started(store, 1)  # the first read has started, seeing 0
    store.value = 1  # stored (by another process) after that read started, before the next callers ask
    later = [asyncio.ensure_future(shared()) for _ in range(5)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [1] * 5  # not the first read's stale 0
    assert shared.reads == 2  # the five shared one read


async def test_a_caller_after_a_read_ended_starts_a_new_one() -> None:
    store = Store()
    store.gate.set()
    shared = SharedRead(store.read)
    assert await shared() == 0
    store.value = 7
    assert await shared() == 7
    assert shared.reads == 2


async def test_a_failed_read_fails_only_its_callers() -> None:
    calls = []

    async def read() -> int:
        calls.append(1)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise ConnectionError("the database went away")
        return len(calls)

    shared = SharedRead(read)
    first = asyncio.ensure_future(shared())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(shared())
    with pytest.raises(ConnectionError):
        await first
    assert await second == 2
    assert await shared() == 3


async def test_a_caller_that_stops_waiting_does_not_cancel_the_read() -> None:
    store = Store()
    shared = SharedRead(store.read)
    first = asyncio.ensure_future(shared())
    await started(store, 1)
    other = asyncio.ensure_future(shared())
    later = asyncio.ensure_future(shared())
    await asyncio.sleep(0)
    other.cancel()
    store.value = 3
    store.gate.set()
    assert await first == 0
    assert await later == 3  # the read it shared with the cancelled caller still ran (after the first)
    assert shared.reads == 2
