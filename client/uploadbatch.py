"""Small uploads of a batch put gathered into batch requests (``put_versions``; the body is described in
docs/format.md "Batch upload").

Each small file is still its own whole signed envelope, made exactly as for a single upload; only the
request carries many. ``UploadBatcher.put`` queues one envelope and returns its own outcome: the version
the server stored, or the error its refusal stands for (an item refused fails alone). A batch is sent once
``BATCH_ITEMS`` envelopes wait, or a moment after the first one came while fewer requests than
``IN_FLIGHT`` are out; one that fails as a whole (the connection, a 4xx or 5xx) fails each of its items.
The caller checks every acknowledgement as for a single upload (the version id it signed).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from client.api import Api, decode, refusal
from vault.errors import IntegrityError
from vault.fileio import Buffer
from vault.wire.schemas import BatchStored, Stored

SMALL = 64 * 1024  # files under this many bytes are uploaded in batches by a batch put
BATCH_ITEMS = 64  # envelopes in one request (the server takes at most 256 and 16 MiB)
IN_FLIGHT = 2  # batch requests out at once: the server stores one while the next is made and sent
GATHER_S = 0.003  # how long the first envelope waits for others before a request goes
_LENGTH = struct.Struct(">I")


async def envelope_of(stream: AsyncIterator[Buffer]) -> bytes:
    """A whole upload body (``client.upload.encrypting_stream`` of a small file) as one ``bytes``."""
    return b"".join([bytes(piece) async for piece in stream])


def size_of(path: Path) -> int:
    """A file's size to choose its way up (a file that cannot be read fails in the upload itself)."""
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return SMALL


def batch_body(envelopes: list[bytes]) -> bytes:
    """The ``put_versions`` body: each envelope after its 4-byte big-endian length."""
    return b"".join(part for e in envelopes for part in (_LENGTH.pack(len(e)), e))


class UploadBatcher:
    """Envelopes for one team, sent in batches (see the module's docstring)."""

    def __init__(self, api: Api, team_id: str) -> None:
        self._api, self._path = api, f"/api/v1/teams/{team_id}/versions"
        self._waiting: list[tuple[bytes, asyncio.Future[Stored]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def put(self, envelope: bytes) -> Stored:
        """Store one envelope; the server's acknowledgement of it, or its refusal raised."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Stored] = loop.create_future()
        self._waiting.append((envelope, done))
        if len(self._waiting) >= BATCH_ITEMS:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(GATHER_S, self._send)
        return await done

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self._sending) >= IN_FLIGHT or not self._waiting:
            return  # the next request goes when one of those out is answered
        items, self._waiting = self._waiting[:BATCH_ITEMS], self._waiting[BATCH_ITEMS:]
        task = asyncio.create_task(self._request(items))
        self._sending.add(task)
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._waiting:
            self._send()

    async def _request(self, items: list[tuple[bytes, asyncio.Future[Stored]]]) -> None:
        try:
            raw = await self._api.request("POST", self._path, data=batch_body([e for e, _ in items]))
            outcomes = decode(raw, BatchStored).outcomes
            if len(outcomes) != len(items):
                raise IntegrityError(f"the server answered {len(outcomes)} outcomes to a batch of {len(items)} uploads")
        except BaseException as e:
            for _, done in items:
                if not done.done():
                    done.set_exception(e)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        for (_, done), o in zip(items, outcomes, strict=True):
            if done.done():
                continue
            if o.status == 201 and o.vid is not None and o.seq is not None:
                done.set_result(Stored(vid=o.vid, seq=o.seq))
            elif o.status < 400:
                done.set_exception(IntegrityError("the server answered a batch upload item with no version"))
            else:
                done.set_exception(refusal(o.status, o.error, o.message))
