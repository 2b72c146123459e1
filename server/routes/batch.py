"""Uploading many small document versions in one request (``put_versions``, issue 16's first sync).

The body is a sequence of items, each a 4-byte big-endian length and a whole document envelope, the bytes
``put_version`` receives (docs/format.md "Batch upload"). The body as a whole must be well formed (else 400
and nothing is stored); then every item is checked exactly as ``put_version`` checks one upload (header, the
team's state, signature, the one judge), its blob written and fsynced, all blobs renamed into place with one
fsync per blob directory, all versions inserted in one group commit (each its own savepoint, on top of its
own head, within the author's quotas), and only then the answer: one outcome per item, in order. An item
refused anywhere fails alone with the status and error code the single upload would have answered, and
its audit event records the refusal; every stored item has its own version, audit event and live notice.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from dataclasses import dataclass
from typing import assert_never

from aiohttp import web

from server import replies
from server.access import STORE_TRIES, check_session_now, judged_again, session_of, team_access
from server.context import BUS, CONFIG, DIRECTORY, DOCUMENTS, Handler, now_of
from server.http import Pace, answer, hex_id
from server.live import frame
from server.notes import Note, note
from server.routes.docs import check_header, check_signed, parse_prelude
from server.store.records import (
    HeadMoved,
    SignerHeads,
    SignerMoved,
    StoredVersion,
    TeamMoved,
    VersionAdded,
    VersionOutcome,
)
from server.usage import Allowance, OverDailyCount, OverStoredBytes
from vault.bodyformat import body_hash
from vault.chains import TeamState
from vault.envelope import MAGIC, MAX_PRELUDE, Record
from vault.errors import Conflict, EncodingError, VaultError
from vault.wire import schemas

MAX_ITEMS = 256
MAX_BATCH = 16 << 20  # bytes of a whole batch body
_LENGTH = struct.Struct(">I")
_SIGNATURE = 64


@dataclass
class _Item:
    event: Note
    record: Record
    body: memoryview
    allowance: Allowance


def split_items(body: bytes) -> list[memoryview]:
    """The items of a batch body (each a whole envelope, not yet parsed); ``EncodingError`` if the framing is
    wrong: an empty body, a length past the end, more than ``MAX_ITEMS`` items."""
    view, items, at = memoryview(body), [], 0
    while at < len(view):
        if at + _LENGTH.size > len(view):
            raise EncodingError("batch upload ends inside an item's length")
        (n,) = _LENGTH.unpack_from(view, at)
        at += _LENGTH.size
        if n > len(view) - at:
            raise EncodingError("batch upload ends inside an item")
        items.append(view[at:at + n])
        at += n
        if len(items) > MAX_ITEMS:
            raise EncodingError(f"a batch upload has at most {MAX_ITEMS} items")
    if not items:
        raise EncodingError("a batch upload needs at least one item")
    return items


def _parse_item(request: web.Request, team: TeamState, raw: memoryview, event: Note) -> _Item:
    """One envelope, checked as ``put_version`` checks an upload (the same functions)."""
    if bytes(raw[:len(MAGIC)]) != MAGIC or len(raw) < len(MAGIC) + _LENGTH.size:
        raise EncodingError("upload does not start with the document magic")
    (n,) = _LENGTH.unpack_from(raw, len(MAGIC))
    start = len(MAGIC) + _LENGTH.size
    if n > MAX_PRELUDE or start + n > len(raw):
        raise EncodingError("document header is too large")
    core, wrapped, meta = parse_prelude(bytes(raw[start:start + n]))
    hex_id(core.doc, "document id")  # the single upload checks the id of its URL (review round 9)
    event.res["doc"] = core.doc
    allowance = check_header(request, team, core.doc, core, event)
    body = raw[start + n:len(raw) - _SIGNATURE]
    if len(raw) - start - n < _SIGNATURE or len(body) != core.body_len:
        raise EncodingError("document body length differs from its header's")
    record = Record.build(core.raw, wrapped, meta, body_hash(core.body, body), bytes(raw[len(raw) - _SIGNATURE:]),
                          core)
    check_signed(request, team, record)
    return _Item(event, record, body, allowance)


def _refuse(event: Note, e: VaultError | web.HTTPException) -> schemas.BatchOutcome:
    code = e.code if isinstance(e, VaultError) else str(e.status)
    message = str(e) if isinstance(e, VaultError) else e.text or e.reason
    event.refused = (e.status, code)
    return schemas.BatchOutcome(status=e.status, error=code, message=message)


async def put_versions(request: web.Request) -> web.Response:
    team = team_access(request, "doc.write", "write documents in")
    app = request.app
    if request.content_length is None:
        raise EncodingError("a batch upload needs a Content-Length")
    if request.content_length > MAX_BATCH:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BATCH, actual_size=request.content_length)
    pace = Pace(request, app[CONFIG].body_timeout, app[CONFIG].upload_min_rate)
    try:
        body = await pace.exactly(request.content_length)
    finally:
        pace.close()
    if body is None:
        raise EncodingError("batch upload ended before its Content-Length")
    raws = split_items(body)
    # The body may have taken long: the writer must still be allowed, and the team is judged as it is now.
    await check_session_now(request, session_of(request))
    team = team_access(request, "doc.write", "write documents in")
    outcomes: list[schemas.BatchOutcome | None] = [None] * len(raws)
    accepted: dict[int, _Item] = {}
    docs: set[str] = set()
    for i, raw in enumerate(raws):
        event = note(request, "doc.write", {"team": team.team_id})
        try:
            item = _parse_item(request, team, raw, event)
            if item.record.core.doc in docs:
                raise Conflict("a batch upload holds one version per document")
            docs.add(item.record.core.doc)
            accepted[i] = item
        except (VaultError, web.HTTPException) as e:
            outcomes[i] = _refuse(event, e)
    await _store(request, team, accepted, outcomes, app[DIRECTORY].signer_heads(session_of(request).member))
    return answer(schemas.BatchStored(outcomes=[o for o in outcomes if o is not None]), 201)


async def _store(request: web.Request, team: TeamState, accepted: dict[int, _Item],
                 outcomes: list[schemas.BatchOutcome | None], signer: SignerHeads) -> None:
    """Every accepted item's blob made durable, then every version inserted in one group commit (``signer``: the
    chains the items were judged on; those a store answers ``SignerMoved`` are judged again and tried again)."""
    if not accepted:
        return
    app = request.app
    storage = app[DOCUMENTS]
    blobs = [(item.record.version_id, item.body) for item in accepted.values()]
    placed = {vid for vid, _ in blobs}
    try:
        await asyncio.get_running_loop().run_in_executor(None, storage.blobs.store_many, blobs)
        results = await _add(request, team, accepted, outcomes, signer)
        for i, outcome in results.items():
            item = accepted[i]
            core, vid = item.record.core, item.record.version_id
            match outcome:
                case VersionAdded():
                    outcomes[i] = schemas.BatchOutcome(status=201, vid=vid, seq=core.seq)
                    placed.discard(vid)
                    app[DIRECTORY].note_signed(core.author, core.device, core.time)
                    app[BUS].publish(team.team_id, frame(schemas.DocFrame(doc=core.doc, seq=core.seq, vid=vid)))
                    item.event.res["vid"] = vid
                    item.event.detail.update({"gen": core.gen, "seq": core.seq})
                    if core.review is not None:  # the signed month of the review-by date (rule document-review)
                        item.event.detail["review"] = core.review
                case HeadMoved():
                    outcomes[i] = _refuse(item.event, replies.head_moved(outcome))
                case TeamMoved():
                    outcomes[i] = _refuse(item.event, replies.team_moved(outcome))
                case SignerMoved():
                    outcomes[i] = _refuse(item.event, replies.signer_moved())
                case OverStoredBytes() | OverDailyCount():
                    outcomes[i] = _refuse(item.event, replies.over_quota(outcome))
                case _:
                    assert_never(outcome)
    finally:
        # A refused version's blob goes, unless an identical upload already made it a real version.
        for vid in placed:
            if await storage.version(team.team_id, vid) is None:
                storage.blobs.delete(vid)


def _judge(request: web.Request, items: list[_Item]) -> None:
    team = team_access(request, "doc.write", "write documents in")
    for item in items:
        check_signed(request, team, item.record)


async def _add(request: web.Request, team: TeamState, accepted: dict[int, _Item],
               outcomes: list[schemas.BatchOutcome | None], signer: SignerHeads) -> dict[int, VersionOutcome]:
    """Each accepted item's store outcome, by index (up to ``STORE_TRIES`` tries for those answered ``SignerMoved``;
    an item the judge refuses then gets its refusal in ``outcomes`` and no outcome here)."""
    storage, now, session = request.app[DOCUMENTS], int(now_of(request)), session_of(request)
    results: dict[int, VersionOutcome] = {}
    pending = dict(accepted)
    # ``stored_judged``'s rule for a group: the items answered ``SignerMoved`` are judged again (after the last try
    # too) and stored again; the judge's refusal refuses all of them
    for _ in range(STORE_TRIES):
        added = await asyncio.gather(*(
            storage.add_version(StoredVersion(item.record.version_id, team.team_id, item.record.core.doc,
                                              item.record.core.seq, item.record.raw, item.record.version_id,
                                              item.record.core.body_len),
                                item.record.core.parent, now, team_seq=item.record.core.team_seq,
                                allowance=item.allowance, signer=signer)
            for item in pending.values()))
        results.update(zip(pending, added, strict=True))
        pending = {i: item for i, item in pending.items() if isinstance(results[i], SignerMoved)}
        if not pending:
            break
        try:
            signer = await judged_again(request, session, functools.partial(_judge, request, list(pending.values())))
        except VaultError as e:
            for i, item in pending.items():
                outcomes[i] = _refuse(item.event, e)
                del results[i]
            break
    return results


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {"put_versions": put_versions}
