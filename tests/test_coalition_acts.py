"""Issue 20, "the audit log of each organization records its own members' acts in the space": ``coalition.act``
records on two real servers through the real CLI and client. The organization of tests/test_audit.py (alice NCC,
bob, carol the Security Team) is the ALLY; dora's organization (tests/helpers/allies.py) hosts the space. alice's
``coalition approve`` is recorded in the ally's own audit log before the guest code is printed; bob's client records
his acts in the host's space (``client/coalitionacts.record_act``, what the guest's client calls) with his own server;
carol sees them with ``mvault audit log`` and the rules count them (bulk-access, offboarding, need-to-know). The
server is the attacker: a record it makes up or alters is reported; the host's server, which never holds a device
key of the ally's members, cannot sign one; bad records are a 4xx and log nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from client.api import Api
from client.client import Client
from client.coalitionacts import record_act
from client.home import Home
from tests.conftest import Member, Org
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.worlds import World, Worlds, security_member, security_world
from vault.coalitionact import CoalitionAct, act_record, sign_act
from vault.errors import VaultError
from vault.keys import DeviceKeys
from vault.wire.schemas import AttestRequest, Ok

ally = ally_fixture  # the host's server (tests/helpers/allies.py: dora, its founder)
T = TypeVar("T")


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


def _as(m: Member, monkeypatch: pytest.MonkeyPatch, go: Callable[[Client], Awaitable[T]]) -> T:
    """``go`` with ``m``'s real client, logged in to m's own server."""
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))

    async def run() -> T:
        home = Home(m.home)
        cfg = home.config()
        async with Api(cfg.url, bytes.fromhex(cfg.cert_fp)) as api:
            return await go(await Client.open(home, home.unlock(), api))
    return asyncio.run(run())


def _org_id(c: Client) -> str:
    view = c.chains.cached
    assert view is not None
    return view.org.org_id


def _acts(carol: Member) -> list[dict[str, Any]]:
    return [e for e in carol.json("audit", "log", "--action", "coalition.act") if e["result"] == "ok"]


def _rule(carol: Member, rule: str) -> dict[str, Any]:
    report = carol.run("audit", "report", "--json").json()  # exit 1: other rules a young org breaks
    found: dict[str, Any] = next(x for x in report["rules"] if x["rule"] == rule)
    return found


def _space(org: Org, host: Member) -> tuple[str, str]:
    """The ally (alice) records its coalition key, the host (dora) creates the space: (space id, the ally's name)."""
    code = org.alice.json("coalition", "pairing-code", "campaign")["code"]
    space = host.json("coalition", "create", "campaign", "--with", code)["space"]
    return space, host.json("coalition", "show", "campaign")["allies"][0]["name"]


def test_the_allys_log_records_its_members_acts_in_the_space(org: Org, ally: Member, make_member: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, carol = org.alice, org.bob, security_member(org, make_member)
    host = ally
    space, name = _space(org, host)
    guest = alice.json("coalition", "approve", "campaign", "bob", "--space", space)
    ids = {m: m_.json("whoami")["member"] for m, m_ in (("alice", alice), ("bob", bob))}
    (approved,) = _acts(carol)
    assert approved["detail"]["act"] == "approve" and approved["actor"] == ids["alice"]
    assert approved["res"] == {"coalition": "campaign", "space": space, "member": ids["bob"]}
    host.ok("coalition", "add", "campaign", f"bob@{name}", "--approval", guest["code"])

    # bob's client records his acts in the host's space with his own server (what the guest's client calls).
    _as(bob, monkeypatch, lambda c: record_act(c, "campaign", space, "join"))
    _as(bob, monkeypatch, lambda c: record_act(c, "campaign", space, "put", ref=bytes(range(32))))
    acts = _acts(carol)
    assert [(e["actor"], e["detail"]["act"]) for e in acts] == [
        (ids["alice"], "approve"), (ids["bob"], "join"), (ids["bob"], "put")]
    assert all(e["res"]["coalition"] == "campaign" for e in acts)
    assert _rule(carol, "bulk-access")["status"] == "ok"
    assert not [f for f in _rule(carol, "need-to-know")["findings"] if "coalition" in f["message"]], \
        _rule(carol, "need-to-know")
    # 25 reads in the space within minutes: counted by bulk-access as reads (max_reads 20 in 15 minutes).
    _as(bob, monkeypatch, lambda c: record_act(c, "campaign", space, "read", count=25))
    bulk = _rule(carol, "bulk-access")
    assert bulk["status"] == "alert" and any("read 25 documents" in f["message"] for f in bulk["findings"]), bulk

    # A record for a space the organization recorded no coalition key for: refused by the client and the server.
    with pytest.raises(VaultError, match="no coalition key for a space named 'other'"):
        _as(bob, monkeypatch, lambda c: record_act(c, "other", space, "read"))
    assert len(_acts(carol)) == 4


def test_a_removed_member_still_in_a_space_is_reported_by_offboarding(org: Org, ally: Member, make_member: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The ally removes bob from its organization; its log shows him approved into the space and never removed from
    it: offboarding reports it (a warning while the 24 h window runs) until a ``remove`` naming him is recorded."""
    alice, carol = org.alice, security_member(org, make_member)
    space, _ = _space(org, ally)
    alice.ok("coalition", "approve", "campaign", "bob", "--space", space)
    bob_id = org.bob.json("whoami")["member"]
    assert not [f for f in _rule(carol, "offboarding")["findings"] if "coalition space" in f["message"]]
    alice.ok("remove", "bob")
    found = [f for f in _rule(carol, "offboarding")["findings"] if "coalition space campaign" in f["message"]]
    assert [(f["level"], f["subject"]) for f in found] == [("warning", bob_id)], found
    _as(alice, monkeypatch, lambda c: record_act(c, "campaign", space, "remove", subject=bob_id))
    assert not [f for f in _rule(carol, "offboarding")["findings"] if "coalition space" in f["message"]]


def _post(m: Member, monkeypatch: pytest.MonkeyPatch, make: Callable[[Client], tuple[bytes, bytes]]) -> str:
    """Post a hand-made coalition-act attestation as ``m``; the error text ('' when accepted)."""
    async def go(c: Client) -> str:
        await c.chains.view()
        raw, sig = make(c)
        try:
            await c.session.api.post("/api/v1/audit/attest", AttestRequest("coalition-act", record=raw, sig=sig), Ok)
        except VaultError as e:
            return f"{e.status} {e.message}"
        return ""
    return _as(m, monkeypatch, go)


def test_bad_records_are_refused_and_log_nothing(org: Org, ally: Member, make_member: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, carol = org.alice, org.bob, security_member(org, make_member)
    space, _ = _space(org, ally)
    alice_id = alice.json("whoami")["member"]

    def record(c: Client, **kw: Any) -> bytes:
        s = c.session
        args: dict[str, Any] = {"org": _org_id(c), "member": s.me, "device": s.device.device_id,
                                "time": s.now(), "coalition": "campaign", "space": space, "act": "read"}
        args.update(kw)
        return act_record(args.pop("org"), args.pop("member"), args.pop("device"), args.pop("time"),
                          args.pop("coalition"), args.pop("space"), args.pop("act"), **args)

    def signed(**kw: Any) -> Callable[[Client], tuple[bytes, bytes]]:
        return lambda c: (raw := record(c, **kw), sign_act(c.session.device, raw))

    stranger = DeviceKeys.generate()
    cases = {  # what -> (who posts, the attestation, the status)
        "another member named": (bob, signed(member=alice_id), 403),
        "signed by another key": (bob, lambda c: (raw := record(c), sign_act(stranger, raw)), 400),
        "a day ahead": (bob, signed(time=10**10), 400),
        "older than 30 days": (bob, lambda c: (raw := record(c, time=c.session.now() - 31 * 86400),
                                               sign_act(c.session.device, raw)), 400),
        "no coalition of that name": (bob, signed(coalition="other"), 404),
        "an approval by a non-NCC member": (bob, signed(act="approve", subject=alice_id), 403),
        "an approval without its subject": (alice, signed(act="approve"), 400),
        "not a record": (bob, lambda c: (b"\x00junk", sign_act(c.session.device, b"\x00junk")), 400),
    }
    for what, (who, make, status) in cases.items():
        got = _post(who, monkeypatch, make)
        assert got.startswith(str(status)), (what, got)
    assert _acts(carol) == []
    assert _post(alice, monkeypatch, signed(act="approve", subject=alice_id)) == ""  # the NCC, with its subject
    assert len(_acts(carol)) == 1


def test_a_record_the_server_makes_up_or_alters_is_reported(org: Org, ally: Member, make_member: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The ally's own server skips the judge (or the host's server, holding bob's member chain and nothing else,
    tries to sign for him): the events are logged, and need-to-know reports each as a record bob's device did not
    sign. An honest record next to them is not reported."""
    bob, carol = org.bob, security_member(org, make_member)
    space, _ = _space(org, ally)
    _as(bob, monkeypatch, lambda c: record_act(c, "campaign", space, "read"))
    assert not [f for f in _rule(carol, "need-to-know")["findings"] if "coalition act" in f["message"]]
    monkeypatch.setattr("server.coalitionacts.judge_act", lambda *a, **k: None)
    host_key = DeviceKeys.generate()  # not a device of bob's: what a host server could sign with

    def forged(c: Client) -> tuple[bytes, bytes]:  # (the org id is cached: _post read the chains)
        s = c.session
        raw = act_record(_org_id(c), s.me, s.device.device_id, s.now(), "campaign", space, "read", count=500)
        return raw, sign_act(host_key, raw)
    assert _post(bob, monkeypatch, forged) == ""  # the lax server logged it
    found = [f for f in _rule(carol, "need-to-know")["findings"] if "coalition act" in f["message"]]
    assert len(found) == 1 and "without a valid signed record" in found[0]["message"], found
    # and the 500 reads it claims are not counted by bulk-access
    assert not [f for f in _rule(carol, "bulk-access")["findings"] if "read 50" in f["message"]]
    assert CoalitionAct.parse(bytes.fromhex(_acts(carol)[-1]["detail"]["record"])).count == 500
