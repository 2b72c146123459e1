"""The one raw HTTP client of the tests and what goes with it: calls with the server's certificate pinned,
login by challenge and signature, refusals that must change nothing, malformed JSON bodies, HTTP by hand."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import ssl
from collections.abc import Iterable
from typing import Any, Protocol, cast

import aiohttp

from tests.conftest import ServerThread
from tests.helpers.db import snapshot
from vault.auth import sign_login
from vault.keys import DeviceKeys

NOTHING: Any = object()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_error(status: int, content_type: str, raw: bytes) -> dict[str, str]:
    """An error answer: 4xx (or 507 ``insufficient_storage``: the server's disk is full; or 503 ``unavailable``:
    the server failed closed), JSON, exactly {"error": str, "message": str}; a 409 ``conflict`` may add
    ``"not_before": int``, the earliest time the server would take the link at, with ``"server_time": int``, the
    server's clock then (docs/format.md)."""
    assert 400 <= status < 500 or status in (503, 507), f"HTTP {status} (never another 5xx): {raw[:300]!r}"
    assert content_type == "application/json", f"error answer is {content_type}: {raw[:300]!r}"
    body = json.loads(raw)
    assert isinstance(body, dict) and set(body) - {"not_before", "server_time"} == {"error", "message"}, body
    assert "not_before" not in body or (status == 409 and type(body["not_before"]) is int
                                        and type(body["server_time"]) is int), body
    assert "server_time" not in body or "not_before" in body, body
    assert status != 507 or body["error"] == "insufficient_storage", body
    assert status != 503 or body["error"] == "unavailable", body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    return body


class Http:
    """Raw calls to the server with its certificate pinned; every error answer is checked."""

    def __init__(self, server: ServerThread, source: str | None = None) -> None:
        self.server = server
        self.source = source  # the local address to connect from (another loopback address: another source)
        self.headers: Any = {}  # of the last answer
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        fp = aiohttp.Fingerprint(bytes.fromhex(self.server.fingerprint))
        local = None if self.source is None else (self.source, 0)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp, local_addr=local))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def call(self, method: str, path: str, *, token: str | None = None, js: Any = NOTHING,
                   data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        assert self._session is not None
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if js is not NOTHING:
            data = json.dumps(js).encode()
            hdrs["Content-Type"] = "application/json"
        async with self._session.request(method, self.server.url + path, data=data,
                                         headers=hdrs) as resp:
            raw = await resp.read()
            status, ctype, self.headers = resp.status, resp.content_type, resp.headers
        if status >= 400:
            return status, check_error(status, ctype, raw)
        return status, json.loads(raw) if ctype == "application/json" else raw


async def refused(h: Http, method: str, path: str, status: int, *, contains: str = "",
                  what: str = "", **kw: Any) -> dict[str, str]:
    """The request is refused with ``status`` and the stored state is unchanged."""
    before = snapshot(h.server)
    got, body = await h.call(method, path, **kw)
    label = f"{method} {path} ({what or 'request'})"
    assert got == status, f"{label}: expected {status}, got {got}: {body}"
    if contains:
        assert contains.lower() in body["message"].lower(), f"{label}: {body}"
    assert snapshot(h.server) == before, f"{label} changed the stored state"
    return cast(dict[str, str], body)


def bad_json_cases(valid: dict[str, Any], b64_fields: Iterable[str] = (),
                   encoded_fields: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(label, request kwargs) for bodies every JSON endpoint must refuse with 400.

    ``b64_fields`` hold base64; ``encoded_fields`` (default: all of them) hold canonical bytes.
    """
    cases: list[tuple[str, dict[str, Any]]] = [
        ("not JSON", {"data": b"{not json"}),
        ("truncated JSON", {"data": json.dumps(valid).encode()[:-3]}),
        ("not UTF-8", {"data": b"\xff\xfe\x00{"}),
        ("empty body", {"data": b""}),
        ("deeply nested JSON", {"data": b"[" * 5000 + b"]" * 5000}),
        ("JSON array", {"js": [valid]}),
        ("JSON string", {"js": "hello"}),
        ("JSON null", {"js": None}),
        ("empty object", {"js": {}}),
        ("unknown field", {"js": {**valid, "surprise": 1}}),
    ]
    for key in valid:
        cases.append((f"missing {key}", {"js": {k: v for k, v in valid.items() if k != key}}))
        cases.append((f"{key} is a number", {"js": {**valid, key: 12}}))
        cases.append((f"{key} is a list", {"js": {**valid, key: ["x"]}}))
    b64_fields = list(b64_fields)
    for key in b64_fields:
        cases.append((f"{key} is not base64", {"js": {**valid, key: "@@not*base64@@"}}))
    for key in b64_fields if encoded_fields is None else encoded_fields:
        cases.append((f"{key} is not canonical bytes", {"js": {**valid, key: b64(b"garbage")}}))
    return cases


async def refuse_bad_json(h: Http, path: str, valid: dict[str, Any], b64_fields: Iterable[str] = (),
                          token: str | None = None, encoded_fields: Iterable[str] | None = None) -> None:
    for label, kw in bad_json_cases(valid, b64_fields, encoded_fields):
        await refused(h, "POST", path, 400, token=token, what=label, **kw)


async def raw_exchange(server: ServerThread, head: bytes, parts: list[bytes], *,
                       close: bool = False, pause: float = 0.2) -> tuple[int, bytes] | None:
    """Speak HTTP/1.1 over TLS by hand: write ``head`` then each part with a pause.

    With ``close`` the connection is dropped after the parts (no answer is read), and this returns once the server no
    longer holds it (it has read all that was sent: a request whose headers arrived has its handler task by then).
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # pinned by fingerprint just below
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=ctx)
    mine = writer.get_extra_info("sockname")[:2]
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert hashlib.sha256(der).hexdigest() == server.fingerprint
        writer.write(head)
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause)
        if close:
            return None
        answer = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
        if close:
            end = asyncio.get_running_loop().time() + 30
            while mine in server.peers():
                assert asyncio.get_running_loop().time() < end, "the server still holds a connection closed 30 s ago"
                await asyncio.sleep(0.02)
    header, _, body = answer.partition(b"\r\n\r\n")
    return int(header.split()[1]), body


def request_head(server: ServerThread, method: str, path: str, length: int,
                 token: str | None = None, ctype: str = "application/json") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             f"Content-Type: {ctype}", f"Content-Length: {length}", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Signer(Protocol):
    """Who logs in: a member id and one of its devices (an API test's actor, a matrix actor)."""

    @property
    def member_id(self) -> str: ...

    @property
    def device(self) -> DeviceKeys: ...


async def login(h: Http, actor: Signer) -> str:
    return await login_as(h, actor.member_id, actor.device)


async def login_as(h: Http, member_id: str, device: DeviceKeys) -> str:
    """Challenge, sign with the device key, log in: the session token."""
    status, ch = await h.call("POST", "/api/v1/auth/challenge",
                              js={"member": member_id, "device": device.device_id})
    assert status == 200, ch
    statement, sig = sign_login(device, origin=h.server.url, nonce=base64.b64decode(ch["nonce"]),
                                member=member_id, time=int(h.server.clock()))
    status, res = await h.call("POST", "/api/v1/auth/login",
                               js={"statement": b64(statement), "sig": b64(sig)})
    assert status == 200, res
    return str(res["token"])
