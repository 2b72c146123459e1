"""Login and sessions: the challenge-response over the real HTTP API, and the CLI's unlock.

Statements are signed with ``vault.auth.sign_login`` and the member's device key as loaded
from the member's own keystore (``Home(path).unlock()`` with ``MVAULT_PASSPHRASE_FILE``).
A nonce is single use and short lived, a statement is bound to its member, device, origin
and time, and a session token expires; everything else is refused with 401.
"""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client import agent
from client.home import Home
from tests.conftest import PASSPHRASE, Member, ServerThread
from tests.helpers.api_world import device_body, member_json
from tests.helpers.http import Http, b64, refuse_bad_json, refused
from vault.auth import sign_login
from vault.crypto import labels
from vault.encoding import encode
from vault.keys import DeviceKeys, PukKeys
from vault.links import make_link, parse_link, sign_device_proof
from vault.teamkeys import box_hash

CHALLENGE, LOGIN, DIRECTORY = "/api/v1/auth/challenge", "/api/v1/auth/login", "/api/v1/directory"


@dataclass
class Pair:
    server: ServerThread
    alice: Member
    bob: Member
    passphrase_file: Path
    root: Path


@dataclass
class Identity:
    member_id: str
    device: DeviceKeys


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """One organization for the module: founder alice and member bob (CLI-made)."""
    root = tmp_path_factory.mktemp("auth")
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    server = ServerThread(root / "server-data").start()
    try:
        alice, bob = Member(root / "home-alice", "alice", pf), Member(root / "home-bob", "bob", pf)
        assert server.invite is not None
        alice.ok("join", server.invite, "--name", "alice")
        bob.ok("join", alice.json("invite")["invite"], "--name", "bob")
        yield Pair(server, alice, bob, pf, root)
    finally:
        server.stop()


@pytest.fixture
def p(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    """The module's organization, with the passphrase file set; the clock is put back after."""
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(pair.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    offset = pair.server.offset
    # Tests here fail logins on purpose; each starts with a fresh budget of failures for 127.0.0.1
    # (the throttle is tested in tests/test_unauth.py).
    pair.server.forget_sources()
    yield pair
    pair.server.offset = offset
    agent.stop(pair.alice.home)


def identity(member: Member) -> Identity:
    """Member id and device keys, from the member's keystore (needs MVAULT_PASSPHRASE_FILE)."""
    home = Home(member.home)
    return Identity(home.config().member_id, home.unlock().device)


async def challenge(h: Http, who: Identity) -> bytes:
    status, res = await h.call("POST", CHALLENGE, js={"member": who.member_id, "device": who.device.device_id})
    assert status == 200, res
    assert abs(res["expires"] - (h.server.clock() + 60)) < 5
    nonce = base64.b64decode(res["nonce"])
    assert len(nonce) == 32
    return nonce


def statement_for(h: Http, who: Identity, nonce: bytes, **over: Any) -> dict[str, str]:
    """A signed login statement as the client makes it; ``over`` replaces its fields."""
    fields: dict[str, Any] = {"origin": h.server.url, "nonce": nonce, "member": who.member_id,
                              "time": int(h.server.clock())}
    fields.update(over)
    statement, sig = sign_login(who.device, **fields)
    return {"statement": b64(statement), "sig": b64(sig)}


async def log_in(h: Http, body: dict[str, str]) -> str:
    status, res = await h.call("POST", LOGIN, js=body)
    assert status == 200, res
    assert abs(res["expires"] - (h.server.clock() + 3600)) < 5
    return str(res["token"])


async def test_login_gives_a_working_token(p: Pair) -> None:
    alice = identity(p.alice)
    assert alice.device.device_id == Home(p.alice.home).config().device_id
    async with Http(p.server) as h:
        token = await log_in(h, statement_for(h, alice, await challenge(h, alice)))
        status, directory = await h.call("GET", DIRECTORY, token=token)
        assert status == 200
        assert {m["name"] for m in directory["members"].values()} == {"alice", "bob"}
        # Each login is its own session; both work.
        other = await log_in(h, statement_for(h, alice, await challenge(h, alice)))
        assert other != token
        assert (await h.call("GET", DIRECTORY, token=other))[0] == 200


async def test_replayed_nonce_is_refused(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        body = statement_for(h, alice, await challenge(h, alice))
        await log_in(h, body)
        await refused(h, "POST", LOGIN, 401, js=body, contains="already used", what="replayed statement")


async def test_expired_nonce_is_refused(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        nonce = await challenge(h, alice)
        p.server.advance(61)
        await refused(h, "POST", LOGIN, 401, js=statement_for(h, alice, nonce), contains="expired")
        # A fresh challenge at the new time works.
        await log_in(h, statement_for(h, alice, await challenge(h, alice)))


async def test_token_is_refused_after_it_expires(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        token = await log_in(h, statement_for(h, alice, await challenge(h, alice)))
        p.server.advance(3500)
        assert (await h.call("GET", DIRECTORY, token=token))[0] == 200
        p.server.advance(101)
        await refused(h, "GET", DIRECTORY, 401, token=token, contains="expired")


async def test_statement_for_another_member_or_device_is_refused(p: Pair) -> None:
    alice, bob = identity(p.alice), identity(p.bob)
    async with Http(p.server) as h:
        # bob answers alice's challenge with his own statement.
        nonce = await challenge(h, alice)
        await refused(h, "POST", LOGIN, 401, js=statement_for(h, bob, nonce, member=bob.member_id),
                      contains="another member", what="bob's statement on alice's nonce")
        # bob signs a statement naming alice and her device.
        nonce = await challenge(h, alice)
        forged = encode({"origin": h.server.url, "nonce": nonce, "member": alice.member_id,
                         "device": alice.device.device_id, "time": int(h.server.clock())})
        body = {"statement": b64(forged), "sig": b64(bob.device.sign(labels.SIG_AUTH, forged))}
        await refused(h, "POST", LOGIN, 401, js=body, contains="signature", what="signed by bob's key")
        # alice's own statement naming bob as the member.
        nonce = await challenge(h, alice)
        await refused(h, "POST", LOGIN, 401, js=statement_for(h, alice, nonce, member=bob.member_id),
                      contains="another member", what="alice's statement naming bob")
        # A refused attempt burns the nonce: the genuine statement is now refused as well.
        await refused(h, "POST", LOGIN, 401, js=statement_for(h, alice, nonce), contains="already used")
        # A signature under another purpose (a chain-link tag) is not a login signature.
        nonce = await challenge(h, alice)
        raw = encode({"origin": h.server.url, "nonce": nonce, "member": alice.member_id,
                      "device": alice.device.device_id, "time": int(h.server.clock())})
        body = {"statement": b64(raw), "sig": b64(alice.device.sign(labels.SIG_ORG_LINK, raw))}
        await refused(h, "POST", LOGIN, 401, js=body, contains="signature", what="wrong signature tag")


async def test_statement_for_another_origin_is_refused(p: Pair) -> None:
    alice = identity(p.alice)
    port = p.server.port
    async with Http(p.server) as h:
        for origin in ("https://vault.example.org", f"http://127.0.0.1:{port}",
                       f"https://127.0.0.1:{port + 1}", f"https://localhost:{port}", ""):
            nonce = await challenge(h, alice)
            await refused(h, "POST", LOGIN, 401, js=statement_for(h, alice, nonce, origin=origin),
                          contains="another server", what=origin)
        # A trailing slash is the same origin.
        await log_in(h, statement_for(h, alice, await challenge(h, alice), origin=p.server.url + "/"))


async def test_clock_skew_beyond_the_limit_is_refused(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        for skew in (-601, 601, -86400, 10**9):
            nonce = await challenge(h, alice)
            when = max(0, int(h.server.clock()) + skew)
            await refused(h, "POST", LOGIN, 401, js=statement_for(h, alice, nonce, time=when),
                          contains="clock", what=f"skew {skew}")
        for skew in (-590, 590):
            nonce = await challenge(h, alice)
            await log_in(h, statement_for(h, alice, nonce, time=int(h.server.clock()) + skew))


async def test_garbage_signature_is_refused(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        for label, sig in (("random 64 bytes", os.urandom(64)), ("zeros", bytes(64)),
                           ("too short", os.urandom(10)), ("empty", b""), ("too long", os.urandom(96))):
            body = statement_for(h, alice, await challenge(h, alice))
            await refused(h, "POST", LOGIN, 401, js={**body, "sig": b64(sig)}, contains="signature",
                          what=label)
        body = statement_for(h, alice, await challenge(h, alice))
        sig = bytearray(base64.b64decode(body["sig"]))
        sig[17] ^= 0x40
        await refused(h, "POST", LOGIN, 401, js={**body, "sig": b64(bytes(sig))}, what="one bit flipped")


async def test_missing_or_garbage_bearer_token_is_refused(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        token = await log_in(h, statement_for(h, alice, await challenge(h, alice)))
        await refused(h, "GET", DIRECTORY, 401, contains="log in first", what="no header")
        for header in ("", "Bearer", "Bearer ", "Bearer garbage", f"Bearer {token[:-1]}",
                       f"Bearer {token}x", f"Bearer {'A' * 43}", f"Token {token}", token,
                       "Basic YWxpY2U6c2VjcmV0"):
            await refused(h, "GET", DIRECTORY, 401, headers={"Authorization": header}, what=repr(header))
        assert (await h.call("GET", DIRECTORY, token=token))[0] == 200


async def test_challenge_answers_alike_for_unknown_member_or_device(p: Pair) -> None:
    """The challenge tells nothing about ids: a nonce for anything, which then fails the same way."""
    alice, bob = identity(p.alice), identity(p.bob)
    async with Http(p.server) as h:
        for label, body in (
            ("unknown member", {"member": "nobody", "device": alice.device.device_id}),
            ("alice with bob's device", {"member": alice.member_id, "device": bob.device.device_id}),
            ("alice with an unknown device", {"member": alice.member_id, "device": "d" * 32}),
            ("device id as member id", {"member": alice.device.device_id, "device": alice.device.device_id}),
        ):
            status, res = await h.call("POST", CHALLENGE, js=body)
            assert status == 200 and set(res) == {"nonce", "expires"}, (label, res)
            raw = encode({"origin": p.server.url, "nonce": base64.b64decode(res["nonce"]), "member": body["member"],
                          "device": body["device"], "time": int(p.server.clock())})
            sig = alice.device.sign(labels.SIG_AUTH, raw)  # alice's key: not the key of what the ids name
            await refused(h, "POST", LOGIN, 401, js={"statement": b64(raw), "sig": b64(sig)},
                          contains="login refused: the signature does not verify", what=label)


async def test_challenge_rejects_malformed_requests(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        valid = {"member": alice.member_id, "device": alice.device.device_id}
        await refuse_bad_json(h, CHALLENGE, valid)
        await refused(h, "POST", CHALLENGE, 400, js={**valid, "member": "m" * 65}, what="long member id")


async def test_login_rejects_malformed_requests(p: Pair) -> None:
    alice = identity(p.alice)
    async with Http(p.server) as h:
        nonce = await challenge(h, alice)
        valid = statement_for(h, alice, nonce)
        await refuse_bad_json(h, LOGIN, valid, ["statement", "sig"], encoded_fields=["statement"])
        good = {"origin": h.server.url, "nonce": nonce, "member": alice.member_id,
                "device": alice.device.device_id, "time": int(h.server.clock())}
        for label, fields in (
            ("short nonce", {**good, "nonce": nonce[:31]}),
            ("nonce as text", {**good, "nonce": nonce.hex()}),
            ("missing time", {k: v for k, v in good.items() if k != "time"}),
            ("negative time", {**good, "time": -5}),
            ("extra field", {**good, "admin": True}),
        ):
            raw = encode(fields)
            body = {"statement": b64(raw), "sig": b64(alice.device.sign(labels.SIG_AUTH, raw))}
            await refused(h, "POST", LOGIN, 400, js=body, what=label)
        # None of these reached the nonce: the genuine statement still logs in.
        await log_in(h, valid)


async def test_revoked_device_can_no_longer_log_in(p: Pair) -> None:
    """A device the member revoked loses its session, its challenges and any challenge it held."""
    bob = identity(p.bob)
    puk1 = Home(p.bob.home).unlock().puks[1]
    spare = DeviceKeys.generate()
    async with Http(p.server) as h:
        token = await log_in(h, statement_for(h, bob, await challenge(h, bob)))
        path = f"/api/v1/members/{bob.member_id}/links"
        status, chain = await h.call("GET", f"/api/v1/chains/member/{bob.member_id}", token=token)
        assert status == 200
        head = parse_link(base64.b64decode(chain["links"][-1]))
        box = puk1.seal_for_device(bob.member_id, spare.box_public)
        add = make_link(chain=bob.member_id, seq=head.seq + 1, prev=head.hash,
                        time=max(int(p.server.clock()), head.time), signer=bob.member_id, device=bob.device,
                        type_="device.add",
                        body={"device": device_body(spare, name=f"spare-{os.urandom(2).hex()}"),
                              "puk_gen": puk1.generation,
                              "puk_boxes": [{"device": spare.device_id, "hash": box_hash(box)}],
                              "proof": sign_device_proof(spare, bob.member_id)})
        status, res = await h.call("POST", path, token=token, js=member_json(add, {spare.device_id: box}))
        assert status == 201, res
        spare_id = Identity(bob.member_id, spare)
        spare_token = await log_in(h, statement_for(h, spare_id, await challenge(h, spare_id)))
        assert (await h.call("GET", DIRECTORY, token=spare_token))[0] == 200
        pending = await challenge(h, spare_id)  # answered only after the revocation

        new_puk = PukKeys.generate(puk1.generation + 1)
        new_box = new_puk.seal_for_device(bob.member_id, bob.device.box_public)
        revoke = make_link(chain=bob.member_id, seq=add.seq + 1, prev=add.hash,
                           time=max(int(p.server.clock()), add.time), signer=bob.member_id, device=bob.device,
                           type_="device.revoke",
                           body={"device": spare.device_id,
                                 "puk": {"gen": new_puk.generation, "sign_pk": new_puk.sign_public,
                                         "box_pk": new_puk.box_public},
                                 "puk_boxes": [{"device": bob.device.device_id, "hash": box_hash(new_box)}],
                                 "prev": new_puk.seal_previous(puk1)})
        status, res = await h.call("POST", path, token=token, js=member_json(revoke, {bob.device.device_id: new_box}))
        assert status == 201, res

        await refused(h, "GET", DIRECTORY, 401, token=spare_token, contains="no longer active",
                      what="the revoked device's session")
        # The revoked device still gets a challenge (as anyone does, for any ids), but cannot log in; it
        # holds the device key, so once its signature verified it is told why.
        late = await challenge(h, spare_id)
        await refused(h, "POST", LOGIN, 401, js=statement_for(h, spare_id, late), contains="no longer active",
                      what="a challenge issued after the revocation")
        await refused(h, "POST", LOGIN, 401, js=statement_for(h, spare_id, pending), contains="no longer active",
                      what="a challenge issued before the revocation")
        # The member's other device is unaffected.
        assert (await h.call("GET", DIRECTORY, token=token))[0] == 200
        await log_in(h, statement_for(h, bob, await challenge(h, bob)))
    assert p.bob.json("whoami")["name"] == "bob"


# -- the CLI's passphrase and unlock session ----------------------------------------------------------


def with_passphrase(p: Pair, member: Member, text: str, **env: str) -> Member:
    """The same member's machine, with another passphrase file (and extra environment)."""
    pf = p.root / f"pass-{os.urandom(4).hex()}"
    pf.write_text(text + "\n")
    return Member(member.home, member.name, pf, dict(env))


def test_wrong_passphrase_file_fails_with_one_line(p: Pair) -> None:
    wrong = with_passphrase(p, p.alice, "not the passphrase at all")
    wrong.fails("whoami", contains="passphrase")
    missing = Member(p.alice.home, "alice", p.root / "no-such-file")
    missing.fails("whoami", contains="passphrase")
    assert p.alice.json("whoami")["name"] == "alice"


def test_unlock_session_replaces_the_passphrase_until_lock(p: Pair) -> None:
    unlocked = p.alice.json("unlock", "--minutes", "5")
    assert unlocked["expires"] > p.server.clock()
    # The agent outlived `mvault unlock`; nothing holding the key was written to disk.
    assert agent.status(p.alice.home) is not None
    assert not (p.alice.home / "session.bin").exists()
    secret = unlocked["session"]
    wrong = with_passphrase(p, p.alice, "not the passphrase at all", MVAULT_SESSION=secret)
    assert wrong.json("whoami")["name"] == "alice"
    assert wrong.json("team", "ls") == []
    assert p.alice.json("lock") == {"locked": True, "ended_session": True}
    assert agent.status(p.alice.home) is None and not (p.alice.home / "agent.sock").exists()
    wrong.fails("whoami", contains="passphrase")
    assert p.alice.json("lock") == {"locked": True, "ended_session": False}


def test_unlock_session_needs_its_own_secret(p: Pair) -> None:
    other = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    for value in (other, "not-a-session", ""):
        p.alice.ok("unlock")
        wrong = with_passphrase(p, p.alice, "not the passphrase at all", MVAULT_SESSION=value)
        wrong.fails("whoami", contains="passphrase")


def test_killed_agent_leaves_a_stale_socket_and_the_passphrase_takes_over(p: Pair) -> None:
    secret = p.alice.json("unlock")["session"]
    st = agent.status(p.alice.home)
    assert st is not None
    os.kill(st.pid, signal.SIGKILL)
    wait_until(lambda: agent.status(p.alice.home) is None)
    assert (p.alice.home / "agent.sock").exists()  # SIGKILL: nobody removed it
    # The stale socket is no agent: the right passphrase file still works, a wrong one fails in one line.
    assert with_passphrase(p, p.alice, PASSPHRASE, MVAULT_SESSION=secret).json("whoami")["name"] == "alice"
    with_passphrase(p, p.alice, "not the passphrase at all", MVAULT_SESSION=secret).fails("whoami",
                                                                                         contains="passphrase")
    # A new unlock replaces the stale socket; the old secret opens nothing with the new agent.
    fresh = p.alice.json("unlock")["session"]
    assert with_passphrase(p, p.alice, "not the passphrase at all", MVAULT_SESSION=fresh).json("whoami")
    with_passphrase(p, p.alice, "not the passphrase at all", MVAULT_SESSION=secret).fails("whoami",
                                                                                         contains="passphrase")


def test_unlock_asks_the_passphrase_even_while_unlocked(p: Pair) -> None:
    # A session cannot extend itself: only the passphrase starts (or renews) an agent.
    secret = p.alice.json("unlock")["session"]
    with_passphrase(p, p.alice, "not the passphrase at all", MVAULT_SESSION=secret).fails("unlock",
                                                                                         contains="passphrase")


def wait_until(cond: Callable[[], bool], seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)
