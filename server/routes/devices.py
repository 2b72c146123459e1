"""Adding a device: the link slots a new device and an active one meet in, and a device's own
PUK boxes."""

from __future__ import annotations

from typing import assert_never

from aiohttp import web

from server.access import quotas, session_of
from server.context import CHAINS, SLOTS, now_of
from server.http import read_body
from server.notes import note
from server.store.records import SlotFill, SlotMissing, SlotOpen, SlotRead, SlotsFull
from vault.errors import Conflict, EncodingError, NotFound, QuotaExceeded
from vault.wire import schemas
from vault.wire64 import b64

routes = web.RouteTableDef()


LINK_SLOT_TTL = 600.0


def _slot(request: web.Request) -> str:
    slot = request.match_info["slot"]
    if len(slot) != 32 or any(c not in "0123456789abcdef" for c in slot):
        raise EncodingError("slot must be 32 lowercase hex characters")
    return slot


@routes.post("/api/v1/device-links/{slot}")
async def open_link_slot(request: web.Request) -> web.Response:
    s = session_of(request)
    slot = _slot(request)
    opened = await request.app[SLOTS].open_slot(slot, s.member, now_of(request) + LINK_SLOT_TTL, now_of(request),
                                                 quotas(request.app)["link_slots"])
    match opened:
        case SlotOpen.OPENED:
            return web.json_response({"slot": slot, "expires": now_of(request) + LINK_SLOT_TTL}, status=201)
        case SlotOpen.IN_USE:
            raise Conflict("that device-link code is already in use")
        case SlotsFull(max_open=max_open, retry_after=retry):
            raise QuotaExceeded(f"quota link_slots: at most {max_open} open device-link codes per member; "
                                f"finish one or wait until it expires (in {retry} s)", retry_after=retry)
        case _:
            assert_never(opened)


@routes.post("/api/v1/device-links/{slot}/offer")
async def offer_link_slot(request: web.Request) -> web.Response:
    payload = (await read_body(request, schemas.SlotOffer)).payload
    filled = await request.app[SLOTS].fill_slot(_slot(request), payload, now_of(request))
    match filled:
        case SlotFill.FILLED:
            return web.json_response({"ok": True}, status=201)
        case SlotFill.UNAVAILABLE:
            raise NotFound("unknown, expired or already used device-link code")
        case _:
            assert_never(filled)


@routes.get("/api/v1/device-links/{slot}")
async def read_link_slot(request: web.Request) -> web.Response:
    found = await request.app[SLOTS].read_slot(_slot(request), session_of(request).member, now_of(request))
    match found:
        case SlotRead(payload=payload):
            return web.json_response({"payload": b64(payload) if payload is not None else None})
        case SlotMissing.UNKNOWN:
            raise NotFound("unknown or expired device-link code")
        case _:
            assert_never(found)


@routes.get("/api/v1/puk-boxes")
async def my_puk_boxes(request: web.Request) -> web.Response:
    s = session_of(request)
    note(request, "keys.member")
    rows = await request.app[CHAINS].puk_boxes_for(s.member, s.device)
    return web.json_response({"boxes": [{"puk_gen": g, "box": b64(b)} for g, b in rows]})



def register(app: web.Application) -> None:
    app.router.add_routes(routes)
