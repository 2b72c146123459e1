"""A lying server cannot make the client hold an answer of any size: ``Api.request(max_answer=...)`` (the batch
download asks for it: the most its items can take) refuses an answer past the cap before reading it all, whether
the server declares its length or streams it chunked. A real aiohttp server on loopback sends the answers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from client.api import _read_at_most
from vault.errors import IntegrityError

CAP = 1 << 20
HUGE = 256 << 20


async def _serve(handler: web.StreamResponse | None = None) -> tuple[web.AppRunner, str, dict[str, int]]:
    sent = {"bytes": 0}

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        piece = b"\0" * (1 << 16)
        try:
            while sent["bytes"] < HUGE:
                await resp.write(piece)
                sent["bytes"] += len(piece)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * (CAP + 1))

    async def small(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * CAP)

    app = web.Application()
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/declared", declared)
    app.router.add_get("/small", small)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", sent


def test_an_answer_past_the_cap_is_refused_before_it_is_all_read() -> None:
    async def go() -> None:
        runner, url, sent = await _serve()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/small") as resp:
                    assert await _read_at_most(resp, CAP) == b"x" * CAP  # exactly the cap: taken
                async with session.get(url + "/declared") as resp:
                    with pytest.raises(IntegrityError, match="more than"):
                        await _read_at_most(resp, CAP)
                async with session.get(url + "/chunked") as resp:
                    with pytest.raises(IntegrityError, match="runs past"):
                        await _read_at_most(resp, CAP)
            await asyncio.sleep(0.2)
            assert sent["bytes"] < HUGE // 4, sent  # the client stopped reading: the server could not send it all
        finally:
            await runner.cleanup()

    asyncio.run(go())
