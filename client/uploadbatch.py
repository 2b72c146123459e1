"""Small uploads of a batch put gathered into batch requests (``put_versions``; the body is described in
docs/format.md "Batch upload").

Each small file is still its own whole signed envelope, made exactly as for a single upload; only the
request carries many. ``UploadBatcher.put`` queues one envelope and returns its own outcome: the version
the server stored, or the error its refusal stands for (an item refused fails alone). A batch is sent once
``BATCH_ITEMS`` envelopes wait, or a moment after the first one came while fewer requests than
``IN_FLIGHT`` are out (``client.batching.Batcher``); one that fails as a whole (the connection, a 4xx or 5xx)
fails each of its items. The caller checks every acknowledgement as for a single upload (the version id it signed).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from client.api import Api, decode, refusal
from client.batching import Batcher
from vault.errors import IntegrityError
from vault.fileio import Buffer
from vault.wire.schemas import BatchOutcome, BatchStored, Stored

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
        self._batcher: Batcher[bytes, Stored] = Batcher(self._send, items=BATCH_ITEMS, in_flight=IN_FLIGHT,
                                                        gather_s=GATHER_S)

    async def put(self, envelope: bytes) -> Stored:
        """Store one envelope; the server's acknowledgement of it, or its refusal raised."""
        return await self._batcher.submit(envelope)

    async def _send(self, envelopes: list[bytes]) -> list[Stored | BaseException]:
        raw = await self._api.request("POST", self._path, data=batch_body(envelopes))
        return [_stored(o) for o in decode(raw, BatchStored).outcomes]


def _stored(o: BatchOutcome) -> Stored | BaseException:
    if o.status == 201 and o.vid is not None and o.seq is not None:
        return Stored(vid=o.vid, seq=o.seq)
    if o.status < 400:
        return IntegrityError("the server answered a batch upload item with no version")
    return refusal(o.status, o.error, o.message)
