"""HTTP plumbing shared by every route: reading JSON bodies, query and id parsing, and
the middleware that turns every error into ``{"error": code, "message": text}``.

Every handler either succeeds or raises a ``VaultError`` (or an aiohttp HTTP error), which the
error middleware turns into a 4xx JSON answer; nothing is written before every check has passed.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from server.context import Handler
from vault.encoding import Fields
from vault.errors import EncodingError, QuotaExceeded, Throttled, Truncated, VaultError

log = logging.getLogger("mvault.server")
MAX_JSON = 4 * 1024 * 1024
JSON_TIMEOUT = 60  # seconds a JSON request body may take to arrive


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Throttled as e:
        response = error_response(e.status, e.code, e.message)
        response.headers["Retry-After"] = str(e.retry_after)
        return response
    except VaultError as e:
        response = error_response(e.status, e.code, e.message)
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
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


async def read_json(request: web.Request, allowed: set[str]) -> Fields:
    if request.content_length is not None and request.content_length > MAX_JSON:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON, actual_size=request.content_length)
    raw = bytearray()  # read() returns what has arrived so far: loop until the end of the body
    try:
        async with asyncio.timeout(JSON_TIMEOUT):
            while len(raw) <= MAX_JSON and (chunk := await request.content.read(MAX_JSON + 1 - len(raw))):
                raw += chunk
    except TimeoutError as e:
        raise EncodingError(f"the request body did not arrive within {JSON_TIMEOUT} s") from e
    if len(raw) > MAX_JSON:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON, actual_size=len(raw))
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested too deeply
        raise EncodingError("request body is not valid JSON") from e
    if not isinstance(value, dict):
        raise EncodingError("request body must be a JSON object")
    return Fields(value, "request", allowed)


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


def source_of(request: web.Request) -> str:
    """The peer's address. No proxy is trusted: a forwarded-for header would let anyone pick its own."""
    return request.remote or "?"
