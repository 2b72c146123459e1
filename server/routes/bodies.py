"""Downloading many small document versions' bodies in one request (``version_bodies``, issue 16's first sync).

The request names version ids (``BodiesRequest``); the answer is ``application/octet-stream``, one item per id
in the order asked, each a 2-byte big-endian status, a 4-byte big-endian length and that many bytes: the exact
stored body (status 200, the bytes ``version_body`` streams) or an ``Error`` as JSON (docs/format.md "Batch
download"). Every item is looked up, read and audited as ``version_body`` reads one (a ``doc.read`` event per
item, so the ``bulk-access`` rule counts each); one refused (unknown in this team, missing on disk, too large)
fails alone with the status the single read would have answered. As for a single read, the events are recorded
(``server/recorder.py``) before a byte of the answer goes: the bodies are read in a worker thread and the answer
is built whole, at most ``MAX_TOTAL`` bytes of bodies (the client asks for far less: client/downloadbatch.py).
"""

from __future__ import annotations

import asyncio
import struct
import weakref

import msgspec
from aiohttp import web

from server.access import check_session_now, session_of, team_access
from server.context import CONFIG, DOCUMENTS, Handler
from server.http import drop_when_stalled, read_body
from server.metrics import METRICS
from server.notes import Note, note
from server.store.records import StoredVersion
from vault.errors import EncodingError, Throttled
from vault.wire import schemas

MAX_ITEM = 1 << 20  # a body longer than this is fetched alone (``version_body``): 413 here
MAX_TOTAL = 8 << 20  # bytes of bodies in one answer; items past it are refused (413), to be asked for again
HEAD = struct.Struct(">HI")  # an item's status and length
MAX_READING = 8  # batch downloads one member may have in progress at once (a client has at most 2 per team)
_READING: weakref.WeakKeyDictionary[web.Application, dict[str, int]] = weakref.WeakKeyDictionary()  # member -> count


def _refused(event: Note, status: int, code: str, message: str) -> bytes:
    event.refused = (status, code)
    text = msgspec.json.encode(schemas.Error(error=code, message=message))
    return HEAD.pack(status, len(text)) + text


async def version_bodies(request: web.Request) -> web.StreamResponse:
    """At most ``MAX_READING`` at once per member (429): each holds up to ``MAX_TOTAL`` bytes of bodies in memory."""
    reading, member = _READING.setdefault(request.app, {}), session_of(request).member
    if reading.get(member, 0) >= MAX_READING:
        raise Throttled(f"at most {MAX_READING} batch downloads at once per member; wait for one to end", 1)
    reading[member] = reading.get(member, 0) + 1
    try:
        return await _version_bodies(request)
    finally:
        reading[member] -= 1
        if not reading[member]:
            del reading[member]


async def _version_bodies(request: web.Request) -> web.StreamResponse:
    team = team_access(request, "doc.read", "read documents in")
    asked = (await read_body(request, schemas.BodiesRequest)).vids
    if len(set(asked)) != len(asked):  # the client never asks twice; each would be read and held again
        raise EncodingError("a batch download names each version once")
    # The body may have taken long (up to ``body_timeout``): the reader is judged again as things are now.
    await check_session_now(request, session_of(request))
    team = team_access(request, "doc.read", "read documents in")
    storage = request.app[DOCUMENTS]
    found = await storage.versions_by_id(team.team_id, asked)
    # Each item's event and what to send for it: a refusal now, or a version whose body is read below.
    items: list[tuple[Note, bytes | StoredVersion]] = []
    total = 0
    for vid in asked:
        event = note(request, "doc.read", {"team": team.team_id, "vid": vid})
        v = found.get(vid)
        if v is None:
            items.append((event, _refused(event, 404, "not_found", "no such document version in this team")))
            continue
        event.res["doc"] = v.doc
        if v.body_len > MAX_ITEM:
            items.append((event, _refused(event, 413, "413", f"a body over {MAX_ITEM} bytes is fetched alone")))
        elif total + v.body_len > MAX_TOTAL:
            items.append((event, _refused(event, 413, "413", f"past {MAX_TOTAL} bytes in one batch: ask again")))
        else:
            total += v.body_len
            items.append((event, v))
    names = [got.blob for _, got in items if isinstance(got, StoredVersion)]
    contents = iter(await asyncio.get_running_loop().run_in_executor(None, storage.blobs.read_many, names)
                    if names else [])
    out: list[bytes] = []
    metrics = request.app[METRICS]
    for event, got in items:
        if isinstance(got, bytes):
            out.append(got)
            continue
        body = next(contents)
        if body is None:
            out.append(_refused(event, 404, "not_found", "document body is missing on the server"))
        else:
            out += [HEAD.pack(200, len(body)), body]
            metrics.downloads.inc()  # each body counts as a single read's (mvault_downloads)
            metrics.download_bytes.inc(len(body))
    drop_when_stalled(request, request.app[CONFIG].download_stall_timeout)
    return web.Response(body=b"".join(out), content_type="application/octet-stream")


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {"version_bodies": version_bodies}
