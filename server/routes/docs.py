"""Documents: a team's heads, a document's versions, uploading a version (streamed to a blob,
checked, then stored on top of the current head, then announced to the team's document followers:
``server/live.py``) and downloading a version's body."""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
from typing import assert_never

from aiohttp import web

from server import replies
from server.access import (
    check_current_team,
    check_session_now,
    judge_act,
    judged_again,
    quotas,
    session_of,
    stored_judged,
    team_access,
)
from server.context import BUS, CONFIG, DIRECTORY, DOCUMENTS, Handler, now_of
from server.http import Pace, answer, drop_when_stalled, hex_id
from server.live import frame
from server.notes import Note, note
from server.store.blobs import TempBlob
from server.store.records import (
    HeadMoved,
    SignerHeads,
    SignerMoved,
    StoredVersion,
    TeamMoved,
    VersionAdded,
    VersionOutcome,
    moved_head,
)
from server.usage import Allowance, OverDailyCount, OverStoredBytes, over_quota
from vault.acts import Act
from vault.bodyformat import body_hasher
from vault.chains import TeamState
from vault.encoding import Fields, decode
from vault.envelope import MAGIC, MAX_PRELUDE, PUT, Core, Record
from vault.errors import EncodingError, IntegrityError, NotFound, PolicyDenied, QuotaExceeded, Truncated
from vault.fileio import Buffer, Stage
from vault.review import check_review_month
from vault.wire import schemas


def _doc_access(request: web.Request, action: str) -> TeamState:
    return team_access(request, action, f"{action.split('.')[1]} documents in")


def _check_doc_id(doc: str) -> str:
    return hex_id(doc, "document id")


def _version(v: StoredVersion) -> schemas.Version:
    return schemas.Version(vid=v.vid, doc=v.doc, seq=v.seq, record=v.record, body_len=v.body_len)


def parse_prelude(raw: bytes) -> tuple[Core, bytes, bytes]:
    """An upload's prelude (after the magic and its length): the signed core, the wrapped data key, the
    encrypted metadata."""
    pre = Fields(decode(raw), "document prelude", {"core", "wrapped", "meta"})
    core = Core.parse(pre.bytes_("core", max_size=2048))
    return core, pre.bytes_("wrapped", 48), pre.bytes_("meta", max_size=4096 + 16)


def check_header(request: web.Request, team: TeamState, doc: str, core: Core, event: Note) -> Allowance:
    """Everything an upload's header must satisfy before its body counts (the single and the batch upload):
    its team and document, its signer (the uploading device), the team's current state, the clock, the size
    limits; the author's quota allowance (checked again in the store's transaction)."""
    s = session_of(request)
    config = request.app[CONFIG]
    if (core.team, core.doc) != (team.team_id, doc):
        raise IntegrityError("document header names another team or document")
    if core.op != PUT:  # a signed deletion, move, restore or conflict copy: an event of its own
        event.action = f"doc.{core.op}"
    if (core.author, core.device) != (s.member, s.device):
        raise PolicyDenied("document must be signed by the uploading device")
    check_current_team(request, team, core.team_seq, core.gen)
    if abs(core.time - now_of(request)) > config.clock_skew:
        raise EncodingError(f"document time is too far from the server's time {int(now_of(request))}")
    if core.body_len > config.max_upload:
        raise web.HTTPRequestEntityTooLarge(max_size=config.max_upload, actual_size=core.body_len)
    # Quotas before the body arrives (its length is declared); checked again as the version is stored.
    limits = quotas(request.app)
    if core.body_len > limits["version_bytes"]:
        raise QuotaExceeded(f"quota version_bytes: a document version may have at most {limits['version_bytes']} "
                            f"bytes; this one has {core.body_len}", status=413)
    return Allowance(s.member, limits["versions_per_day"], limits["stored_bytes"])


def check_signed(request: web.Request, team: TeamState, record: Record) -> None:
    """The record's signature by the uploading device, and the one judge's word on the act it signs."""
    s, core = session_of(request), record.core
    record.verify(request.app[DIRECTORY].member(s.member).device(s.device).sign_public)
    judge_act(request, Act(core.author, core.device, core.time, "doc.write", team_seq=core.team_seq, gen=core.gen),
              team)


async def list_docs(request: web.Request) -> web.Response:
    team = _doc_access(request, "doc.read")
    note(request, "doc.list", {"team": team.team_id})
    heads = await request.app[DOCUMENTS].heads(team.team_id)
    return answer(schemas.Docs(docs=[_version(v) for v in heads]))


async def doc_versions(request: web.Request) -> web.Response:
    team = _doc_access(request, "doc.read")
    doc = _check_doc_id(request.match_info["doc"])
    note(request, "doc.list", {"team": team.team_id, "doc": doc})
    # A document with no version is an empty list, not a 404: a client asks before it stores a new document (an
    # answer, not a refusal: no refusal event, no share of the member's per-minute refusal count; issue 19).
    versions = await request.app[DOCUMENTS].versions(team.team_id, doc)
    return answer(schemas.Versions(versions=[_version(v) for v in versions]))


async def put_version(request: web.Request) -> web.Response:
    pace = Pace(request, request.app[CONFIG].body_timeout, request.app[CONFIG].upload_min_rate)
    try:
        return await _put_version(request, pace)
    finally:
        pace.close()


async def _put_version(request: web.Request, pace: Pace) -> web.Response:
    team = _doc_access(request, "doc.write")
    doc = _check_doc_id(request.match_info["doc"])
    s = session_of(request)
    app = request.app
    event = note(request, "doc.write", {"team": team.team_id, "doc": doc})
    asked = check_review_month(request.query["review"]) if "review" in request.query else None
    storage, directory = app[DOCUMENTS], app[DIRECTORY]
    if await _read_exactly(pace, len(MAGIC), "header") != MAGIC:
        raise EncodingError("upload does not start with the document magic")
    (n,) = struct.unpack(">I", await _read_exactly(pace, 4, "header"))
    if n > MAX_PRELUDE:
        raise EncodingError("document header is too large")
    core, wrapped, meta = parse_prelude(await _read_exactly(pace, n, "header"))
    # the month of the review-by date in the encrypted metadata, as the author signed it in the header
    # (vault/review.py); the query, if given, must say the same
    if asked is not None and asked != core.review:
        raise EncodingError("review: the query names another month than the version's signed header")
    if core.review is not None:
        event.detail["review"] = core.review
    allowance = check_header(request, team, doc, core, event)
    over = over_quota("version", allowance, await storage.usage(s.member, "version", int(now_of(request)),
                                                                allowance.per_day), core.body_len)
    if over is not None:
        raise replies.over_quota(over)
    existing = await storage.versions(team.team_id, doc)
    moved = moved_head(core.parent, core.seq, existing[-1].vid if existing else None, len(existing))
    if moved is not None:
        raise replies.head_moved(moved)
    blobs = storage.blobs
    temp = blobs.create()
    placed = False
    try:
        body_hash = await _receive_body(pace, temp, core.body_len, core.body)
        sig = await _read_exactly(pace, 64, "signature")
        if await pace.read(1):
            raise EncodingError("upload has bytes after the signature")
        record = Record.build(core.raw, wrapped, meta, body_hash, sig, core)
        # The upload may have taken long: the writer must still be allowed, under the same team state.
        await check_session_now(request, s)
        team = _doc_access(request, "doc.write")
        # The whole check again: an org removal or a revoked device changes neither link nor generation.
        check_current_team(request, team, core.team_seq, core.gen, after_body=True)
        check_signed(request, team, record)
        signer = directory.signer_heads(s.member)  # as judged: the store takes it only while they are still so
        vid = record.version_id
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, blobs.commit, temp, vid)
        placed = True

        async def add(signer: SignerHeads) -> VersionOutcome:
            return await storage.add_version(
                StoredVersion(vid, team.team_id, doc, core.seq, record.raw, vid, core.body_len), core.parent,
                int(now_of(request)), team_seq=core.team_seq, allowance=allowance, signer=signer,
            )

        added = await stored_judged(add, lambda: judged_again(request, s, lambda: check_signed(
            request, _doc_access(request, "doc.write"), record)), signer)
        match added:
            case VersionAdded():
                pass
            case HeadMoved():
                raise replies.head_moved(added)
            case TeamMoved():
                raise replies.team_moved(added)
            case SignerMoved():
                raise replies.signer_moved()
            case OverStoredBytes() | OverDailyCount():
                raise replies.over_quota(added)
            case _:
                assert_never(added)
        directory.note_signed(core.author, core.device, core.time)
        placed = False
        app[BUS].publish(team.team_id, frame(schemas.DocFrame(doc=doc, seq=core.seq, vid=vid)))
        event.res["vid"] = vid
        event.detail.update({"gen": core.gen, "seq": core.seq})
    finally:
        blobs.discard(temp)
        # A refused version's blob goes, unless an identical upload already made it a real version.
        if placed and await storage.version(team.team_id, vid) is None:
            blobs.delete(vid)
    return answer(schemas.Stored(vid=vid, seq=core.seq), 201)


async def _read_exactly(pace: Pace, n: int, what: str) -> bytes:
    got = await pace.exactly(n)
    if got is None:
        raise Truncated(f"upload ended inside the {what}")
    return got


async def _receive_body(pace: Pace, temp: TempBlob, length: int, body: int) -> bytes:
    """Receive the body on the event loop while a worker thread hashes and writes the previous piece (one
    piece in flight, pieces gathered to ~1 MiB, so at most ~2 MiB held; the loop only receives); small bodies
    are hashed and written inline (a thread trip costs more). ``body``: the body format the signed header names
    (its hash: SHA-256 for 1, BLAKE3 for 2)."""
    hasher = body_hasher(body)
    loop = asyncio.get_running_loop()

    def hash_and_write(pieces: list[Buffer]) -> None:
        for piece in pieces:
            hasher.update(piece)
        temp.write(pieces)

    writing: Stage[list[Buffer]] = Stage(hash_and_write, _WRITERS)
    batch: list[Buffer] = []
    batched = 0
    try:
        remaining = length
        while remaining:
            chunk = await pace.piece(remaining)  # as received: no copy
            if not chunk:
                raise Truncated(f"upload ended {remaining} bytes before the end of the document body")
            remaining -= len(chunk)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= 1 << 20 or not remaining:
                if batched < 65536:
                    await writing.drain()
                    hash_and_write(batch)
                else:
                    await writing.push(batch)
                batch, batched = [], 0
        await writing.drain()
        await loop.run_in_executor(None, temp.sync)  # never on the loop: it would stall every request
    finally:
        try:  # cancelled or failed: the worker must be done with the file first (at most one 1 MiB write)
            writing.settle()
        finally:
            temp.close()
    return hasher.digest()


# Upload writes: our own pool, so a cancelled handler can still wait for its write (see above).
_WRITERS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mvault-upload")


async def version_body(request: web.Request) -> web.StreamResponse:
    team = _doc_access(request, "doc.read")
    storage = request.app[DOCUMENTS]
    event = note(request, "doc.read", {"team": team.team_id, "vid": request.match_info["vid"][:64]})
    v = await storage.version(team.team_id, request.match_info["vid"])
    if v is None:
        raise NotFound("no such document version in this team")
    event.res["doc"] = v.doc
    response = storage.blobs.response(v.blob, {"Content-Type": "application/octet-stream"})
    if response is None:
        raise NotFound("document body is missing on the server")
    drop_when_stalled(request, request.app[CONFIG].download_stall_timeout)
    return response


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "list_docs": list_docs, "doc_versions": doc_versions, "put_version": put_version, "version_body": version_body,
}
