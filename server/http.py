"""HTTP plumbing shared by every route: reading JSON bodies into the Structs of ``vault/wire``, query
and id parsing, and the middleware that turns every error into ``{"error": code, "message": text}``.

Every handler either succeeds or raises a ``VaultError`` (or an aiohttp HTTP error), which the
error middleware turns into a 4xx JSON answer; nothing is written before every check has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from typing import TypeVar

import msgspec
from aiohttp import web
from msgspec import UNSET

from server.context import CLIENT, CONFIG, Handler, now_of
from server.store.space import no_space, out_of_space
from vault.errors import Conflict, EncodingError, QuotaExceeded, Throttled, Truncated, VaultError
from vault.fileio import Buffer
from vault.wire.schemas import Error

log = logging.getLogger("mvault.server")
MAX_JSON = 4 * 1024 * 1024
T = TypeVar("T")


def answer(value: msgspec.Struct, status: int = 200) -> web.Response:
    """A JSON answer written from its Struct of ``vault/wire/schemas.py``: the same text as the dictionaries
    written before (``web.json_response`` writes with ``json.dumps``; bytes become standard padded base64,
    unset fields are left out, a tagged Struct's tag comes first)."""
    return web.json_response(msgspec.to_builtins(value), status=status)


def error_response(status: int, code: str, message: str, not_before: int | None = None,
                   server_time: int | None = None) -> web.Response:
    return answer(Error(error=code, message=message, not_before=UNSET if not_before is None else not_before,
                        server_time=UNSET if server_time is None else server_time), status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Throttled as e:
        response = error_response(e.status, e.code, e.message)
        response.headers["Retry-After"] = str(e.retry_after)
        return response
    except VaultError as e:
        not_before = e.not_before if isinstance(e, Conflict) else None
        # a link dated too early: the server's clock too, which the client compares with its own (review 33)
        response = error_response(e.status, e.code, e.message, not_before,
                                  None if not_before is None else int(now_of(request)))
        if isinstance(e, QuotaExceeded) and e.retry_after is not None:
            response.headers["Retry-After"] = str(e.retry_after)
        return response
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(e.status, e.reason.lower().replace(" ", "_"), e.text or e.reason)
    except ConnectionResetError:
        # The client went away mid-request (an interrupted upload): nothing was stored and
        # nobody reads this answer; re-raising would make aiohttp log it as a server error.
        return error_response(Truncated.status, Truncated.code, "the connection closed before the request ended")
    except asyncio.CancelledError:
        raise
    except Exception as e:
        resource = request.match_info.route.resource  # the route template: a path holds ids (server/logs.py)
        where = resource.canonical if resource else "?"
        if out_of_space(e):  # a store's write the disk had no room for (SQLITE_FULL): nothing was stored
            log.warning("%s %s: the disk is full (%s)", request.method, where, e)
            refusal = no_space("this request")
            return error_response(refusal.status, refusal.code, refusal.message)
        log.exception("internal error on %s %s", request.method, where)
        return error_response(500, "internal", "internal server error")


async def read_body(request: web.Request, shape: type[T], oversize: frozenset[str] = frozenset()) -> T:
    """The request's JSON body as ``shape`` (a Struct of ``vault/wire/schemas.py``): at most ``MAX_JSON``
    bytes (413), arriving within ``Config.body_timeout`` seconds; anything that does not decode to ``shape`` is an
    ``EncodingError`` (400) naming the field. A field named in ``oversize`` that is longer than its
    Struct allows is 413 instead (a message record over ``MAX_RECORD``)."""
    raw = await _read_raw(request)
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as e:
        field, text = _located(str(e))
        if field in oversize and " of length <= " in text:
            raise web.HTTPRequestEntityTooLarge(max_size=int(text.rsplit(" ", 1)[1]), actual_size=len(raw)) from e
        raise EncodingError(_refusal(field, text)) from e
    except msgspec.DecodeError as e:
        raise EncodingError("request body is not valid JSON") from e


async def _read_raw(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_JSON:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON, actual_size=request.content_length)
    raw = bytearray()  # read() returns what has arrived so far: loop until the end of the body
    limit = request.app[CONFIG].body_timeout
    try:
        async with asyncio.timeout(limit):
            while len(raw) <= MAX_JSON and (chunk := await request.content.read(MAX_JSON + 1 - len(raw))):
                raw += chunk
    except TimeoutError as e:
        raise EncodingError(f"the request body did not arrive within {limit:g} s") from e
    if len(raw) > MAX_JSON:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON, actual_size=len(raw))
    return bytes(raw)


def drop_when_stalled(request: web.Request, seconds: float) -> None:
    """Have the kernel drop this connection once what it sends has waited ``seconds`` unacknowledged, or untransmitted
    because the client's window stayed closed (a client that reads nothing): Linux ``TCP_USER_TIMEOUT``. Elsewhere,
    or on a connection without a TCP socket, nothing changes."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if option is None or sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))


class Pace:
    """The pace a streamed request body (an upload) must keep: at least ``rate`` bytes per second in every window
    of ``window`` seconds from the start of the request (the last window needs only what is left: the handler
    closes the pace once it has read the body). A client trickling a byte now and then is refused
    (``EncodingError``, 400) at the end of the first window it falls short in, and its connection is closed after
    the answer (aiohttp reads and drops the rest for its lingering time). One timer per window, none per read: a
    fast upload pays nothing per chunk."""

    def __init__(self, request: web.Request, window: float, rate: int) -> None:
        self.content = request.content
        self.window = window
        self.share = max(1, int(rate * window))
        self.got = 0  # bytes read in this window
        self.slow = False  # a window ended short of its share
        self.reading = False
        self._rest: Buffer = b""  # received, not yet read: the rest of a chunk longer than a read asked for
        self.task = asyncio.current_task()
        self.timer = asyncio.get_running_loop().call_later(window, self._window_ends)

    def _window_ends(self) -> None:
        if self.got >= self.share:
            self.got = 0
            self.timer = asyncio.get_running_loop().call_later(self.window, self._window_ends)
            return
        self.slow = True
        if self.reading and self.task is not None:
            self.task.cancel()  # the read waiting below turns it into the refusal

    def close(self) -> None:
        """The body has been read (or the request failed): no more windows."""
        self.timer.cancel()

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the body (what has arrived, at least one byte; ``b""`` at its end)."""
        return bytes(await self.piece(n))

    async def piece(self, n: int) -> Buffer:
        """``read`` without copies: up to ``n`` bytes of the body as aiohttp received them (a whole received
        chunk, or a view of one: the rest of a chunk longer than ``n`` is kept for the next read).
        ``StreamReader.read(n)`` joined the chunks that had arrived into a new buffer: a copy of every upload."""
        if self._rest:
            return self._take(self._rest, n)
        if self.slow:
            raise self._too_slow()
        self.reading = True
        try:
            while True:
                chunk, chunk_end = await self.content.readchunk()
                # (b"", True) marks the end of a chunked-encoding chunk, more may follow; but aiohttp gives every
                # request without a body one shared reader (EMPTY_PAYLOAD) that answers (b"", True) forever after
                # the first time anyone read its end: without at_eof this loop spun, never yielding, and the
                # second empty upload a process received froze it.
                if chunk or not chunk_end or self.content.at_eof():
                    break
        except asyncio.CancelledError:
            if self.slow and self.task is not None and self.task.uncancel() == 0:
                raise self._too_slow() from None
            raise
        finally:
            self.reading = False
        self.got += len(chunk)
        return self._take(memoryview(chunk) if len(chunk) > n else chunk, n)

    def _take(self, data: Buffer, n: int) -> Buffer:
        """The first ``n`` bytes of ``data``; what is beyond them waits in ``_rest``."""
        if len(data) <= n:
            self._rest = b""
            return data
        self._rest = data[n:]
        return data[:n]

    async def exactly(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes of the body, or None when it ends before."""
        out = bytearray()
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                return None
            out += chunk
        return bytes(out)

    def _too_slow(self) -> EncodingError:
        return EncodingError(f"the request body is too slow: less than {self.share} bytes arrived within "
                             f"{self.window:g} s")


_AT = re.compile(r"^(?P<text>.*) - at `\$(?P<path>.*)`$", re.DOTALL)
_FIELD = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<name>.*)`$", re.DOTALL)


def _located(message: str) -> tuple[str, str]:
    """msgspec's ``ValidationError`` text split into the field it names (``""``: the body itself;
    ``boxes[...]``: a value of the object ``boxes``) and what is wrong."""
    m = _AT.match(message)
    if m is None:
        return "", message
    return m["path"].removeprefix("."), m["text"]


def _refusal(field: str, text: str) -> str:
    """A refusal in the words the server used before the Structs (``request: missing field 'x'``, ``x is
    not valid base64``), which clients and tests may match; msgspec's own words where there were none."""
    if not field and text.startswith("Expected `object`"):
        return "request body must be a JSON object"
    m = _FIELD.match(text)
    if m is not None:
        prefix = "request: " + (field + ": " if field else "")
        if m["what"] == "missing required":
            return f"{prefix}missing field {m['name']!r}"
        return f"{prefix}unexpected field(s) [{m['name']!r}]"
    if text == "Invalid base64 encoded string":
        return f"{field} is not valid base64"
    return f"request: field {field!r}: {text[:1].lower()}{text[1:]}"


def int_query(request: web.Request, name: str, default: int) -> int:
    """A non-negative integer query parameter (at most 12 digits), ``default`` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise EncodingError(f"{name} must be a non-negative integer")
    return int(raw)


def hex_id(value: str, what: str) -> str:
    """A 32-character lowercase hex id from a route; ``what`` names it in the refusal ("document id",
    "thread id", "slot")."""
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise EncodingError(f"{what} must be 32 lowercase hex characters")
    return value


def source_of(request: web.BaseRequest) -> str:
    """The client's address: the peer's, or behind a trusted reverse proxy the one the proxy names
    (server/proxied.py). No other peer's forwarded-for header counts: anyone may send one."""
    return request.get(CLIENT) or request.remote or "?"
