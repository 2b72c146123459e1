"""The HTTP API against the real server: sessions, the chains, member chains and device links.

Every refused request must answer ``{"error": str, "message": str}`` with a 4xx status
(never a 500) and leave the stored state exactly as it was: the rows of ``links``,
``team_boxes``, ``puk_boxes`` and ``versions`` and the files under ``blobs/`` and ``tmp/``.
Most tests share one organization per module (``w``, ``tests/helpers/api_fixtures.py``).
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from server.context import DIRECTORY
from server.openapi import OPENAPI
from server.routes.devices import LINK_SLOT_TTL
from tests.conftest import PASSPHRASE
from tests.helpers.api_fixtures import (
    bad_sig,
    joined_newcomer,
    member_link,
    org_link_of,
)
from tests.helpers.api_world import (
    World,
    device_body,
    info_of,
    join_body,
    member_json,
    newcomer,
    now,
    org_join,
    session,
)
from tests.helpers.db import snapshot
from tests.helpers.http import NOTHING, Http, b64, login, login_as, refuse_bad_json, refused
from vault.auth import sign_login
from vault.encoding import encode
from vault.keys import DeviceKeys, PukKeys, link_slot, open_link_payload, seal_link_payload
from vault.links import Link, invite_public, make_link, parse_link, sign_device_proof
from vault.teamkeys import box_hash

# == sessions and chains =============================================================================


async def test_private_operations_need_a_session(w: World) -> None:
    params = {"{team}": w.drafting, "{doc}": "0" * 32, "{member}": w.alice.member_id, "{vid}": "0" * 32,
              "{slot}": "0" * 32, "{thread}": "0" * 32, "{device}": w.alice.device.device_id}
    async with Http(w.server) as h:
        token = await login(h, w.alice)
        checked = 0
        for template, ops in OPENAPI["paths"].items():
            path = template
            for name, value in params.items():
                path = path.replace(name, value)
            for method, op in ops.items():
                if op.get("security") == []:
                    continue
                for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "},
                                {"Authorization": "Bearer not-a-token"},
                                {"Authorization": f"Bearer {token[:-2]}xx"},
                                {"Authorization": f"Basic {b64(b'alice:' + PASSPHRASE.encode())}"},
                                {"Authorization": token}):
                    await refused(h, method.upper(), path, 401, headers=headers, data=b"{}",
                                  what=f"Authorization {headers.get('Authorization', '(none)')[:12]!r}")
                checked += 1
        assert checked >= 16
        status, _ = await h.call("GET", "/api/v1/directory", token=token)
        assert status == 200


async def test_directory_lists_what_each_member_may_see(w: World) -> None:
    async with Http(w.server) as h:
        seen = {}
        for actor in (w.alice, w.bob, w.carol):
            status, directory = await h.call("GET", "/api/v1/directory", token=await login(h, actor))
            assert status == 200
            names = {m["name"] for m in directory["members"].values()}
            assert {"alice", "bob", "carol"} <= names
            assert directory["org"]["seq"] >= 3
            seen[actor.member.name] = set(directory["teams"])
        assert {w.drafting, w.side} <= seen["alice"]
        assert w.drafting in seen["bob"] and w.side not in seen["bob"]
        assert w.side in seen["carol"] and w.drafting not in seen["carol"]


async def test_org_chain(w: World) -> None:
    async with Http(w.server) as h:
        token = await login(h, w.bob)
        status, chain = await h.call("GET", "/api/v1/chains/org", token=token)
        assert status == 200
        links = [parse_link(base64.b64decode(x)) for x in chain["links"]]
        assert links[0].type == "org.create" and len(links) >= 3
        status, tail = await h.call("GET", "/api/v1/chains/org?after=1", token=token)
        assert status == 200 and tail["links"] == chain["links"][1:]
        for after in ("-1", "abc", "1.5", "", "1e3", "9" * 13):
            await refused(h, "GET", f"/api/v1/chains/org?after={after}", 400, token=token, what=after)


async def test_member_chain(w: World) -> None:
    async with Http(w.server) as h:
        token = await login(h, w.bob)
        status, chain = await h.call("GET", f"/api/v1/chains/member/{w.alice.member_id}", token=token)
        assert status == 200
        first = parse_link(base64.b64decode(chain["links"][0]))
        assert first.type == "member.create" and first.signer == w.alice.member_id
        for unknown in ("nobody", "0" * 32, w.alice.device.device_id):
            await refused(h, "GET", f"/api/v1/chains/member/{unknown}", 404, token=token, what=unknown)


async def test_device_signed(w: World) -> None:
    """What a device of the caller's own member signed here (session 20, fix24rev: asked before a revocation);
    another member's device, or an unknown one: 404 (nothing told)."""
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        status, got = await h.call("GET", f"/api/v1/members/{w.bob.member_id}/devices/{w.bob.device.device_id}/signed",
                                   token=bob)
        assert status == 200 and got["time"] == w.server.app[DIRECTORY].signed_by_device[w.bob.device.device_id] > 0
        for member, device in ((w.alice.member_id, w.alice.device.device_id), (w.bob.member_id, "0" * 32),
                               (w.bob.member_id, w.alice.device.device_id), ("0" * 32, w.bob.device.device_id)):
            await refused(h, "GET", f"/api/v1/members/{member}/devices/{device}/signed", 404, token=bob, what=device)


async def test_team_chain_and_boxes(w: World) -> None:
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        status, chain = await h.call("GET", f"/api/v1/chains/team/{w.drafting}", token=bob)
        assert status == 200
        assert [parse_link(base64.b64decode(x)).type for x in chain["links"]] == ["team.create", "team.add"]
        status, boxes = await h.call("GET", f"/api/v1/teams/{w.drafting}/boxes", token=bob)
        assert status == 200 and [b["gen"] for b in boxes["boxes"]] == [1]
        assert base64.b64decode(boxes["boxes"][0]["box"])
        carol = await login(h, w.carol)
        for token, team in ((bob, w.side), (carol, w.drafting), (bob, "f" * 32), (bob, "nope")):
            await refused(h, "GET", f"/api/v1/chains/team/{team}", 404, token=token, what=team)
            await refused(h, "GET", f"/api/v1/teams/{team}/boxes", 404, token=token, what=team)


async def test_puk_boxes(w: World) -> None:
    async with Http(w.server) as h:
        for actor in (w.alice, w.bob):
            status, res = await h.call("GET", "/api/v1/puk-boxes", token=await login(h, actor))
            assert status == 200 and [b["puk_gen"] for b in res["boxes"]] == [1]
            puk = PukKeys.open_device_box(actor.device, actor.member_id, 1,
                                          base64.b64decode(res["boxes"][0]["box"]))
            assert puk.seed == actor.secrets.puks[1].seed


async def test_org_links(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.chains.view(refresh=True)
        org, t = view.org, max(now(w), view.org.time)

        def link(seq: int | None = None, prev: bytes | None = None, when: int | None = None,
                 type_: str = "org.invite", role: str = "member") -> Link:
            return make_link(chain=org.org_id, seq=org.seq + 1 if seq is None else seq,
                             prev=org.head if prev is None else prev, time=t if when is None else when,
                             signer=s.session.me, device=s.session.device, type_=type_,
                             body={"invite": invite_public(os.urandom(32)), "role": role, "note": "",
                                   "expires": t + 86400})

        good = link()
        path = "/api/v1/org/links"
        await refuse_bad_json(h, path, {"link": b64(good.wire)}, ["link"], token=s.session.api.token)
        for label, wire, contains in (
            ("a sequence ahead", link(seq=org.seq + 2).wire, "sequence"),
            ("wrong previous link", link(prev=b"\x01" * 32).wire, "head"),
            ("bad signature", bad_sig(good), "signature"),
            ("an hour old", link(when=t - 3600).wire, "clock"),
            ("dated before the head", link(when=org.time - 1).wire, ""),
            ("a join", link(type_="org.join").wire, "join"),
            ("role that invites cannot grant", link(role="ncc").wire, "invite"),
            ("a team link", make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=t,
                                      signer=s.session.me, device=s.session.device, type_="team.add",
                                      body={}).wire, ""),
        ):
            await refused(h, "POST", path, 400, token=s.session.api.token, js={"link": b64(wire)}, what=label,
                          contains=contains)
        bob = await login(h, w.bob)
        await refused(h, "POST", path, 403, token=bob, js={"link": b64(good.wire)},
                      contains="logged-in device", what="alice's link from bob's session")

        status, res = await h.call("POST", path, token=s.session.api.token, js={"link": b64(good.wire)})
        assert status == 201 and res == {"seq": org.seq + 1}, res
        await refused(h, "POST", path, 409, token=s.session.api.token, js={"link": b64(good.wire)}, what="replay")
        await refused(h, "POST", path, 409, token=s.session.api.token, js={"link": b64(link().wire)},
                      what="same sequence as the accepted link")


async def test_org_admission_roles_and_invite_limits(w: World) -> None:
    path = "/api/v1/org/links"
    async with session(w, w.alice) as s, Http(w.server) as h:
        bob = await login(h, w.bob)
        t = now(w)

        # A plain member's invitee joins as pending; only NCC admits.
        secret = os.urandom(32)
        invite = await org_link_of(s, w, "org.invite", {"invite": invite_public(secret), "role": "member",
                                                        "note": "", "expires": t + 86400}, signer=w.bob)
        status, res = await h.call("POST", path, token=bob, js={"link": b64(invite.wire)})
        assert status == 201, res
        jt = max(now(w), invite.time)
        n = newcomer(f"pending-{os.urandom(3).hex()}", jt)
        status, res = await h.call("POST", "/api/v1/join", js=join_body(n, org_join(n, secret, await info_of(h), jt)))
        assert status == 201 and res == {"member": n.member_id, "status": "pending"}, res
        admit = {"member": n.member_id}
        await refused(h, "POST", path, 403, token=bob, contains="may not admit", what="a plain member admits",
                      js={"link": b64((await org_link_of(s, w, "org.admit", admit, signer=w.bob)).wire)})
        status, res = await h.call("POST", path, token=s.session.api.token,
                                   js={"link": b64((await org_link_of(s, w, "org.admit", admit)).wire)})
        assert status == 201, res
        assert (await s.chains.view(refresh=True)).org.roles_of(n.member_id) == {"member"}
        await refused(h, "POST", path, 400, token=s.session.api.token, contains="already admitted",
                      what="admitted twice",
                      js={"link": b64((await org_link_of(s, w, "org.admit", admit)).wire)})

        # Roles: only NCC grants; the last NCC stays; no end date in the past.
        def role(member: str, name: str, grant: bool = True, until: int | None = None) -> dict[str, Any]:
            return {"member": member, "role": name, "grant": grant, "until": until}

        for label, token, link, status_, contains in (
            ("a plain member grants itself NCC", bob,
             await org_link_of(s, w, "org.role", role(w.bob.member_id, "ncc"), signer=w.bob), 403, "may not grant"),
            ("the last NCC revoked", s.session.api.token,
             await org_link_of(s, w, "org.role", role(s.session.me, "ncc", grant=False)), 400, "last ncc"),
            ("an end date in the past", s.session.api.token,
             await org_link_of(s, w, "org.role", role(w.carol.member_id, "security", until=t - 1)), 400, "past"),
            ("a role that cannot be granted", s.session.api.token,
             await org_link_of(s, w, "org.role", role(w.carol.member_id, "admin")), 400, "role must be one of"),
            ("a role for a pending or unknown member", s.session.api.token,
             await org_link_of(s, w, "org.role", role("0" * 32, "staff")), 400, "not an admitted member"),
        ):
            await refused(h, "POST", path, status_, token=token, js={"link": b64(link.wire)}, what=label,
                          contains=contains)
        # a compa grant ends n's member rights: it must be dated after n's own acts, and n's join may be in this very
        # second (the server answers 409 ``not_before``, which the client's re-signing follows); wait for the next
        # second rather than date ahead (a link dated ahead would put the next test's links before the chain's head)
        head_time = (await s.chains.view(refresh=True)).org.time
        while now(w) <= head_time:
            await asyncio.sleep(0.05)
        for grant in (role(w.carol.member_id, "security", until=t + 3600), role(n.member_id, "compa")):
            link = await org_link_of(s, w, "org.role", grant)
            status, res = await h.call("POST", path, token=s.session.api.token, js={"link": b64(link.wire)})
            assert status == 201, res
        org = (await s.chains.view(refresh=True)).org
        assert org.roles_of(w.carol.member_id) == {"member", "security"}
        assert org.roles_of(n.member_id) == {"compa"}  # compa replaces the base role
        link = await org_link_of(s, w, "org.role", role(w.carol.member_id, "security", grant=False))
        status, res = await h.call("POST", path, token=s.session.api.token, js={"link": b64(link.wire)})
        assert status == 201, res
        assert (await s.chains.view(refresh=True)).org.roles_of(w.carol.member_id) == {"member"}

        # Invites: valid for at most 30 days, at most 20 open per member.
        def invite_body(days: float) -> dict[str, Any]:
            return {"invite": invite_public(os.urandom(32)), "role": "member", "note": "",
                    "expires": now(w) + int(days * 86400)}

        await refused(h, "POST", path, 400, token=s.session.api.token, contains="30 days", what="a 31-day invite",
                      js={"link": b64((await org_link_of(s, w, "org.invite", invite_body(31))).wire)})
        org = (await s.chains.view(refresh=True)).org
        open_now = [i for i in org.invites.values() if i.by == w.bob.member_id and i.used_by is None
                    and i.expires > now(w)]
        for _ in range(20 - len(open_now)):
            link = await org_link_of(s, w, "org.invite", invite_body(1), signer=w.bob)
            status, res = await h.call("POST", path, token=bob, js={"link": b64(link.wire)})
            assert status == 201, res
        await refused(h, "POST", path, 403, token=bob, contains="20 unused invites", what="a 21st open invite",
                      js={"link": b64((await org_link_of(s, w, "org.invite", invite_body(1), signer=w.bob)).wire)})


# == member chains and device links ==================================================================


async def test_member_links_add_and_revoke_a_device(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        n = await joined_newcomer(s, w, h, f"devices-{os.urandom(3).hex()}")
        mid = n.member_id
        token = await login_as(h, mid, n.device)
        path = f"/api/v1/members/{mid}/links"
        phone, other = DeviceKeys.generate(), DeviceKeys.generate()
        t = max(now(w), n.link.time)
        box = n.puk.seal_for_device(mid, phone.box_public)

        def add(**over: Any) -> tuple[Link, dict[str, bytes]]:
            """device.add of ``phone`` (seq 2 on the newcomer's chain); ``over`` replaces body fields."""
            body: dict[str, Any] = {"device": device_body(phone), "puk_gen": 1,
                                    "puk_boxes": [{"device": phone.device_id, "hash": box_hash(box)}],
                                    "proof": sign_device_proof(phone, mid)}
            link_kw = {k: over.pop(k) for k in ("seq", "prev", "when", "chain") if k in over}
            body.update(over)
            body = {k: v for k, v in body.items() if v is not NOTHING}
            link = member_link(n, "device.add", body, seq=link_kw.get("seq", 2), prev=link_kw.get("prev", n.link.hash),
                               when=link_kw.get("when", t), chain=link_kw.get("chain"))
            return link, {phone.device_id: box}

        good, good_boxes = add()
        valid = member_json(good, good_boxes)
        await refuse_bad_json(h, path, valid, ["link"], token=token)
        alice_view = await s.chains.view(refresh=True)
        alice_chain = alice_view.members[s.session.me]
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("proof signed by another key (substituted device key)",
             member_json(*add(proof=sign_device_proof(other, mid))), "signature"),
            ("proof made for another member", member_json(*add(proof=sign_device_proof(phone, s.session.me))),
             "signature"),
            ("no proof", member_json(*add(proof=NOTHING)), "proof"),
            ("device id that is not its key", member_json(*add(device={**device_body(phone), "id": other.device_id})),
             "does not match its key"),
            ("name of an existing device", member_json(*add(device=device_body(phone, name="device-1"))),
             "already exists"),
            ("unknown device kind", member_json(*add(device=device_body(phone, kind="server"))), "kind"),
            ("PUK box committed for another device",
             member_json(*add(puk_boxes=[{"device": n.device.device_id, "hash": box_hash(box)}])), "exactly the new"),
            ("PUK generation that is not current", member_json(*add(puk_gen=2)), "exactly the new"),
            ("uploaded PUK box not matching its commitment",
             {**valid, "puk_boxes": {phone.device_id: b64(n.puk.seal_for_device(mid, other.box_public))}},
             "commitments"),
            ("no uploaded PUK box", {**valid, "puk_boxes": {}}, "commitments"),
            ("PUK box uploaded for another device", {**valid, "puk_boxes": {other.device_id: b64(box)}},
             "commitments"),
            ("a sequence ahead", member_json(*add(seq=3)), "sequence"),
            ("wrong previous link", member_json(*add(prev=b"\x01" * 32)), "head"),
            ("bad signature", member_json(bad_sig(good), good_boxes), "signature"),
            ("an hour old", member_json(*add(when=t - 3600)), "clock"),
            ("dated before the head", member_json(*add(when=n.link.time - 1)), "dated before"),
            ("a link naming another chain", member_json(*add(chain=s.session.me)), "another chain"),
            ("an organization link", member_json(member_link(n, "org.invite", {}, seq=2, prev=n.link.hash, when=t),
                                                 {}), "unsupported member link type"),
            ("the only device revoked",
             member_json(member_link(n, "device.revoke", {
                 "device": n.device.device_id, "puk": {"gen": 2, "sign_pk": bytes(32), "box_pk": bytes(32)},
                 "puk_boxes": [], "prev": bytes(72)}, seq=2, prev=n.link.hash, when=t), {}), "last device"),
        ]
        for label, body, contains in cases:
            await refused(h, "POST", path, 400, token=token, js=body, what=label, contains=contains)
        # A link on alice's chain, signed by the newcomer, posted to alice's chain.
        on_alice = member_link(n, "device.add", {}, seq=alice_chain.seq + 1, prev=alice_chain.head, when=t,
                               chain=s.session.me)
        await refused(h, "POST", f"/api/v1/members/{s.session.me}/links", 400, token=token, js=member_json(on_alice,
                                                                                                           {}),
                      contains="signed by the member", what="a link on another member's chain")
        await refused(h, "POST", path, 403, token=s.session.api.token, js=valid, contains="logged-in device",
                      what="the newcomer's link from alice's session")
        ghost = "0" * 32
        await refused(h, "POST", f"/api/v1/members/{ghost}/links", 404, token=token,
                      js=member_json(*add(chain=ghost)), contains="unknown member", what="unknown member chain")

        before = snapshot(w.server)
        status, res = await h.call("POST", path, token=token, js=valid)
        assert status == 201 and res == {"seq": 2}, res
        after = snapshot(w.server)
        assert (after["links"], after["puk_boxes"]) == (before["links"] + 1, before["puk_boxes"] + 1)
        await refused(h, "POST", path, 409, token=token, js=valid, contains="moved on", what="replay")
        # The new device logs in and opens its PUK box.
        phone_token = await login_as(h, mid, phone)
        status, res = await h.call("GET", "/api/v1/puk-boxes", token=phone_token)
        assert status == 200 and [b["puk_gen"] for b in res["boxes"]] == [1]
        opened = PukKeys.open_device_box(phone, mid, 1, base64.b64decode(res["boxes"][0]["box"]))
        assert opened.seed == n.puk.seed

        # Revoke the phone: the PUK rolls to generation 2, sealed to the remaining device only.
        new_puk = PukKeys.generate(2)
        new_box = new_puk.seal_for_device(mid, n.device.box_public)
        phone_box2 = new_puk.seal_for_device(mid, phone.box_public)
        t = max(now(w), good.time)

        def revoke(**over: Any) -> tuple[Link, dict[str, bytes]]:
            body: dict[str, Any] = {
                "device": phone.device_id,
                "puk": {"gen": 2, "sign_pk": new_puk.sign_public, "box_pk": new_puk.box_public},
                "puk_boxes": [{"device": n.device.device_id, "hash": box_hash(new_box)}],
                "prev": new_puk.seal_previous(n.puk),
            }
            body.update(over)
            body = {k: v for k, v in body.items() if v is not NOTHING}
            return member_link(n, "device.revoke", body, seq=3, prev=good.hash, when=t), {n.device.device_id: new_box}

        good_revoke, revoke_boxes = revoke()
        for label, body, contains in (
            ("PUK not rolled", member_json(*revoke(puk={"gen": 1, "sign_pk": n.puk.sign_public,
                                                         "box_pk": n.puk.box_public})), "next generation"),
            ("PUK skips a generation", member_json(*revoke(puk={"gen": 3, "sign_pk": new_puk.sign_public,
                                                                 "box_pk": new_puk.box_public})), "next generation"),
            ("new PUK boxed to the revoked device too",
             member_json(revoke(puk_boxes=[{"device": n.device.device_id, "hash": box_hash(new_box)},
                                           {"device": phone.device_id, "hash": box_hash(phone_box2)}])[0],
                         {n.device.device_id: new_box, phone.device_id: phone_box2}), "remaining devices"),
            ("new PUK boxed to nobody", member_json(revoke(puk_boxes=[])[0], {}), "remaining devices"),
            ("no previous PUK for history", member_json(*revoke(prev=NOTHING)), "prev"),
            ("unknown device", member_json(*revoke(device=other.device_id)), "not an active device"),
            ("uploaded box not matching its commitment",
             member_json(good_revoke, {n.device.device_id: new_puk.seal_for_device(mid, n.device.box_public)}),
             "commitments"),
        ):
            await refused(h, "POST", path, 400, token=token, js=body, what=label, contains=contains)
        status, res = await h.call("POST", path, token=token, js=member_json(good_revoke, revoke_boxes))
        assert status == 201 and res == {"seq": 3}, res

        # The revoked device is out: its session, a login (a challenge answers as for any ids), and a re-add
        # are refused.
        await refused(h, "GET", "/api/v1/directory", 401, token=phone_token, contains="no longer active",
                      what="the revoked device's session")
        status, ch = await h.call("POST", "/api/v1/auth/challenge", js={"member": mid, "device": phone.device_id})
        assert status == 200, ch
        statement, sig = sign_login(phone, origin=h.server.url, nonce=base64.b64decode(ch["nonce"]), member=mid,
                                    time=int(h.server.clock()))
        await refused(h, "POST", "/api/v1/auth/login", 401, js={"statement": b64(statement), "sig": b64(sig)},
                      contains="no longer active", what="a login of the revoked device")
        readd = add(seq=4, prev=good_revoke.hash, when=t)
        await refused(h, "POST", path, 400, token=token, js=member_json(*readd), contains="cannot come back",
                      what="the revoked device added again")
        status, res = await h.call("GET", "/api/v1/puk-boxes", token=token)
        assert status == 200 and [b["puk_gen"] for b in res["boxes"]] == [1, 2]
        gen2 = next(base64.b64decode(b["box"]) for b in res["boxes"] if b["puk_gen"] == 2)
        assert PukKeys.open_device_box(n.device, mid, 2, gen2).seed == new_puk.seed
        assert new_puk.open_previous(good_revoke.body.bytes_("prev")).seed == n.puk.seed
        # Every client replays the same member chain.
        ms = (await s.chains.view(refresh=True)).members[mid]
        assert ms.puk_gen == 2 and ms.puk_sign_public == new_puk.sign_public
        assert [d.device_id for d in ms.active_devices()] == [n.device.device_id]
        assert ms.devices[phone.device_id].revoked == t


async def test_device_link_mailbox(w: World) -> None:
    async with Http(w.server) as h:
        alice, bob = await login(h, w.alice), await login(h, w.bob)
        secret = os.urandom(32)
        slot = link_slot(secret)
        status, res = await h.call("POST", f"/api/v1/device-links/{slot}", token=alice, js={})
        assert status == 201 and res["slot"] == slot, res
        assert abs(res["expires"] - (w.server.clock() + LINK_SLOT_TTL)) < 5
        await refused(h, "POST", f"/api/v1/device-links/{slot}", 409, token=bob, js={}, contains="already in use",
                      what="the same code opened twice")
        for bad in ("NOTHEX", "A" * 32, "0" * 31, "0" * 33, "g" * 32):
            await refused(h, "POST", f"/api/v1/device-links/{bad}", 400, token=alice, js={}, what=f"open {bad}")
            await refused(h, "GET", f"/api/v1/device-links/{bad}", 400, token=alice, what=f"read {bad}")
            await refused(h, "POST", f"/api/v1/device-links/{bad}/offer", 400, js={"payload": b64(b"x" * 64)},
                          what=f"offer {bad}")
        status, res = await h.call("GET", f"/api/v1/device-links/{slot}", token=alice)
        assert status == 200 and res == {"payload": None}, res
        await refused(h, "GET", f"/api/v1/device-links/{slot}", 404, token=bob, what="another member's code")
        await refused(h, "GET", f"/api/v1/device-links/{'e' * 32}", 404, token=alice, what="unknown code")
        await refused(h, "POST", f"/api/v1/device-links/{'e' * 32}/offer", 404, js={"payload": b64(b"x" * 64)},
                      what="offer for an unknown code")

        phone = DeviceKeys.generate()
        offer = encode({"name": "phone", "sign_pk": phone.sign_public, "box_pk": phone.box_public,
                        "proof": sign_device_proof(phone, w.alice.member_id)})
        sealed = seal_link_payload(secret, offer)
        offer_path = f"/api/v1/device-links/{slot}/offer"
        await refuse_bad_json(h, offer_path, {"payload": b64(sealed)}, ["payload"], encoded_fields=[])
        await refused(h, "POST", offer_path, 400, js={"payload": b64(os.urandom(4000))}, what="oversized payload")
        status, res = await h.call("POST", offer_path, js={"payload": b64(sealed)})  # public: no session
        assert status == 201 and res == {"ok": True}, res
        await refused(h, "POST", offer_path, 404, js={"payload": b64(seal_link_payload(secret, b"swap"))},
                      contains="already used", what="a second offer")
        status, res = await h.call("GET", f"/api/v1/device-links/{slot}", token=alice)
        assert status == 200 and open_link_payload(secret, base64.b64decode(res["payload"])) == offer
        await refused(h, "GET", f"/api/v1/device-links/{slot}", 404, token=alice, what="read after delivery")

        # A code nobody used in time is gone.
        late = link_slot(os.urandom(32))
        status, _ = await h.call("POST", f"/api/v1/device-links/{late}", token=alice, js={})
        assert status == 201
        w.server.advance(LINK_SLOT_TTL + 60)
        alice = await login(h, w.alice)
        await refused(h, "POST", f"/api/v1/device-links/{late}/offer", 404, js={"payload": b64(sealed)},
                      what="offer after expiry")
        await refused(h, "GET", f"/api/v1/device-links/{late}", 404, token=alice, what="read after expiry")
