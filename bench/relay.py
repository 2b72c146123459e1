"""What relaying another process's thread messages costs (issue 19, ``server/relay.py``): the record carried in
the ``NOTIFY`` against the read back from the database.

Setup: a throw-away PostgreSQL cluster (``tests/helpers/postgres.py``: Debian's binaries, unix socket,
``fsync=off``); a child process storing messages with ``PostgresStorage`` (as process one does); in this process a
``Listener`` and a ``Relay`` receiving them for one follower (as process two does: a stand-in follower that
counts the items offered to it). A round appends M messages of R bytes in batches of B, one ``add_messages`` call
per batch, and waits until the follower was offered every one. Ours: as shipped (the records ride in the notices
that fit). Reference, in the same run: the same code with no record carried (``notices.BODY`` 0 in the child:
every notice names positions only and the relay reads them back, as before session 16). Rounds alternate; CPU
time (user+sys) of this process (the receiving one), of the child (the storing one) and of every PostgreSQL
backend per message, the relay's reads per message; medians and ratios printed. Nothing here asserts a time; the
machine may be loaded: read CPU.

    python bench/relay.py [--messages M] [--batch B] [--record R] [--rounds K]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.notify import TEAM, THREAD, cpu  # noqa: E402
from server.context import BUS, CONFIG, THREADS  # noqa: E402
from server.events import InProcessBus  # noqa: E402
from server.metrics import METRICS, Metrics  # noqa: E402
from server.relay import Relay  # noqa: E402
from server.store import notices  # noqa: E402
from server.store.notices import Notice, Resync  # noqa: E402
from server.store.postgres.listen import Listener  # noqa: E402
from server.store.postgres.vault import PostgresStorage  # noqa: E402
from server.store.records import MessagePost, StoredMessage  # noqa: E402
from tests.helpers.postgres import Cluster, bin_dir  # noqa: E402


class Counted:
    """A stand-in follower: counts what the bus offers it, ``done`` once it had ``expected``."""

    def __init__(self, expected: int) -> None:
        self.items = 0
        self.expected = expected
        self.done = asyncio.Event()

    def offer(self, item: Any) -> None:
        self.items += 1
        if self.items >= self.expected:
            self.done.set()


class Clock:
    @staticmethod
    def clock() -> float:
        return time.time()


def store_messages(url: str, data: str, first_seq: int, messages: int, batch: int, record: int, carry: bool,
                   cpu_out: Any) -> None:
    """The child: M messages in batches of B through ``add_messages`` (as process one stores them)."""
    notices.BODY = BODY if carry else 0

    async def run() -> None:
        store = await PostgresStorage.open(url, Path(data), collect=False)
        t0 = psutil.Process().cpu_times()
        for start in range(0, messages, batch):
            posts = []
            for i in range(start, min(start + batch, messages)):
                device, seq = f"d{i % 8}", first_seq + i // 8
                prev = f"m-{device}-{seq - 1}" if seq > 1 else None
                posts.append(MessagePost(StoredMessage(TEAM, THREAD, 0, f"m-{device}-{seq}", device, seq,
                                                       int(time.time()), b"x" * record), prev))
            await store.add_messages(posts)
        t1 = psutil.Process().cpu_times()
        cpu_out.value = t1.user + t1.system - t0.user - t0.system
        await store.close()

    asyncio.run(run())


async def round_(reader: PostgresStorage, postmaster: psutil.Process, data: str, first_seq: int,
                 args: argparse.Namespace, carry: bool) -> tuple[float, float, float, float]:
    app = web.Application()
    app[THREADS] = reader
    bus = InProcessBus()
    follower = Counted(args.messages)
    bus.subscribe(TEAM, follower)  # type: ignore[arg-type]
    app[BUS] = bus
    app[CONFIG] = Clock()  # type: ignore[assignment]
    app[METRICS] = metrics = Metrics()
    relay = Relay(app)
    listening = asyncio.Event()

    def take(n: Notice | Resync) -> None:  # the relay's Resync would replay chains: there are none here
        if isinstance(n, Resync):
            listening.set()
        else:
            relay.take(n)

    tasks = [asyncio.create_task(Listener(reader.url, "bench-reader", reader._notice_key).run(take)),
             asyncio.create_task(relay.run())]
    await listening.wait()
    m = args.messages
    ctx = multiprocessing.get_context("spawn")
    child_cpu = ctx.Value("d", 0.0)
    me = psutil.Process()
    c0, b0 = me.cpu_times(), cpu(postmaster)
    child = ctx.Process(target=store_messages, args=(reader.url, data, first_seq, m, args.batch, args.record, carry,
                                                     child_cpu))
    child.start()
    await follower.done.wait()
    c1, b1 = me.cpu_times(), cpu(postmaster)
    await asyncio.to_thread(child.join)
    for t in tasks:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    reads = metrics.registry.get_sample_value("mvault_live_relay_reads_total") or 0.0
    backends = sum(t - b0.get(pid, 0.0) for pid, t in b1.items())
    return (c1.user + c1.system - c0.user - c0.system) / m, child_cpu.value / m, backends / m, reads / m


BODY = notices.BODY


async def main_async(args: argparse.Namespace) -> None:
    bindir = bin_dir()
    if bindir is None:
        raise SystemExit("PostgreSQL's server binaries (initdb, pg_ctl) are missing")
    cluster = Cluster(bindir).start()
    try:
        url = cluster.new_database()
        with tempfile.TemporaryDirectory() as data:
            reader = await PostgresStorage.open(url, Path(data))
            await reader._pool.execute("INSERT INTO threads VALUES ($1, $2, $3, 0, 0, 1, 0)", TEAM, THREAD, b"r")
            postmaster = psutil.Process(int((cluster.root / "data" / "postmaster.pid").read_text().split()[0]))
            rows: dict[bool, list[tuple[float, float, float, float]]] = {True: [], False: []}
            seq = 1
            for r in range(args.rounds * 2):
                carry = r % 2 == 1
                rows[carry].append(await round_(reader, postmaster, data, seq, args, carry))
                seq += -(-args.messages // 8)
            await reader.close()
    finally:
        cluster.stop()

    def med(carry: bool, k: int) -> float:
        return float(statistics.median(row[k] for row in rows[carry]))

    print(f"{args.rounds} rounds each, {args.messages} messages of {args.record} B in batches of {args.batch}, "
          f"load average {', '.join(f'{x:.1f}' for x in psutil.getloadavg())}")
    for k, name in enumerate(("receiving CPU us", "storing CPU us", "PostgreSQL CPU us")):
        ours, ref = med(True, k) * 1e6, med(False, k) * 1e6
        print(f"  {name:20} carried {ours:8.1f}   read back {ref:8.1f}   ratio {ref / ours if ours else 0:.2f}x "
              f"(per message)")
    print(f"  relay reads per message: carried {med(True, 3):.3f}, read back {med(False, 3):.3f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--record", type=int, default=700, help="bytes of a stored record (a short message: ~700)")
    ap.add_argument("--rounds", type=int, default=5)
    asyncio.run(main_async(ap.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
