"""Behind a reverse proxy each client keeps its own budget of requests without a session (issue 17).

The real ``mvault-server run --behind-proxy`` with ``trusted_proxies = ["127.0.0.2"]`` and a budget of two
requests: raw HTTP requests sent from 127.0.0.2 (the trusted proxy) are counted against the client the proxy's
header names, read from the right; the same header sent from 127.0.0.1 (a peer nobody trusts) is ignored, so
a client cannot pick its own address. ``proxy_header = "forwarded"`` reads RFC 7239 ``Forwarded`` and nothing else.
"""

from __future__ import annotations

import asyncio
from ipaddress import ip_network
from pathlib import Path

import aiohttp
import pytest

from server.proxied import client_address, forwarded_hops
from tests.helpers.pki import ServerProcess, free_port
from tests.helpers.pki import servers as servers_fixture

servers = servers_fixture
PROXY, STRANGER = "127.0.0.2", "127.0.0.1"
BURST = 2
HEALTH = "/api/health"  # a route without a session: it spends a token of the sender's address


def _start(servers: list[ServerProcess], tmp_path: Path, header: str, extra: str = "") -> ServerProcess:
    data = tmp_path / header
    data.mkdir()
    (data / "config.toml").write_text(f'behind_proxy = true\ntrusted_proxies = ["{PROXY}"]\nproxy_header = "{header}"\n'
                                      f"rate_per_second = 0.1\nrate_burst = {BURST}\n{extra}")
    s = ServerProcess(data, free_port(), "--public-url", "https://vault.example.org", "--pin", "webpki")
    servers.append(s)
    return s.start()


async def _statuses(s: ServerProcess, source: str, headers: dict[str, str], n: int, path: str) -> list[int]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        out = []
        for _ in range(n):
            async with http.get(f"http://127.0.0.1:{s.port}{path}", headers=headers) as resp:
                out.append(resp.status)
        return out


def _run(s: ServerProcess, source: str, headers: dict[str, str], n: int, path: str = HEALTH) -> list[int]:
    return asyncio.run(_statuses(s, source, headers, n, path))


def test_x_forwarded_for_from_the_trusted_proxy_only(tmp_path: Path, servers: list[ServerProcess]) -> None:
    s = _start(servers, tmp_path, "x-forwarded-for")
    first = {"X-Forwarded-For": "198.51.100.1"}
    assert _run(s, PROXY, first, BURST + 1) == [200] * BURST + [429]
    # Another client through the same proxy has its own budget (before: the proxy's, spent by the first).
    assert _run(s, PROXY, {"X-Forwarded-For": "198.51.100.2"}, 1) == [200]
    # What the client wrote left of the address the proxy appended changes nothing; nor does a second proxy hop.
    assert _run(s, PROXY, {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"}, 1) == [429]
    assert _run(s, PROXY, {"X-Forwarded-For": f"198.51.100.1, {PROXY}"}, 1) == [429]
    # A peer that is not a trusted proxy: its header is ignored, every request is its own address's.
    assert _run(s, STRANGER, {"X-Forwarded-For": "198.51.100.50"}, BURST) == [200] * BURST
    assert _run(s, STRANGER, {"X-Forwarded-For": "198.51.100.51"}, 1) == [429]
    assert _run(s, PROXY, {"X-Forwarded-For": STRANGER}, 1) == [429]  # the stranger's budget, named by the proxy


def test_forwarded_header_when_configured(tmp_path: Path, servers: list[ServerProcess]) -> None:
    s = _start(servers, tmp_path, "forwarded")
    client = {"Forwarded": 'for="[2001:db8::1]:4711";proto=https'}
    assert _run(s, PROXY, client, BURST + 1) == [200] * BURST + [429]
    assert _run(s, PROXY, {"Forwarded": "for=192.0.2.60:80"}, 1) == [200]
    # X-Forwarded-For is not the configured header: a client adding one cannot pick its address with it.
    assert _run(s, PROXY, {**client, "X-Forwarded-For": "198.51.100.7"}, 1) == [429]
    assert _run(s, STRANGER, {"Forwarded": "for=192.0.2.61"}, BURST + 1) == [200] * BURST + [429]


def test_the_metrics_loopback_exemption_is_the_clients_address(tmp_path: Path, servers: list[ServerProcess]) -> None:
    """With ``metrics_loopback = true`` set behind a proxy, a client on the internet reaching the metrics through the
    proxy is not a loopback peer (before: every request through the proxy was)."""
    s = _start(servers, tmp_path, "x-forwarded-for", "metrics_loopback = true\n")
    assert _run(s, PROXY, {"X-Forwarded-For": "198.51.100.1"}, 1, "/api/metrics") == [403]
    assert _run(s, PROXY, {"X-Forwarded-For": "127.0.0.1, 198.51.100.2"}, 1, "/api/metrics") == [403]
    assert _run(s, STRANGER, {"X-Forwarded-For": "198.51.100.3"}, 1, "/api/metrics") == [200]  # a local scraper


@pytest.mark.parametrize(("peer", "hops", "client"), [
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["198.51.100.1", "10.0.0.6"], "198.51.100.1"),  # two trusted proxies
    ("10.0.0.5", ["10.0.0.7", "10.0.0.6"], "10.0.0.7"),  # every hop trusted: the first
    ("10.0.0.5", ["unknown", "198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["_hidden"], "_hidden"),  # no address: as written, never the proxy's
    ("10.0.0.5", [], "10.0.0.5"),
    ("192.0.2.1", ["198.51.100.1"], "192.0.2.1"),  # not a trusted peer
    ("10.0.0.5", ['"[2001:db8::1]:4711"'], "2001:db8::1"),
    ("10.0.0.5", ["192.0.2.60:8080"], "192.0.2.60"),
])
def test_client_address(peer: str, hops: list[str], client: str) -> None:
    assert client_address(peer, hops, [ip_network("10.0.0.0/8")]) == client


@pytest.mark.parametrize(("values", "hops"), [
    (["for=192.0.2.1"], ["192.0.2.1"]),
    (['for=192.0.2.1, for="[2001:db8::9]:4711";proto=https'], ["192.0.2.1", "[2001:db8::9]:4711"]),
    (["for=192.0.2.1", "For=10.0.0.1;by=10.0.0.2"], ["192.0.2.1", "10.0.0.1"]),
    (["proto=https, for=_hidden"], ["_hidden"]),
    # A client's unterminated quote that would swallow the element its proxy appended: nothing is believed.
    (['for=127.0.0.1;x=", for="[2001:db8::9]:4711"'], None),
    (['for=127.0.0.1;x=", for=198.51.100.7'], None),
    (["for=192.0.2.1;for=192.0.2.2"], None),  # the same parameter twice in one element
    ([""], None),
    (["for=192.0.2.1,"], None),
])
def test_forwarded_is_parsed_strictly(values: list[str], hops: list[str] | None) -> None:
    assert forwarded_hops(values) == hops
