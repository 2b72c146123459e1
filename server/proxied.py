"""The client's address behind a reverse proxy: every request then comes from the proxy, so the per-address
limits on requests without a session (server/access.py) would be one budget for everyone.

Only a peer in ``Config.trusted_proxies`` is believed, and only in the one header the operator names
(``proxy_header``): ``X-Forwarded-For`` (comma-separated addresses) or RFC 7239 ``Forwarded`` (its ``for=``
parameters, as aiohttp parses them). A proxy appends the address it saw, so the list is read from the right:
the first address that is not a trusted proxy is the client (everything left of it was written by the client
or by proxies nobody trusts). From any other peer the header is ignored: anyone may send one. Reading the other
header as well would let a client whose proxy sets only one of them choose its address with the other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import hdrs, web

from server.context import CLIENT, CONFIG, Handler

Network = IPv4Network | IPv6Network


def node_address(node: str) -> IPv4Address | IPv6Address | None:
    """The IP address of one hop as proxies write it (``192.0.2.1``, ``192.0.2.1:4711``, ``[2001:db8::1]:4711``,
    ``2001:db8::1``); None for anything else (``unknown``, an obfuscated ``_name``)."""
    text = node.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def client_address(peer: str | None, hops: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """Who sent the request: ``peer`` unless it is a trusted proxy, else the right-most hop that is not one (all
    trusted: the left-most). A hop that is no address ends the walk there (it is returned as written)."""
    if peer is None or not _trusted(node_address(peer), trusted) or not hops:
        return peer
    for hop in reversed(hops):
        address = node_address(hop)
        if address is None:
            return hop.strip()
        if not _trusted(address, trusted):
            return str(address)
    first = node_address(hops[0])
    return str(first) if first is not None else peer


def _trusted(address: IPv4Address | IPv6Address | None, trusted: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(rf'[ \t]*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*')
UNPARSED = "unknown"  # the client of a request whose Forwarded header does not parse: one budget for all of them


def forwarded_hops(values: Sequence[str]) -> list[str] | None:
    """The ``for=`` hops of RFC 7239 ``Forwarded`` header values, parsed strictly (elements separated by commas,
    pairs by semicolons, each value a token or a whole quoted string); None when anything does not parse. Not
    aiohttp's ``request.forwarded``: it skips what it cannot parse, so a client's unterminated quote could swallow
    the element its proxy appended and leave the client's own ``for=`` right-most (review round 8)."""
    hops: list[str] = []
    for value in values:
        pos = 0
        while True:
            element: dict[str, str] = {}
            while True:
                m = _PAIR.match(value, pos)
                if m is None:
                    return None
                key, raw = m.group(1).lower(), m.group(2)
                if key in element:
                    return None
                element[key] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
                pos = m.end()
                if value.startswith(";", pos):
                    pos += 1
                    continue
                break
            if "for" in element:
                hops.append(element["for"])
            if pos == len(value):
                break
            if not value.startswith(",", pos):
                return None
            pos += 1
    return hops


def hops_of(request: web.Request, header: str) -> list[str]:
    """The hops the chosen header lists, left (the first client) to right (the last proxy); a ``Forwarded``
    header that does not parse names one unknown client (``UNPARSED``), never the proxy itself."""
    if header == "forwarded":
        hops = forwarded_hops(request.headers.getall(hdrs.FORWARDED, []))
        return [UNPARSED] if hops is None else hops
    return [hop for value in request.headers.getall(hdrs.X_FORWARDED_FOR, []) for hop in value.split(",")
            if hop.strip()]


@web.middleware
async def proxy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: the client's address is noted (``CLIENT``) for everything after it (``server.http.source_of``:
    limits, failed logins, the metrics' loopback exemption). Not ``request.clone(remote=...)``: that copies the
    request, about 40 us of CPU per request measured (a third of what a health request costs the server)."""
    config = request.app[CONFIG]
    if config.trusted_proxies:
        remote = client_address(request.remote, hops_of(request, config.proxy_header), config.trusted_proxies)
        if remote is not None and remote != request.remote:
            request[CLIENT] = remote
    return await handler(request)
