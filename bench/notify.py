"""What live delivery across processes costs a message's storing transaction on PostgreSQL (issue 19): the
``NOTIFY`` that ``server/store/postgres/threads.py`` sends inside ``add_messages`` (``server/store/notices.py``),
heard by a listening connection as another server process holds one (``server/store/postgres/listen.py``).

Setup: a throw-away PostgreSQL cluster (``tests/helpers/postgres.py``: Debian's binaries, unix socket,
``fsync=off``), ``PostgresStorage`` in this process, one thread, D sender devices. A round appends M messages in
batches of B (as the group committer hands them over), one ``add_messages`` call per batch. Ours: as shipped
(one ``pg_notify`` per batch and thread, a ``Listener`` of its own receiving every notice, as the other process
would: it decodes them and drops them). Reference, in the same run: the same appends with the notice left out
and nobody listening. Rounds alternate; CPU time (user+sys) of this process and of every PostgreSQL backend
(psutil, the postmaster's children) per message, and wall time per message, medians and ratios printed. Nothing
here asserts a time; the machine may be loaded: read CPU, not wall.

    python bench/notify.py [--messages M] [--batch B] [--rounds K]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.store.notices import Notice, Resync  # noqa: E402
from server.store.postgres import threads as pg_threads  # noqa: E402
from server.store.postgres.listen import Listener  # noqa: E402
from server.store.postgres.vault import PostgresStorage  # noqa: E402
from server.store.records import MessagePost, StoredMessage  # noqa: E402
from tests.helpers.postgres import SUPERUSER, Cluster, bin_dir  # noqa: E402

TEAM, THREAD = "t" * 32, "h" * 32


def cpu(postmaster: psutil.Process) -> dict[int, float]:
    """CPU seconds of each backend serving this bench's connections now (not autovacuum's; a backend that ends
    between two readings is left out of both)."""
    out = {}
    for p in postmaster.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if f" {SUPERUSER} " not in " ".join(p.cmdline()) + " ":
                continue
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


async def nothing(*_: object) -> None:
    return None


async def round_(store: PostgresStorage, postmaster: psutil.Process, first_seq: int, messages: int, batch: int,
                 devices: int, notify: bool, last: dict[str, str | None]) -> tuple[float, float, float]:
    heard: list[Notice | Resync] = []
    listener = Listener(store.url, "bench-reader", store._notice_key)
    listening = asyncio.create_task(listener.run(heard.append)) if notify else None
    if listening is not None:
        while not heard:  # the Resync it sends once it listens
            await asyncio.sleep(0.01)
    pg_threads.notify = pg_threads_notify if notify else nothing  # type: ignore[assignment]
    me = psutil.Process()
    c0, b0, w0 = me.cpu_times(), cpu(postmaster), time.perf_counter()
    for start in range(0, messages, batch):
        posts = []
        for i in range(start, min(start + batch, messages)):
            device = f"d{i % devices}"
            seq = first_seq + i // devices
            mid = f"m-{device}-{seq}"
            posts.append(MessagePost(StoredMessage(TEAM, THREAD, 0, mid, device, seq, 0, b"x" * 512), last[device]))
            last[device] = mid
        await store.add_messages(posts)
    if listening is not None:
        batches = -(-messages // batch)
        while sum(1 for n in heard if not isinstance(n, Resync)) < batches:  # every notice heard
            await asyncio.sleep(0.001)
    wall = time.perf_counter() - w0
    c1, b1 = me.cpu_times(), cpu(postmaster)
    if listening is not None:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    backends = sum(t - b0.get(pid, 0.0) for pid, t in b1.items())
    return (c1.user + c1.system - c0.user - c0.system) / messages, backends / messages, wall / messages


pg_threads_notify = pg_threads.notify


async def main_async(args: argparse.Namespace) -> None:
    bindir = bin_dir()
    if bindir is None:
        raise SystemExit("PostgreSQL's server binaries (initdb, pg_ctl) are missing")
    cluster = Cluster(bindir).start()
    try:
        url = cluster.new_database()
        with tempfile.TemporaryDirectory() as data:
            store = await PostgresStorage.open(url, Path(data))
            await store._pool.execute("INSERT INTO threads VALUES ($1, $2, $3, 0, 0, 1, 0)", TEAM, THREAD, b"r")
            pid = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
            postmaster = psutil.Process(pid)
            devices = 8
            last: dict[str, str | None] = {f"d{i}": None for i in range(devices)}
            rows: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
            seq = 1
            for r in range(args.rounds * 2):
                notify = r % 2 == 1
                rows[notify].append(await round_(store, postmaster, seq, args.messages, args.batch, devices, notify,
                                                 last))
                seq += args.messages // devices
            await store.close()
    finally:
        cluster.stop()

    def med(notify: bool, k: int) -> float:
        return statistics.median(row[k] for row in rows[notify]) * 1e6

    print(f"{args.rounds} rounds each, {args.messages} messages in batches of {args.batch} (us per message)")
    for k, name in enumerate(("client CPU", "PostgreSQL CPU", "wall")):
        ours, ref = med(True, k), med(False, k)
        print(f"  {name:15} with notices {ours:8.1f}   without {ref:8.1f}   ratio {ref / ours if ours else 0:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    asyncio.run(main_async(ap.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
