"""The audit endpoints (attestations, team versions, failed logins and lockouts, what the disk shows)
against the real server.

Same contract as ``tests/test_audit_api_log.py``: every refused request answers ``{"error",
"message"}`` with a 4xx and leaves the vault's and the audit's stored state as it was. The shared
organization is ``aw`` (``tests/helpers/audit_world.py``). Lockouts move the server clock and get a
server of their own.
"""

from __future__ import annotations

from typing import Any

import pytest

from client.home import Home, Secrets
from security.events import (
    ACTION_RULES,
    MIN_BODY,
    open_leaf,
)
from tests.conftest import Member, Org, ServerThread
from tests.helpers.api_world import (
    Actor,
)
from tests.helpers.audit_world import (
    ATTEST,
    CHALLENGE,
    LEAVES,
    LOGIN,
    AuditWorld,
    _founded,
    _try_open,
    audit_pair_of,
    denied,
    keys_of,
    new_events,
    new_events_any,
    opened,
    org_links,
    rejected,
    unb64,
)
from tests.helpers.db import audit_disk, leaves_from, log_size
from tests.helpers.http import Http, b64, bad_json_cases, login, login_as
from vault.auth import sign_login
from vault.envelope import Record
from vault.errors import DecryptionFailed
from vault.keys import DeviceKeys

pytestmark = pytest.mark.usefixtures("world_backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

# == attestations ===================================================================================


async def test_attestations(aw: AuditWorld) -> None:
    async with Http(aw.server) as h:
        alice, bob, carol = await login(h, aw.alice), await login(h, aw.bob), await login(h, aw.carol)
        links = await org_links(h, bob)
        bobs_invite = next(x for x in links if x.type == "org.invite" and x.signer == aw.bob.member_id)
        alices_grant = next(x for x in links if x.type == "org.role")
        assert alices_grant.signer == aw.alice.member_id
        bob_device = {"member": aw.bob.member_id, "device": aw.bob.device.device_id}

        valid: list[tuple[Actor, str, dict[str, Any], str, dict[str, str], dict[str, Any]]] = [
            (aw.bob, bob, {"kind": "keystore", "time_cost": 3, "memory_kib": 65536, "parallelism": 1},
             "attest.keystore", {}, {"time_cost": 3, "memory_kib": 65536, "parallelism": 1}),
            (aw.bob, bob, {"kind": "lost", **bob_device}, "attest.lost", bob_device, {}),
            (aw.carol, carol, {"kind": "lost", **bob_device}, "attest.lost", bob_device, {}),
            (aw.alice, alice, {"kind": "lost", **bob_device}, "attest.lost", bob_device, {}),
            (aw.bob, bob, {"kind": "export", "count": 12}, "audit.export", {}, {"count": 12}),
        ]
        for actor, token, body, action, res, detail in valid:
            size = log_size(aw.server)
            status, answer = await h.call("POST", ATTEST, token=token, js=body)
            assert status == 201 and answer == {"ok": True}, (body, answer)
            (event,) = new_events(aw.server, size, keys_of(actor))
            assert (event.actor, event.action, event.result) == (actor.member_id, action, "ok"), event
            assert dict(event.res) == res and dict(event.detail) == detail, event
            assert event.rules == ACTION_RULES[action]
            (leaf,) = leaves_from(aw.server, size)
            if leaf.audit_gen:  # the Security Team reads every event, once its audit key is published
                assert open_leaf(leaf, *await audit_pair_of(aw, leaf.audit_gen), (0,)) == event
            if "member" not in res:
                continue
            subject = aw.alice if res["member"] == aw.alice.member_id else aw.bob
            if action == "attest.lost" and subject is not actor:
                # A member under suspicion does not learn who reported their device: only the reporter
                # (and the Security Team) read it.
                with pytest.raises(DecryptionFailed):
                    opened(leaf, keys_of(subject))
            else:  # the member it is about reads it too
                assert opened(leaf, keys_of(subject)) == event

        for label, kw in bad_json_cases({"kind": "export", "count": 1}):
            if label != "count is a number":  # it is one
                await rejected(h, "POST", ATTEST, 400, token=bob, what=label, **kw)
        for body in ({"kind": "nope"}, {"kind": "KEYSTORE"}, {"kind": ""}, {"kind": "x" * 100},
                     {"kind": "keystore"}, {"kind": "keystore", "time_cost": 0, "memory_kib": 1, "parallelism": 1},
                     {"kind": "keystore", "time_cost": "3", "memory_kib": 1, "parallelism": 1},
                     {"kind": "export"}, {"kind": "export", "count": -1}, {"kind": "export", "count": True},
                     {"kind": "export", "count": 2**64}, {"kind": "lost", "member": aw.bob.member_id},
                     # Key verifications and approvals are signed links now (org.verify, org.approve): the
                     # server records neither on a member's word, however well formed the request.
                     {"kind": "verify", "member": aw.alice.member_id, "fingerprint": "1234 5678"},
                     {"kind": "approve", "link": bobs_invite.hash.hex()}):
            size = log_size(aw.server)
            await rejected(h, "POST", ATTEST, 400, token=bob, js=body, what=str(body)[:60])
            (event,) = new_events(aw.server, size, keys_of(aw.bob))
            assert (event.action, event.detail["status"]) == ("request.denied", 400), \
                f"{body}: a malformed attestation reached the log as more than its refusal"

        # Unknown members and devices: not found, logged as refused requests.
        await denied(h, aw.bob, "POST", ATTEST, token=bob, contains="lost", what="bob reports alice's device",
                     js={"kind": "lost", "member": aw.alice.member_id, "device": aw.alice.device.device_id})
        for body in ({"kind": "lost", "member": "f" * 32, "device": aw.bob.device.device_id},
                     {"kind": "lost", "member": "nobody", "device": aw.bob.device.device_id}):
            await denied(h, aw.bob, "POST", ATTEST, token=bob, status=404, code="not_found", js=body,
                         what=str(body)[:60])
        for device in ("f" * 32, aw.alice.device.device_id):  # not a device of bob's
            await rejected(h, "POST", ATTEST, 400, code="bad_chain", token=bob, contains="not an active device",
                           js={"kind": "lost", "member": aw.bob.member_id, "device": device})


# == team versions ==================================================================================


async def test_team_versions_for_the_security_team(aw: AuditWorld) -> None:
    path = f"/api/v1/audit/teams/{aw.drafting}/versions"
    async with Http(aw.server) as h:
        alice, bob, carol = await login(h, aw.alice), await login(h, aw.bob), await login(h, aw.carol)
        for who, token in ((aw.bob, bob), (aw.alice, alice)):
            event = await denied(h, who, "GET", path, token=token, contains="security team")
            assert event.res == {"route": "/api/v1/audit/teams/{team}/versions", "team": aw.drafting}
        for team in ("f" * 32, "nope", aw.drafting[:-1], "x" * 100):  # logged, the team id cut to 64 characters
            event = await denied(h, aw.carol, "GET", f"/api/v1/audit/teams/{team}/versions", token=carol,
                                 status=404, code="not_found")
            assert event.res == {"route": "/api/v1/audit/teams/{team}/versions", "team": team[:64]}, event

        size = log_size(aw.server)
        status, res = await h.call("GET", path, token=carol)
        assert status == 200 and res["versions"], res
        for v in res["versions"]:
            assert set(v) == {"vid", "doc", "seq", "record"}
            rec = Record.parse(unb64(v["record"]))
            assert (rec.core.team, rec.version_id, rec.core.doc, rec.core.seq) == (
                aw.drafting, v["vid"], v["doc"], v["seq"])
            assert rec.core.author == aw.bob.member_id
        (event,) = new_events(aw.server, size, keys_of(aw.carol))
        assert (event.action, event.result, dict(event.res)) == ("doc.list", "ok", {"team": aw.drafting})
        status, heads = await h.call("GET", f"/api/v1/teams/{aw.drafting}/docs", token=bob)
        assert status == 200 and {d["vid"] for d in heads["docs"]} <= {v["vid"] for v in res["versions"]}
        status, res = await h.call("GET", f"/api/v1/audit/teams/{aw.sec}/versions", token=carol)
        assert status == 200 and res == {"versions": []}
        # Records only: carol holds no key of drafting and the server does not show her its documents.
        vid = heads["docs"][0]["vid"]
        # Each probe is logged as a refused request of carol's, naming the team.
        for path, route in ((f"/api/v1/teams/{aw.drafting}/docs", "/api/v1/teams/{team}/docs"),
                            (f"/api/v1/teams/{aw.drafting}/versions/{vid}/body",
                             "/api/v1/teams/{team}/versions/{vid}/body"),
                            (f"/api/v1/teams/{aw.drafting}/boxes", "/api/v1/teams/{team}/boxes")):
            event = await denied(h, aw.carol, "GET", path, token=carol, status=404, code="not_found")
            assert event.res == {"route": route, "team": aw.drafting}, event


# == failed logins ==================================================================================


def _unlock(member: Member, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Secrets]:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(member.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(member.home)
    return home.config().member_id, home.unlock()


async def _bad_login(h: Http, member: str, device: DeviceKeys) -> None:
    """A fresh challenge, then a login whose signature does not verify: 401."""
    status, ch = await h.call("POST", CHALLENGE, js={"member": member, "device": device.device_id})
    assert status == 200, ch
    statement, sig = sign_login(device, origin=h.server.url, nonce=unb64(ch["nonce"]), member=member,
                                time=int(h.server.clock()))
    status, res = await h.call("POST", "/api/v1/auth/login",
                               js={"statement": b64(statement), "sig": b64(bytes([sig[0] ^ 1]) + sig[1:])})
    assert status == 401 and res["error"] == "unauthorized", res


async def test_failed_logins_throttle_the_source_not_the_device(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than ``max_failures`` failed logins from one address within the window: that address gets
    429 ``throttled`` (challenge and login, with Retry-After) for ``lock_minutes``; the device they name
    is not locked (bob logs in from another address). No event per failure: tests/test_unauth.py reads
    the per-minute summary."""
    server = org.server
    bob, bob_secrets = _unlock(org.bob, monkeypatch)
    bob_device = bob_secrets.device
    ask = {"member": bob, "device": bob_device.device_id}
    async with Http(server, source="127.0.0.2") as h, Http(server) as honest:
        # Failures older than the 15-minute window do not count.
        for _ in range(3):
            await _bad_login(h, bob, bob_device)
        server.advance(16 * 60)
        size = log_size(server)
        for _ in range(6):  # the sixth in the window throttles the address
            await _bad_login(h, bob, bob_device)
        # Counted, not logged one by one: at most the summary of the minute of the first three.
        assert log_size(server) <= size + 1
        body = await rejected(h, "POST", CHALLENGE, 429, code="throttled", js=ask)
        assert "failed logins" in body["message"] and int(h.headers["Retry-After"]) > 14 * 60
        # The device is not locked: from another address bob logs in.
        token = await login_as(honest, bob, bob_device)
        status, _ = await honest.call("GET", "/api/v1/directory", token=token)
        assert status == 200
        server.advance(14 * 60)
        await rejected(h, "POST", CHALLENGE, 429, code="throttled", js=ask, what="14 minutes later")
        server.advance(2 * 60)
        await login_as(h, bob, bob_device)


async def test_a_throttled_address_cannot_log_in_with_an_earlier_challenge(server: ServerThread) -> None:
    """Login checks the throttle too: a challenge taken before it does not get around it."""
    async with Http(server) as h:
        founder = await _founded(h)
        ask = {"member": founder.member_id, "device": founder.device.device_id}
        status, ch = await h.call("POST", CHALLENGE, js=ask)
        assert status == 200, ch
        early = unb64(ch["nonce"])
        for _ in range(6):
            await _bad_login(h, founder.member_id, founder.device)
        await rejected(h, "POST", CHALLENGE, 429, code="throttled", js=ask)
        statement, sig = sign_login(founder.device, origin=server.url, nonce=early, member=founder.member_id,
                                    time=int(server.clock()))
        await rejected(h, "POST", LOGIN, 429, code="throttled", contains="failed logins", what="a good signature",
                       js={"statement": b64(statement), "sig": b64(sig)})
        # The throttle ends when it was set to end (15 minutes after the sixth failure).
        server.advance(15 * 60 + 5)
        await login_as(h, founder.member_id, founder.device)


async def test_refused_sessions_and_logins_are_logged(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """A challenge is never refused for its ids (nothing logged); a session token that maps to a member or
    device no longer valid gets 401 and one ``request.denied`` of that member's device. Unknown or
    expired tokens name no one: no event of their own (they are counted in the minute's summary). A
    removed member whose login signature verifies is refused and logged as ``auth.fail``."""
    server = org.server
    bob, bob_secrets = _unlock(org.bob, monkeypatch)
    alice, alice_secrets = _unlock(org.alice, monkeypatch)
    bob_keys = bob_secrets.puks[max(bob_secrets.puks)].box_keypair
    bob_device = bob_secrets.device.device_id
    async with Http(server) as h:
        alice_token = await login_as(h, alice, alice_secrets.device)
        bob_token = await login_as(h, bob, bob_secrets.device)
        status, view = await h.call("GET", "/api/v1/directory", token=alice_token)
        assert status == 200
        drafting = next(tid for tid, t in view["teams"].items() if t["name"] == "drafting")

        size = log_size(server)
        for ids in ({"member": bob, "device": "f" * 32}, {"member": "0" * 64, "device": "f" * 32}):
            status, res = await h.call("POST", CHALLENGE, js=ids)
            assert status == 200 and set(res) == {"nonce", "expires"}, res
        # Tokens that name no one are refused without an event.
        for token in (None, "x" * 43, bob_token[:-1]):
            await rejected(h, "GET", "/api/v1/directory", 401, code="unauthorized", token=token)
        assert log_size(server) == size

        org.alice.ok("remove", "bob")
        # bob's session still maps to him: each use is refused and logged as his, the team named if any.
        size = log_size(server)
        for method, path, route, res, kw in (
            ("GET", "/api/v1/directory", "/api/v1/directory", {}, {}),
            ("GET", f"/api/v1/teams/{drafting}/docs", "/api/v1/teams/{team}/docs", {"team": drafting}, {}),
            ("POST", ATTEST, ATTEST, {}, {"js": {"kind": "export", "count": 1}}),
        ):
            await rejected(h, method, path, 401, code="unauthorized", token=bob_token, contains="removed", **kw)
            (event,) = new_events(server, log_size(server) - 1, bob_keys)
            assert (event.action, event.result, event.actor, event.device) == (
                "request.denied", "denied", bob, bob_device), event
            assert dict(event.res) == {"route": route, **res}, event
            assert dict(event.detail) == {"method": method, "status": 401, "error": "unauthorized"}, event
        assert log_size(server) == size + 3
        # A removed member's login with its own key is refused (told why) and logged as its failure.
        status, ch = await h.call("POST", CHALLENGE, js={"member": bob, "device": bob_device})
        assert status == 200, ch
        size = log_size(server)
        statement, sig = sign_login(bob_secrets.device, origin=server.url, nonce=unb64(ch["nonce"]), member=bob,
                                    time=int(server.clock()))
        await rejected(h, "POST", LOGIN, 401, code="unauthorized", contains="removed",
                       js={"statement": b64(statement), "sig": b64(sig)})
        (event,) = new_events(server, size, bob_keys)
        assert (event.action, event.result, event.device, dict(event.detail)) == (
            "auth.fail", "denied", bob_device, {"error": "unauthorized"})
        assert event.rules == ACTION_RULES["auth.fail"]
        # An expired session names no one any more: no event of its own (the minute's summary of the
        # earlier refusals, which closed meanwhile, is written now, sealed to no member).
        server.advance(2 * 3600)
        size = log_size(server)
        await rejected(h, "GET", "/api/v1/directory", 401, code="unauthorized", token=alice_token)
        assert log_size(server) <= size + 1
        alice_keys = alice_secrets.puks[max(alice_secrets.puks)].box_keypair
        assert not new_events_any(server, size, alice_keys)


# == what the disk shows ============================================================================


async def test_event_bodies_are_sealed_on_disk(aw: AuditWorld) -> None:
    async with Http(aw.server) as h:
        start = log_size(aw.server)
        bob, alice = await login(h, aw.bob), await login(h, aw.alice)
        status, heads = await h.call("GET", f"/api/v1/teams/{aw.drafting}/docs", token=bob)
        assert status == 200 and heads["docs"]
        doc = heads["docs"][0]
        for path in (f"/api/v1/teams/{aw.drafting}/docs/{doc['doc']}",
                     f"/api/v1/teams/{aw.drafting}/versions/{doc['vid']}/body",
                     f"/api/v1/teams/{aw.drafting}/boxes"):
            status, _ = await h.call("GET", path, token=bob)
            assert status == 200
        await h.call("GET", f"/api/v1/audit/teams/{aw.drafting}/versions", token=bob)  # refused: logged
        status, _ = await h.call("GET", "/api/v1/directory", token=alice)
        assert status == 200
        dave = await login_as(h, aw.pending.member_id, aw.pending.device)
        await h.call("GET", LEAVES, token=dave)  # refused: logged
    # Carol's ids are in audit.db in clear on purpose (the published audit key, her cosignatures),
    # as the ids of a device in a lockout would be; nobody else's, and nothing an event says.
    ids = [aw.alice.member_id, aw.bob.member_id, aw.pending.member_id, aw.alice.device.device_id,
           aw.bob.device.device_id, aw.pending.device.device_id, aw.drafting, doc["doc"], doc["vid"]]
    needles = [i.encode() for i in ids] + [bytes.fromhex(i) for i in ids]
    needles += [a.encode() for a in ACTION_RULES] + [b"request.denied", b"forbidden", b"/api/v1/"]
    data = audit_disk(aw.server)
    assert len(data) > 10_000
    leaked = [n for n in needles if n in data]
    assert not leaked, f"audit.db holds in clear: {leaked}"
    # The events are all there: bob's key opens his read of the document, which names it.
    events = new_events_any(aw.server, 0, keys_of(aw.bob))
    assert any(e.action == "doc.read" and e.res.get("vid") == doc["vid"] for e in events)
    # Bodies are padded (at least 768 bytes): a login, a document read and a key fetch look alike on disk.
    sealed = [(leaf, _try_open(leaf, keys_of(aw.bob))) for leaf in leaves_from(aw.server, start)]
    by_action = {e.action: leaf for leaf, e in reversed(sealed) if e is not None and e.actor == aw.bob.member_id}
    common = [by_action[a] for a in ("auth.login", "doc.read", "keys.team")]
    assert len({len(leaf.raw) for leaf in common}) == 1, [len(leaf.raw) for leaf in common]
    assert len({len(leaf.ciphertext) for leaf in common}) == 1
    assert len(common[0].ciphertext) >= MIN_BODY
