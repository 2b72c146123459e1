"""PostgreSQL for the benches: a throw-away cluster, and the audit-append row on it (issue 19).

``cluster()`` starts a PostgreSQL cluster of Debian's binaries in a temporary directory (the tests' own
``tests/helpers/pgcluster.py``) with PostgreSQL's durable defaults (``fsync``, ``synchronous_commit``,
``full_page_writes`` on: the tests turn them off, the benches must not), reached over a unix socket.

Audit appends, 32 writers over 2 processes: each process (this file with ``--writer``) opens the server's own
``PostgresAudit`` on one database and appends its half of the events with 16 concurrent writers (sealing each,
group commit; appends of both processes are serialized by the database's advisory lock and stay one Merkle log).
Both start on a signal once open; events/s is all events over the time from the signal to the last process's
end. Reference, in the same run: plain asyncpg inserts of the same rows into a table of the same columns, one
transaction per row, one connection. Rounds alternate.

    python bench/pg.py [--quick] [--rounds K] [--appends N] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.audit import make_event  # noqa: E402
from bench.common import Row, alternate, uvloop_run, write_rows  # noqa: E402
from security.events import DAY, Sealer, audit_keypair, seal_event  # noqa: E402
from security.merkle import leaf_hash  # noqa: E402
from tests.helpers.pgcluster import Cluster, bin_dir  # noqa: E402
from vault.crypto import primitives as p  # noqa: E402

PROCESSES = 2
WRITERS = 32  # over all processes
MIN_ROUNDS = 5


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A running durable cluster, stopped and removed at the end."""
    found = bin_dir()
    if found is None:
        raise SystemExit("PostgreSQL's server binaries (initdb, pg_ctl) are missing: apt-get install postgresql "
                         "(or set MVAULT_PG_BIN)")
    c = Cluster(found, durable=True).start()
    try:
        yield c
    finally:
        c.stop()


def _rows(n: int, now: int) -> list[tuple[int, int, bytes, bytes]]:
    audit_pub, _ = audit_keypair(p.random_bytes(32))
    member_pub = p.box_keypair(p.random_bytes(32))[0]
    rows = []
    for i in range(n):
        leaf = seal_event(make_event(i, now), 1, audit_pub, [member_pub])
        rows.append((i, now // DAY, leaf_hash(leaf), leaf))
    return rows


async def _writer(url: str, data: Path, start: int, n: int, step: int, writers: int) -> None:
    """One process of the row: open, say so, wait for the go line, append, print the time taken."""
    from server.store.postgres.audit import PostgresAudit

    audit_pub, _ = audit_keypair(p.random_bytes(32))
    member_pub = p.box_keypair(p.random_bytes(32))[0]
    store = await PostgresAudit.open(url, data)
    now = int(time.time())
    sealer = Sealer()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def writer(w: int) -> None:
        for i in range(start + w * step, n, step * writers):
            leaf = seal_event(make_event(i, now), 1, audit_pub, [member_pub], sealer)
            await store.append(leaf, now // DAY)

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    print(json.dumps({"seconds": time.perf_counter() - t0, "committed": store.committed}), flush=True)
    await store.close()


def ours(c: Cluster, n: int) -> float:
    """Events/s of ``PROCESSES`` processes appending ``n`` events to a fresh database."""
    url = c.new_database()
    with tempfile.TemporaryDirectory(prefix="mvault-pg-audit-") as d:
        procs = [subprocess.Popen([sys.executable, __file__, "--writer", url, "--data", d, "--start", str(k),
                                   "--appends", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for k in range(PROCESSES)]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            json.loads(proc.stdout.readline())
            if proc.wait(60) != 0:
                raise SystemExit("an audit writer failed")
        elapsed = time.perf_counter() - t0
    size = c.psql("SELECT count(*) FROM events", url)
    if int(size) != n:
        raise SystemExit(f"{size} events stored of {n}")
    return n / elapsed


def reference(c: Cluster, rows: list[tuple[int, int, bytes, bytes]]) -> float:
    """Rows/s of plain inserts of ``rows`` committed one by one."""
    import asyncpg

    url = c.new_database()

    async def run() -> float:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE events (idx bigint PRIMARY KEY, day bigint NOT NULL, hash bytea NOT NULL, "
                           "leaf bytea)")
        t0 = time.perf_counter()
        for row in rows:
            async with conn.transaction():
                await conn.execute("INSERT INTO events VALUES ($1, $2, $3, $4)", *row)
        elapsed = time.perf_counter() - t0
        await conn.close()
        return len(rows) / elapsed

    return float(uvloop_run()(run()))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help=f"{MIN_ROUNDS} rounds of 1,000 events")
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--appends", type=int, default=None, help="events per round (default 10,000; --quick 1,000)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-pg.json")
    ap.add_argument("--writer", default="", help=argparse.SUPPRESS)  # a writer process: the database URL
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.appends or (1000 if args.quick else 10_000)
    if args.writer:
        uvloop_run()(_writer(args.writer, args.data, args.start, n, PROCESSES, WRITERS // PROCESSES))
        return 0
    started = time.perf_counter()
    rows = _rows(n, int(time.time()))
    with cluster() as c:
        refs, mine = alternate(lambda: reference(c, rows), lambda: ours(c, n), max(args.rounds, MIN_ROUNDS))
    row = Row("audit appends on PostgreSQL", "events/s", mine, refs, True,
              f"events sealed and appended durably by {WRITERS} writers in {PROCESSES} processes "
              "(server.store.postgres.audit.PostgresAudit, group commit, one advisory lock per batch)",
              "plain asyncpg inserts of the same rows, one transaction per row, one connection",
              target_ratio=0.5, target_text=">= 0.5x",
              detail={"events": n, "processes": PROCESSES, "writers": WRITERS,
                      "postgresql": "durable defaults (fsync, synchronous_commit on), unix socket"})
    write_rows(args.out, [row], len(mine), started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
