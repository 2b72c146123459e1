"""Two server instances over one PostgreSQL database and one data directory (issue 19), each with its own
application, event loop and connection pool, as a module-scoped fixture (``pair``): alice founded the organization
through ``one``; bob writes in team "drafting"; each module that asks for it has a pair of its own (a plugin of
``tests/conftest.py``). Beside it: a raw live follower (``Wire``) that keeps every frame a server sends it, to
count what arrived and in which order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.conftest import PASSPHRASE, Member, Org, ServerThread, found_org
from tests.helpers.http import Http, login_as
from tests.helpers.members import SECRETS, session
from tests.helpers.postgres import Cluster
from vault.keys import DeviceKeys


@dataclass
class Pair:
    one: ServerThread
    two: ServerThread
    org: Org
    alice_id: str
    alice_device: DeviceKeys
    url: str = ""  # the database's


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("pair")
    url = pg_cluster.new_database()
    one = ServerThread(root / "data", database_url=url).start()
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    org = found_org(one, lambda name: Member(root / f"home-{name}", name, pf))
    two = ServerThread(root / "data", database_url=url).start()
    try:
        asyncio.run(open_keys(one, org.alice))
        home, secrets = SECRETS[org.alice.home]
        yield Pair(one, two, org, home.config().member_id, secrets.device, url)
    finally:
        two.stop()
        one.stop()


async def open_keys(server: ServerThread, m: Member) -> None:
    async with session(server, m):  # unlocks m's keys once (tests/helpers/members.py SECRETS)
        pass


@dataclass
class Wire:
    """One live connection as a raw WebSocket: every frame it received (a ``msgs`` frame's items one by one)."""

    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)
    closed: int | None = None  # the close code, once closed
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            value = json.loads(msg.data)
            self.frames.extend(value["items"] if value["type"] == "msgs" else [value])
            self.arrived.set()
        self.closed = self.ws.close_code
        self.arrived.set()

    def positions(self, thread: str) -> list[int]:
        return [int(f["pos"]) for f in self.frames if f["type"] == "msg" and f["thread"] == thread]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def until(self, done: Any, timeout: float = 15.0) -> None:
        """Wait until ``done()`` holds (or the connection closed, or ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            while not done() and self.closed is None:
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def wire(server: ServerThread, m: Member, team: str, start: dict[str, Any]) -> AsyncIterator[Wire]:
    """``m`` follows ``team`` on ``server`` (``start``: the first frame), until the block ends."""
    home, secrets = SECRETS[m.home]
    async with Http(server) as h:
        token = await login_as(h, home.config().member_id, secrets.device)
    fp = aiohttp.Fingerprint(bytes.fromhex(server.fingerprint))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs, cs.ws_connect(
            f"{server.url}/api/v1/teams/{team}/live", headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send_json(start)
        w = Wire(ws)
        reading = asyncio.create_task(w.read())
        try:
            await w.until(lambda: bool(w.of_type("live")))
            yield w
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
