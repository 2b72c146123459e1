"""``client.batching.Batcher`` with ``hold`` (the batch download's, issue 16 session 22): a batch that is not full
goes only while no batch is out and fewer than a quarter batch of answered items are still with their submitters
(each calls ``done`` when it is through with its outcome); while a batch is out, or the submitters still hold
enough, the items wait, and then go together. A full batch goes at once. Without ``hold`` (the batch upload's)
the timer sends them as before. Pure asyncio: the ``send`` function is the test's, answering when the test lets
it."""

from __future__ import annotations

import asyncio

from client.batching import Batcher

GATHER = 0.002


class Server:
    """A ``send`` that records each batch and answers it when the test sets its event."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.answer: list[asyncio.Event] = []

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        gate = asyncio.Event()
        self.answer.append(gate)
        await gate.wait()
        return [i * 10 for i in items]


async def _take(b: Batcher[int, int], item: int) -> int:
    """A submitter as the batch download's: ``done`` once through with its outcome."""
    try:
        return await b.submit(item)
    finally:
        b.done()


async def _until(cond: object, seconds: float = 2.0) -> None:
    end = asyncio.get_running_loop().time() + seconds
    while not cond():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.001)


def test_held_items_wait_for_the_answer_while_a_batch_is_out_then_go_together() -> None:
    async def run() -> None:
        server = Server()
        b: Batcher[int, int] = Batcher(server.send, items=8, in_flight=2, gather_s=GATHER, hold=True)
        first = asyncio.create_task(_take(b, 1))
        await _until(lambda: len(server.batches) == 1)  # by the timer: none was out
        later = [asyncio.create_task(_take(b, i)) for i in (2, 3, 4)]
        await asyncio.sleep(GATHER * 20)  # many timers' worth: still not sent (a batch is out, room for another)
        assert server.batches == [[1]]
        server.answer[0].set()
        assert await first == 10
        await _until(lambda: len(server.batches) == 2)
        assert server.batches[1] == [2, 3, 4]  # the three together, once the first was answered
        server.answer[1].set()
        assert [await t for t in later] == [20, 30, 40]

    asyncio.run(run())


def test_a_full_batch_goes_at_once_even_while_one_is_out() -> None:
    async def run() -> None:
        server = Server()
        b: Batcher[int, int] = Batcher(server.send, items=3, in_flight=2, gather_s=GATHER, hold=True)
        first = asyncio.create_task(_take(b, 0))
        await _until(lambda: len(server.batches) == 1)
        full = [asyncio.create_task(_take(b, i)) for i in (1, 2, 3)]
        await _until(lambda: len(server.batches) == 2)
        assert server.batches == [[0], [1, 2, 3]]
        rest = asyncio.create_task(_take(b, 4))  # two out: waits (the in-flight limit)
        await asyncio.sleep(GATHER * 10)
        assert len(server.batches) == 2
        server.answer[1].set()
        assert [await t for t in full] == [10, 20, 30]
        await asyncio.sleep(GATHER * 10)
        assert len(server.batches) == 2  # not full, and a batch is still out: held
        server.answer[0].set()
        await _until(lambda: len(server.batches) == 3)
        assert server.batches[2] == [4]
        server.answer[2].set()
        assert (await first, await rest) == (0, 40)

    asyncio.run(run())


def test_a_batch_that_is_not_full_waits_while_the_submitters_hold_answered_items() -> None:
    async def run() -> None:
        server = Server()
        b: Batcher[int, int] = Batcher(server.send, items=8, in_flight=2, gather_s=GATHER, hold=True)
        got = [asyncio.create_task(b.submit(i)) for i in (1, 2, 3)]  # their submitters not done with them yet
        await _until(lambda: len(server.batches) == 1)
        server.answer[0].set()
        assert [await t for t in got] == [10, 20, 30]
        later = asyncio.create_task(b.submit(4))
        await asyncio.sleep(GATHER * 20)
        assert len(server.batches) == 1  # none out, but 3 answered items (>= 8 // 4) still with their submitters
        b.done()
        await asyncio.sleep(GATHER * 5)
        assert len(server.batches) == 1  # 2 still: held
        b.done()
        await _until(lambda: len(server.batches) == 2)  # 1 left, fewer than a quarter batch: it goes
        assert server.batches[1] == [4]
        server.answer[1].set()
        assert await later == 40

    asyncio.run(run())


def test_without_hold_the_timer_sends_while_a_batch_is_out() -> None:
    async def run() -> None:
        server = Server()
        b: Batcher[int, int] = Batcher(server.send, items=8, in_flight=2, gather_s=GATHER)
        first = asyncio.create_task(b.submit(1))
        await _until(lambda: len(server.batches) == 1)
        second = asyncio.create_task(b.submit(2))
        await _until(lambda: len(server.batches) == 2)  # by its own timer, the first still out
        assert server.batches == [[1], [2]]
        for gate in server.answer:
            gate.set()
        assert (await first, await second) == (10, 20)

    asyncio.run(run())
