"""The ``member.spaces`` link on the real server (vault/joinedspaces.py, server/links.py ``relayed_record``): any
logged-in device of its member may post it (a device carries to a coalition space's host the record another device
made), every other link only the device that signed it; its body is checked by the member chain's replay. Refused
requests answer 4xx and store nothing (``refused``)."""

from __future__ import annotations

from typing import Any

from tests.helpers.api_fixtures import api_world as api_world_fixture
from tests.helpers.api_fixtures import joined_newcomer, member_link
from tests.helpers.api_fixtures import w as w_fixture
from tests.helpers.api_world import World, device_body, member_json, now, session
from tests.helpers.http import Http, login_as, refused
from vault.joinedspaces import seal_spaces
from vault.keys import DeviceKeys
from vault.links import sign_device_proof
from vault.teamkeys import box_hash

api_world, w = api_world_fixture, w_fixture


async def test_a_record_is_taken_from_any_device_of_its_member_and_checked(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        n = await joined_newcomer(s, w, h, "spaces-record")
        mid, path = n.member_id, f"/api/v1/members/{n.member_id}/links"
        first = await login_as(h, mid, n.device)
        phone = DeviceKeys.generate()
        t = max(now(w), n.link.time)
        box = n.puk.seal_for_device(mid, phone.box_public)
        add = member_link(n, "device.add", {"device": device_body(phone), "puk_gen": 1,
                                            "puk_boxes": [{"device": phone.device_id, "hash": box_hash(box)}],
                                            "proof": sign_device_proof(phone, mid)}, seq=2, prev=n.link.hash, when=t)
        status, res = await h.call("POST", path, token=first, js=member_json(add, {phone.device_id: box}))
        assert status == 201, res
        second = await login_as(h, mid, phone)
        record = seal_spaces(mid, n.puk, {"0" * 32: "mvault-space:1:x"})

        def spaces(body: dict[str, Any], when: int = t) -> dict[str, Any]:
            return member_json(member_link(n, "member.spaces", body, seq=3, prev=add.hash, when=when), {})

        for label, body, code, contains, token in (
                ("a key generation that is not current", spaces({"puk_gen": 2, "box": record}), 400,
                 "current member key", second),
                ("a field more", spaces({"puk_gen": 1, "box": record, "note": "x"}), 400, "say only that", second),
                ("dated ahead of the clock", spaces({"puk_gen": 1, "box": record}, t + 3600), 400, "ahead", second),
                ("posted by another member", spaces({"puk_gen": 1, "box": record}), 403, "logged-in member",
                 s.session.api.token)):
            await refused(h, "POST", path, code, token=token, js=body, contains=contains, what=label)
        # a device link made by the first device is still refused from the second device's session
        other = DeviceKeys.generate()
        box2 = n.puk.seal_for_device(mid, other.box_public)
        add2 = member_link(n, "device.add", {"device": device_body(other, name="device-3"), "puk_gen": 1,
                                             "puk_boxes": [{"device": other.device_id, "hash": box_hash(box2)}],
                                             "proof": sign_device_proof(other, mid)}, seq=3, prev=add.hash, when=t)
        await refused(h, "POST", path, 403, token=second, js=member_json(add2, {other.device_id: box2}),
                      contains="logged-in device", what="a device link relayed")
        # the record the first device signed, posted by the second device: taken
        status, res = await h.call("POST", path, token=second, js=spaces({"puk_gen": 1, "box": record}))
        assert status == 201 and res["seq"] == 3, res
