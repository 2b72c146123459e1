"""What one login costs PostgreSQL: statements, transactions and WAL flushes per login (issue 19's profile of the
login row). Not a timed row: counts, which the machine's load does not change.

A durable throw-away cluster (bench/pg.py's settings) with ``pg_stat_statements``; a real server (in this process,
``tests.conftest.ServerThread``) on a fresh database; a founder; N sequential logins through the test helpers'
client (challenge, signed statement, login). The statistics are reset after one warm-up login; then each statement
called at least N/2 times is printed with its calls per login, and ``pg_stat_wal``'s WAL flushes (``wal_sync``:
durable commits) and ``pg_stat_database``'s commits per login.

    python bench/pgcount.py [--logins N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import PASSPHRASE, Member, ServerThread, found_org  # noqa: E402
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


async def logins(server: ServerThread, member: Member, c: Cluster, url: str, n: int) -> None:
    async with session(server, member):  # opens the member's keys (tests/helpers/members.py)
        pass
    home, secrets = SECRETS[member.home]
    async with Http(server) as h:
        await login_as(h, home.config().member_id, secrets.device)
        await asyncio.sleep(0.5)  # the warm-up's audit event committed
        c.psql("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset_shared('wal'); SELECT pg_stat_reset()", url)
        for _ in range(n):
            await login_as(h, home.config().member_id, secrets.device)
        await asyncio.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--logins", type=int, default=200)
    n = ap.parse_args().logins
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
                asyncio.run(logins(server, org.alice, c, url, n))
            finally:
                server.stop()
        print(f"per login ({n} sequential logins, PostgreSQL {c.psql('SHOW server_version')}):")
        print(c.psql(f"SELECT round(calls::numeric / {n}, 2) || '  ' || left(regexp_replace(query, '\\s+', ' ', "
                     f"'g'), 110) FROM pg_stat_statements WHERE calls >= {n} / 2 ORDER BY calls DESC, query", url))
        print(c.psql(f"SELECT 'statements ' || round(sum(calls)::numeric / {n}, 1) FROM pg_stat_statements", url))
        print(c.psql(f"SELECT 'WAL flushes (durable commits) ' || round(wal_sync::numeric / {n}, 2) FROM pg_stat_wal",
                     url))
        print(c.psql(f"SELECT 'commits ' || round(xact_commit::numeric / {n}, 2) FROM pg_stat_database "
                     "WHERE datname = current_database()", url))
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
