"""What one operation costs PostgreSQL: statements, transactions and WAL flushes per operation (issue 19's
profile of the rows PostgreSQL misses). Not a timed row: counts, which the machine's load does not change.

A durable throw-away cluster (bench/pg.py's settings) with ``pg_stat_statements``; a real server (in this process,
``tests.conftest.ServerThread``) on a fresh database; the organization of the tests (alice, bob, team
"drafting"). ``--op``:

- ``login`` (default): N sequential logins through the test helpers' client (challenge, signed statement, login);
- ``noop``: N no-op ``mvault sync drafting DIR`` by alice (the real CLI, a folder of ``--files`` files of 4 KiB
  synced once before): the bench's no-op row, login included;
- ``put``: N ``mvault put`` of a new 4 KiB file by alice (the upload half of a propagation);
- ``get``: N ``mvault get`` of one document by bob (the download half);
- ``post``: N thread messages posted by alice through the client library in one session (``Threads.post``: it
  reads what is new first; the message's POST is one request among its reads).

The statistics are reset after one warm-up operation; then each statement called at least N/2 times is printed
with its calls per operation (those run inside a function, ``mvault_audit_append``, marked: they are no round
trip), the statements sent (top level), and ``pg_stat_wal``'s WAL flushes (``wal_sync``: durable commits) and
``pg_stat_database``'s commits per operation; then the median wall time of one operation and PostgreSQL's CPU
per operation (the machine's load changes these two: compare alternating runs).

    python bench/pgcount.py [--op login|noop|put|get|post] [--n N] [--files F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from client.threads.team import Threads  # noqa: E402
from tests.conftest import PASSPHRASE, Member, Org, ServerThread, found_org  # noqa: E402
from tests.helpers.http import Http, login_as  # noqa: E402
from tests.helpers.members import SECRETS, session  # noqa: E402
from tests.helpers.pgcluster import Cluster, bin_dir  # noqa: E402


class CountingCluster(Cluster):
    """bench/pg.py's durable cluster, with ``pg_stat_statements`` loaded."""

    def serve(self) -> CountingCluster:
        options = (f"-k {self.root} -c listen_addresses='' -p {self.port} -c max_connections=200 "
                   "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", options, "-l",
                  str(self.root / "log"), "-w", "-t", "60", "start")
        return self


def cli_ops(op: str, org: Org, root: Path, c: Cluster, url: str, n: int, files: int) -> None:
    """``n`` CLI commands of ``op`` after one warm-up, the statistics reset in between."""
    alice, bob = org.alice, org.bob
    folder = root / "synced"
    if op == "noop":
        for i in range(files):
            (folder / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
            (folder / f"d{i % 10}" / f"f{i:05d}.bin").write_bytes(os.urandom(4096))
        alice.ok("sync", "drafting", str(folder))
    elif op == "get":
        (root / "doc.bin").write_bytes(os.urandom(4096))
        alice.ok("put", "drafting", str(root / "doc.bin"))

    def once(i: int) -> None:
        if op == "noop":
            alice.ok("sync", "drafting", str(folder))
        elif op == "put":
            f = root / f"p{i:05d}.bin"
            f.write_bytes(os.urandom(4096))
            alice.ok("put", "drafting", str(f))
        else:
            bob.ok("get", "drafting", "doc.bin", "-o", str(root / "copy.bin"))

    once(-1)
    time.sleep(0.5)
    c.psql("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset_shared('wal'); SELECT pg_stat_reset()", url)
    cpu0 = pg_cpu(c)
    for i in range(n):
        t0 = time.perf_counter()
        once(i)
        WALL.append(time.perf_counter() - t0)
    PG_CPU.append(pg_cpu(c) - cpu0)
    time.sleep(0.5)


async def logins(server: ServerThread, member: Member, c: Cluster, url: str, n: int) -> None:
    async with session(server, member):  # opens the member's keys (tests/helpers/members.py)
        pass
    home, secrets = SECRETS[member.home]
    async with Http(server) as h:
        await login_as(h, home.config().member_id, secrets.device)
        await asyncio.sleep(0.5)  # the warm-up's audit event committed
        c.psql("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset_shared('wal'); SELECT pg_stat_reset()", url)
        cpu0 = pg_cpu(c)
        for _ in range(n):
            t0 = time.perf_counter()
            await login_as(h, home.config().member_id, secrets.device)
            WALL.append(time.perf_counter() - t0)
        PG_CPU.append(pg_cpu(c) - cpu0)
        await asyncio.sleep(0.5)


async def posts(server: ServerThread, member: Member, c: Cluster, url: str, n: int) -> None:
    async with session(server, member) as s:
        threads = await Threads.open(s, "drafting")
        await threads.create("counted", 0)
        await threads.post("counted", "warm-up")
        await asyncio.sleep(0.5)  # the warm-up's audit event committed
        c.psql("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset_shared('wal'); SELECT pg_stat_reset()", url)
        cpu0 = pg_cpu(c)
        for i in range(n):
            t0 = time.perf_counter()
            await threads.post("counted", f"message {i}")
            WALL.append(time.perf_counter() - t0)
        PG_CPU.append(pg_cpu(c) - cpu0)
        await asyncio.sleep(0.5)


WALL: list[float] = []  # each measured operation's wall time (a login: in this process; a command: its run)
PG_CPU: list[float] = []  # PostgreSQL's CPU seconds over the measured operations


def pg_cpu(c: Cluster) -> float:
    """User + system CPU seconds of the cluster: the postmaster, its live and its reaped backends."""
    pm = psutil.Process(int((c.root / "data" / "postmaster.pid").read_text().split()[0]))
    t = pm.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in pm.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            ct = child.cpu_times()
            total += ct.user + ct.system
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--op", choices=("login", "noop", "put", "get", "post"), default="login")
    ap.add_argument("--n", "--logins", type=int, default=0, help="operations (default: 200 logins, 20 others)")
    ap.add_argument("--files", type=int, default=200, help="files in the no-op sync's folder")
    args = ap.parse_args()
    op, n = args.op, args.n or (200 if args.op == "login" else 20)
    found = bin_dir()
    if found is None:
        raise SystemExit("PostgreSQL's server binaries (initdb, pg_ctl) are missing: apt-get install postgresql")
    c = CountingCluster(found, durable=True).start()
    try:
        url = c.new_database()
        c.psql("CREATE EXTENSION pg_stat_statements", url)
        with tempfile.TemporaryDirectory(prefix="mvault-pgcount-") as d:
            root = Path(d)
            server = ServerThread(root / "data", database_url=url).start()
            try:
                pf = root / "passphrase"
                pf.write_text(PASSPHRASE + "\n")
                org = found_org(server, lambda name: Member(root / f"home-{name}", name, pf))
                if op == "login":
                    asyncio.run(logins(server, org.alice, c, url, n))
                elif op == "post":
                    asyncio.run(posts(server, org.alice, c, url, n))
                else:
                    cli_ops(op, org, root, c, url, n, args.files)
            finally:
                server.stop()
        print(f"per {op} ({n} sequential, PostgreSQL {c.psql('SHOW server_version')}):")
        print(c.psql(f"SELECT round(calls::numeric / {n}, 2) || CASE WHEN toplevel THEN '  ' ELSE ' (in a function) ' "
                     f"END || left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements "
                     f"WHERE calls >= {n} / 2 ORDER BY calls DESC, query", url))
        print(c.psql(f"SELECT 'statements sent (top level) ' || round(sum(calls)::numeric / {n}, 1)"
                     " FROM pg_stat_statements WHERE toplevel", url))
        print(c.psql(f"SELECT 'statements run inside functions ' || round(coalesce(sum(calls), 0)::numeric / {n}, 1)"
                     " FROM pg_stat_statements WHERE NOT toplevel", url))
        print(c.psql(f"SELECT 'WAL flushes (durable commits) ' || round(wal_sync::numeric / {n}, 2) FROM pg_stat_wal",
                     url))
        print(c.psql(f"SELECT 'commits ' || round(xact_commit::numeric / {n}, 2) FROM pg_stat_database "
                     "WHERE datname = current_database()", url))
        print(f"wall per {op}: median {statistics.median(WALL) * 1e3:.2f} ms (load average {os.getloadavg()[0]:.1f}); "
              f"PostgreSQL CPU per {op}: {PG_CPU[0] / n * 1e6:,.0f} us")
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
