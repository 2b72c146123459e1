"""Adding a device: the link slots a new device and an active one meet in, and a device's own
PUK boxes."""

from __future__ import annotations

from aiohttp import web

from server.access import quotas, session_of
from server.context import CHAINS, SLOTS, now_of
from server.http import b64, read_json, unb64
from server.notes import note
from vault.errors import EncodingError

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
    await request.app[SLOTS].open_slot(slot, s.member, now_of(request) + LINK_SLOT_TTL, now_of(request),
                                         quotas(request.app)["link_slots"])
    return web.json_response({"slot": slot, "expires": now_of(request) + LINK_SLOT_TTL}, status=201)


@routes.post("/api/v1/device-links/{slot}/offer")
async def offer_link_slot(request: web.Request) -> web.Response:
    f = await read_json(request, {"payload"})
    payload = unb64(f.raw.get("payload"), "payload", 4096)
    await request.app[SLOTS].fill_slot(_slot(request), payload, now_of(request))
    return web.json_response({"ok": True}, status=201)


@routes.get("/api/v1/device-links/{slot}")
async def read_link_slot(request: web.Request) -> web.Response:
    payload = await request.app[SLOTS].read_slot(_slot(request), session_of(request).member, now_of(request))
    return web.json_response({"payload": b64(payload) if payload is not None else None})


@routes.get("/api/v1/puk-boxes")
async def my_puk_boxes(request: web.Request) -> web.Response:
    s = session_of(request)
    note(request, "keys.member")
    rows = await request.app[CHAINS].puk_boxes_for(s.member, s.device)
    return web.json_response({"boxes": [{"puk_gen": g, "box": b64(b)} for g, b in rows]})



def register(app: web.Application) -> None:
    app.router.add_routes(routes)
