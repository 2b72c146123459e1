"""Helpers around members driven through the real CLI and the real client library: in-process sessions of
CLI members, a live follower, joining members, puts and gets, fast unlocks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from client.api import Api
from client.client import Client
from client.home import Home
from client.threads.cache import Shown
from client.threads.team import Threads
from tests.conftest import UNLOCKED, Member, Org, ServerThread
from tests.helpers.clock import FOLLOWS_ENVIRONMENT


def put(member: Member, team: str, path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(member.json("put", team, str(path))[0]["vid"])


def get_ok(member: Member, team: str, name: str, where: Path, expected: bytes, version: int | None = None) -> None:
    where.mkdir(parents=True, exist_ok=False)
    target = where / "result.bin"
    args = ["get", team, name, "-o", str(target)]
    if version is not None:
        args += ["--version", str(version)]
    member.ok(*args)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(expected).digest()


def unlock_fast(*members: Member) -> None:
    """An unlock session per member, so each CLI call skips the Argon2 passphrase step."""
    for m in members:
        m.env_extra["MVAULT_SESSION"] = str(m.json("unlock", "--minutes", "30")["session"])


def unlock_here(*members: Member) -> None:
    """``unlock_fast`` without a CLI run each: what ``mvault unlock --minutes 30`` does (the keystore opened with the
    member's passphrase, an unlock agent started with the key: ``Home.start_session``), in this process. The
    ``unlock`` command itself is tested in tests/test_auth.py and tests/test_local_state.py."""
    for m in members:
        home = Home(m.home)
        with _passphrase_of(m):
            home.unlock(agent_ok=False)
        UNLOCKED.add(m.home)  # its agent is stopped after the test (stop_unlock_agents)
        m.env_extra["MVAULT_SESSION"] = home.start_session(30 * 60)[0]


def unlock_at_first_run(*members: Member) -> None:
    """``unlock_here`` for each member just before its first CLI command once its keystore is on disk (after its
    join; ``Member.unlock_first``), not now: a member a test never runs costs nothing, one it runs once costs what
    that run's Argon2id would have, and every later run skips it. For tests that run some of their members many times
    and others not at all; not for members whose unlock state a test looks at (``unlock``, ``lock``, ``status``)."""
    for m in members:
        m.unlock_first = "MVAULT_SESSION" not in m.env_extra


@contextmanager
def _passphrase_of(m: Member) -> Iterator[None]:
    old = os.environ.get("MVAULT_PASSPHRASE_FILE")
    os.environ["MVAULT_PASSPHRASE_FILE"] = str(m.passphrase_file)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MVAULT_PASSPHRASE_FILE", None)
        else:
            os.environ["MVAULT_PASSPHRASE_FILE"] = old


SECRETS: dict[Path, tuple[Home, Any]] = {}


@asynccontextmanager
async def session(server: ServerThread, m: Member) -> AsyncIterator[Client]:
    """An in-process session of a CLI member (its keystore unlocked once per test run; the unlocked
    ``Home`` is kept too: it opens the sealed config and pins)."""
    if m.home not in SECRETS:
        home = Home(m.home)
        with _passphrase_of(m):
            SECRETS[m.home] = home, home.unlock()
    home, secrets = SECRETS[m.home]
    async with Api(server.url, bytes.fromhex(server.fingerprint)) as api:
        yield await Client.open(home, secrets, api, FOLLOWS_ENVIRONMENT)


def add_members(org: Org, make_member: Any, names: list[str], role: str = "writer") -> list[Member]:
    out = []
    for name in names:
        m = make_member(name)
        m.ok("join", org.alice.json("invite")["invite"], "--name", name)
        org.alice.ok("team", "add", "drafting", name, "--role", role)
        out.append(m)
    return out


class Follower:
    """An in-process follower (the real client's follow loop) collecting what it receives."""

    def __init__(self, server: ServerThread, member: Member, thread: str | None) -> None:
        self.server, self.member, self.thread = server, member, thread
        self.got: list[Shown] = []
        self.live = asyncio.Event()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.states: list[str] = []

    async def _run(self) -> None:
        async with session(self.server, self.member) as s:
            threads = await Threads.open(s, "drafting")

            async def on_message(_tid: str, m: Shown) -> None:
                self.got.append(m)

            async def on_state(state: str) -> None:
                self.states.append(state)
                if state == "live":
                    self.live.set()

            await threads.follow(self.thread, on_message, on_state, self.stop)

    async def start(self) -> Follower:
        self.task = asyncio.create_task(self._run())
        done, _ = await asyncio.wait({self.task, asyncio.create_task(self.live.wait())}, timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            self.task.result()  # raises what went wrong
        assert self.live.is_set(), "the follower never went live"
        return self

    async def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            if self.task is not None and self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        assert len(self.got) >= n, f"{self.member.name} got {len(self.got)} of {n}"

    async def live_again(self, times: int = 2, timeout: float = 20) -> None:
        """Wait until the follower went live ``times`` times (a reconnect: its catch-up may deliver
        the messages a test waits for before the server says it is live again)."""
        deadline = time.monotonic() + timeout
        while self.states.count("live") < times and time.monotonic() < deadline:
            if self.task is not None and self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        assert self.states.count("live") >= times, self.states

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)


T = TypeVar("T")


def in_session(server: ServerThread, m: Member, fn: Callable[[Client], Awaitable[T]],
               monkeypatch: pytest.MonkeyPatch) -> T:
    """``fn`` in an in-process client session of ``m`` (the real client library, logged in)."""
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    home = Home(m.home)

    async def go() -> T:
        async with Api(server.url, bytes.fromhex(server.fingerprint)) as api:
            return await fn(await Client.open(home, home.unlock(), api))

    return asyncio.run(go())


def alice_pinned(org: Org, doc: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Home:
    """alice puts ``doc`` (written with ``text``) in "drafting": her home then holds a document pin, chain pins and
    an audit checkpoint. Her home, to be opened in this process (her passphrase file; no unlock agent)."""
    doc.write_text(text)
    org.alice.ok("put", "drafting", str(doc))
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(org.alice.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    return Home(org.alice.home)
