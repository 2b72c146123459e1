"""What anyone on the network can do without a session, against the real server (issue 13: 5, 6, 11).

- A flood of refused requests adds at most one ``request.summary`` event a minute to the audit log,
  not one event each; the Security Team reads the counts.
- Nobody can lock a member out: failed logins throttle the address they come from, never the
  device they name. The attacker here connects from 127.0.0.2, the honest CLI from 127.0.0.1.
- Requests without a session are rate-limited per source address (429 ``throttled``, Retry-After).
- The login challenge answers alike for unknown, expelled, revoked and attacked devices.
- Refusals of a member's request with 400 or 409 are audited one by one (``request.denied``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member, Org, ServerThread, security_team
from tests.helpers.api_world import Actor as ApiActor
from tests.helpers.api_world import session, team_create_link, team_json
from tests.helpers.http import Http
from vault.crypto import labels
from vault.encoding import encode
from vault.keys import DeviceKeys

CHALLENGE, LOGIN, INFO = "/api/v1/auth/challenge", "/api/v1/auth/login", "/api/v1/info"
ATTACKER = "127.0.0.2"  # another loopback address: another source for the server


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def leaves(server: ServerThread) -> tuple[int, int]:
    """(number of events, bytes of their leaves) in audit.db."""
    con = sqlite3.connect(server.data_dir / "audit.db", isolation_level=None)
    try:
        n, size = con.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(leaf)), 0) FROM events").fetchone()
        return int(n), int(size)
    finally:
        con.close()


def ids_of(member: Member, monkeypatch: pytest.MonkeyPatch) -> tuple[str, DeviceKeys]:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(member.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(member.home)
    return home.config().member_id, home.unlock().device


def events(m: Member, *args: str) -> list[dict[str, Any]]:
    return list(m.json("audit", "log", *args))


async def bad_login(h: Http, member: str, device: str) -> tuple[int, dict[str, Any]]:
    """What a thief without the device key sends: a challenge for the ids, then another key's signature."""
    status, ch = await h.call("POST", CHALLENGE, js={"member": member, "device": device})
    if status != 200:
        return status, ch
    raw = encode({"origin": h.server.url, "nonce": base64.b64decode(ch["nonce"]), "member": member,
                  "device": device, "time": int(h.server.clock())})
    thief = DeviceKeys.generate()
    status, res = await h.call("POST", LOGIN, js={"statement": b64(raw), "sig": b64(thief.sign(labels.SIG_AUTH, raw))})
    return status, res


def summaries(carol: Member) -> list[dict[str, Any]]:
    return [e for e in events(carol, "--action", "request.summary")]


# -- finding 5: the audit-log flood ----------------------------------------------------------------


async def test_a_flood_of_refused_requests_adds_a_bounded_number_of_events(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)
    server = org.server
    server.set_limits(20.0, 200)  # the defaults (the suite's servers get more)
    before = leaves(server)
    refused: dict[int, int] = {}
    sem = asyncio.Semaphore(32)
    async with Http(server, source=ATTACKER) as h:

        async def one(i: int) -> None:
            async with sem:
                if i % 4:  # challenges for made-up ids (answered, never refused) ...
                    status, _ = await h.call("POST", CHALLENGE, js={"member": os.urandom(8).hex(),
                                                                   "device": os.urandom(16).hex()})
                else:  # ... and logins with made-up nonces (refused)
                    raw = encode({"origin": server.url, "nonce": os.urandom(32), "member": "m" * 64,
                                  "device": "d" * 32, "time": int(server.clock())})
                    status, _ = await h.call("POST", LOGIN, js={"statement": b64(raw), "sig": b64(bytes(64))})
                refused[status] = refused.get(status, 0) + 1

        await asyncio.gather(*(one(i) for i in range(4000)))
    assert sum(refused.values()) == 4000 and refused.get(429, 0) > 3000, refused  # most were throttled
    during = leaves(server)
    server.advance(61)  # the minute closes; the next request (anyone's) writes its summary
    async with Http(server) as h:
        assert (await h.call("GET", INFO))[0] == 200
    after = leaves(server)
    print(f"\naudit log: {before[0]} events / {before[1]} leaf bytes before, {during[0]} / {during[1]} during "
          f"4000 requests ({refused}), {after[0]} / {after[1]} after the minute closed")
    assert during[0] - before[0] <= 1  # at most the summary of a minute that closed during the flood
    assert after[0] - before[0] <= 2 and after[1] - before[1] <= 2 * 4096
    found = summaries(carol)
    assert 1 <= len(found) <= 2
    assert all(e["actor"] == "" and e["result"] == "denied" and "failed-logins" in e["rules"] for e in found)
    detail = [e["detail"] for e in found]
    refusals = refused.get(401, 0) + refused.get(429, 0)
    assert sum(d["count"] for d in detail) == refusals
    assert sum(d["throttled"] for d in detail) == refused[429]
    assert all(d["sources"] == 1 for d in detail)  # a count of addresses, never an address
    assert not any(ATTACKER in str(v) or ATTACKER in k for d in detail for k, v in d.items())
    routes: dict[str, int] = {}  # summed: a flood that spans a minute boundary is told in two summaries
    for d in detail:
        for k, v in d.items():
            if k.startswith("r:"):
                routes[k] = routes.get(k, 0) + v
    assert routes.get(f"r:{LOGIN} unauthorized", 0) + routes.get(f"r:{LOGIN} throttled", 0) == 1000
    assert routes.get(f"r:{CHALLENGE} throttled", 0) > 2000


# -- finding 6: anyone could lock anyone out ------------------------------------------------------------


async def test_nobody_can_lock_a_member_out(org: Org, monkeypatch: pytest.MonkeyPatch, make_member: Any) -> None:
    carol = security_team(org, make_member)
    server = org.server
    bob, bob_device = ids_of(org.bob, monkeypatch)
    async with Http(server, source=ATTACKER) as h:
        answers = [await bad_login(h, bob, bob_device.device_id) for _ in range(6)]
        assert [(s, r["error"]) for s, r in answers] == [(401, "unauthorized")] * 6, answers
        assert all(r["message"] == "login refused: the signature does not verify for this member and device"
                   for _, r in answers)
        org.bob.ok("whoami")  # six failures: bob is not locked
        answers = [await bad_login(h, bob, bob_device.device_id) for _ in range(60)]
        # the attacker's address is throttled, with a clear answer and when to come back
        assert {(s, r["error"]) for s, r in answers} == {(429, "throttled")}, answers
        assert "failed logins from your address" in answers[0][1]["message"]
        assert 1 <= int(h.headers["Retry-After"]) <= 15 * 60
    org.bob.ok("whoami")  # sixty more: bob logs in from the CLI as ever
    org.alice.ok("whoami")
    # The report alerts on the device named in failed logins and the throttled address; it names no lockout.
    server.advance(61)
    org.bob.ok("whoami")
    r = carol.run("audit", "report", "--json")
    rule = next(x for x in r.json()["rules"] if x["rule"] == "failed-logins")
    assert rule["status"] == "alert", rule
    messages = [f["message"] for f in rule["findings"]]
    assert any(bob_device.device_id in m and "named in 6 failed logins" in m for m in messages), messages
    assert any("1 source address(es)" in m and "throttled" in m for m in messages), messages
    # The throttle ends: after lock_minutes the address may try again (and fails as before).
    server.advance(15 * 60)
    async with Http(server, source=ATTACKER) as h:
        status, res = await bad_login(h, bob, bob_device.device_id)
        assert (status, res["error"]) == (401, "unauthorized")


# -- rate limits per source ---------------------------------------------------------------------------


@pytest.fixture
def slow_server(tmp_path: Path) -> Any:
    """A server whose budget refills slowly (one request per 100 s): only the moved clock refills it."""
    s = ServerThread(tmp_path / "server-data", rate_per_second=0.01, rate_burst=10).start()
    yield s
    s.stop()


async def test_requests_without_a_session_are_limited_per_source(slow_server: ServerThread) -> None:
    server = slow_server
    slot = os.urandom(16).hex()
    public = [("GET", "/api/health", None), ("GET", "/api/openapi.json", None), ("GET", INFO, None),
              ("POST", "/api/v1/found", {}), ("POST", "/api/v1/join", {}), ("POST", "/api/v1/join/head", {}),
              ("POST", CHALLENGE, {}), ("POST", LOGIN, {}), ("POST", f"/api/v1/device-links/{slot}/offer", {}),
              ("GET", "/api/v1/closing", None)]
    async with Http(server, source=ATTACKER) as h, Http(server) as honest:
        statuses = [(await h.call("GET", INFO))[0] for _ in range(10)]
        assert statuses == [200] * 10
        for method, path, js in public:
            kw = {} if js is None else {"js": js}
            status, res = await h.call(method, path, **kw)
            assert (status, res["error"]) == (429, "throttled"), (path, res)
            assert "too many requests from your address" in res["message"]
            assert int(h.headers["Retry-After"]) >= 1
        # Another address is not affected; a session's requests are not counted.
        assert (await honest.call("GET", INFO))[0] == 200
        server.advance(100)  # one token back
        assert (await h.call("GET", INFO))[0] == 200
        assert (await h.call("GET", INFO))[0] == 429


def test_the_default_limits(tmp_path: Path) -> None:
    """Config defaults: 20 a second, bursts of 200, 10,000 addresses remembered."""
    from server.context import Config

    config = Config(data_dir=tmp_path)
    assert (config.rate_per_second, config.rate_burst, config.rate_sources) == (20.0, 200, 10_000)


def test_the_limiter_remembers_a_bounded_number_of_sources() -> None:
    from server.guard import FailureThrottle, SourceLimiter

    limiter = SourceLimiter(1.0, 2, 100)
    for i in range(1000):
        assert limiter.take(f"10.0.{i // 256}.{i % 256}", 0.0) == 0.0
    assert len(limiter) == 100
    assert limiter.take("a", 0.0) == 0.0 and limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == pytest.approx(1.0)
    throttle = FailureThrottle(100)
    for i in range(1000):
        throttle.failure(f"s{i}", 0.0, 5, 900.0, 900.0)
    assert len(throttle._failures) == 100


# -- the challenge tells nothing about ids ------------------------------------------------------------


async def test_the_challenge_answers_alike_for_any_ids(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    server = org.server
    alice, alice_device = ids_of(org.alice, monkeypatch)
    bob, bob_device = ids_of(org.bob, monkeypatch)
    async with Http(server, source=ATTACKER) as h:  # a device someone is hammering from elsewhere
        for _ in range(8):
            await bad_login(h, alice, alice_device.device_id)
    org.alice.ok("remove", "bob")  # bob is expelled (a revoked device: tests/test_auth.py)
    cases = {"unknown member": ("0" * 64, "f" * 32), "unknown device": (alice, "f" * 32),
             "expelled member": (bob, bob_device.device_id), "attacked device": (alice, alice_device.device_id),
             "another member's device": (alice, bob_device.device_id)}
    async with Http(server) as h:
        for label, (member, device) in cases.items():
            status, res = await h.call("POST", CHALLENGE, js={"member": member, "device": device})
            assert status == 200 and set(res) == {"nonce", "expires"}, (label, res)
            assert len(base64.b64decode(res["nonce"])) == 32 and abs(res["expires"] - server.clock() - 60) < 5
            # Signed by a key that is not the device's: one generic answer for all.
            status, res = await bad_login(h, member, device)
            assert (status, res) == (401, {"error": "unauthorized", "message": "login refused: the signature does "
                                                                               "not verify for this member and device"})
        # The expelled member holds its device key: once its signature verified it is told why.
        status, ch = await h.call("POST", CHALLENGE, js={"member": bob, "device": bob_device.device_id})
        raw = encode({"origin": server.url, "nonce": base64.b64decode(ch["nonce"]), "member": bob,
                      "device": bob_device.device_id, "time": int(server.clock())})
        status, res = await h.call("POST", LOGIN, js={"statement": b64(raw),
                                                     "sig": b64(bob_device.sign(labels.SIG_AUTH, raw))})
        assert (status, res["error"]) == (401, "unauthorized") and "removed" in res["message"], res
    org.bob.fails("whoami", contains="removed")


# -- finding 11: refusals answered 400/409 are audited ---------------------------------------------------


class _W:
    def __init__(self, server: ServerThread) -> None:
        self.server = server


async def test_refused_team_creations_are_audited_one_by_one(org: Org, make_member: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    carol = security_team(org, make_member)
    alice, _ = ids_of(org.alice, monkeypatch)
    home = Home(org.alice.home)
    actor = ApiActor(org.alice, home, home.unlock(), alice)
    before = len(events(carol, "--action", "request.denied"))
    statuses: list[int] = []
    async with session(_W(org.server), actor) as s, Http(org.server) as h:  # type: ignore[arg-type]
        view = await s.chains.view(refresh=True)
        token = s.session.api.token
        for i in range(20):
            if i < 10:  # a name that exists: the chain rules refuse it (400)
                body = team_json(*team_create_link(s, view, "drafting"))
            elif i < 15:  # made against an old organization state (409)
                body = team_json(*team_create_link(s, view, f"late-{i}", org_seq=1))
            else:  # not a link at all (400)
                body = {"link": b64(os.urandom(40)), "boxes": {}}
            status, res = await h.call("POST", "/api/v1/teams", token=token, js=body)
            statuses.append(status)
    assert sorted(set(statuses)) == [400, 409], statuses
    denied = events(carol, "--action", "request.denied")[before:]
    assert len(denied) == 20, denied
    assert all(e["actor"] == alice and e["res"]["route"] == "/api/v1/teams" for e in denied)
    assert [e["detail"]["status"] for e in denied] == statuses
    assert [e["result"] for e in denied] == ["denied" if s == 400 else "failed" for s in statuses]
    r = carol.run("audit", "report", "--json")
    rule = next(x for x in r.json()["rules"] if x["rule"] == "bulk-access")
    assert any(f["subject"] == alice and "refused access 15 times" in f["message"] for f in rule["findings"]), rule


async def test_a_new_device_may_poll_until_it_is_added(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device not (yet) in its member's chain logs in showing its key: told so, never throttled; the
    same key shown for another device id helps nobody (a generic refusal, counted)."""
    server = org.server
    bob, bob_device = ids_of(org.bob, monkeypatch)
    fresh = DeviceKeys.generate()

    async def attempt(h: Http, device: str, key: DeviceKeys) -> tuple[int, dict[str, Any]]:
        status, ch = await h.call("POST", CHALLENGE, js={"member": bob, "device": device})
        assert status == 200, ch
        raw = encode({"origin": server.url, "nonce": base64.b64decode(ch["nonce"]), "member": bob, "device": device,
                      "time": int(server.clock())})
        return await h.call("POST", LOGIN, js={"statement": b64(raw), "sig": b64(key.sign(labels.SIG_AUTH, raw)),
                                               "key": b64(key.sign_public)})

    async with Http(server, source=ATTACKER) as h:
        for _ in range(20):
            status, res = await attempt(h, fresh.device_id, fresh)
            assert (status, res["error"]) == (401, "unauthorized") and "not an active device" in res["message"]
        for _ in range(6):  # bob's device id with the fresh key: a guess like any other
            status, res = await attempt(h, bob_device.device_id, fresh)
            assert res["message"] == "login refused: the signature does not verify for this member and device"
        status, res = await h.call("POST", CHALLENGE, js={"member": bob, "device": fresh.device_id})
        assert (status, res["error"]) == (429, "throttled")


def test_the_open_minute_is_written_at_shutdown(server: ServerThread) -> None:
    async def refused() -> None:
        async with Http(server, source=ATTACKER) as h:
            for _ in range(3):
                status, _ = await h.call("POST", LOGIN, js={"statement": b64(b"x"), "sig": b64(bytes(64))})
                assert status == 400

    asyncio.run(refused())
    before = leaves(server)
    fresh = server.restart()
    try:
        assert leaves(fresh)[0] == before[0] + 1  # the summary of the three refusals
    finally:
        fresh.stop()
