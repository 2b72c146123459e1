"""Shared fixtures: the real server on a loopback port, and the real CLI.

``server`` starts the aiohttp application (uvloop, HTTPS, SQLite in a temporary data
directory) in a background thread whose clock the test can move (``server.advance``).
``Member`` drives the real ``mvault`` executable in a subprocess with its own
``MVAULT_HOME`` and ``MVAULT_PASSPHRASE_FILE``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from hypothesis import settings as hypothesis_settings

from client.home import KEYSTORE
from server.app import open_app
from server.cli import initialize
from server.context import Config
from server.tls import server_context

# Shared worlds of split test modules, as fixtures (a test module never imports another).
# The property tests' examples (session 21): `make test` (and so CI) draws the same ones at every run (derandomize:
# a seed per test), so a green run here is a green run in CI; `make test-long` explores, drawing anew each run with
# many more examples (MVAULT_HYPOTHESIS=explore). Stop 39's CI drew a failing example no run here had drawn, and spent
# five minutes shrinking it. The blob to reproduce a failure is printed either way.
hypothesis_settings.register_profile("fixed", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("MVAULT_HYPOTHESIS", "fixed"))

pytest_plugins = [  # postgres first: the others import it (a plugin imported before pytest loads it is not rewritten)
    "tests.helpers.postgres", "tests.helpers.api_fixtures", "tests.helpers.audit_world", "tests.helpers.worlds",
    "tests.helpers.pair"]

# Backends (issue 19). A module runs on SQLite and on PostgreSQL through one parametrized fixture
# (tests/helpers/postgres.py): ``backend`` (a fresh database per test; ``org`` copies a prebuilt world's database
# by CREATE DATABASE ... TEMPLATE) or, for a module's shared organization (``api_world``, ``audit_world``, the
# authorization matrix's ``world``), ``world_backend`` (one organization per backend, each in a database of its own:
# ``PerBackend``). Every test runs on SQLite.
# On PostgreSQL too, as issue 19 allows when both would push ``make test`` past its 35 minutes on two cores:
# - storage: test_store_backends, test_check_backends, test_migrate, test_server_postgres, test_server_pair,
#   test_server_pair_limits, test_server_outage, test_server_workers;
# - API: test_api_teams_docs, test_api_threads, test_audit_api_log, test_audit_api_attest, test_audit_api_refusals;
# - attacker: test_server_attacker_docs, test_server_attacker_chains, test_server_forgery, test_doc_ops_attacker,
#   test_thread_attacker, test_audit (the audit log's forgeries), and the walk-through (test_walkthrough).
# The end-to-end CLI suites of documents, membership and threads (test_doc_ops, test_membership, test_threads)
# and the authorization matrix (test_authz_matrix, 336 cells a backend) run on PostgreSQL only in ``make
# test-backends`` (MVAULT_ALL_BACKENDS=1): PostgreSQL halves measured one file at a time (CPU seconds of pytest,
# its children and the cluster, loaded machine): membership 90, doc_ops 66, the matrix ~400 (315 of its 336
# cells in 55 min at load 10-18, none failed); the suites above add ~550 together (doc_ops_attacker 112,
# forgery 109, audit 128).
MVAULT = str(Path(sys.executable).parent / "mvault")
PASSPHRASE = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The suite is one address and a few members doing the work of a whole organization: far larger budgets
# than the defaults (tests/test_unauth.py and tests/test_audit_gaps.py set the defaults back where they test them).
TEST_LIMITS: dict[str, Any] = {"rate_per_second": 1000.0, "rate_burst": 10_000, "member_refusals": 100_000}


# The server each port last started and not yet stopped: the ``server`` fixture stops what a test left running on
# its port (a ``restart()`` it kept), which a copied world's next test needs free (tests/helpers/worlds.py).
RUNNING: dict[int, ServerThread] = {}


class ServerThread:
    """The real server in a thread with its own event loop and a movable clock."""

    def __init__(self, data_dir: Path, port: int | None = None, **config: Any) -> None:
        self.data_dir = data_dir
        # Config fields other than data_dir and clock. The suite is one address doing the work of a whole
        # organization: requests without a session get a far larger budget than the defaults (tests/test_unauth.py
        # sets the defaults back where it tests them).
        self.config = {**TEST_LIMITS, **config}
        self.port = port or free_port()
        self.offset = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.url = f"https://127.0.0.1:{self.port}"
        self.fingerprint = ""
        self.invite: str | None = None
        self.restored = False  # started on a copy of a world built before (tests/helpers/worlds.py)

    def clock(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def start(self) -> ServerThread:
        info = asyncio.run(initialize(self.data_dir, "127.0.0.1", self.port,
                                      database_url=self.config.get("database_url", "")))
        self.fingerprint, self.invite = info.fingerprint, info.invite
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("server did not start")
        if self._error:
            raise self._error
        RUNNING[self.port] = self
        return self

    def _run(self) -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # surfaced to the test via start()
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = await open_app(Config(data_dir=self.data_dir, clock=self.clock, **self.config))
        self.app = app
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        ctx = server_context(self.data_dir / "server.crt", self.data_dir / "server.key")
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=ctx)
        await site.start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if RUNNING.get(self.port) is self:
            del RUNNING[self.port]
        if self._loop is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(20)

    def set_lingering(self, seconds: float) -> float:
        """aiohttp's lingering time (10 s: how long a connection still reads and drops the rest of a body it
        answered early, before it is closed) for the connections accepted from now on; returns the one before.
        Tests of slow clients shorten it, to wait for the drop a few seconds instead of ten (aiohttp keeps its
        handlers' arguments in its ``Server``; no public setter)."""
        assert self._runner is not None and self._runner.server is not None
        kwargs = self._runner.server._kwargs
        before = float(kwargs.get("lingering_time", 10.0))
        kwargs["lingering_time"] = seconds
        return before

    def peers(self) -> set[tuple[str, int]]:
        """The client addresses of the connections the server holds open (aiohttp's ``Server.connections``)."""
        assert self._runner is not None and self._runner.server is not None
        return {h.transport.get_extra_info("peername")[:2] for h in self._runner.server.connections
                if h.transport is not None}

    def handling(self) -> int:
        """How many requests other than GETs the server is handling now (a live connection or a download may last
        the module): aiohttp's handler tasks (one per request, from its headers to its answer; one whose client hung
        up runs on until its handler ends), counted on the server's loop."""
        from aiohttp.web_protocol import RequestHandler

        assert hasattr(RequestHandler, "_handle_request"), "aiohttp's handler task is named otherwise now"

        def busy(t: asyncio.Task[Any]) -> bool:
            coro = t.get_coro()
            if getattr(coro, "__qualname__", "") != "RequestHandler._handle_request":
                return False
            frame = getattr(coro, "cr_frame", None)
            request = frame.f_locals.get("request") if frame is not None else None
            return request is None or request.method != "GET"

        async def count() -> int:
            return sum(1 for t in asyncio.all_tasks() if busy(t))

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(10)

    def forget_sources(self) -> None:
        """Forget every source address's request budget and failed logins (the server's loop does it)."""
        from server.context import GUARD

        async def forget() -> None:
            await self.app[GUARD].clear()

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(forget(), self._loop).result(10)

    def set_limits(self, rate_per_second: float, burst: int) -> None:
        """Give requests without a session this budget per address from now on (the server's loop does it)."""
        from server.context import GUARD

        async def put() -> None:
            guard = self.app[GUARD]
            guard.rate, guard.burst = rate_per_second, float(burst)
            await guard.clear()

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(put(), self._loop).result(10)

    def restart(self) -> ServerThread:
        """Stop and start again on the same data and port (reloads state from storage)."""
        self.stop()
        fresh = ServerThread(self.data_dir, self.port, **self.config)
        fresh.offset = self.offset
        return fresh.start()

    def db(self) -> sqlite3.Connection:
        """The vault's database as a test reads and tampers with it (``open_db``)."""
        return open_db(self.data_dir, self.config.get("database_url", ""))


def open_db(data_dir: Path, database_url: str) -> sqlite3.Connection:
    """A server's database as a test reads and tampers with it, each statement committed at once: SQLite's
    ``vault.db`` in ``data_dir``, or on PostgreSQL a connection with the same calls (``tests/helpers/postgres.py``
    ``SyncConnection``; the SQL must suit both)."""
    if database_url:
        from tests.helpers.postgres import SyncConnection

        return cast(sqlite3.Connection, SyncConnection(database_url))
    return sqlite3.connect(data_dir / "vault.db", isolation_level=None)


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """A fresh server; for a test that uses ``org``, a copy of the organization built once (``org_world``). In a
    module that uses the ``backend`` or ``world_backend`` fixture (``tests/helpers/postgres.py``), once on each
    backend (on PostgreSQL the world's database is copied too: ``CREATE DATABASE ... TEMPLATE``)."""
    database_url = request.getfixturevalue("backend") if "backend" in request.fixturenames else ""
    if "world_backend" in request.fixturenames and request.getfixturevalue("world_backend"):
        database_url = request.getfixturevalue("pg_cluster").new_database()  # a module on both: this test too
    if "org" in request.fixturenames:
        worlds = request.getfixturevalue("worlds")
        worlds.cluster = request.getfixturevalue("pg_cluster") if database_url else None
        try:
            s = request.getfixturevalue("org_world").restore(tmp_path, database_url)
        finally:
            worlds.cluster = None
    elif database_url:
        s = ServerThread(tmp_path / "server-data", database_url=database_url).start()
    else:
        s = ServerThread(tmp_path / "server-data").start()
    yield s
    s.stop()
    left = RUNNING.get(s.port)  # a restart of it that the test kept
    if left is not None:
        left.stop()


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Member:
    """One member's machine: its own MVAULT_HOME, driven through the real CLI."""

    home: Path
    name: str
    passphrase_file: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    # Before its first command once its keystore is on disk (after its join), open the keystore here and start an
    # unlock agent (``unlock_here``, as tests/helpers/worlds.py's ``Builder``): its commands then skip Argon2id. Set
    # by ``tests/helpers/members.py unlock_at_first_run``; off unless a test asks.
    unlock_first: bool = False

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}
        env.update({"MVAULT_HOME": str(self.home), "MVAULT_PASSPHRASE_FILE": str(self.passphrase_file),
                    "NO_COLOR": "1", "COLUMNS": "200"})
        env.update(self.env_extra)
        return env

    def run(self, *args: str, input: str | None = None, cwd: Path | None = None) -> Result:
        if "unlock" in args:
            UNLOCKED.add(self.home)  # its agent is stopped after the test (stop_unlock_agents)
        if self.unlock_first and "unlock" not in args and (self.home / KEYSTORE).exists():
            from tests.helpers.members import unlock_here

            self.unlock_first = False
            if "MVAULT_SESSION" not in self.env_extra:
                unlock_here(self)
        p = subprocess.run([MVAULT, *args], env=self.env(), capture_output=True, text=True, input=input,
                           cwd=cwd or self.home.parent, timeout=600)
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, *args: str, cwd: Path | None = None) -> Result:
        r = self.run(*args, cwd=cwd)
        assert r.code == 0, f"mvault {' '.join(args)} failed ({r.code}): {r.err}{r.out}"
        assert "Traceback" not in r.err
        return r

    def fails(self, *args: str, contains: str = "", cwd: Path | None = None) -> Result:
        r = self.run(*args, cwd=cwd)
        assert r.code != 0, f"mvault {' '.join(args)} unexpectedly succeeded: {r.out}"
        assert "Traceback" not in r.err, r.err
        assert r.err.startswith("error: "), r.err
        assert len(r.err.strip().splitlines()) == 1, f"expected one line, got: {r.err!r}"
        if contains:
            assert contains.lower() in r.err.lower(), r.err
        return r

    def json(self, *args: str) -> Any:
        return self.ok(*args, "--json").json()


UNLOCKED: set[Path] = set()


@pytest.fixture(autouse=True)
def stop_unlock_agents() -> Iterator[None]:
    """``mvault unlock`` leaves an agent process running (by design): stop every one a test started."""
    yield
    from client import agent

    while UNLOCKED:
        agent.stop(UNLOCKED.pop())


@pytest.fixture
def make_member(tmp_path: Path) -> Any:
    pf = tmp_path / "passphrase"
    pf.write_text(PASSPHRASE + "\n")

    def make(name: str) -> Member:
        return Member(tmp_path / f"home-{name}", name, pf)

    return make


@dataclass
class Org:
    server: ServerThread
    alice: Member
    bob: Member


@pytest.fixture
def org(server: ServerThread, make_member: Any) -> Org:
    """Founder alice and member bob; team 'drafting' with bob as writer (a copy of the one built
    for the session, unless the module has a ``server`` of its own)."""
    if server.restored:
        return Org(server, make_member("alice"), make_member("bob"))
    return found_org(server, make_member)


def found_org(server: ServerThread, make_member: Any) -> Org:
    """Found the organization of ``org`` on ``server``."""
    alice, bob = make_member("alice"), make_member("bob")
    assert server.invite is not None
    alice.ok("join", server.invite, "--name", "alice")
    code = alice.json("invite")["invite"]
    bob.ok("join", code, "--name", "bob")
    alice.ok("team", "create", "drafting", "--kind", "program")
    alice.ok("team", "add", "drafting", "bob", "--role", "writer")
    return Org(server, alice, bob)


def join_member(org: Org, make_member: Any, name: str, role: str = "member") -> Member:
    """A new member who joined with an invite from alice (admitted at once: she is NCC)."""
    m: Member = make_member(name)
    m.ok("join", org.alice.json("invite", "--role", role)["invite"], "--name", name)
    return m


def security_team(org: Org, make_member: Any, name: str = "carol") -> Member:
    """A Security Team member (org role security, admin of team "sec", from which the audit key
    comes) whose first command published the audit key."""
    m: Member = make_member(name)
    m.ok("join", org.alice.json("invite")["invite"], "--name", name)
    org.alice.ok("role", "grant", name, "security", "--until", "2099-01-01")
    org.alice.ok("team", "create", "sec", "--kind", "security")
    org.alice.ok("team", "add", "sec", name, "--role", "admin")
    org.alice.ok("leave", "sec")
    # the next command rotates the team key (alice left) and publishes the audit key.
    r = m.ok("whoami")
    assert "published the audit key" in r.err, r.err
    return m


def on_two_security_teams(org: Org, make_member: Any) -> Member:
    """carol as ``security_team`` makes her (team "sec", designated, generation 2 published) and, as admin holding its
    key, on a second security team "sec2"."""
    carol = security_team(org, make_member)
    org.alice.ok("team", "create", "sec2", "--kind", "security")
    org.alice.ok("team", "add", "sec2", "carol", "--role", "admin")
    return carol


class _ErrorCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_unexpected_errors() -> Iterator[None]:
    """Fail any test during which the server logged an error (an unhandled exception = a 500)."""
    catcher = _ErrorCatcher()
    logger = logging.getLogger("mvault")
    aio = logging.getLogger("aiohttp")
    logger.addHandler(catcher)
    aio.addHandler(catcher)
    yield
    logger.removeHandler(catcher)
    aio.removeHandler(catcher)
    assert not catcher.records, f"server logged errors: {[r.getMessage() for r in catcher.records]}"


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """The errors the server logs during the test on purpose (``mvault.server``: a failed batch, a failure
    to record), for the test to check: taken before the autouse check that fails a test on any server error.
    aiohttp's own still fail it."""
    records: list[logging.LogRecord] = []

    def take(record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        records.append(record)
        return False

    logger = logging.getLogger("mvault.server")
    logger.addFilter(take)
    try:
        yield records
    finally:
        logger.removeFilter(take)


@pytest.fixture
def servers(org: Org, tmp_path: Path) -> Iterator[Any]:
    """``org``'s server, stopped and replaced as a test takes and restores backups (tests/helpers/restored.py)."""
    from tests.helpers.restored import Servers  # it imports this module

    s = Servers(org.server, tmp_path)
    yield s
    s.stop_all()
