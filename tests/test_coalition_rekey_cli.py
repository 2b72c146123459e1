"""Issue 20, session 17: the coalition key's rotation when a member leaves the NCC, end to end (docs/lifecycle.md
"Every NCC member holds the coalition key", steps 1-3). Two real servers (the host: alice's organization,
tests/helpers/forgery.py; the ally: dora's, tests/helpers/allies.py) and the real CLI.

`role revoke gina ncc` on the ally replaces the ally's coalition key in the same command (client/coalitionrekey.py);
the ally's own replay refuses the old key at once; a guest (erin) carries the rekey into the host's space at her next
contact (client/expulsions.py ``carry``), after which the host refuses gina's approval signed with the old key and
takes the remaining NCC's, signed with the new one. A malicious host server that drops the carried rekey, or serves
an old-key approval after it, is caught by the guest's client (exit 3); so is a rival rekey the space took first.
The host's own key follows its NCC the same way (`role revoke bob ncc` on the host carries it into the space).

Session 18: the two-server set-up of the seven tests that start from it (``_setup``: the ally, its five members,
the space with erin) is built once per worker with the host's world and copied for each test (``org_world``, ``w``:
the ally's server restarted on its port from the copy), as the ``org`` worlds are (tests/helpers/worlds.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from client.guests import GuestCode
from client.home import Home
from tests.conftest import Member, Org, ServerThread
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.allies import own_server
from tests.helpers.forgery import Forge, Forgery, _forge_build, served, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guest_world import _reserve_port
from tests.helpers.members import session
from tests.helpers.worlds import World, Worlds
from vault.chains.coalition import CoalitionKey, expel_statement, rekey_statement, signed_statement
from vault.errors import ChainError

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture


def _setup(org: Org, make_member: Any) -> dict[str, Any]:
    """Built once per worker (``org_world`` below): the ally's server and dora; dora and gina the ally's NCC (gina
    holding the key from her box), the host's space with erin in it; gina's approval of fred, signed with the old key
    before she leaves the NCC (``old_code``). What the tests need to know of it is kept in ``rekey.json``."""
    alice = org.alice
    root = make_member("dora").home.parent
    ally_server = ServerThread(root / "ally-server", _reserve_port()).start()
    try:
        dora = make_member("dora")
        assert ally_server.invite is not None
        dora.ok("join", ally_server.invite, "--name", "dora")
        people = {n: make_member(n) for n in ("erin", "fred", "gina", "hank")}
        ids = {}
        for name, m in people.items():  # as tests/helpers/guests.py erin_of
            m.ok("join", dora.json("invite")["invite"], "--name", name)
            ids[name] = m.json("whoami")["member"]
        pairing = dora.json("coalition", "pairing-code", "campaign")["code"]
        dora.ok("role", "grant", "gina", "ncc", "--until", "2099-01-01")  # dora's client seals the key to gina
        space = alice.json("coalition", "create", "campaign", "--with", pairing)["space"]
        ally_name = alice.json("coalition", "show", "campaign")["allies"][0]["name"]
        code = people["gina"].json("coalition", "approve", "campaign", "erin", "--space", space)["code"]
        alice.ok("coalition", "add", "campaign", f"erin@{ally_name}", "--approval", code)
        people["erin"].ok("coalition", "join", alice.json("coalition", "join-code", "campaign")["code"])
        old_code = people["gina"].json("coalition", "approve", "campaign", "fred", "--space", space)["code"]
    finally:
        ally_server.stop()
    setup = {"ally_port": ally_server.port, "ids": ids, "space": space, "org": ally_name, "old_code": old_code,
             "old_key": pairing.split(":")[3]}
    (root / "rekey.json").write_text(json.dumps(setup))
    return setup


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    """The world the ``forge`` of this module's tests starts from: ``forge_world``'s, then ``_setup`` on it and on
    the ally's server (copied with it: tmp_path/ally-server), built once per worker."""
    return worlds.org_then("org-forge-rekey", lambda org, make_member: (_forge_build(org, make_member),
                                                                         _setup(org, make_member)))


@pytest.fixture
def w(forge: Forge, make_member: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``_setup``'s state, copied: dora (``w["dora"]``) and her members on the ally's server, restarted on its port."""
    setup = json.loads((tmp_path / "rekey.json").read_text())
    ally_server = ServerThread(tmp_path / "ally-server", setup["ally_port"]).start()
    try:
        forge.ids.update(setup["ids"])
        people = {n: make_member(n) for n in ("dora", "erin", "fred", "gina", "hank")}
        yield {**people, "space": setup["space"], "org": setup["org"], "old_code": setup["old_code"],
               "old_key": bytes.fromhex(setup["old_key"])}
    finally:
        ally_server.stop()


def test_gina_leaves_the_ncc_the_key_is_replaced_and_carried(forge: Forge, w: dict[str, Any], make_member: Any,
                                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    alice, dora = forge.org.alice, w["dora"]
    space, org, old = w["space"], w["org"], w["old_key"]
    out = dora.json("role", "revoke", "gina", "ncc")
    [rekeyed] = out["coalition_rekeys"]
    assert (rekeyed["name"], rekeyed["state"]) == ("campaign", "recorded"), out
    new = bytes.fromhex(rekeyed["key"])
    assert Home(dora.home).unlock().coalitions == {"campaign": new_seed(dora, new)}  # the old seed forgotten

    # The ally's own replay refuses the old key at once: an org.remove whose coalition.expel gina's old seed signed
    gina_seed = Home(w["gina"].home).unlock().coalitions["campaign"]
    assert CoalitionKey(gina_seed).public == old
    asyncio.run(_old_key_expel_refused(own_server(tmp_path), dora, gina_seed, w["hank"]))

    # The host still pins the old key: the remaining NCC's approval (new key) is refused until a guest carries it
    # (the code stripped of the rekeys it carries: test_a_guest_code_carries_the_rekey shows them carried)
    hank_code = replace(GuestCode.parse(dora.json("coalition", "approve", "campaign", "hank", "--space",
                                                  space)["code"]), rekeys=()).code
    alice.fails("coalition", "add", "campaign", f"hank@{org}", "--approval", hank_code,
                contains="not signed with the coalition key")
    carried = w["erin"].ok("--space", "campaign", "ls", "campaign")
    assert "carried your organization's new coalition key to coalition space campaign" in carried.err, carried.err
    team = forge.d.team(space)
    [pin] = team.allies.values()
    assert pin.key == new and team.rekeys[old].new == new
    assert forge.d.team_links[space][-1].type == "coalition.rekey"
    # gina's approval signed with the old key is refused by the host now; the new key's is taken
    alice.fails("coalition", "add", "campaign", f"fred@{org}", "--approval", w["old_code"],
                contains="not signed with the coalition key")
    alice.ok("coalition", "add", "campaign", f"hank@{org}", "--approval", hank_code)
    assert forge.ids["hank"] in forge.d.team(space).members
    again = w["erin"].ok("--space", "campaign", "ls", "campaign")  # nothing left to carry
    assert "coalition key" not in again.err, again.err


def new_seed(m: Member, key: bytes) -> bytes:
    seed = Home(m.home).unlock().coalitions["campaign"]
    assert CoalitionKey(seed).public == key
    return seed


async def _old_key_expel_refused(server: Any, dora: Member, old_seed: bytes, hank: Member) -> None:
    async with session(server, dora) as s:
        view = await s.chains.view()
        hank_id = view.member_by_name("hank").member_id
        expel = signed_statement(CoalitionKey(old_seed), expel_statement(view.org.root, hank_id, s.session.now()))
        with pytest.raises(ChainError, match="not signed with a coalition key recorded"):
            await s.chains.append_org("org.remove", {"member": hank_id, "reason": "", "coalition": [expel]})
        assert hank_id in (await s.chains.view(refresh=True)).org.members
        assert (await s.chains.view()).org.members[hank_id].removed_at is None


def test_a_guest_code_carries_the_rekey(forge: Forge, w: dict[str, Any], make_member: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No guest of the ally contacted the host since the rekey (its server withholding it from them, say): dora's
    guest code carries the ally's rekeys and alice's `coalition add` puts the one the space needs in first; gina's
    old-key approval is refused after it; erin's next contact finds nothing to carry."""
    alice, dora = forge.org.alice, w["dora"]
    space, org = w["space"], w["org"]
    new = bytes.fromhex(dora.json("role", "revoke", "gina", "ncc")["coalition_rekeys"][0]["key"])
    code = dora.json("coalition", "approve", "campaign", "hank", "--space", space)["code"]
    assert len(GuestCode.parse(code).rekeys) == 1
    alice.ok("coalition", "add", "campaign", f"hank@{org}", "--approval", code)
    assert [x.type for x in forge.d.team_links[space][-2:]] == ["coalition.rekey", "team.add"]
    assert [a.key for a in forge.d.team(space).allies.values()] == [new]
    alice.fails("coalition", "add", "campaign", f"fred@{org}", "--approval", w["old_code"],
                contains="not signed with the coalition key")
    again = w["erin"].ok("--space", "campaign", "ls", "campaign")
    assert "coalition key" not in again.err, again.err


def test_removing_an_ncc_member_who_is_a_guest_expels_then_rekeys(forge: Forge, w: dict[str, Any], make_member: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """dora removes gina (NCC, and a guest in the space): the `org.remove` carries gina's `coalition.expel` signed
    with the old key, then the same command replaces the key. erin's next contact carries the expulsion first (the
    space still pins the old key), then the rekey: gina is out, the new key pinned, nothing left over (with the rekey
    first, the old-key expulsion would be refused there and gina left in)."""
    alice, dora = forge.org.alice, w["dora"]
    space, org = w["space"], w["org"]
    code = dora.json("coalition", "approve", "campaign", "gina", "--space", space)["code"]
    alice.ok("coalition", "add", "campaign", f"gina@{org}", "--approval", code)
    out = dora.json("remove", "gina")
    assert out["status"] == "removed" and [r["state"] for r in out["coalition_rekeys"]] == ["recorded"], out
    new = bytes.fromhex(out["coalition_rekeys"][0]["key"])
    carried = w["erin"].ok("--space", "campaign", "ls", "campaign").err
    assert "carried your organization's expulsion of gina" in carried and "new coalition key" in carried, carried
    assert "warning" not in carried, carried
    team = forge.d.team(space)
    assert forge.ids["gina"] not in team.members and [a.key for a in team.allies.values()] == [new]
    assert [x.type for x in forge.d.team_links[space][-2:]] == ["coalition.remove", "coalition.rekey"]


def test_a_host_server_dropping_the_carried_rekey_is_caught(forge: Forge, w: dict[str, Any], make_member: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's server answers erin's carried rekey and keeps nothing of it: her client stops (exit 3)."""
    w["dora"].ok("role", "revoke", "gina", "ncc")
    real = forge.d.commit_team

    def drop(state: Any, link: Any) -> None:
        if link.type != "coalition.rekey":
            real(state, link)

    monkeypatch.setattr(forge.d, "commit_team", drop)
    r = w["erin"].run("--space", "campaign", "ls", "campaign")
    assert r.code == 3 and "accepted your organization's rekey" in r.err, (r.code, r.err)
    assert [pin.key for pin in forge.d.team(w["space"]).allies.values()] == [w["old_key"]]


def test_a_host_server_replaying_an_old_key_approval_after_the_rekey_is_caught(
        forge: Forge, w: dict[str, Any], make_member: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After erin carried the rekey, the host's server serves fred's add carrying gina's approval signed with the old
    key (a space admin's link: alice's device signs it) to the guest: her client refuses the chain (exit 3)."""
    alice, dora = forge.org.alice, w["dora"]
    space, org, erin = w["space"], w["org"], w["erin"]
    dora.ok("role", "revoke", "gina", "ncc")
    erin.ok("--space", "campaign", "ls", "campaign")  # carries the rekey
    fred_code = dora.json("coalition", "approve", "campaign", "fred", "--space", space)["code"]
    alice.ok("coalition", "add", "campaign", f"fred@{org}", "--approval", fred_code)  # fred's chain on the host
    alice.ok("coalition", "remove", "campaign", f"fred@{org}")
    erin.ok("--space", "campaign", "ls", "campaign")
    old = GuestCode.parse(w["old_code"])
    add = team_link(forge, space, "alice", "team.add", {"member": forge.ids["fred"], "role": "writer",
                                                         "until": None, "key": None,
                                                         "approval": {"statement": old.statement, "sig": old.sig}})
    with served(forge, Forgery("old-key add", space, add, "not signed with the coalition key")):
        r = erin.run("--space", "campaign", "ls", "campaign")
    assert r.code == 3 and "not signed with the coalition key" in r.err, (r.code, r.err)
    erin.ok("--space", "campaign", "ls", "campaign")


def test_a_rival_rekey_taken_first_stops_the_guest(forge: Forge, w: dict[str, Any], make_member: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """gina, out of the NCC, signs a rekey to a key of her own with the old key and has it carried first (here by
    alice's in-process client: any member of the space may carry one): the space takes it (signed with the key pinned
    then); erin's client, carrying the NCC's true rekey, finds the space pinning a key her organization never
    recorded and stops, exit 3, for the Security Team."""
    w["dora"].ok("role", "revoke", "gina", "ncc")
    gina_seed = Home(w["gina"].home).unlock().coalitions["campaign"]
    asyncio.run(_carry_rival(forge, w["space"], gina_seed))
    r = w["erin"].run("--space", "campaign", "ls", "campaign")
    assert r.code == 3 and "never recorded" in r.err and "Security Team" in r.err, (r.code, r.err)


async def _carry_rival(forge: Forge, space: str, seed: bytes) -> None:
    async with session(forge.server, forge.org.alice) as s:
        team = (await s.chains.view()).teams[space]
        [root] = team.allies
        rival = signed_statement(CoalitionKey(seed), rekey_statement(root, CoalitionKey.generate().public,
                                                                     s.session.now()))
        await s.chains.append_team(team, "coalition.rekey", dict(rival))
        assert (await s.chains.view(refresh=True)).teams[space].allies[root].key != CoalitionKey(seed).public


def test_the_hosts_own_key_follows_its_ncc(forge: Forge, w: dict[str, Any], make_member: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's NCC loses bob: alice's `role revoke bob ncc` replaces the host's coalition key for the space and
    carries it into the space at once (she is a member); the guest's replay follows and a host member's entry
    approved with the new key is taken."""
    alice = forge.org.alice
    space = w["space"]
    alice.ok("role", "grant", "bob", "ncc", "--until", "2099-01-01")
    old = forge.d.team(space).host_key
    out = alice.json("role", "revoke", "bob", "ncc")
    [rekeyed] = out["coalition_rekeys"]
    assert rekeyed["state"] == "recorded", out
    team = forge.d.team(space)
    assert team.host_key == bytes.fromhex(rekeyed["key"]) != old and old in team.host_retired
    assert forge.d.team_links[space][-1].type == "coalition.rekey"
    alice.ok("coalition", "add", "campaign", "carol")  # approved with the new key
    w["erin"].ok("--space", "campaign", "ls", "campaign")  # the guest's replay takes the rekey and the add


def test_two_person_rekey_the_proposer_seals_once_recorded(ally: Member, make_member: Any,
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Three NCC members (dora, gina, hank): gina's NCC revoked by two of them; hank's command (the one that puts it
    in force) proposes the new key, sealed in the proposal to dora and himself, never to gina (session 21); dora's
    `coalition rekey` records it (her own rekey statement, signed with the old key from her box, after her box in the
    proposal opened to the new key), which files those boxes; hank's next `coalition rekey` adopts it. gina, out of
    the NCC, signs nothing the chain takes."""
    dora = ally
    people = {}
    for name in ("gina", "hank"):
        people[name] = make_member(name)
        people[name].ok("join", dora.json("invite")["invite"], "--name", name)
        monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(people[name].passphrase_file))
    gina, hank = people["gina"], people["hank"]
    dora.json("coalition", "pairing-code", "campaign")
    dora.ok("role", "grant", "gina", "ncc", "--until", "2099-01-01")
    assert dora.json("role", "grant", "hank", "ncc", "--until", "2099-01-01")["proposed"] is True
    gina.ok("role", "grant", "hank", "ncc", "--until", "2099-01-01")
    dora.json("coalition", "pairing-code", "campaign")  # dora's device seals the key to hank
    old = CoalitionKey(Home(dora.home).unlock().coalitions["campaign"]).public
    first = dora.json("role", "revoke", "gina", "ncc")
    assert first["proposed"] is True and "coalition_rekeys" not in first  # not in force: nothing rekeyed
    [proposed] = hank.json("role", "revoke", "gina", "ncc")["coalition_rekeys"]
    assert proposed["state"] == "proposed", proposed
    new = bytes.fromhex(proposed["key"])
    assert asyncio.run(_recorded(tmp_path, dora)) == (old, {"dora", "gina", "hank"})  # only proposed
    gina.fails("coalition", "rekey", "campaign")  # out of the NCC: refused, the proposal stands
    assert dora.json("coalition", "rekey", "campaign")["state"] == "signed"  # her signature records hank's key
    assert asyncio.run(_recorded(tmp_path, dora)) == (new, {"dora", "hank"})  # the proposal's boxes, filed
    assert hank.json("coalition", "rekey", "campaign")["state"] == "recorded"  # hank's device adopts it
    assert asyncio.run(_recorded(tmp_path, dora)) == (new, {"dora", "hank"})
    dora.ok("coalition", "approve", "campaign", "gina", "--space", "ab" * 16)  # dora opens her box of the new key
    assert CoalitionKey(Home(dora.home).unlock().coalitions["campaign"]).public == new


async def _recorded(tmp_path: Path, dora: Member) -> tuple[bytes, set[str]]:
    """The key the ally's chain records for ``campaign`` and who holds a box of it."""
    async with session(own_server(tmp_path), dora) as s:
        view = await s.chains.view(refresh=True)
        key = view.org.coalitions["campaign"].key
        return key, {view.name_of(m) for m, sh in view.org.coalition_shares.get("campaign", {}).items()
                     if sh.key == key}


def test_stepping_down_from_the_ncc_leaves_the_rekey_to_the_others(ally: Member, make_member: Any,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """gina steps down from the NCC herself (one signature): her command cannot rekey (she is out of the NCC) and
    says who must; dora's `coalition rekey` then records the new key at once (the NCC is dora alone)."""
    dora, gina = ally, make_member("gina")
    gina.ok("join", dora.json("invite")["invite"], "--name", "gina")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(gina.passphrase_file))
    dora.json("coalition", "pairing-code", "campaign")
    dora.ok("role", "grant", "gina", "ncc", "--until", "2099-01-01")
    [left] = gina.json("role", "revoke", "gina", "ncc")["coalition_rekeys"]
    assert left["state"] == "not held" and "mvault coalition rekey campaign" in left["note"], left
    old = asyncio.run(_recorded(tmp_path, dora))[0]
    out = dora.json("coalition", "rekey", "campaign")
    assert out["state"] == "recorded" and asyncio.run(_recorded(tmp_path, dora)) == (bytes.fromhex(out["key"]),
                                                                                    {"dora"})
    assert bytes.fromhex(out["key"]) != old
