"""Every refusal by the policy is an audit event, the keys the server seals events to, and failing
closed (503 to everything until restarted when an event cannot be recorded), against the real server.

The shared organization is ``aw`` (``tests/helpers/audit_world.py``); the tests read ``audit.db``
directly to count and open leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from typing import Any

import aiohttp
import pytest

from security.events import (
    audit_key_statement,
)
from server.context import AUDIT
from tests.conftest import ServerThread
from tests.helpers.api_world import (
    Actor,
    Newcomer,
    info_of,
    join_body,
    newcomer,
    now,
    org_join,
    session,
    team_create_link,
    team_json,
)
from tests.helpers.audit_world import (
    ATTEST,
    CHALLENGE,
    CHECKPOINT,
    COSIGN,
    KEY,
    LEAVES,
    LOGIN,
    LOW_ORDER,
    AuditWorld,
    _founded,
    checkpoint_of,
    cosignature,
    denied,
    keys_of,
    new_events,
    org_links,
    rejected,
    unb64,
)
from tests.helpers.db import log_size
from tests.helpers.http import Http, b64, login, login_as, raw_exchange, request_head
from vault.auth import sign_login
from vault.chains import org_id_for
from vault.crypto import labels
from vault.links import invite_public, make_link

pytestmark = pytest.mark.usefixtures("world_backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

# == every refusal is an event ======================================================================


async def test_every_refusal_by_the_policy_is_logged(aw: AuditWorld) -> None:
    async with session(aw, aw.bob) as bs, Http(aw.server) as h:
        bob, carol = bs.session.api.token or "", await login(h, aw.carol)
        dave = await login_as(h, aw.pending.member_id, aw.pending.device)
        links = await org_links(h, bob)
        cp = (await checkpoint_of(h, bob)).checkpoint
        other_device = audit_key_statement(cp.org, aw.sec, 1, os.urandom(32), now(aw), aw.carol.member_id,
                                           aw.bob.device.device_id)
        head = links[-1]  # bob (no NCC role) signs an approval of the newest org link: refused, logged
        approval = make_link(chain=head.chain, seq=head.seq + 1, prev=head.hash, time=now(aw), signer=aw.bob.member_id,
                             device=aw.bob.device, type_="org.approve", body={"link": head.hash})
        refusals: list[tuple[Actor | Newcomer, str, str, str, dict[str, Any], str]] = [
            (aw.bob, bob, "POST", "/api/v1/org/links", {"js": {"link": b64(approval.wire)}}, "/api/v1/org/links"),
            (aw.bob, bob, "POST", "/api/v1/teams",
             {"js": team_json(*team_create_link(bs, await bs.chains.view(refresh=True), "bobs-own"))}, "/api/v1/teams"),
            (aw.bob, bob, "POST", COSIGN,
             {"js": {"checkpoint": b64(cp.raw), "sig": b64(cosignature(aw.bob, cp.raw, now(aw))), "time": now(aw)}},
             COSIGN),
            (aw.bob, bob, "GET", f"/api/v1/audit/teams/{aw.drafting}/versions", {},
             "/api/v1/audit/teams/{team}/versions"),
            (aw.bob, bob, "POST", ATTEST,
             {"js": {"kind": "lost", "member": aw.carol.member_id, "device": aw.carol.device.device_id}}, ATTEST),
            (aw.pending, dave, "GET", LEAVES, {}, LEAVES),
            (aw.carol, carol, "POST", KEY, {"js": {"statement": b64(other_device),
                                                   "sig": b64(aw.carol.device.sign(labels.SIG_AUDIT_KEY,
                                                                                   other_device))}}, KEY),
        ]
        size = log_size(aw.server)
        for who, token, method, path, kw, route in refusals:
            event = await denied(h, who, method, path, token=token, **kw)
            assert event.action == "request.denied" and event.res.get("route") == route, event
            assert event.detail.get("method") == method
        assert log_size(aw.server) == size + len(refusals)

        # A request a handler described and that failed is logged as failed, with the error.
        size = log_size(aw.server)
        missing = os.urandom(16).hex()
        await rejected(h, "GET", f"/api/v1/teams/{aw.drafting}/versions/{missing}/body", 404, token=bob)
        (event,) = new_events(aw.server, size, keys_of(aw.bob))
        assert (event.action, event.result, event.detail.get("error")) == ("doc.read", "failed", "not_found")
        assert event.res == {"team": aw.drafting, "vid": missing}


# == keys the server seals events to ================================================================


def _member_with_low_order_puk(name: str, when: int) -> Newcomer:
    """A newcomer whose member chain names a PUK box key nothing can be sealed to."""
    return newcomer(name, when, puk_box_public=LOW_ORDER)


async def test_a_member_key_nothing_can_be_sealed_to_breaks_no_event(server: ServerThread) -> None:
    """A member chain may name a low-order X25519 key as its PUK: its events still get logged (that slot
    is random bytes), so an infiltrator cannot make its own join, or others' requests about it, fail."""
    t = int(server.clock())
    async with Http(server) as h:
        founder = await _founded(h)
        token = await login_as(h, founder.member_id, founder.device)
        info, secret = await info_of(h), os.urandom(32)
        invite = make_link(chain=org_id_for(bytes.fromhex(info["org_root"])), seq=info["org_seq"] + 1,
                           prev=unb64(info["org_head"]), time=t, signer=founder.member_id, device=founder.device,
                           type_="org.invite", body={"invite": invite_public(secret), "role": "member", "note": "",
                                                      "expires": t + 86400})
        status, res = await h.call("POST", "/api/v1/org/links", token=token, js={"link": b64(invite.wire)})
        assert status == 201, res
        mallory = _member_with_low_order_puk("mallory", t)
        size = log_size(server)
        join = org_join(mallory, secret, await info_of(h), t)
        status, res = await h.call("POST", "/api/v1/join", js=join_body(mallory, join))
        assert status == 201, res
        assert log_size(server) == size + 2  # member.create and org.join
        size = log_size(server)
        info = await info_of(h)  # the founder verifies mallory's keys: an event about mallory
        verify = make_link(chain=org_id_for(bytes.fromhex(info["org_root"])), seq=info["org_seq"] + 1,
                           prev=unb64(info["org_head"]), time=t, signer=founder.member_id, device=founder.device,
                           type_="org.verify", body={"member": mallory.member_id, "fingerprint": bytes(32)})
        status, res = await h.call("POST", "/api/v1/org/links", token=token, js={"link": b64(verify.wire)})
        assert status == 201, res
        (event,) = new_events(server, size, keys_of(founder))
        assert (event.action, event.res.get("member")) == ("org.verify", mallory.member_id)
        await login_as(h, mallory.member_id, mallory.device)


# == failing closed =================================================================================


async def raw_call(server: ServerThread, method: str, path: str, *, token: str | None = None,
                   js: Any = None) -> tuple[int, Any]:
    """One request, any status (``Http.call`` refuses to see a 5xx)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    connector = aiohttp.TCPConnector(ssl=aiohttp.Fingerprint(bytes.fromhex(server.fingerprint)))
    async with aiohttp.ClientSession(connector=connector) as cs, \
            cs.request(method, server.url + path, json=js, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_the_server_fails_closed_when_an_event_cannot_be_recorded(
        server: ServerThread, server_errors: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    """A request whose event cannot be made durable gets 503 even though its handler succeeded (here: a
    login, whose token is not handed out), and so does every later request until the server restarts."""
    async with Http(server) as h:
        founder = await _founded(h)
        token = await login_as(h, founder.member_id, founder.device)
        ask = {"member": founder.member_id, "device": founder.device.device_id}
        status, ch = await h.call("POST", CHALLENGE, js=ask)  # a successful challenge records nothing
        assert status == 200, ch
    size = log_size(server)
    store = server.app[AUDIT]

    async def append(leaf: bytes, day: int) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "append", append)
    statement, sig = sign_login(founder.device, origin=server.url, nonce=unb64(ch["nonce"]),
                                member=founder.member_id, time=int(server.clock()))
    status, body = await raw_call(server, "POST", LOGIN, js={"statement": b64(statement), "sig": b64(sig)})
    assert status == 503 and set(body) == {"error", "message"} and body["error"] == "unavailable", body
    assert [(r.getMessage(), r.exc_info[0] if r.exc_info else None) for r in server_errors] == [
        ("could not record an audit event; refusing all requests from now on", sqlite3.OperationalError)]
    monkeypatch.undo()  # even with a working log again: refused until an operator restarts the server
    for method, path, kw in (("GET", "/api/v1/info", {}), ("GET", "/api/health", {}),
                             ("GET", "/api/v1/puk-boxes", {"token": token}), ("POST", CHALLENGE, {"js": ask}),
                             ("GET", CHECKPOINT, {"token": token}), ("GET", "/api/v1/nowhere", {})):
        status, body = await raw_call(server, method, path, **kw)
        assert (status, body["error"]) == (503, "unavailable"), (method, path, body)
    assert log_size(server) == size and len(server_errors) == 1

    fresh = await asyncio.to_thread(server.restart)  # start() runs its own event loop
    try:
        async with Http(fresh) as h:
            status, _ = await h.call("GET", "/api/v1/info")
            assert status == 200
            token = await login_as(h, founder.member_id, founder.device)
            events = new_events(fresh, size, keys_of(founder))
            assert [(e.action, e.result) for e in events] == [("auth.login", "ok")], "nothing of the failure"
            await checkpoint_of(h, token)
    finally:
        fresh.stop()


async def test_a_client_that_hangs_up_mid_request_does_not_stop_the_server(
        server: ServerThread, server_errors: list[logging.LogRecord]) -> None:
    """Anyone may start a login challenge (no session) and close the connection inside its body: nothing
    was to be recorded, so the server must go on serving."""
    body = json.dumps({"member": "a" * 32, "device": "b" * 32}).encode()
    await raw_exchange(server, request_head(server, "POST", CHALLENGE, len(body)), [body[:10]], close=True)
    await asyncio.sleep(0.5)
    status, info = await raw_call(server, "GET", "/api/v1/info")
    assert not server_errors, [r.getMessage() for r in server_errors]
    assert status == 200, info
