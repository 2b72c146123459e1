"""Three gaps of the one authority model (issue 13), against the real server and CLI.

- A designation of the audit log's security team signed by a lone NCC member (allowed: a young
  organization has one) is reported by rule ``two-person``, naming the member and the link, until
  a second NCC member approves it (``mvault audit approve``).
- At start the server judges its stored audit-key statement again, as every client does; one that
  does not check (altered in ``audit.db``) is not used: events are sealed to no audit key until
  the Security Team's next command publishes it again.
- A member's refusals beyond ``Config.member_refusals`` a minute are counted into one
  ``request.refusals`` event of the member, not one event each: a member pending admission
  cannot grow the log by repeating a refused request, and ``bulk-access`` still counts them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from client.home import Home
from security.auditkey import AuditKeyClaim
from security.events import audit_key_statement, audit_keypair, open_leaf
from server.context import DIRECTORY, MEMBER_REFUSALS, STATE
from tests.conftest import Member, Org, ServerThread, _ErrorCatcher, security_team
from tests.helpers.db import audit_db, leaves_from, log_size
from tests.helpers.http import Http, login_as
from vault.crypto import labels
from vault.encoding import decode, encode
from vault.errors import DecryptionFailed
from vault.keys import DeviceKeys

LEAVES = "/api/v1/audit/leaves"


def events(m: Member, *args: str) -> list[dict[str, Any]]:
    return list(m.json("audit", "log", *args))


def report(m: Member) -> dict[str, Any]:
    r = m.run("audit", "report", "--json")
    assert r.code in (0, 1), r.err
    out = r.json()
    assert r.code == (1 if out["violated"] else 0)
    return dict(out)


def rule_of(m: Member, rule: str) -> dict[str, Any]:
    return dict(next(x for x in report(m)["rules"] if x["rule"] == rule))


def ids_of(m: Member, monkeypatch: pytest.MonkeyPatch) -> tuple[str, DeviceKeys]:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(m.home)
    return home.config().member_id, home.unlock().device


# -- 1. a lone NCC member's designation of the audit team --------------------------------------------


def designations(server: ServerThread) -> list[str]:
    """The hashes of the organization's org.audit_team links, in chain order (the server's copy of the chain:
    the first designation was logged before the audit key existed, so the Security Team cannot open its event)."""
    return [lk.hash.hex() for lk in server.app[DIRECTORY].org_links if lk.type == "org.audit_team"]


def lone_designation(carol: Member, link: str) -> dict[str, Any] | None:
    rule = rule_of(carol, "two-person")
    found = [f for f in rule["findings"] if link[:16] in f["message"]]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_a_lone_ncc_members_designation_is_reported_until_a_second_one_approves(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)  # alice, the only NCC member, created "sec": designated at once
    (link,) = designations(org.server)
    alice = org.alice.json("whoami")["member"]
    f = lone_designation(carol, link)
    assert f is not None, "the lone designation is not reported"
    assert f["level"] == "warning" and f["subject"] == alice
    assert alice in f["message"] and "alone" in f["message"] and f"mvault audit approve {link[:16]}" in f["message"]
    # A second NCC member arrives: the designation waits for their approval (within the rule's hours).
    dave = make_member("dave")
    dave.ok("join", org.alice.json("invite")["invite"], "--name", "dave")
    org.alice.ok("role", "grant", "dave", "ncc", "--until", "2099-01-01")
    f = lone_designation(carol, link)
    assert f is not None and f["level"] == "warning" and "within" in f["message"]
    carol.fails("audit", "approve", link[:16])  # only NCC members approve
    dave.ok("audit", "approve", link[:16])
    assert lone_designation(carol, link) is None
    # (A designation signed by two NCC members is not reported: tests/test_rules_teams.py.)


# -- 2. the stored audit key is judged again at start ---------------------------------------------------


def stored_key(server: ServerThread) -> tuple[bytes, bytes]:
    con = audit_db(server)
    try:
        (value,) = con.execute("SELECT value FROM meta WHERE key='audit_key'").fetchone()
    finally:
        con.close()
    f = decode(bytes(value))
    assert isinstance(f, dict)
    return bytes(f["statement"]), bytes(f["sig"])


def store_key(server: ServerThread, statement: bytes, sig: bytes) -> None:
    con = audit_db(server)
    try:
        con.execute("UPDATE meta SET value=? WHERE key='audit_key'", (encode({"statement": statement, "sig": sig}),))
    finally:
        con.close()


def take_logged_errors(containing: str) -> list[str]:
    """The server's logged errors that contain ``containing``, taken off the suite's error catcher (which fails
    a test on any error the server logs): those are the ones the test expects."""
    catcher = next(h for h in logging.getLogger("mvault").handlers if isinstance(h, _ErrorCatcher))
    taken = [r for r in catcher.records if containing in r.getMessage()]
    catcher.records[:] = [r for r in catcher.records if r not in taken]
    return [r.getMessage() for r in taken]


def test_an_altered_stored_audit_key_is_not_used_after_a_restart(org: Org, make_member: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    good = org.server.app[STATE].key
    assert good.pub is not None
    statement, sig = stored_key(org.server)
    attacker_pub, attacker_secret = audit_keypair(b"\x07" * 32)
    bob, bob_device = ids_of(org.bob, monkeypatch)
    sec = good.team
    # Whoever can write audit.db puts in a statement for the same team and generation naming a key it holds:
    # (a) carol's statement with another key (her signature no longer verifies); (b) one that bob signed
    # (he holds no security role).
    carol_id, carol_device = ids_of(carol, monkeypatch)
    org_id, t = AuditKeyClaim.parse(statement).org, int(time.time())
    altered = audit_key_statement(org_id, sec, good.gen, attacker_pub, t, carol_id, carol_device.device_id)
    by_bob = audit_key_statement(org_id, sec, good.gen, attacker_pub, t, bob, bob_device.device_id)
    server = org.server
    try:
        # Untouched, the key is used again after a restart.
        server = server.restart()
        assert server.app[STATE].key == good
        for raw, signature, why in ((altered, sig, "does not verify"),
                                    (by_bob, bob_device.sign(labels.SIG_AUDIT_KEY, by_bob), "may not publish")):
            server.stop()
            store_key(server, raw, signature)
            server = server.restart()
            assert server.app[STATE].key.pub is None, "the server seals to a stored audit key that does not check"
            logged = take_logged_errors("stored audit key")
            assert len(logged) == 1 and why in logged[0], logged
            # What is logged now is sealed to no audit key: not to the key in the altered statement.
            start = log_size(server)
            org.bob.ok("whoami")
            fresh = leaves_from(server, start)
            assert fresh and all(leaf.audit_gen == 0 for leaf in fresh)
            for leaf in fresh:
                with pytest.raises(DecryptionFailed):
                    open_leaf(leaf, attacker_pub, attacker_secret, (0,))
            # The Security Team's next command publishes the key again.
            assert "published the audit key" in carol.ok("whoami").err
            assert server.app[STATE].key.pub == good.pub and stored_key(server)[0] != raw
    finally:
        server.stop()


# -- 3. a member's refusals are folded beyond a few a minute ----------------------------------------------


def set_member_refusals(server: ServerThread, per_minute: int) -> None:
    """The server's default budget of refusal events per member and minute (the suite's servers get more)."""
    async def put() -> None:
        server.app[MEMBER_REFUSALS].per_minute = per_minute

    assert server._loop is not None
    asyncio.run_coroutine_threadsafe(put(), server._loop).result(10)


def test_a_pending_member_cannot_flood_the_log_with_refused_requests(org: Org, make_member: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    dave = make_member("dave")
    dave.ok("join", org.bob.json("invite")["invite"], "--name", "dave")  # a plain member's invite: pending
    dave_id, dave_device = ids_of(dave, monkeypatch)
    bob_id, bob_device = ids_of(org.bob, monkeypatch)
    server = org.server
    per_minute = 10
    set_member_refusals(server, per_minute)
    drafting = next(t["team"] for t in org.bob.json("team", "ls") if t["name"] == "drafting")
    flood = 500

    async def requests() -> tuple[int, int]:
        async with Http(server) as h:
            # An honest member's one refusal is an event of its own.
            bob = await login_as(h, bob_id, bob_device)
            start = log_size(server)
            status, _ = await h.call("GET", f"/api/v1/audit/teams/{drafting}/versions", token=bob)
            assert status == 403
            assert log_size(server) == start + 1
            # The pending member repeats a refused request.
            token = await login_as(h, dave_id, dave_device)
            start = log_size(server)
            for _ in range(flood):
                status, res = await h.call("GET", LEAVES, token=token)
                assert status == 403 and "admission" in res["message"], res
            return start, log_size(server) - start

    start, during = asyncio.run(requests())
    server = server.restart()  # the open minute's counts are written at shutdown
    try:
        after = log_size(server) - start
        print(f"\naudit log: {during} events during {flood} refused requests, {after} once the minute was written")
        assert per_minute <= during <= 2 * per_minute  # one minute, or two if the flood crossed into the next
        assert after <= 2 * (per_minute + 1)
        mine = [e for e in events(carol, "--action", "request") if e["actor"] == dave_id and e["index"] >= start]
        single = [e for e in mine if e["action"] == "request.denied"]
        folded = [e for e in mine if e["action"] == "request.refusals"]
        assert per_minute <= len(single) <= 2 * per_minute and 1 <= len(folded) <= 2
        assert len(single) + sum(e["detail"]["count"] for e in folded) == flood
        for e in folded:
            d = e["detail"]
            assert e["result"] == "denied" and d["denied"] == d["count"] and d["failed"] == 0
            assert d[f"r:request.denied {LEAVES} forbidden"] == d["count"] and d["until"] - d["from"] == 60
            assert "bulk-access" in e["rules"]
        # The Security Team's bulk-access rule counts every refusal, folded or not.
        rule = rule_of(carol, "bulk-access")
        assert any(f["subject"] == dave_id and f"refused access {flood} times" in f["message"]
                   for f in rule["findings"]), rule
    finally:
        server.stop()


async def test_member_refusals_are_counted_per_member_and_minute() -> None:
    from server.guard import MAX_ROUTES, MAX_TEAMS, LocalGuard, MemberRefusals, minute_of

    r, g = MemberRefusals(3), LocalGuard(1.0, 1, 10)

    async def admit(now: float, member: str, *args: Any) -> bool:
        """What server/recorder.py does with a member's refusal: its own event (True), or folded."""
        if await g.own_refusal(member, minute_of(now), r.per_minute):
            return True
        r.fold(now, member, *args)
        return False

    t0 = 6000.0  # a minute's start
    args = ("request.denied", "/api/v1/audit/leaves", "forbidden", True, "", "")
    assert [await admit(t0 + i, "m1", *args) for i in range(5)] == [True, True, True, False, False]
    assert await admit(t0 + 5, "m2", *args)  # the budget is per member
    assert r.take_closed(t0 + 59) == []  # the minute is still open
    assert await admit(t0 + 60, "m1", *args)  # a new minute, a new budget; the last one's summary is handed out once
    (s,) = r.take_closed(t0 + 61)
    assert (s.member, s.start, s.count, s.denied) == ("m1", int(t0), 2, 2) and r.take_closed(t0 + 62) == []
    assert s.detail() == {"from": 6000, "until": 6060, "count": 2, "denied": 2, "failed": 0,
                          "r:request.denied /api/v1/audit/leaves forbidden": 2}
    # Caller-chosen keys (a team id in the path) are bounded; a refused login names its device.
    for i in range(1000):
        await admit(t0 + 70, "m3", "request.denied", f"/route/{i % 100}", "not_found", False, f"team-{i}", "")
    await admit(t0 + 70, "m3", "auth.fail", "/api/v1/auth/login", "unauthorized", True, "", "dev-1")
    (s,) = r.take_closed(float("inf"))  # at shutdown: the open minute too
    d = s.detail()
    assert s.count == 998 and d["failed"] == 997 and d["denied"] == 1 and d["d:dev-1"] == 1
    assert len([k for k in d if k.startswith("r:")]) == MAX_ROUTES + 1 and "r:other" in d
    assert len([k for k in d if k.startswith("t:")]) == MAX_TEAMS + 1 and "t:other" in d
    assert len(s.teams) <= 4 * MAX_TEAMS + 1 and len(s.routes) <= 4 * MAX_ROUTES + 1
    # A clock set back starts a new minute rather than extending the old one.
    assert [await admit(t0 + 200, "m4", *args) for _ in range(4)] == [True, True, True, False]
    assert await admit(t0 + 100, "m4", *args)
    assert [x.member for x in r.take_closed(t0 + 100)] == ["m4"]
