"""A real PostgreSQL for the tests: Debian's server binaries, a throw-away cluster per test session (per xdist
worker; ``tests/helpers/pgcluster.py``), reached over a unix socket only, and a fresh database per test; the
``backend`` and ``world_backend`` fixtures that run a test or a shared organization on both backends.

The cluster trades durability for speed (``fsync=off``):
tests that kill a process check what the server acknowledged, not the disk's cache. Binaries missing: the
tests that asked for PostgreSQL fail with how to install them (never skipped; ``.ci/run`` installs them).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import pytest

from tests.helpers.pgcluster import SUPERUSER as SUPERUSER  # the names the tests import from here
from tests.helpers.pgcluster import Cluster as Cluster
from tests.helpers.pgcluster import bin_dir as bin_dir


def database_files(database_url: str, data_dir: Path) -> list[Path]:
    """Where a server's database keeps its rows on disk: ``vault.db`` and ``audit.db`` (and their WAL) in
    ``data_dir`` on SQLite; on PostgreSQL the cluster's files (every table and the WAL), after a checkpoint so
    that the tables' files hold what was committed."""
    if not database_url:
        return [p for p in data_dir.glob("*.db*") if p.is_file()]
    cluster = cluster_of(database_url)
    cluster.psql("CHECKPOINT")
    return [p for p in (cluster.root / "data").rglob("*") if p.is_file()]


def table_files(database_url: str, tables: Iterable[str]) -> list[Path]:
    """The files on disk of ``tables`` and of their TOAST tables (where long values go) in ``database_url``'s
    database, after a checkpoint (what a seized disk holds of those tables)."""
    cluster = cluster_of(database_url)
    cluster.psql("CHECKPOINT")
    names = ", ".join(f"'{t}'" for t in tables)
    found = cluster.psql(f"SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.relname IN ({names}) UNION "
                         f"SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c WHERE c.relname IN ({names}) "
                         "AND c.reltoastrelid <> 0", database_url)
    data = cluster.root / "data"
    return [f for rel in found.split() for f in sorted(data.glob(rel + "*")) if f.is_file()]


def cluster_of(database_url: str) -> Cluster:
    """The cluster (started by this process) that serves ``database_url``."""
    socket_dir = Path(database_url.split("host=")[1].split("&")[0])
    return next(c for c in CLUSTERS if c.root == socket_dir)


CLUSTERS: list[Cluster] = []  # the ones this process started


class Rows:
    """What ``SyncConnection.execute`` returns: the rows, as a sqlite3 cursor hands them out."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)


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


BACKENDS = ["sqlite", "postgresql"]


def end_to_end_backends(fixture: str = "backend") -> list[pytest.MarkDecorator]:
    """The ``pytestmark`` of a suite that ``make test`` runs on SQLite only (the CI budget: tests/conftest.py
    "Backends") and ``make test-backends`` (``MVAULT_ALL_BACKENDS=1``) on both, through ``fixture``."""
    return [pytest.mark.usefixtures(fixture)] if os.environ.get("MVAULT_ALL_BACKENDS") else []


def _database(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The parametrized fixture of the two backends: a database URL ("" for SQLite in the data directory, else
    a fresh PostgreSQL database). A test or fixture that takes it runs once on each."""
    return _database(request)


@pytest.fixture(scope="session", params=BACKENDS)
def world_backend(request: pytest.FixtureRequest) -> str:
    """The backend of the organizations built once and shared by a module's tests (``api_world``,
    ``audit_world``, the authorization matrix's ``world``): "" for SQLite, "postgresql" for PostgreSQL. A module
    that marks its tests ``usefixtures("world_backend")`` runs them once on each backend, each on its own shared
    organization (``world_database``)."""
    return "" if request.param == "sqlite" else str(request.param)


T = TypeVar("T")


class PerBackend(Generic[T]):
    """A shared organization of a module or session, one per backend: ``get`` builds (``build(database_url)``, a
    context manager) or reuses the one of the requesting test's backend; ``close`` takes every one down.

    A world fixture asks for ``world_backend`` only in the modules that run on both backends (``getfixturevalue``),
    and pytest finalizes a fixture when a parameter of the fixtures it *declares* changes, not of those it asked
    for: a world fixture holding one world was built on the first backend and handed unchanged to the second's
    tests (the PostgreSQL halves of the API, audit API and matrix suites ran on the SQLite world whenever both
    halves ran in one process). Each world fixture keeps one per backend and its function fixture picks."""

    def __init__(self, build: Callable[[str], AbstractContextManager[T]]) -> None:
        self.build = build
        self.worlds: dict[str, T] = {}
        self.stack = ExitStack()

    def get(self, request: pytest.FixtureRequest) -> T:
        backend = str(request.getfixturevalue("world_backend")) if "world_backend" in request.fixturenames else ""
        if backend not in self.worlds:
            self.worlds[backend] = self.stack.enter_context(self.build(world_database(request)))
        return self.worlds[backend]

    def __enter__(self) -> PerBackend[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()


def world_database(request: pytest.FixtureRequest) -> str:
    """The database URL a shared organization is built in: on PostgreSQL (``world_backend``, when the requesting
    module asked for it) a fresh database of its own, else "" (SQLite). Never one database for two worlds: a
    second world's server would find the first's organization there (no founder invite) and, while the first
    still serves (``audit_world`` lives for the session), both would serve one organization as two processes."""
    if "world_backend" not in request.fixturenames or not request.getfixturevalue("world_backend"):
        return ""
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()
