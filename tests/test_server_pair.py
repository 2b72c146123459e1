"""Two server instances over one PostgreSQL database and one data directory, each with its own application, event
loop and connection pool (issue 19): what one of them keeps, the other sees. A session made through one is good
on the other; a login nonce issued by one is taken once, on either; a source address blocked for failed logins
or out of request budget on one is so on both. (The real ``--workers`` processes: tests/test_server_workers.py.)
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.threads.team import Threads
from server.context import DIRECTORY, LOGINS
from server.relay import Relay
from tests.conftest import Member, ServerThread
from tests.helpers.http import Http, b64, login_as
from tests.helpers.members import SECRETS, session
from tests.helpers.pair import Pair, open_keys
from vault.auth import sign_login
from vault.keys import DeviceKeys

ATTACKER = "127.0.0.3"  # a loopback address of its own: its own source for both servers
CHALLENGE, LOGIN = "/api/v1/auth/challenge", "/api/v1/auth/login"


@pytest.fixture
def fresh(pair: Pair) -> Iterator[Pair]:
    """The pair with every source's budget and failed logins forgotten, before and after the test."""
    pair.one.forget_sources()
    yield pair
    pair.one.set_limits(1000.0, 10_000)
    pair.two.set_limits(1000.0, 10_000)


async def _signed(h: Http, p: Pair, nonce: bytes) -> dict[str, str]:
    statement, sig = sign_login(p.alice_device, origin=h.server.url, nonce=nonce, member=p.alice_id,
                                time=int(h.server.clock()))
    return {"statement": b64(statement), "sig": b64(sig)}


async def test_a_session_made_through_one_is_good_on_the_other(fresh: Pair) -> None:
    async with Http(fresh.one) as h1, Http(fresh.two) as h2:
        token = await login_as(h1, fresh.alice_id, fresh.alice_device)
        status, view = await h2.call("GET", "/api/v1/directory", token=token)
        assert status == 200, view
        status, res = await h2.call("GET", "/api/v1/directory", token=token + "x")
        assert (status, res["error"]) == (401, "unauthorized")


async def test_a_nonce_from_one_is_taken_once_on_either(fresh: Pair) -> None:
    async with Http(fresh.one) as h1, Http(fresh.two) as h2:
        status, ch = await h1.call("POST", CHALLENGE, js={"member": fresh.alice_id,
                                                          "device": fresh.alice_device.device_id})
        assert status == 200, ch
        nonce = base64.b64decode(ch["nonce"])
        status, res = await h2.call("POST", LOGIN, js=await _signed(h2, fresh, nonce))
        assert status == 200, res  # issued by one, taken by the other
        for h in (h1, h2):  # used: on neither again
            status, res = await h.call("POST", LOGIN, js=await _signed(h, fresh, nonce))
            assert (status, res["error"]) == (401, "unauthorized"), res
            assert "unknown or already used" in res["message"]
    with fresh.one.db() as db:  # taken means deleted, for both
        assert db.execute("SELECT count(*) FROM login_nonces WHERE expires > 0").fetchone() == (0,)


async def test_one_nonce_sent_to_both_at_once_gives_one_session(fresh: Pair) -> None:
    """One nonce's login, signed for each server's origin, sent six times at once through both: the nonce's take
    decides (one statement that deletes the row and stores the session), so exactly one login gets a token."""
    async with Http(fresh.one) as h1, Http(fresh.two) as h2:
        status, ch = await h1.call("POST", CHALLENGE, js={"member": fresh.alice_id,
                                                          "device": fresh.alice_device.device_id})
        assert status == 200, ch
        nonce = base64.b64decode(ch["nonce"])
        signed = {h: await _signed(h, fresh, nonce) for h in (h1, h2)}  # each server's origin
        answers = await asyncio.gather(*(h.call("POST", LOGIN, js=signed[h]) for h in (h1, h2) * 3))
        assert sorted(status for status, _ in answers) == [200] + [401] * 5, answers
        assert all("unknown or already used" in res["message"] for status, res in answers if status == 401)
        token = next(res["token"] for status, res in answers if status == 200)
        for h in (h1, h2):
            assert (await h.call("GET", "/api/v1/directory", token=token))[0] == 200


async def test_a_source_blocked_for_failed_logins_on_one_is_blocked_on_both(fresh: Pair) -> None:
    async with Http(fresh.one, source=ATTACKER) as h1, Http(fresh.two, source=ATTACKER) as h2:
        thief = DeviceKeys.generate()
        answers = []
        for _ in range(6):  # the failed-logins rule's default: more than 5 within 15 minutes
            status, ch = await h1.call("POST", CHALLENGE, js={"member": fresh.alice_id,
                                                              "device": fresh.alice_device.device_id})
            statement, sig = sign_login(thief, origin=h1.server.url, nonce=base64.b64decode(ch["nonce"]),
                                        member=fresh.alice_id, time=int(h1.server.clock()))
            answers.append((await h1.call("POST", LOGIN, js={"statement": b64(statement), "sig": b64(sig)}))[0])
        assert answers == [401] * 6
        with fresh.one.db() as db:
            held = db.execute("SELECT count(*) FROM login_nonces").fetchone()
        for h in (h1, h2):
            status, res = await h.call("POST", CHALLENGE, js={"member": fresh.alice_id,
                                                              "device": fresh.alice_device.device_id})
            assert (status, res["error"]) == (429, "throttled"), res
            assert "failed logins from your address" in res["message"]
        with fresh.one.db() as db:  # the statement that found the source blocked stored no nonce for it
            assert db.execute("SELECT count(*) FROM login_nonces").fetchone() == held
    async with Http(fresh.two) as honest:  # another address is not held back
        await login_as(honest, fresh.alice_id, fresh.alice_device)


async def test_a_request_budget_spent_on_one_is_spent_on_both(fresh: Pair) -> None:
    for s in (fresh.one, fresh.two):
        s.set_limits(0.01, 4)
    async with Http(fresh.one, source=ATTACKER) as h1, Http(fresh.two, source=ATTACKER) as h2:
        spent = [(await h.call("GET", "/api/v1/info"))[0] for h in (h1, h2, h1)]
        spent.append((await h2.call("POST", CHALLENGE, js={"member": 5}))[0])  # a refused body spends its token
        assert spent == [200, 200, 200, 400]
        with fresh.one.db() as db:
            held = db.execute("SELECT count(*) FROM login_nonces").fetchone()
        for h in (h1, h2):
            status, res = await h.call("GET", "/api/v1/info")
            assert (status, res["error"]) == (429, "throttled"), res
            assert int(h.headers["Retry-After"]) >= 1
            status, res = await h.call("POST", CHALLENGE, js={"member": fresh.alice_id,
                                                              "device": fresh.alice_device.device_id})
            assert (status, res["error"]) == (429, "throttled"), res  # out of budget: no nonce stored either
            status, res = await h.call("POST", CHALLENGE, js={"member": 5})
            assert (status, res["error"]) == (429, "throttled"), res  # a bad body from a spent source: 429 first
        with fresh.one.db() as db:
            assert db.execute("SELECT count(*) FROM login_nonces").fetchone() == held


def test_the_stores_are_what_both_servers_read(pair: Pair) -> None:
    """The two applications share no store object: what one sees, it read from the database."""
    assert pair.one.app[LOGINS] is not pair.two.app[LOGINS]
    assert Path(pair.one.data_dir) == Path(pair.two.data_dir)


async def _post_all(server: ServerThread, m: Member, name: str, n: int) -> list[int]:
    async with session(server, m) as s:
        threads = await Threads.open(s, "drafting")
        return [(await threads.post(name, f"{m.name} {i}")).pos for i in range(n)]


async def test_two_servers_posting_to_one_thread_take_every_position_once(pair: Pair) -> None:
    """Positions come from the database's transaction: posts through both servers at once never collide and
    leave no gap (each server kept its own count before: the second one's post took a stored position)."""
    org = pair.org
    async with session(pair.one, org.alice) as s:
        await (await Threads.open(s, "drafting")).create("both", 0)
    await open_keys(pair.two, org.bob)
    n = 12
    by_alice, by_bob = await asyncio.gather(_post_all(pair.one, org.alice, "both", n),
                                            _post_all(pair.two, org.bob, "both", n))
    assert sorted(by_alice + by_bob) == list(range(1, 2 * n + 1))
    async with session(pair.two, org.alice) as s:
        shown = await (await Threads.open(s, "drafting")).read("both")
    assert [m.pos for m in shown] == list(range(1, 2 * n + 1))
    for who, posted in (("alice", by_alice), ("bob", by_bob)):
        mine = [m for m in shown if m.text.startswith(who)]
        assert [m.pos for m in mine] == posted and [m.text for m in mine] == [f"{who} {i}" for i in range(n)]


async def test_a_member_who_joined_through_one_logs_in_through_the_other(pair: Pair) -> None:
    """Each server replays the links the other stored before it judges a request (``Directory.catch_up``): a
    member admitted through one is a member on the other at once (it was an unknown device there before)."""
    carol = Member(pair.org.alice.home.parent / "home-carol", "carol", pair.org.alice.passphrase_file)
    carol.ok("join", pair.org.alice.json("invite")["invite"], "--name", "carol")  # through server one
    await open_keys(pair.one, carol)
    home, secrets = SECRETS[carol.home]
    async with Http(pair.two) as h2:
        token = await login_as(h2, home.config().member_id, secrets.device)
        status, view = await h2.call("GET", "/api/v1/directory", token=token)
        assert status == 200, view
    assert home.config().member_id in pair.two.app[DIRECTORY].members


async def test_a_login_reads_the_links_the_other_stored_without_their_notice(pair: Pair,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A challenge and a login learn from their budget statement that links were stored (``LoginGate.links_head``;
    no catch-up query of their own) and replay them before judging, even when no notice arrived (the relay here
    drops every notice: a notice comes after the commit, a login may come first)."""

    async def deaf(self: Relay, batch: list[object]) -> None:
        return None

    monkeypatch.setattr(Relay, "act", deaf)
    dave = Member(pair.org.alice.home.parent / "home-dave", "dave", pair.org.alice.passphrase_file)
    dave.ok("join", pair.org.alice.json("invite")["invite"], "--name", "dave")  # through server one
    await open_keys(pair.one, dave)
    home, secrets = SECRETS[dave.home]
    assert home.config().member_id not in pair.two.app[DIRECTORY].members  # no notice acted on
    async with Http(pair.two) as h2:
        await login_as(h2, home.config().member_id, secrets.device)
    assert home.config().member_id in pair.two.app[DIRECTORY].members
