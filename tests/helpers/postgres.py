"""A real PostgreSQL for the tests: Debian's server binaries, a throw-away cluster per test session (per xdist
worker), reached over a unix socket only, and a fresh database per test.

``initdb`` and ``pg_ctl`` run as the current user, or as ``postgres`` (Debian's package creates it) when the
tests run as root, which PostgreSQL refuses to be. The cluster trades durability for speed (``fsync=off``):
tests that kill a process check what the server acknowledged, not the disk's cache. Binaries missing: the
tests that asked for PostgreSQL fail with how to install them (never skipped; ``.ci/run`` installs them).
"""

from __future__ import annotations

import asyncio
import glob
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

SUPERUSER = "mvault"


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``MVAULT_PG_BIN``, ``pg_config --bindir``, or Debian's newest
    ``/usr/lib/postgresql/*/bin``."""
    candidates = [os.environ.get("MVAULT_PG_BIN", "")]
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(found.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running PostgreSQL cluster in a temporary directory."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="mvault-pg-"))
        self.port = _free_port()  # names the socket file (the server listens on no TCP address)
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> Cluster:
        data = self.root / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        return self.serve()

    def serve(self) -> Cluster:
        """Start the initialized cluster (again, after ``halt``)."""
        options = (f"-k {self.root} -c listen_addresses='' -p {self.port} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", options, "-l",
                  str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def halt(self) -> None:
        """``pg_ctl stop -m fast``: every connection is ended, as when an operator stops the database."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}&port={self.port}"

    @staticmethod
    def name(database: str) -> str:
        """The database's name, from a URL of ``url`` or a name."""
        return database.split("/")[3].split("?")[0] if "://" in database else database

    def _fresh_name(self) -> str:
        return f"t{os.getpid()}_{next(self._names)}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """``sql``'s output (unaligned, no headers) in ``database`` (a name, or a URL of ``url``)."""
        database = self.name(database)
        done = subprocess.run([str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, "-d", database,
                               "-c", sql], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr}")
        return done.stdout.strip()

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = self._fresh_name()
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def copy_database(self, template: str, into: str = "") -> str:
        """A database holding a copy of ``template`` (a URL of ``url``; nobody may be connected to it): ``into``
        (a URL of ``url``: that database is dropped and made again as the copy) or a new one; its URL. PostgreSQL
        copies the files: far cheaper than building the contents again."""
        name = self.name(into) if into else self._fresh_name()
        if into:
            self.psql(f"DROP DATABASE IF EXISTS {name}")
        self.psql(f"CREATE DATABASE {name} TEMPLATE {self.name(template)}")
        return self.url(name)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the cluster's server and the backends it has reaped so far (to compare
        runs: docs/performance.md asks for CPU time, not wall time, on a shared machine)."""
        pid = (self.root / "data" / "postmaster.pid").read_text().split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if os.environ.get("MVAULT_PG_CPU"):  # where to note the cluster's CPU seconds at its end
            with open(os.environ["MVAULT_PG_CPU"], "a") as f:
                f.write(f"{self.cpu_seconds():.2f}\n")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def database_files(database_url: str, data_dir: Path) -> list[Path]:
    """Where a server's database keeps its rows on disk: ``vault.db`` and ``audit.db`` (and their WAL) in
    ``data_dir`` on SQLite; on PostgreSQL the cluster's files (every table and the WAL), after a checkpoint so
    that the tables' files hold what was committed."""
    if not database_url:
        return [p for p in data_dir.glob("*.db*") if p.is_file()]
    socket_dir = Path(database_url.split("host=")[1].split("&")[0])
    cluster = next(c for c in CLUSTERS if c.root == socket_dir)
    cluster.psql("CHECKPOINT")
    return [p for p in (cluster.root / "data").rglob("*") if p.is_file()]


CLUSTERS: list[Cluster] = []  # the ones this process started


class Rows:
    """What ``SyncConnection.execute`` returns: the rows, as a sqlite3 cursor hands them out."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


class SyncConnection:
    """The part of ``sqlite3.Connection`` the tests use to read and tamper with a server's storage (``execute``
    with ``?`` placeholders, ``executemany``, ``with``, ``close``), on PostgreSQL: asyncpg on an event loop of
    its own thread, each statement committed at once. The SQL must be valid on both (no ``rowid``)."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._conn: asyncpg.Connection[asyncpg.Record] | None = self._call(asyncpg.connect(url))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    @staticmethod
    def _dollars(query: str) -> str:
        n = itertools.count(1)
        return re.sub(r"\?", lambda _: f"${next(n)}", query)

    def execute(self, query: str, params: Iterable[Any] = ()) -> Rows:
        assert self._conn is not None, "closed"
        return Rows([tuple(r) for r in self._call(self._conn.fetch(self._dollars(query), *params))])

    def executemany(self, query: str, params: Iterable[Iterable[Any]]) -> None:
        assert self._conn is not None, "closed"
        self._call(self._conn.executemany(self._dollars(query), [tuple(p) for p in params]))

    def close(self) -> None:
        if self._conn is not None:
            self._call(self._conn.close())
            self._conn = None
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> SyncConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    bindir = bin_dir()
    if bindir is None:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are missing: `apt-get install postgresql` "
                    "(or set MVAULT_PG_BIN); .ci/run installs them", pytrace=False)
    cluster = Cluster(bindir).start()
    CLUSTERS.append(cluster)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The parametrized fixture of the two backends: a database URL ("" for SQLite in the data directory, else
    a fresh PostgreSQL database). A test or fixture that takes it runs once on each."""
    if request.param == "sqlite":
        return ""
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()
