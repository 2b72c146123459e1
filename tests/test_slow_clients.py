"""Slow and stalled clients (issue 17): request headers or bodies trickled a byte at a time, live followers and
downloads that are never read, are dropped within the documented timeouts (``Config.keepalive_timeout``,
``body_timeout``, ``upload_min_rate``, ``live_send_timeout``, ``download_stall_timeout``) and hold no more than
the documented buffers (``live_queue_bytes``).

Each test shortens the timeout it checks (a few seconds) and waits at most a generous bound for the drop; the
bounds are the documented timeouts plus aiohttp's lingering time (10 s, in which the server still reads and drops
what arrives so that the client can read its answer; the trickled-body tests shorten it to 2 s: ``short_linger``),
never a measured duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from client.threads.team import Threads
from server.context import BUS, CONFIG, Config
from server.events import Item
from tests.conftest import ServerThread
from tests.helpers.api_fixtures import _wait_for_empty_tmp, thread_in
from tests.helpers.api_world import World, docs_path, make_upload, new_doc, session, team_key
from tests.helpers.db import snapshot
from tests.helpers.http import Http, login, request_head

LINGER = 2.0  # aiohttp's lingering time after an answer to an unfinished body (10 s; ``short_linger``)
MARGIN = 10.0  # on top of a timeout: a loaded machine


@pytest.fixture
def slow_settings(w: World) -> Iterator[Config]:
    """The shared world's configuration with short slow-client timeouts; put back afterwards."""
    config = w.server.app[CONFIG]
    saved = (config.body_timeout, config.upload_min_rate, config.live_send_timeout, config.live_queue_bytes)
    config.body_timeout, config.upload_min_rate = 2.0, 1024
    config.live_send_timeout, config.live_queue_bytes = 2.0, 256 * 1024
    yield config
    config.body_timeout, config.upload_min_rate, config.live_send_timeout, config.live_queue_bytes = saved


@pytest.fixture
def short_linger(w: World) -> Iterator[None]:
    """The shared world's server lingers ``LINGER`` seconds (not aiohttp's 10) after answering an unfinished body,
    for the connections it accepts during the test: the drop those tests wait for comes that much sooner."""
    before = w.server.set_lingering(LINGER)
    yield
    w.server.set_lingering(before)


async def trickle(server: ServerThread, head: bytes, tail: bytes, *, pause: float, within: float) -> bytes | None:
    """Send ``head`` at once, then ``tail`` one byte every ``pause`` seconds, until the server closes the
    connection: what it answered (b"" for nothing), or None when it kept the connection ``within`` seconds."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # pinned by fingerprint just below
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert hashlib.sha256(der).hexdigest() == server.fingerprint

    async def feed() -> None:
        writer.write(head)
        await writer.drain()
        for i in range(len(tail)):
            await asyncio.sleep(pause)
            writer.write(tail[i:i + 1])
            await writer.drain()
        await asyncio.sleep(3600)  # everything sent: wait for the answer

    feeding = asyncio.create_task(feed())
    answer = bytearray()
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                answer += chunk
    except TimeoutError:
        return None
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass  # dropped without a goodbye: closed all the same
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, ssl.SSLError):
            await feeding
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return bytes(answer)


def status_of(answer: bytes) -> tuple[int, bytes]:
    header, _, body = answer.partition(b"\r\n\r\n")
    return int(header.split()[1]), body


async def test_trickled_headers_are_dropped_after_the_keepalive_timeout(tmp_path: Path) -> None:
    server = await asyncio.to_thread(ServerThread(tmp_path / "server-data", keepalive_timeout=2.0).start)
    try:
        head = f"GET /api/v1/info HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
        got = await trickle(server, head, b"X-Slow: " + b"a" * 200, pause=0.3, within=2.0 + MARGIN)
        assert got is not None, "a request whose headers never end kept its connection open"
        assert got == b"", got  # no request ever arrived: nothing to answer
        # an ordinary client is served as before
        async with Http(server) as h:
            status, info = await h.call("GET", "/api/v1/info")
            assert status == 200, info
    finally:
        server.stop()


async def test_a_trickled_json_body_is_refused_and_dropped(w: World, slow_settings: Config, short_linger: None
                                                            ) -> None:
    body = b'{"member": "' + b"a" * 64 + b'", "device": "' + b"b" * 64 + b'"}'
    head = request_head(w.server, "POST", "/api/v1/auth/challenge", len(body)).replace(b"Connection: close\r\n", b"")
    before = snapshot(w.server)
    got = await trickle(w.server, head, body, pause=0.3, within=2.0 + LINGER + MARGIN)
    assert got is not None, "a trickled JSON body kept its connection open"
    status, answer = status_of(got)
    assert status == 400 and b"did not arrive within 2 s" in answer, got
    assert snapshot(w.server) == before


async def test_a_trickled_upload_is_refused_dropped_and_leaves_nothing(w: World, slow_settings: Config,
                                                                      short_linger: None) -> None:
    async with session(w, w.bob) as s:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc, size=64 * 1024)
        token = s.session.api.token
        before = snapshot(w.server)
        head = request_head(w.server, "POST", docs_path(w.drafting, doc), len(up.data), token,
                            "application/octet-stream").replace(b"Connection: close\r\n", b"")
        # the header and the body's first 4 KiB at once, then a byte every 0.3 s: far below 1 KiB/s
        cut = up.head_len + 4096
        got = await trickle(w.server, head + up.data[:cut], up.data[cut:], pause=0.3,
                            within=2.0 * 2 + LINGER + MARGIN)
        assert got is not None, "a trickled upload kept its connection open"
        status, answer = status_of(got)
        assert status == 400 and b"too slow" in answer, got
        await _wait_for_empty_tmp(w.server)
        assert snapshot(w.server) == before
        # the header alone trickled: refused as well (it must arrive within body_timeout)
        doc2 = new_doc()
        up2 = make_upload(w, s, key, doc2, size=100)
        head2 = request_head(w.server, "POST", docs_path(w.drafting, doc2), len(up2.data), token,
                             "application/octet-stream").replace(b"Connection: close\r\n", b"")
        got = await trickle(w.server, head2, up2.data, pause=0.3, within=2.0 + LINGER + MARGIN)
        assert got is not None and status_of(got)[0] == 400, got
        await _wait_for_empty_tmp(w.server)
        assert snapshot(w.server) == before
        async with Http(w.server) as h:  # an upload at an ordinary pace still works
            status, res = await h.call("POST", docs_path(w.drafting, doc), token=token, data=up.data)
            assert status == 201 and res["vid"] == up.vid, res


async def test_empty_uploads_are_refused_every_time_and_the_server_goes_on(w: World) -> None:
    """aiohttp gives every request without a body one shared reader (``EMPTY_PAYLOAD``), which after the first
    time its end was read answers "end of a chunk, more may follow" forever: the upload's body reader
    (``server/http.py`` ``Pace.piece``) looped on it without yielding, and the second empty upload a server
    process received froze the process (every request after it hung; found as the PostgreSQL API suites' hang,
    which ran after the SQLite ones in one process). Each empty upload is refused, and the server answers
    after them."""
    async with session(w, w.bob) as s, Http(w.server) as h:
        token = s.session.api.token
        before = snapshot(w.server)
        for attempt in range(3):
            status, res = await asyncio.wait_for(
                h.call("POST", docs_path(w.drafting, new_doc()), token=token, data=b""), 30)
            assert status == 400 and "ended inside" in res["message"], (attempt, res)
        status, _ = await asyncio.wait_for(h.call("GET", "/api/health"), 30)
        assert status == 200
        assert snapshot(w.server) == before


def _small_receive_buffer() -> socket.socket:
    """The follower's socket: a small receive buffer, so that a follower that reads nothing fills the server's
    buffers after a few MiB instead of the kernel's full auto-tuned window."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_a_follower_that_never_reads_is_dropped_and_holds_bounded_memory(w: World,
                                                                                slow_settings: Config) -> None:
    team, thread = await thread_in(w, w.bob, "drafting", "flood")
    bus = w.server.app[BUS]
    text = "x" * 48 * 1024
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
    fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
    connector = aiohttp.TCPConnector(ssl=fp, socket_factory=lambda _: _small_receive_buffer())
    rss_before = _rss()
    peak_waiting = 0
    async with aiohttp.ClientSession(connector=connector) as cs, cs.ws_connect(
            f"{w.server.url}/api/v1/teams/{team}/live", headers={"Authorization": f"Bearer {bob}"},
            max_msg_size=0) as ws, session(w, w.bob) as s:
        await ws.send_json({"after": {thread: 0}})
        # until the server subscribed it (was: at most 5 s, then on regardless: a follower subscribed later than that
        # got no posts, was never dropped, and the test failed after 0 posts)
        subscribed_by = asyncio.get_running_loop().time() + MARGIN
        while not any(f.session.member == w.bob.member_id for f in bus.followers()):
            assert asyncio.get_running_loop().time() < subscribed_by, "the server never subscribed the follower"
            await asyncio.sleep(0.05)
        threads = await Threads.open(s, "drafting")
        posted = 0
        # ~6 MiB of messages (with base64) while the follower reads nothing
        while posted < 100 and any(f.session.member == w.bob.member_id for f in bus.followers()):
            await threads.post("flood", text)
            posted += 1
            for f in bus.followers():
                queued: deque[Item | None] = f.queue._queue  # type: ignore[attr-defined]  # what waits, counted here
                waiting = sum(len(entry[1]) for entry in list(queued) if entry is not None)
                peak_waiting = max(peak_waiting, waiting)
        for _ in range(int((2.0 + MARGIN) / 0.1)):
            if not any(f.session.member == w.bob.member_id for f in bus.followers()):
                break
            await asyncio.sleep(0.1)
        assert not any(f.session.member == w.bob.member_id for f in bus.followers()), \
            f"a follower that read nothing stayed subscribed after {posted} posts"
    grown = _rss() - rss_before
    print(f"follower that never reads: dropped after {posted} posts of 48 KiB; peak waiting {peak_waiting} bytes; "
          f"process RSS grew {grown / 2**20:.1f} MiB")
    assert peak_waiting <= 256 * 1024, f"{peak_waiting} bytes waited for one follower (bound 256 KiB)"
    assert grown < 200 * 2**20, f"the server's process grew {grown / 2**20:.0f} MiB"


async def test_a_download_that_is_never_read_is_dropped(w: World, slow_settings: Config) -> None:
    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        pytest.skip("TCP_USER_TIMEOUT is Linux's; elsewhere a stalled download is not dropped")
    w.server.app[CONFIG].download_stall_timeout = 2.0
    try:
        async with session(w, w.bob) as s, Http(w.server) as h:
            key = await team_key(s, w.drafting)
            doc = new_doc()
            up = make_upload(w, s, key, doc, size=32 * 1024 * 1024)
            token = s.session.api.token
            status, res = await h.call("POST", docs_path(w.drafting, doc), token=token, data=up.data)
            assert status == 201, res
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # pinned by fingerprint just below
        sock = _small_receive_buffer()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", w.server.port))
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="", limit=4096)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert hashlib.sha256(der).hexdigest() == w.server.fingerprint
            writer.write(f"GET /api/v1/teams/{w.drafting}/versions/{up.vid}/body HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{w.server.port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
            await writer.drain()
            # reading nothing: the server's data waits on a closed window; wait (at most 2 s + MARGIN, as before) for
            # the server to drop the connection, then read what came
            mine, loop = sock.getsockname()[:2], asyncio.get_running_loop()
            # held, as the server sees it: under TLS 1.3 the client's handshake ends before the server's, so the
            # server may register the connection a moment after the request is written
            seen_by = loop.time() + MARGIN
            while mine not in w.server.peers() and loop.time() < seen_by:
                await asyncio.sleep(0.01)
            assert mine in w.server.peers(), "the server never held the download's connection"
            end = loop.time() + 2.0 + MARGIN
            while mine in w.server.peers() and loop.time() < end:
                await asyncio.sleep(0.2)
            got = 0
            with contextlib.suppress(ConnectionResetError, ssl.SSLError, OSError):
                async with asyncio.timeout(60):
                    while chunk := await reader.read(1 << 20):
                        got += len(chunk)
            size = len(up.body)
            assert got < size, f"the server waited for a client that read nothing ({got} of {size} bytes came)"
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    finally:
        w.server.app[CONFIG].download_stall_timeout = Config.download_stall_timeout
