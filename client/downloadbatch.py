"""Small downloads of a folder's pulls gathered into batch requests (``version_bodies``; the answer is described
in docs/format.md "Batch download").

Only the transport is batched: each item is the body of one version whose record the caller checked already
(signature, the author's right at its team state, the chain, the pins) exactly as for a single download, and the
body is verified exactly as one (its length, every frame, the body hash in the signed header, the final tag:
``client.download.receive_small``). ``BodyBatcher.body`` asks for one version's body and returns its bytes or
raises the error its refusal stands for: an item refused or malformed fails alone. A request goes once
``BATCH_ITEMS`` are waiting or ``BATCH_BYTES`` of bodies; fewer only while no request is out and fewer than a
quarter of ``BATCH_ITEMS`` bodies received are not written yet (``client.batching.Batcher``'s ``hold``: a pass's
pulls come back a few at a time as the workers finish their files; docs/performance.md, issue 16 session 22). Up
to ``IN_FLIGHT`` requests are out; one that fails as a whole fails each of its items.
Memory: at most ``IN_FLIGHT`` answers of at most ``BATCH_BYTES`` (plus a few bytes an item) are held.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

from client import download
from client.api import Api, decode, refusal
from client.batching import Batcher
from vault.envelope import Opened, Record
from vault.errors import IntegrityError, VaultError
from vault.fileio import Signature, signature
from vault.wire.schemas import MAX_BODIES, Error

SMALL = 64 * 1024  # bodies under this many bytes are fetched in batches during a folder's pulls
BATCH_ITEMS = 128  # bodies asked for in one request (the server takes at most MAX_BODIES)
BATCH_BYTES = 2 << 20  # bytes of bodies asked for in one request (the server answers at most 16 MiB)
IN_FLIGHT = 2  # batch requests out at once
GATHER_S = 0.003  # how long the first body asked for waits for others when a batch that is not full may go
HEAD = struct.Struct(">HI")  # an item's status and length (server/routes/bodies.py)

assert BATCH_ITEMS <= MAX_BODIES
MAX_REFUSAL = 4096  # the most bytes an item's refusal (an ``Error`` as JSON) may take in an answer


def split_answer(raw: bytes, count: int) -> list[tuple[int, bytes]]:
    """The ``count`` items of a batch download's answer as (status, payload); ``IntegrityError`` if the framing is
    wrong (a length past the end, fewer or more items than asked for)."""
    view, items, at = memoryview(raw), [], 0
    while at < len(view):
        if at + HEAD.size > len(view):
            raise IntegrityError("a batch download's answer ends inside an item's header")
        status, n = HEAD.unpack_from(view, at)
        at += HEAD.size
        if n > len(view) - at:
            raise IntegrityError("a batch download's answer ends inside an item")
        items.append((status, bytes(view[at:at + n])))
        at += n
    if len(items) != count:
        raise IntegrityError(f"the server answered {len(items)} items to a batch download of {count}")
    return items


class BodyBatcher:
    """Bodies of one team's versions, fetched in batches (see the module's docstring)."""

    def __init__(self, api: Api, team_id: str) -> None:
        self._api, self._path = api, f"/api/v1/teams/{team_id}/bodies"
        self._batcher: Batcher[tuple[str, int], bytes] = Batcher(
            self._send, items=BATCH_ITEMS, in_flight=IN_FLIGHT, gather_s=GATHER_S, size=lambda item: item[1],
            max_size=BATCH_BYTES, hold=True)

    async def body(self, vid: str, body_len: int) -> bytes:
        """The stored body of version ``vid`` (``body_len``: its length as its checked header says; an answer of
        another length is refused), or the refusal of it raised. Not yet verified: see ``receive_small``."""
        return await self._batcher.submit((vid, body_len))

    def done(self) -> None:
        """The caller of ``body`` is done with it (written, or failed), whatever ``body`` returned or raised: once per
        call (``Batcher.done``)."""
        self._batcher.done()

    async def _send(self, items: list[tuple[str, int]]) -> list[bytes | BaseException]:
        # each item: its header, and its body (as long as its signed header says) or a refusal (a small JSON Error)
        # each id asked once (the server refuses a repeat): two pulls of one version share its item
        unique = dict(items)
        most = sum(HEAD.size + max(body_len, MAX_REFUSAL) for body_len in unique.values())
        raw = await self._api.request("POST", self._path, json={"vids": list(unique)}, max_answer=most)
        got = dict(zip(unique, split_answer(raw, len(unique)), strict=True))
        return [_body(*got[vid], body_len) for vid, body_len in items]


def _body(status: int, payload: bytes, body_len: int) -> bytes | BaseException:
    if status == 200:
        if len(payload) == body_len:
            return payload
        return IntegrityError("the server sent a document body of another length than its signed header says")
    if status < 400:
        return IntegrityError("the server answered a batch download item with no body")
    try:
        error = decode(payload, Error)
    except VaultError as e:
        return e
    return refusal(status, error.error, error.message)


async def receive_beside(batchers: dict[str, BodyBatcher] | None, api: Api, rec: Record, opened: Opened, out: Path,
                         progress: download.Progress | None, then: Callable[[Path], bool] | None = None,
                         ) -> tuple[Path, bytes, bool | None]:
    """``client.download.receive_beside``; a small body fetched through the batcher of its team in ``batchers`` (made
    there when it is the team's first; None: no batching), and one worker thread trip makes its temporary file,
    verifies, writes and fsyncs it (``download.small_beside``) and, given ``then``, places it: its answer is the
    third value (None: not called, the caller places the file)."""
    if batchers is None or rec.core.body_len >= SMALL:
        return (*await download.receive_beside(api, rec, opened, out, progress), None)
    bodies = batchers.get(rec.core.team)
    if bodies is None:
        bodies = batchers[rec.core.team] = BodyBatcher(api, rec.core.team)
    try:
        body = await bodies.body(rec.version_id, rec.core.body_len)
        got = await download.small_beside(out, opened, body, then)
    finally:
        bodies.done()  # written (or failed): the batcher holds a batch that is not full while enough are not
    if progress is not None:
        progress(len(body))
    return got


async def fetch_beside(batchers: dict[str, BodyBatcher] | None, api: Api, rec: Record, opened: Opened, out: Path,
                       progress: download.Progress | None, force: bool, unsynced: set[Path] | None,
                       expect: Signature, exists: bool, refused: Callable[[], Exception],
                       ) -> tuple[bytes, bool, os.stat_result | None]:
    """The verified body at ``out`` through a temporary file beside it (``receive_beside``): its content digest,
    whether ``out`` was given the new file (False: ``out`` existed, not ``force``d, and holds these very bytes), and
    ``out``'s ``stat`` when the worker call that placed it took it (else None: ask). ``refused()`` is raised when
    ``out`` changed meanwhile: not the ``expect``ed file any more (saved while we downloaded), created while we
    downloaded, or other bytes than these where it ``exists``. With nothing to check against ``out`` first, a small
    body is placed (``download.place``) by the very worker call that writes it, which then takes its ``stat``
    (each a system call the event loop's thread does not make: it waited for the GIL after each, while the workers
    wrote the other pulls)."""
    seen: list[os.stat_result] = []
    then = None if expect is not None or exists and not force else lambda t: _place(t, out, force, unsynced, seen)
    tmp, digest, placed_now = await receive_beside(batchers, api, rec, opened, out, progress, then)
    placed = bool(placed_now)  # True once ``tmp`` has the name ``out`` (``tmp`` is gone then: nothing to remove)
    try:
        if expect is not None and signature(out) != expect:  # saved while we downloaded: not replaced
            raise refused()
        if exists and not force:
            if download.hash_file(out) != digest:
                raise refused()
        elif placed_now is None:
            placed = await download.place_off_loop(tmp, out, force, unsynced)
        if not (placed or exists and not force):
            raise refused()  # created while we downloaded
    finally:
        if not placed:
            tmp.unlink(missing_ok=True)
    return digest, placed, seen[0] if seen else None


def _place(tmp: Path, out: Path, force: bool, unsynced: set[Path] | None, seen: list[os.stat_result]) -> bool:
    """``download.place``, then ``out``'s ``stat`` in ``seen`` if it was placed (in the worker thread)."""
    if placed := download.place(tmp, out, force, unsynced):
        seen.append(os.stat(out))
    return placed
