"""The audit endpoints (checkpoints, leaves, cosignatures, the audit key), operation by operation and
error by error, against the real server.

Same contract as ``tests/test_api_*.py`` (helpers shared through ``tests/helpers/``): every refused
request answers ``{"error", "message"}`` with a 4xx and leaves the vault's stored state as
it was, and here also the audit state (the published audit key, cosignatures, failed
logins and lockouts in ``audit.db``). Every refusal by the policy (a 403 to a logged-in
member, a 404 for what the member may not see, a 401 to a session whose member or device is
no longer valid) adds exactly one event to the log, ``denied``, which the refused member can
open with its own member key: the tests read ``audit.db`` directly to count and open leaves.
If an event cannot be recorded the server fails closed (503 to everything until restarted).

One organization shared by the audit API modules (``aw``, ``tests/helpers/audit_world.py``):
alice founded it (NCC), bob is a writer in team "drafting" with one document, carol holds the
org role ``security`` and is admin of team "sec" (kind security) but holds no key of "drafting",
dave joined on bob's invite and waits for admission. Only the audit key test publishes the audit
key (through the real client, after checking there was none), so the tests do not depend on
their order. Lockouts move the server clock and get a server of their own.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from security.events import (
    AUDIT_KEY_FIELDS,
    Checkpoint,
    Statement,
    audit_key_statement,
    audit_keypair,
    cosign_statement,
    open_leaf,
)
from security.merkle import ProofError, root_of, verify_consistency
from server.store.sqlite.audit import MAX_PAGE
from tests.helpers.api_world import (
    info_of,
    now,
    session,
    team_key,
)
from tests.helpers.audit_world import (
    BAD_NUMBERS,
    CHECKPOINT,
    COSIGN,
    KEY,
    LEAVES,
    LOW_ORDER,
    AuditWorld,
    audit_key_of,
    audited_action,
    checkpoint_of,
    cosignature,
    denied,
    keys_of,
    leaves_page,
    new_events,
    new_events_any,
    opened,
    rejected,
    stored_hashes,
    unb64,
)
from tests.helpers.db import leaves_from, log_size
from tests.helpers.http import Http, b64, bad_json_cases, login, login_as
from vault.chains import org_id_for
from vault.crypto import labels
from vault.encoding import encode
from vault.errors import BadSignature
from vault.keys import DeviceKeys, verify

pytestmark = pytest.mark.usefixtures("world_backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

# -- the shared organization ---------------------------------------------------------------------


# -- audit.db, read as a seized disk would be ------------------------------------------------------------


# == checkpoints ====================================================================================


async def test_checkpoint_is_signed_and_extends_earlier_ones(aw: AuditWorld) -> None:
    async with Http(aw.server) as h:
        bob = await login(h, aw.bob)
        first = await checkpoint_of(h, bob)
        cp = first.checkpoint
        assert cp.org == org_id_for(bytes.fromhex((await info_of(h))["org_root"]))
        assert cp.size == log_size(aw.server) > 10 and abs(cp.time - now(aw)) < 10
        assert cp.root == root_of(stored_hashes(aw.server)) and first.proof == []
        with pytest.raises(BadSignature):
            cp.verify(first.log_key, bytes([first.sig[0] ^ 1]) + first.sig[1:])
        # Nothing happened: the same signed checkpoint (reading it is not an event).
        again = await checkpoint_of(h, bob)
        assert (again.checkpoint.raw, again.sig) == (cp.raw, first.sig) and log_size(aw.server) == cp.size

        await audited_action(h, aw, bob)
        grown = await checkpoint_of(h, bob, since=cp.size)
        new = grown.checkpoint
        assert new.size == cp.size + 1 and grown.log_key == first.log_key
        verify_consistency(cp.size, new.size, cp.root, new.root, grown.proof)
        with pytest.raises(ProofError):
            verify_consistency(cp.size, new.size, os.urandom(32), new.root, grown.proof)
        # From any earlier size (the client's pinned one), the proof verifies against that size's root.
        hashes = stored_hashes(aw.server)[:new.size]
        for old in sorted({1, 2, 3, new.size // 3, new.size // 2, new.size - 1}):
            served = await checkpoint_of(h, bob, since=old)
            assert served.checkpoint.size == new.size
            verify_consistency(old, new.size, root_of(hashes[:old]), new.root, served.proof)
        for since in (0, new.size):
            assert (await checkpoint_of(h, bob, since=since)).proof == []
        for bad in BAD_NUMBERS:
            await rejected(h, "GET", f"{CHECKPOINT}?from={bad}", 400, code="bad_encoding", token=bob, what=bad)
        # Each refusal of a member's request is one event of its own, and nothing more (finding 11 of issue 13).
        assert [e.action for e in new_events(aw.server, new.size, keys_of(aw.bob))] == ["request.denied"] * len(
            BAD_NUMBERS)


async def test_checkpoint_from_beyond_the_log_answers_the_current_one(aw: AuditWorld) -> None:
    """The server answers with what it has (no proof); deciding that this is a rollback is the client's job."""
    async with Http(aw.server) as h:
        bob = await login(h, aw.bob)
        size = (await checkpoint_of(h, bob)).checkpoint.size
        for since in (size + 5, size + 1000):
            status, res = await h.call("GET", f"{CHECKPOINT}?from={since}", token=bob)
            assert status == 200 and res["proof"] == []
            assert Checkpoint.parse(unb64(res["checkpoint"])).size < since


# == leaves =========================================================================================


async def test_leaves_page_through_the_signed_tree(aw: AuditWorld) -> None:
    async with Http(aw.server) as h:
        bob = await login(h, aw.bob)
        cp = (await checkpoint_of(h, bob)).checkpoint
        rows: list[dict[str, Any]] = []
        while len(rows) < cp.size:
            page = await leaves_page(h, bob, len(rows), 7)
            assert 0 < len(page) <= 7
            rows += page
        hashes = [unb64(r["hash"]) for r in rows[:cp.size]]
        assert root_of(hashes) == cp.root
        # Pages are slices of the same log; every read is itself an event (audit.read).
        assert await leaves_page(h, bob, 3, 5) == rows[3:8]
        assert await leaves_page(h, bob, 0, 0) == []
        size = log_size(aw.server)
        assert await leaves_page(h, bob, size + 10) == []
        whole = await leaves_page(h, bob, 0, 10**11)  # all of it, or the first MAX_PAGE
        assert len(whole) == min(MAX_PAGE, log_size(aw.server) - 1)
        common = min(len(whole), len(rows))
        assert whole[:common] == rows[:common]
        # Each read is an event of bob's, which his member key opens.
        reads = [e for e in new_events_any(aw.server, cp.size, keys_of(aw.bob)) if e.action == "audit.read"]
        assert reads and all(e.actor == aw.bob.member_id and e.result == "ok" for e in reads)
        assert {"start": 3, "count": 5} in [dict(e.detail) for e in reads]
        for bad in BAD_NUMBERS:
            await rejected(h, "GET", f"{LEAVES}?start={bad}", 400, code="bad_encoding", token=bob, what=bad)
            await rejected(h, "GET", f"{LEAVES}?start=0&count={bad}", 400, code="bad_encoding", token=bob, what=bad)

        # A member still waiting for admission reads nothing; the refusal is logged.
        dave = await login_as(h, aw.pending.member_id, aw.pending.device)
        for path in (LEAVES, f"{LEAVES}?start=0&count=1", f"{LEAVES}?start=abc"):
            event = await denied(h, aw.pending, "GET", path, token=dave, contains="admission")
            assert event.action == "request.denied" and event.res == {"route": LEAVES}


async def test_leaves_count_is_capped_and_concurrent_events_stay_contiguous(aw: AuditWorld) -> None:
    async with Http(aw.server) as h:
        bob = await login(h, aw.bob)
        start = log_size(aw.server)
        need = max(MAX_PAGE + 50 - start, 200)
        # Many requests at once: their events are group-committed, each exactly once, in one contiguous log.
        results = await asyncio.gather(*(h.call("GET", "/api/v1/puk-boxes", token=bob) for _ in range(need)))
        assert all(status == 200 for status, _ in results)
        cp = (await checkpoint_of(h, bob)).checkpoint
        assert cp.size == start + need
        first = await leaves_page(h, bob, 0, 10**11)
        assert len(first) == MAX_PAGE, "count is capped"
        assert len(await leaves_page(h, bob, 0, MAX_PAGE + 1)) == MAX_PAGE
        rest = await leaves_page(h, bob, MAX_PAGE, 10**11)
        hashes = [unb64(r["hash"]) for r in first + rest][:cp.size]
        assert len(hashes) == cp.size and root_of(hashes) == cp.root
        events = [opened(leaf, keys_of(aw.bob)) for leaf in leaves_from(aw.server, start)[:need]]
        assert [e.action for e in events] == ["keys.member"] * need


# == cosignatures ===================================================================================


async def test_cosign_a_checkpoint(aw: AuditWorld) -> None:
    async with Http(aw.server) as h:
        bob, carol = await login(h, aw.bob), await login(h, aw.carol)
        served = await checkpoint_of(h, carol)
        cp = served.checkpoint
        # The cosigner's own time, within the clock skew of the server's: stored as signed, not replaced.
        t = now(aw) + 400
        sig = cosignature(aw.carol, cp.raw, t)
        valid: dict[str, Any] = {"checkpoint": b64(cp.raw), "sig": b64(sig), "time": t}

        # Only the Security Team cosigns, whatever it signs.
        await denied(h, aw.bob, "POST", COSIGN, token=bob, contains="security team",
                     js={**valid, "sig": b64(cosignature(aw.bob, cp.raw, t))})
        await denied(h, aw.alice, "POST", COSIGN, token=await login(h, aw.alice), js=valid, what="NCC")
        size = log_size(aw.server)
        for label, kw in bad_json_cases(valid, ("checkpoint", "sig"), ("checkpoint",)):
            await rejected(h, "POST", COSIGN, 400, token=carol, what=label, **kw)
        for label, when in (("as a string", str(t)), ("true", True), ("a float", t + 0.5), ("negative", -1),
                            ("null", None), ("huge", 2**63), ("an hour ago", now(aw) - 3600),
                            ("more than the skew ago", now(aw) - 700), ("more than the skew ahead", now(aw) + 700)):
            signed = cosignature(aw.carol, cp.raw, when) if type(when) is int and 0 <= when < 2**40 else sig
            await rejected(h, "POST", COSIGN, 400, token=carol, what=f"time {label}",
                           js={**valid, "time": when, "sig": b64(signed)})
        await rejected(h, "POST", COSIGN, 400, token=carol, contains="time", what="a stale statement",
                       js={**valid, "time": now(aw) - 3600, "sig": b64(cosignature(aw.carol, cp.raw, now(aw) - 3600))})
        bad_sigs = {
            "one bit flipped": bytes([sig[0] ^ 1]) + sig[1:],
            "the bare checkpoint (no statement)": aw.carol.device.sign(labels.SIG_COSIGN, cp.raw),
            "another time than the one sent": cosignature(aw.carol, cp.raw, t - 1),
            "a statement naming bob": cosignature(aw.carol, cp.raw, t, member=aw.bob.member_id),
            "a statement naming bob's device": cosignature(aw.carol, cp.raw, t, device=aw.bob.device.device_id),
            "bob's device, naming carol": cosignature(aw.bob, cp.raw, t, aw.carol.member_id, aw.carol.device.device_id),
            "the log's tag": cosignature(aw.carol, cp.raw, t, tag=labels.SIG_CHECKPOINT),
            "the audit key tag": cosignature(aw.carol, cp.raw, t, tag=labels.SIG_AUDIT_KEY),
            "another checkpoint": cosignature(aw.carol, cp.raw + b"x", t),
            "too short": sig[:32],
            "empty": b"",
        }
        for label, bad in bad_sigs.items():
            await rejected(h, "POST", COSIGN, 400, token=carol, js={**valid, "sig": b64(bad)}, what=label)
        for label, body in (("checkpoint not base64", {**valid, "checkpoint": "%%%"}),
                            ("sig not base64", {**valid, "sig": "not base64!"})):
            await rejected(h, "POST", COSIGN, 400, code="bad_encoding", token=carol, js=body, what=label)
        refusals = new_events(aw.server, size, keys_of(aw.carol))  # one event per refusal, each carol's
        assert {(e.action, e.result, e.actor, e.detail["status"]) for e in refusals} == {
            ("request.denied", "denied", aw.carol.member_id, 400)}, "a malformed cosignature reached the log"

        # A checkpoint this server never issued: not found, and logged as a refused request of carol's.
        for label, other in (
            ("another root", Checkpoint.build(cp.org, cp.size, os.urandom(32), cp.time)),
            ("another time", Checkpoint.build(cp.org, cp.size, cp.root, cp.time + 1)),
            ("another organization", Checkpoint.build("0" * 64, cp.size, cp.root, cp.time)),
            ("a size the log never had", Checkpoint.build(cp.org, cp.size + 1000, cp.root, cp.time)),
        ):
            event = await denied(h, aw.carol, "POST", COSIGN, token=carol, status=404, code="not_found", what=label,
                                 js={**valid, "checkpoint": b64(other.raw), "sig": b64(cosignature(aw.carol,
                                                                                                   other.raw, t))})
            assert event.res == {"route": COSIGN}, event
        assert (await checkpoint_of(h, carol)).witness == served.witness

        size = log_size(aw.server)
        status, res = await h.call("POST", COSIGN, token=carol, js=valid)
        assert status == 201 and res == {"size": cp.size}, res
        (event,) = new_events(aw.server, size, keys_of(aw.carol))
        assert (event.action, event.result, dict(event.detail)) == ("audit.cosign", "ok", {"size": cp.size})

        # Every member now sees the witnessed checkpoint, and that the current log extends it.
        await audited_action(h, aw, bob)
        now_served = await checkpoint_of(h, bob)
        current, witness = now_served.checkpoint, now_served.witness
        assert witness is not None and current.size > cp.size
        assert unb64(witness["checkpoint"]) == cp.raw and unb64(witness["sig"]) == served.sig
        Checkpoint.parse(unb64(witness["checkpoint"])).verify(now_served.log_key, unb64(witness["sig"]))
        (c,) = witness["cosigs"]
        assert (c["member"], c["device"], unb64(c["sig"]), c["time"]) == (
            aw.carol.member_id, aw.carol.device.device_id, sig, t), "the cosignature and its signed time"
        verify(aw.carol.device.sign_public, labels.SIG_COSIGN,
               cosign_statement(cp.raw, c["member"], c["device"], c["time"]), unb64(c["sig"]))
        with pytest.raises(BadSignature):  # the signature covers the time: another one does not verify
            verify(aw.carol.device.sign_public, labels.SIG_COSIGN,
                   cosign_statement(cp.raw, c["member"], c["device"], c["time"] + 1), unb64(c["sig"]))
        verify_consistency(cp.size, current.size, cp.root, current.root, [unb64(x) for x in witness["proof"]])
        # The real client accepts the witness (a current Security Team device, a time in range) and pins it.
        async with session(aw, aw.bob) as s:
            await s.chains.view(refresh=True)
        assert aw.bob.home.pins().log["witness_size"] >= cp.size


# == the audit key ==================================================================================


async def test_audit_key_is_published_by_the_security_team(aw: AuditWorld) -> None:
    async with Http(aw.server) as h:
        bob, carol = await login(h, aw.bob), await login(h, aw.carol)
        assert await audit_key_of(h, bob) is None
        assert await audit_key_of(h, await login_as(h, aw.pending.member_id, aw.pending.device)) is None
        org = org_id_for(bytes.fromhex((await info_of(h))["org_root"]))
        pub = os.urandom(32)

        def statement(team: str = aw.sec, gen: int = 1, member: str = aw.carol.member_id,
                      device: str = aw.carol.device.device_id, org_id: str = org, when: int | None = None) -> bytes:
            return audit_key_statement(org_id, team, gen, pub, now(aw) if when is None else when, member, device)

        def body(raw: bytes, signer: DeviceKeys = aw.carol.device, tag: bytes = labels.SIG_AUDIT_KEY) -> dict[str, str]:
            return {"statement": b64(raw), "sig": b64(signer.sign(tag, raw))}

        await denied(h, aw.bob, "POST", KEY, token=bob, contains="security team", what="bob's own statement",
                     js=body(statement(member=aw.bob.member_id, device=aw.bob.device.device_id), aw.bob.device))
        await denied(h, aw.alice, "POST", KEY, token=await login(h, aw.alice), what="NCC, in the team",
                     js=body(statement(member=aw.alice.member_id, device=aw.alice.device.device_id),
                             aw.alice.device))
        for label, kw in bad_json_cases(body(statement()), ("statement", "sig"), ("statement",)):
            await rejected(h, "POST", KEY, 400, token=carol, what=label, **kw)
        fields = {"org": org, "team": aw.sec, "gen": 1, "pub": pub, "time": now(aw),
                  "member": aw.carol.member_id, "device": aw.carol.device.device_id}
        for label, raw in (("a key nothing can be sealed to", encode({**fields, "pub": LOW_ORDER})),
                           ("an extra field", encode({**fields, "extra": 1})),
                           ("a missing field", encode({k: v for k, v in fields.items() if k != "pub"})),
                           ("a short key", encode({**fields, "pub": pub[:31]})),
                           ("generation 0", statement(gen=0)),
                           ("stale", statement(when=now(aw) - 3600)),
                           ("from the future", statement(when=now(aw) + 3600))):
            await rejected(h, "POST", KEY, 400, token=carol, js=body(raw), what=label)
        for label, raw in (("bob's device", statement(device=aw.bob.device.device_id)),
                           ("bob", statement(member=aw.bob.member_id)),
                           ("another organization", statement(org_id="0" * 64))):
            await denied(h, aw.carol, "POST", KEY, token=carol, js=body(raw), contains="logged-in device", what=label)
        await denied(h, aw.carol, "POST", KEY, token=carol, js=body(statement(team=aw.drafting)),
                     contains="kind 'security'", what="a program team")
        for team in ("f" * 32, "nope"):
            await rejected(h, "POST", KEY, 404, code="not_found", token=carol, js=body(statement(team=team)), what=team)
        for gen in (2, 9):
            await rejected(h, "POST", KEY, 400, token=carol, js=body(statement(gen=gen)), contains="generation",
                           what=f"generation {gen}")
        raw = statement()
        good_sig = aw.carol.device.sign(labels.SIG_AUDIT_KEY, raw)
        for label, sig in (("one bit flipped", bytes([good_sig[0] ^ 1]) + good_sig[1:]),
                           ("bob's device", aw.bob.device.sign(labels.SIG_AUDIT_KEY, raw)),
                           ("the cosignature tag", aw.carol.device.sign(labels.SIG_COSIGN, raw))):
            await rejected(h, "POST", KEY, 400, token=carol, js={"statement": b64(raw), "sig": b64(sig)}, what=label)
        assert await audit_key_of(h, bob) is None

        # The real client publishes the key on carol's next command, whatever it is.
        size = log_size(aw.server)
        result = aw.carol.member.ok("whoami")
        assert "published the audit key" in result.err, result.err
        key = await audit_key_of(h, bob)
        assert key is not None
        raw, sig = unb64(key["statement"]), unb64(key["sig"])
        verify(aw.carol.device.sign_public, labels.SIG_AUDIT_KEY, raw, sig)
        f = Statement.parse(raw, "audit key statement", AUDIT_KEY_FIELDS).fields
        assert (f.str_("org"), f.str_("team"), f.int_("gen"), f.str_("member"), f.str_("device")) == (
            org, aw.sec, 1, aw.carol.member_id, aw.carol.device.device_id)
        async with session(aw, aw.carol) as s:
            audit_pair = audit_keypair((await team_key(s, aw.sec)).seed)
        assert f.bytes_("pub") == audit_pair[0]
        published = [e for e in new_events_any(aw.server, size, keys_of(aw.carol)) if e.action == "audit.key"]
        assert [(e.result, e.res.get("team")) for e in published] == [("ok", aw.sec)]

        # From now on every event opens with the audit key, bob's included; bob's member key still opens his.
        size = log_size(aw.server)
        await audited_action(h, aw, bob)
        (leaf,) = leaves_from(aw.server, size)
        assert leaf.audit_gen == 1
        event = open_leaf(leaf, audit_pair[0], audit_pair[1], (0,))
        assert (event.actor, event.action, event.res.get("team")) == (aw.bob.member_id, "doc.list", aw.drafting)
        assert opened(leaf, keys_of(aw.bob)) == event
        # Refusals leave the published key alone.
        await denied(h, aw.bob, "POST", KEY, token=bob, js=body(statement(), aw.bob.device), what="after publishing")
        await rejected(h, "POST", KEY, 400, token=carol, js=body(statement(gen=2)), what="after publishing")
        assert await audit_key_of(h, carol) == key
