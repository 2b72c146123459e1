"""HTTP client for the Member Vault API, with the server certificate pinned."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar, overload

import msgspec

from client.aiohttp_quiet import aiohttp
from client.testknobs import connect_timeout
from vault import errors
from vault.errors import AuthError, NotFound, PolicyDenied, ServerMismatch, TransportError, VaultError
from vault.fileio import Buffer
from vault.pin import Pin
from vault.wire.schemas import Wire

T = TypeVar("T")

_CODES: dict[str, type[VaultError]] = {}
for _cls in (
    errors.EncodingError, errors.DecryptionFailed, errors.BadSignature, errors.Truncated, errors.IntegrityError,
    errors.ChainError, errors.RollbackDetected, errors.PolicyDenied, errors.NotFound, errors.Conflict,
    errors.InviteError, errors.AuthError, errors.DeviceRevoked, errors.QuotaExceeded, errors.OrgClosed,
):
    _CODES[_cls.code] = _cls


READ_BUFSIZE = 4 << 20


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def refusal(status: int, code: str, message: str, not_before: object = None, server_time: object = None) -> VaultError:
    """The error a refusal of the server stands for (an answer's status and ``Error`` body, or a batch item's)."""
    cls = _CODES.get(code)
    if cls is None:
        if status == 413:
            return VaultError(f"the server refused the upload as too large: {message}")
        return TransportError(f"server error (HTTP {status}): {message}")
    refused = cls(message)
    if isinstance(refused, errors.Conflict) and _whole(not_before) is not None:
        refused.not_before, refused.server_time = _whole(not_before), _whole(server_time)
    refused.exit_code = errors.EXIT_FAILED  # the server refused our request (even as "bad_signature"): not a lie
    return refused


def decode(raw: bytes, answer: type[Any] | None) -> Any:
    """A server's JSON answer as ``answer`` (plain Python values without one); ``TransportError`` if it is
    not JSON or not of that shape: the client stops talking to a server that answers nonsense."""
    try:
        return msgspec.json.decode(raw) if answer is None else msgspec.json.decode(raw, type=answer)
    except msgspec.ValidationError as e:
        raise TransportError(f"server sent a malformed answer: {e}") from e
    except msgspec.DecodeError as e:
        raise TransportError("server sent a malformed answer: not JSON") from e


def decode_frame(data: str, kind: Any) -> Any:
    """A live (WebSocket) frame's text as ``kind``, a frame type or a union of them; ``IntegrityError`` if it is
    none of them: the server broke the protocol."""
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise errors.IntegrityError(f"the server sent a malformed live frame: {e}") from e


class PeerPin(aiohttp.Fingerprint):
    """A ``cert`` or ``spki`` pin (``vault.pin``), checked by aiohttp on every new connection before a byte of
    the request is sent (where it checks its own whole-certificate fingerprints)."""

    def __init__(self, pin: Pin) -> None:
        super().__init__(pin.value)
        self.pin = pin

    def check(self, transport: asyncio.Transport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if der is None or not self.pin.matches(der):
            host, port, *_ = transport.get_extra_info("peername") or ("?", 0)
            raise aiohttp.ServerFingerprintMismatch(self.pin.value, b"", host, port)


def transport_check(pin: Pin) -> ssl.SSLContext | aiohttp.Fingerprint:
    """What aiohttp checks on connecting: the system's CAs and the host name (``webpki``), or the pin."""
    if pin.kind == "webpki":
        return ssl.create_default_context()
    return PeerPin(pin)


class Api:
    """One HTTPS session to the server; every call maps failures to ``VaultError``."""

    def __init__(self, url: str, pin: bytes | Pin) -> None:
        self.url = url.rstrip("/")
        self.pin = pin if isinstance(pin, Pin) else Pin("cert", pin)
        self._fp = transport_check(self.pin)
        self._session: aiohttp.ClientSession | None = None
        self.token: str | None = None

    async def __aenter__(self) -> Api:
        connect = connect_timeout()  # 15 s; tests may shorten it (MVAULT_TEST_CONNECT_TIMEOUT)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._fp),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=120),
            # aiohttp's default 64 KiB read buffer pauses the socket after every few TLS records;
            # downloads ran at a fraction of what TLS and the decrypting threads can do.
            read_bufsize=READ_BUFSIZE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _check(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        try:
            body = await resp.json(content_type=None)
            code, message, not_before = str(body.get("error")), str(body.get("message")), body.get("not_before")
            server_time = body.get("server_time")
        except (ValueError, AttributeError, aiohttp.ContentTypeError):
            code, message, not_before, server_time = "", f"server answered HTTP {resp.status}", None, None
        raise refusal(resp.status, code, message, not_before, server_time)

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise TransportError("API client used outside its context")
        return self._session

    async def request(self, method: str, path: str, json: Any = None, data: Any = None,
                      length: int | None = None, max_answer: int | None = None) -> bytes:
        """The answer's JSON text (a refusal raised as its ``VaultError``). ``length``: the byte count of a
        streamed ``data``, sent as Content-Length instead of chunked encoding. ``max_answer``: the most bytes the
        answer may hold (more is refused as an ``IntegrityError`` before it is all read: a lying server cannot make
        the client hold an answer of any size)."""
        headers = self._headers()
        if length is not None:
            headers["Content-Length"] = str(length)
        try:
            async with self._session_or_fail().request(
                method, self.url + path, json=json, data=data, headers=headers
            ) as resp:
                await self._check(resp)
                if max_answer is None:
                    return await resp.read()
                return await _read_at_most(resp, max_answer)
        except aiohttp.ServerFingerprintMismatch as e:
            raise ServerMismatch(
                f"the server's certificate does not match the pinned {self.pin.kind} fingerprint: "
                "you may be talking to an impostor (refusing to continue)"
            ) from e
        except aiohttp.ClientConnectorCertificateError as e:
            raise ServerMismatch(f"the server's certificate is not valid for {self.url} ({e.certificate_error}): "
                                 "you may be talking to an impostor (refusing to continue)") from e
        except aiohttp.ClientError as e:
            raise TransportError(f"cannot reach the server at {self.url}: {e}") from e

    # The typed calls: the request is a Struct of ``vault.wire.schemas`` (written as the JSON the server
    # reads), the answer is decoded as ``answer`` (every field declared, types and limits checked, base64
    # bytes decoded) or refused as a ``TransportError``. Without ``answer`` (tests and tools that build
    # bodies by hand, some malformed on purpose) the JSON arrives as Python values, unchecked.

    @overload
    async def get(self, path: str) -> Any: ...

    @overload
    async def get(self, path: str, answer: type[T]) -> T: ...

    async def get(self, path: str, answer: type[Any] | None = None) -> Any:
        return decode(await self.request("GET", path), answer)

    @overload
    async def post(self, path: str, body: Mapping[str, Any]) -> Any: ...

    @overload
    async def post(self, path: str, body: Wire | None, answer: type[T]) -> T: ...

    async def post(self, path: str, body: Wire | Mapping[str, Any] | None, answer: type[Any] | None = None) -> Any:
        # ``to_builtins`` then aiohttp's ``json.dumps``: the same request bytes as the dictionaries it replaced.
        json = msgspec.to_builtins(body) if isinstance(body, Wire) else body
        return decode(await self.request("POST", path, json=json), answer)

    @overload
    async def upload(self, path: str, body: AsyncIterator[Buffer], *, length: int | None = None) -> Any: ...

    @overload
    async def upload(self, path: str, body: AsyncIterator[Buffer], answer: type[T], *,
                     length: int | None = None) -> T: ...

    async def upload(self, path: str, body: AsyncIterator[Buffer], answer: type[Any] | None = None, *,
                     length: int | None = None) -> Any:
        """A streamed request body (the upload keeps its constant memory); the JSON answer as ``answer``.

        With ``length`` (the body's exact byte count) the body goes with a Content-Length: aiohttp's chunked
        encoding joined every piece with its chunk header into a new buffer (a copy of each MiB sent), and
        the server parsed chunk framing. The body must yield exactly ``length`` bytes or raise (aiohttp cuts
        a longer one at ``length``; the upload stream raises when its file changed size, see DocWriter)."""
        return decode(await self.request("POST", path, data=body, length=length), answer)

    async def websocket(self, path: str) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket on the same pinned HTTPS connection, authenticated with the session."""
        try:
            return await self._session_or_fail().ws_connect(self.url + path, headers=self._headers(), heartbeat=20,
                                                            max_msg_size=4 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as e:
            if e.status == 429:  # the handshake's answer body is not available here
                raise errors.QuotaExceeded("the server refused another live connection: you hold as many as "
                                           "the organization's live_followers quota allows (HTTP 429)") from e
            cls = {401: AuthError, 403: PolicyDenied, 404: NotFound}.get(e.status, TransportError)
            raise cls(f"the server refused to deliver live messages (HTTP {e.status})") from e
        except aiohttp.ServerFingerprintMismatch as e:
            raise ServerMismatch("the server's certificate does not match the pinned fingerprint") from e
        except aiohttp.ClientConnectorCertificateError as e:
            raise ServerMismatch(f"the server's certificate is not valid for {self.url}") from e
        except aiohttp.ClientError as e:
            raise TransportError(f"cannot reach the server at {self.url}: {e}") from e

    async def download(self, path: str) -> AsyncIterator[bytes]:
        try:
            async with self._session_or_fail().get(self.url + path, headers=self._headers()) as resp:
                await self._check(resp)
                # Each piece as it was received (iter_chunked would join them into 1 MiB: one more copy of the body)
                async for chunk, _ in resp.content.iter_chunks():
                    yield chunk
        except aiohttp.ServerFingerprintMismatch as e:
            raise ServerMismatch("the server's certificate does not match the pinned fingerprint") from e
        except aiohttp.ClientConnectorCertificateError as e:
            raise ServerMismatch(f"the server's certificate is not valid for {self.url}") from e
        except aiohttp.ClientError as e:
            raise TransportError(f"download interrupted: {e}") from e


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body, refused once it grows past ``limit`` bytes (its Content-Length is not trusted)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise errors.IntegrityError(f"the server's answer holds {resp.content_length} bytes, more than the "
                                    f"{limit} asked for")
    got = bytearray()
    async for chunk in resp.content.iter_any():
        got += chunk
        if len(got) > limit:
            raise errors.IntegrityError(f"the server's answer runs past the {limit} bytes asked for")
    return bytes(got)
