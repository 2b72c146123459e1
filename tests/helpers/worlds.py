"""Organizations built once per test session (per xdist worker) and copied for each test that asks for one.

Building ``org`` takes five CLI runs (each a Python start; the build's members open their keystores
through an unlock agent after their join: ``Builder``); the tests that start from it were most of the
suite's time. ``Worlds.get`` builds a world once with the real
server and CLI, stops that server and keeps its directory: the server's data, the passphrase file
and each member's home. ``World.restore`` copies it into a test's ``tmp_path`` (the layout the
``server`` and ``make_member`` fixtures use) and starts the real server on it again: every test
gets its own copy, on the state a fresh build would have left on disk (as after
``ServerThread.restart``).

The copy holds the server's address in each member's configuration, so the server always comes
back on the port it was built on: a socket bound to that port (``SO_REUSEADDR``, never listening)
stays open all session, so that no other server or test of this machine is given that port
meanwhile, while the restored servers (also ``SO_REUSEADDR``) can listen on it.

The ``server`` fixture restores ``org_world`` for every test that uses ``org`` (unless its module has a
``server`` of its own); a module whose tests all start further on overrides ``org_world`` with a world
built further (tests/test_audit.py); a test that uses ``forge`` starts from ``forge_world``
(tests/helpers/forgery.py). It is a plugin of ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from client import agent
from client.home import KEYSTORE
from tests.conftest import PASSPHRASE, UNLOCKED, Member, Org, Result, ServerThread, found_org, security_team
from tests.helpers.members import unlock_at_first_run, unlock_here

if TYPE_CHECKING:  # imported by pytest as a plugin of its own (tests/conftest.py), after this one
    from tests.helpers.postgres import Cluster

# A world is built again once it is this old (seconds): its members' sessions (an hour on the server) and
# what their homes pinned stay about as fresh as a build's, however slowly the session runs.
MAX_AGE = 600.0

# A world's contents are built by ``build(server, make_member)`` (what it returns is not kept); make_member(name)
# gives a member whose home is in the world's directory.
Build = Callable[[ServerThread, Callable[[str], Member]], object]


class Builder(Member):
    """A member of a world's build (the build's ``make_member``): once its keystore is on disk (after its join),
    its commands open it through an unlock agent started in this process (``unlock_here``), not one Argon2id
    each. The build is set-up: a test drives its own copy of the world with its own members; the ``unlock``
    command itself is tested in tests/test_auth.py. The agents are stopped before the world is kept
    (``_stop_agents``): a socket is not copied, and no session outlives the build."""

    def run(self, *args: str, input: str | None = None, cwd: Path | None = None) -> Result:
        if "MVAULT_SESSION" not in self.env_extra and "unlock" not in args and (self.home / KEYSTORE).exists():
            unlock_here(self)
        return super().run(*args, input=input, cwd=cwd)


def _stop_agents(members: list[Member]) -> None:
    sockets = []
    for m in members:
        UNLOCKED.discard(m.home)
        if m.env_extra.pop("MVAULT_SESSION", None) is not None and m.home.is_dir():  # (a wiped home: no agent)
            sockets.append(agent.socket_path(m.home))
            agent.stop(m.home)
    deadline = time.monotonic() + 10
    while any(path.exists() for path in sockets) and time.monotonic() < deadline:
        time.sleep(0.01)  # the agent removes its socket as it exits


@dataclass
class World:
    root: Path  # server-data, passphrase, home-<name>
    port: int
    fingerprint: str
    invite: str | None  # the founder invite the world was founded with (ServerThread.invite before the build)
    offset: float  # the server clock's offset at the end of the build
    built: float  # time.monotonic() at the end of the build
    config: dict[str, object] = field(default_factory=dict)
    # On PostgreSQL: the cluster and the database the world was built in, a template each restore copies
    cluster: Cluster | None = None
    database: str = ""

    def restore(self, dest: Path, database_url: str = "") -> ServerThread:
        """Copy the world into ``dest`` and start its server there (on the world's port); on PostgreSQL into
        ``database_url`` when given (the ``backend`` fixture's database, which the test may read)."""
        dest.mkdir(parents=True, exist_ok=True)
        for item in self.root.iterdir():
            target = dest / item.name
            if item.is_dir():
                shutil.copytree(item, target, symlinks=True)
            else:
                shutil.copy2(item, target)
        config = dict(self.config)
        if self.cluster is not None:
            config["database_url"] = self.cluster.copy_database(self.database, database_url)
        server = ServerThread(dest / "server-data", self.port, **config)
        server.offset = self.offset
        server.start()
        assert server.fingerprint == self.fingerprint
        server.invite, server.restored = self.invite, True
        return server


class Worlds:
    """The worlds built so far in this session, by name."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.worlds: dict[str, World] = {}
        # The backend the next worlds are built on and looked up for: None for SQLite, else a PostgreSQL cluster
        # (the ``server`` fixture sets it for a test that takes the ``backend`` fixture).
        self.cluster: Cluster | None = None
        self.ports: list[socket.socket] = []

    def get(self, name: str, build: Build) -> World:
        name = name if self.cluster is None else f"{name}-pg"
        world = self.worlds.get(name)
        if world is None or time.monotonic() - world.built > MAX_AGE:
            world = self.worlds[name] = self._build(f"{name}-{len(self.ports)}", build)
        return world

    def org_then(self, name: str, extend: Callable[[Org, Callable[[str], Member]], object]) -> World:
        """The world of ``org`` and what ``extend(org, make_member)`` then did."""
        return self.get(name, lambda server, make_member: extend(found_org(server, make_member), make_member))

    def _reserve_port(self) -> int:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        self.ports.append(s)
        return int(s.getsockname()[1])

    def _build(self, name: str, build: Build) -> World:
        root = self.base / name
        root.mkdir()
        passphrase = root / "passphrase"
        passphrase.write_text(PASSPHRASE + "\n")
        cluster = self.cluster
        database = cluster.new_database() if cluster is not None else ""
        server = ServerThread(root / "server-data", self._reserve_port(),
                              **({"database_url": database} if database else {})).start()
        invite = server.invite
        made: list[Member] = []

        def make_member(member: str) -> Member:
            made.append(Builder(root / f"home-{member}", member, passphrase))
            return made[-1]

        try:
            build(server, make_member)
        finally:
            _stop_agents(made)
            server.stop()
        return World(root, server.port, server.fingerprint, invite, server.offset, time.monotonic(),
                     dict(server.config), cluster, database)

    def close(self) -> None:
        for s in self.ports:
            s.close()


@pytest.fixture(scope="session")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    built = Worlds(tmp_path_factory.mktemp("worlds"))
    yield built
    built.close()


@pytest.fixture
def org_world(worlds: Worlds, request: pytest.FixtureRequest) -> World:
    """The world ``org`` starts from: founder alice and member bob, team "drafting" with bob as writer; for a test
    that uses ``forge``, the world it starts from (tests/helpers/forgery.py: ``forge_world``)."""
    if "forge" in request.fixturenames:
        from tests.helpers.forgery import forge_world  # it imports this module

        return forge_world(worlds)
    return worlds.get("org", found_org)


def security_world(worlds: Worlds) -> World:
    """The world of ``org`` with carol in the Security Team (``security_team``): a module's ``org_world``
    when all its tests start there (tests/test_audit.py, tests/test_incidents.py)."""
    return worlds.org_then("org-security", security_team)


def security_member(org: Org, make_member: Callable[[str], Member]) -> Member:
    """carol, the Security Team member of ``security_world`` (made now when ``org`` was not copied from it); her
    commands go through an unlock agent from her first (``unlock_at_first_run``: no Argon2id each)."""
    carol = make_member("carol") if org.server.restored else security_team(org, make_member)
    unlock_at_first_run(carol)
    return carol
