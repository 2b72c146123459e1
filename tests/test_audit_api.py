"""The audit endpoints, operation by operation and error by error, against the real server.

Same contract as ``tests/test_api.py`` (helpers shared through ``tests/helpers/``): every refused
request answers ``{"error", "message"}`` with a 4xx and leaves the vault's stored state as
it was, and here also the audit state (the published audit key, cosignatures, failed
logins and lockouts in ``audit.db``). Every refusal by the policy (a 403 to a logged-in
member, a 404 for what the member may not see, a 401 to a session whose member or device is
no longer valid) adds exactly one event to the log, ``denied``, which the refused member can
open with its own member key: the tests read ``audit.db`` directly to count and open leaves.
If an event cannot be recorded the server fails closed (503 to everything until restarted).

One organization per module (``world``): alice founded it (NCC), bob is a writer in team
"drafting" with one document, carol holds the org role ``security`` and is admin of team
"sec" (kind security) but holds no key of "drafting", dave joined on bob's invite and waits
for admission. Only the audit key test publishes the audit key (through the real client,
after checking there was none), so the tests do not depend on their order. Lockouts move
the server clock and get a server of their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from client.home import Home, Secrets
from security.events import (
    ACTION_RULES,
    AUDIT_KEY_FIELDS,
    MIN_BODY,
    Checkpoint,
    Event,
    Leaf,
    Statement,
    audit_key_statement,
    audit_keypair,
    cosign_statement,
    open_leaf,
)
from security.merkle import ProofError, leaf_hash, root_of, verify_consistency
from server.context import AUDIT
from server.store.sqlite.audit import MAX_PAGE
from tests.conftest import PASSPHRASE, Member, Org, ServerThread
from tests.helpers.api_world import (
    Actor,
    Newcomer,
    World,
    found_body,
    info_of,
    join_body,
    new_invite,
    newcomer,
    now,
    org_create,
    org_join,
    session,
    team_create_link,
    team_json,
    team_key,
)
from tests.helpers.db import audit_db, leaves_from, log_size
from tests.helpers.http import Http, b64, bad_json_cases, login, login_as, raw_exchange, refused, request_head
from vault.auth import sign_login
from vault.chains import org_id_for
from vault.crypto import labels
from vault.encoding import encode
from vault.envelope import Record
from vault.errors import BadSignature, DecryptionFailed
from vault.invite import InviteCode
from vault.keys import DeviceKeys, verify
from vault.links import Link, invite_public, make_link, parse_link

CHECKPOINT = "/api/v1/audit/checkpoint"
LEAVES = "/api/v1/audit/leaves"
COSIGN = "/api/v1/audit/cosign"
KEY = "/api/v1/audit/key"
ATTEST = "/api/v1/audit/attest"
CHALLENGE = "/api/v1/auth/challenge"
LOGIN = "/api/v1/auth/login"
BAD_NUMBERS = ("-1", "abc", "1.5", "", "1e3", "0x10", "9" * 13, "%201")
LOW_ORDER = bytes(32)  # an X25519 public key nothing can be sealed to (libsodium refuses it)


# -- the shared organization ---------------------------------------------------------------------


@dataclass
class AuditWorld(World):
    sec: str = ""  # team of kind security: carol (admin) and alice, who created it
    dave: Newcomer | None = None  # joined on bob's invite, not admitted

    @property
    def pending(self) -> Newcomer:
        assert self.dave is not None
        return self.dave


async def _setup(w: AuditWorld) -> None:
    async with session(w, w.alice) as s:
        view = await s.chains.view(refresh=True)
        w.drafting, w.sec = view.team_by_name("drafting").team_id, view.team_by_name("sec").team_id
    async with session(w, w.bob) as s, Http(w.server) as h:
        secret = await new_invite(s, w)  # an invite by a plain member: the newcomer waits for admission
        dave = newcomer("dave", now(w))
        status, res = await h.call("POST", "/api/v1/join",
                                   js=join_body(dave, org_join(dave, secret, await info_of(h), now(w))))
        assert status == 201 and res["status"] == "pending", res
        w.dave = dave


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditWorld]:
    root = tmp_path_factory.mktemp("audit-api")
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    server = ServerThread(root / "server-data").start()
    try:
        members = {n: Member(root / f"home-{n}", n, pf) for n in ("alice", "bob", "carol")}
        alice = members["alice"]
        assert server.invite is not None
        alice.ok("join", server.invite, "--name", "alice")
        for name in ("bob", "carol"):
            members[name].ok("join", alice.json("invite")["invite"], "--name", name)
        alice.ok("team", "create", "drafting", "--kind", "program")
        alice.ok("team", "add", "drafting", "bob", "--role", "writer")
        alice.ok("role", "grant", "carol", "security")
        alice.ok("team", "create", "sec", "--kind", "security")
        alice.ok("team", "add", "sec", "carol", "--role", "admin")
        (root / "plan.md").write_text("strategy draft")
        members["bob"].ok("put", "drafting", str(root / "plan.md"))
        actors = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MVAULT_PASSPHRASE_FILE", str(pf))
            mp.delenv("MVAULT_SESSION", raising=False)
            for name, m in members.items():
                home = Home(m.home)
                actors[name] = Actor(m, home, home.unlock(), home.config().member_id)
        w = AuditWorld(server, actors["alice"], actors["bob"], actors["carol"])
        asyncio.run(_setup(w))
        yield w
    finally:
        server.stop()


@pytest.fixture
def aw(world: AuditWorld) -> Iterator[AuditWorld]:
    offset = world.server.offset
    yield world
    world.server.offset = offset


# -- audit.db, read as a seized disk would be ------------------------------------------------------------


def stored_hashes(server: ServerThread) -> list[bytes]:
    con = audit_db(server)
    try:
        return [bytes(r[0]) for r in con.execute("SELECT hash FROM events ORDER BY idx")]
    finally:
        con.close()


def audit_state(server: ServerThread) -> dict[str, Any]:
    """What a refused request must not change in audit.db (the events themselves aside)."""
    con = audit_db(server)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall())
                for t in ("meta", "cosigs")}
    finally:
        con.close()


Keys = tuple[bytes, bytes]


def keys_of(who: Actor | Newcomer) -> Keys:
    """The member's current member-key (PUK) box pair: it opens the events about that member."""
    if isinstance(who, Newcomer):
        return who.puk.box_keypair
    return who.secrets.puks[max(who.secrets.puks)].box_keypair


def opened(leaf: Leaf, keys: Keys) -> Event:
    return open_leaf(leaf, keys[0], keys[1], (1, 2))


def new_events(server: ServerThread, start: int, keys: Keys) -> list[Event]:
    """Every event from ``start``: each must open with these member keys."""
    return [opened(leaf, keys) for leaf in leaves_from(server, start)]


def _try_open(leaf: Leaf, keys: Keys) -> Event | None:
    try:
        return opened(leaf, keys)
    except DecryptionFailed:  # an event about someone else
        return None


def new_events_any(server: ServerThread, start: int, keys: Keys) -> list[Event]:
    """The events from ``start`` that these member keys open (others' are skipped)."""
    return [e for e in (_try_open(leaf, keys) for leaf in leaves_from(server, start)) if e is not None]


async def rejected(h: Http, method: str, path: str, status: int, *, code: str = "", **kw: Any) -> dict[str, str]:
    """``refused`` (vault state unchanged) and the audit state unchanged too."""
    before = audit_state(h.server)
    body = await refused(h, method, path, status, **kw)
    if code:
        assert body["error"] == code, body
    assert audit_state(h.server) == before, f"{method} {path} changed the audit state"
    return body


async def denied(h: Http, who: Actor | Newcomer, method: str, path: str, *, token: str, contains: str = "",
                 what: str = "", status: int = 403, code: str = "forbidden", **kw: Any) -> Event:
    """A refusal by the policy (403), or a probe of something the member may not see (404): nothing
    changes but the log, which gains exactly one ``denied`` event, attributed to the member's device."""
    size = log_size(h.server)
    await rejected(h, method, path, status, code=code, token=token, contains=contains, what=what, **kw)
    events = new_events(h.server, size, keys_of(who))
    assert len(events) == 1, f"{method} {path} ({what}): {len(events)} events for one refusal"
    (event,) = events
    assert event.result == "denied" and (event.actor, event.device) == (who.member_id, who.device.device_id), event
    assert event.detail.get("error") == code, event
    assert event.action == "request.denied" or event.action in ACTION_RULES, event
    if event.action == "request.denied":  # no handler described it: what was asked and what was answered
        assert dict(event.detail) == {"method": method, "status": status, "error": code}, event
        assert event.rules == ACTION_RULES["request.denied"]
    return event


@dataclass
class Served:
    checkpoint: Checkpoint
    sig: bytes
    proof: list[bytes]
    witness: dict[str, Any] | None
    log_key: bytes


def unb64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


async def checkpoint_of(h: Http, token: str, since: int | None = None) -> Served:
    path = CHECKPOINT if since is None else f"{CHECKPOINT}?from={since}"
    status, res = await h.call("GET", path, token=token)
    assert status == 200, res
    assert set(res) == {"checkpoint", "sig", "proof", "witness", "log_key"}, res
    served = Served(Checkpoint.parse(unb64(res["checkpoint"])), unb64(res["sig"]),
                    [unb64(x) for x in res["proof"]], res["witness"], unb64(res["log_key"]))
    served.checkpoint.verify(served.log_key, served.sig)
    return served


async def audited_action(h: Http, w: AuditWorld, token: str) -> None:
    status, _ = await h.call("GET", f"/api/v1/teams/{w.drafting}/docs", token=token)
    assert status == 200


async def org_links(h: Http, token: str) -> list[Link]:
    status, chain = await h.call("GET", "/api/v1/chains/org", token=token)
    assert status == 200
    return [parse_link(unb64(x)) for x in chain["links"]]


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


async def leaves_page(h: Http, token: str, start: int, count: int | None = None) -> list[dict[str, Any]]:
    path = f"{LEAVES}?start={start}" + ("" if count is None else f"&count={count}")
    status, res = await h.call("GET", path, token=token)
    assert status == 200, res
    rows = res["leaves"]
    assert [r["index"] for r in rows] == list(range(start, start + len(rows))), "indices are contiguous"
    for r in rows:
        assert set(r) == {"index", "hash", "leaf"}
        assert leaf_hash(unb64(r["leaf"])) == unb64(r["hash"]), f"leaf {r['index']} does not match its hash"
        Leaf.parse(unb64(r["leaf"]))
    return list(rows)


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


def cosignature(signer: Actor, raw: bytes, when: int, member: str | None = None, device: str | None = None,
                tag: bytes = labels.SIG_COSIGN) -> bytes:
    """``signer``'s device signs the cosignature statement: the checkpoint, who (by default the
    signer) and when."""
    statement = cosign_statement(raw, member or signer.member_id, device or signer.device.device_id, when)
    return signer.device.sign(tag, statement)


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


async def audit_key_of(h: Http, token: str) -> dict[str, str] | None:
    status, res = await h.call("GET", KEY, token=token)
    assert status == 200 and set(res) == {"key"}, res
    return res["key"]  # type: ignore[no-any-return]


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


# == attestations ===================================================================================


async def audit_pair_of(w: AuditWorld, gen: int) -> Keys:
    """The Security Team's audit key pair of generation ``gen`` (carol holds the team's key)."""
    async with session(w, w.carol) as s:
        team = (await s.chains.view(refresh=True)).teams[w.sec]
        return audit_keypair((await s.keys.team_key(team, gen)).seed)


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
            (aw.bob, bob, {"kind": "verify", "member": aw.alice.member_id, "fingerprint": "1234 5678"},
             "attest.verify", {"member": aw.alice.member_id}, {"fingerprint": "1234 5678"}),
            (aw.alice, alice, {"kind": "approve", "link": bobs_invite.hash.hex()},
             "attest.approve", {"link": bobs_invite.hash.hex(), "chain": ""}, {}),
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
                     {"kind": "export", "count": 2**64}, {"kind": "verify", "member": aw.alice.member_id},
                     {"kind": "approve"}, {"kind": "lost", "member": aw.bob.member_id},
                     {"kind": "verify", "member": aw.alice.member_id, "fingerprint": "f" * 129}):
            size = log_size(aw.server)
            await rejected(h, "POST", ATTEST, 400, token=bob, js=body, what=str(body)[:60])
            (event,) = new_events(aw.server, size, keys_of(aw.bob))
            assert (event.action, event.detail["status"]) == ("request.denied", 400), \
                f"{body}: a malformed attestation reached the log as more than its refusal"

        await denied(h, aw.bob, "POST", ATTEST, token=bob, contains="ncc", what="bob approves",
                     js={"kind": "approve", "link": bobs_invite.hash.hex()})
        await denied(h, aw.carol, "POST", ATTEST, token=carol, contains="ncc", what="security approves",
                     js={"kind": "approve", "link": alices_grant.hash.hex()})
        await denied(h, aw.alice, "POST", ATTEST, token=alice, what="alice approves her own role grant",
                     js={"kind": "approve", "link": alices_grant.hash.hex()})
        # Unknown links, members and devices: not found, logged as refused requests.
        for who, token, link in ((aw.alice, alice, "00" * 32), (aw.alice, alice, "nope"), (aw.bob, bob, "11" * 32)):
            event = await denied(h, who, "POST", ATTEST, token=token, status=404, code="not_found",
                                 js={"kind": "approve", "link": link})
            assert event.res == {"route": ATTEST}, event
        await denied(h, aw.bob, "POST", ATTEST, token=bob, contains="lost", what="bob reports alice's device",
                     js={"kind": "lost", "member": aw.alice.member_id, "device": aw.alice.device.device_id})
        for body in ({"kind": "lost", "member": "f" * 32, "device": aw.bob.device.device_id},
                     {"kind": "verify", "member": "f" * 32, "fingerprint": "1"},
                     {"kind": "verify", "member": "nobody", "fingerprint": "1"}):
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


async def _founded(h: Http) -> Newcomer:
    """A founder made by hand on a fresh server (no CLI)."""
    assert h.server.invite is not None
    t = int(h.server.clock())
    founder = newcomer("founder", t)
    org_link = org_create(founder, InviteCode.parse(h.server.invite).secret, t)
    status, res = await h.call("POST", "/api/v1/found", js=found_body(founder, org_link))
    assert status == 201, res
    return founder


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
    files = [p for p in aw.server.data_dir.iterdir() if p.name.startswith("audit.db")]
    data = b"".join(p.read_bytes() for p in files)
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


# == every refusal is an event ======================================================================


async def test_every_refusal_by_the_policy_is_logged(aw: AuditWorld) -> None:
    async with session(aw, aw.bob) as bs, Http(aw.server) as h:
        bob, carol = bs.session.api.token or "", await login(h, aw.carol)
        dave = await login_as(h, aw.pending.member_id, aw.pending.device)
        links = await org_links(h, bob)
        cp = (await checkpoint_of(h, bob)).checkpoint
        other_device = audit_key_statement(cp.org, aw.sec, 1, os.urandom(32), now(aw), aw.carol.member_id,
                                           aw.bob.device.device_id)
        refusals: list[tuple[Actor | Newcomer, str, str, str, dict[str, Any], str]] = [
            (aw.bob, bob, "POST", "/api/v1/teams",
             {"js": team_json(*team_create_link(bs, await bs.chains.view(refresh=True), "bobs-own"))}, "/api/v1/teams"),
            (aw.bob, bob, "POST", COSIGN,
             {"js": {"checkpoint": b64(cp.raw), "sig": b64(cosignature(aw.bob, cp.raw, now(aw))), "time": now(aw)}},
             COSIGN),
            (aw.bob, bob, "GET", f"/api/v1/audit/teams/{aw.drafting}/versions", {},
             "/api/v1/audit/teams/{team}/versions"),
            (aw.bob, bob, "POST", ATTEST, {"js": {"kind": "approve", "link": links[-1].hash.hex()}}, ATTEST),
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
        status, res = await h.call("POST", ATTEST, token=token,
                                   js={"kind": "verify", "member": mallory.member_id, "fingerprint": "1"})
        assert status == 201, res
        (event,) = new_events(server, size, keys_of(founder))
        assert (event.action, event.res.get("member")) == ("attest.verify", mallory.member_id)
        await login_as(h, mallory.member_id, mallory.device)


# == failing closed =================================================================================


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """The errors the server logs during the test (``mvault.server``), for the test to check: taken
    before the autouse check that fails a test on any server error. aiohttp's own still fail it."""
    records: list[logging.LogRecord] = []

    def take(record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        records.append(record)
        return False

    logger = logging.getLogger("mvault.server")
    logger.addFilter(take)
    try:
        yield records
    finally:
        logger.removeFilter(take)


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
