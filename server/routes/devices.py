"""Adding a device: the link slots a new device and an active one meet in, and a device's own
PUK boxes."""

from __future__ import annotations

from typing import assert_never

from aiohttp import web

from server.access import quotas, session_of
from server.context import CHAINS, SLOTS, Handler, now_of
from server.http import answer, hex_id, read_body
from server.notes import note
from server.store.records import SlotFill, SlotMissing, SlotOpen, SlotRead, SlotsFull
from vault.errors import Conflict, NotFound, QuotaExceeded
from vault.wire import schemas

LINK_SLOT_TTL = 600.0


def _slot(request: web.Request) -> str:
    return hex_id(request.match_info["slot"], "slot")


async def open_link_slot(request: web.Request) -> web.Response:
    s = session_of(request)
    slot = _slot(request)
    opened = await request.app[SLOTS].open_slot(slot, s.member, now_of(request) + LINK_SLOT_TTL, now_of(request),
                                                 quotas(request.app)["link_slots"])
    match opened:
        case SlotOpen.OPENED:
            return answer(schemas.SlotOpened(slot=slot, expires=now_of(request) + LINK_SLOT_TTL), 201)
        case SlotOpen.IN_USE:
            raise Conflict("that device-link code is already in use")
        case SlotsFull(max_open=max_open, retry_after=retry):
            raise QuotaExceeded(f"quota link_slots: at most {max_open} open device-link codes per member; "
                                f"finish one or wait until it expires (in {retry} s)", retry_after=retry)
        case _:
            assert_never(opened)


async def offer_link_slot(request: web.Request) -> web.Response:
    payload = (await read_body(request, schemas.SlotOffer)).payload
    filled = await request.app[SLOTS].fill_slot(_slot(request), payload, now_of(request))
    match filled:
        case SlotFill.FILLED:
            return answer(schemas.Ok(ok=True), 201)
        case SlotFill.UNAVAILABLE:
            raise NotFound("unknown, expired or already used device-link code")
        case _:
            assert_never(filled)


async def read_link_slot(request: web.Request) -> web.Response:
    found = await request.app[SLOTS].read_slot(_slot(request), session_of(request).member, now_of(request))
    match found:
        case SlotRead(payload=payload):
            return answer(schemas.SlotPayload(payload=payload))
        case SlotMissing.UNKNOWN:
            raise NotFound("unknown or expired device-link code")
        case _:
            assert_never(found)


async def my_puk_boxes(request: web.Request) -> web.Response:
    s = session_of(request)
    note(request, "keys.member")
    rows = await request.app[CHAINS].puk_boxes_for(s.member, s.device)
    return answer(schemas.PukBoxes(boxes=[schemas.PukBox(puk_gen=g, box=b) for g, b in rows]))


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "open_link_slot": open_link_slot, "read_link_slot": read_link_slot, "offer_link_slot": offer_link_slot,
    "puk_boxes": my_puk_boxes,
}
