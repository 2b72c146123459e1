"""Issue 20, an allied organization's member in the host's coalition space, on two real servers through the real
CLI: the ally's NCC approves its member (a guest code: the member's chain and the signed ``coalition.admit``), a
space admin of the host adds them with it, and the member logs in to the host's server as a guest with its own
device keys. What the host's server sends a guest is asserted: its spaces, their members' chains, never the host's
organization chain, its other members or its audit log (rule no-master-lists). Removal ends the guest's sessions
and rotates the key: with a copy of every box the server holds, the removed guest opens nothing newer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.guests import GuestCode
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.forgery import Forge, team_key, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guests import erin_of
from tests.helpers.http import Http, b64, login_as
from vault.keys import DeviceKeys

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture


_erin = erin_of


async def _guest_view(forge: Forge, erin: DeviceKeys, space: str) -> dict[str, Any]:
    """Everything erin's guest session asks the host's server, with the status of each answer."""
    d, ids = forge.d, forge.ids
    async with Http(forge.server) as h:
        token = await login_as(h, ids["erin"], erin)
        seen: dict[str, Any] = {}
        for label, path in (("directory", "/api/v1/directory"), ("org", "/api/v1/chains/org"),
                            ("bob", f"/api/v1/chains/member/{ids['bob']}"),
                            ("alice", f"/api/v1/chains/member/{ids['alice']}"),
                            ("space", f"/api/v1/chains/team/{space}"), ("ops", f"/api/v1/chains/team/{forge.ops}"),
                            ("boxes", f"/api/v1/teams/{space}/boxes"), ("docs", f"/api/v1/teams/{space}/docs"),
                            ("audit", "/api/v1/audit/checkpoint"), ("restore", "/api/v1/restore/acceptances")):
            seen[label] = await h.call("GET", path, token=token)
        seen["attest"] = await h.call("POST", "/api/v1/audit/attest", token=token,
                                      js={"kind": "doc-export", "team": space, "count": 1})
        assert d.org is not None
        return seen


def test_an_allys_member_joins_the_space_as_a_guest(forge: Forge, ally: Member, make_member: Any,
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    alice, bob = forge.org.alice, forge.org.bob
    erin = _erin(forge, ally, make_member, monkeypatch)
    code = ally.json("coalition", "pairing-code", "campaign")
    space = alice.json("coalition", "create", "campaign", "--with", code["code"])["space"]
    org = alice.json("coalition", "show", "campaign")["allies"][0]["name"]
    who = f"erin@{org}"
    alice.fails("coalition", "add", "campaign", who, contains="needs their organization's approval")
    # Only the device holding the ally's coalition key approves; a guest is a writer at most.
    erin.fails("coalition", "approve", "campaign", "erin", "--space", space, contains="no coalition key")
    guest = ally.json("coalition", "approve", "campaign", "erin", "--space", space)
    assert guest["code"].startswith("mvault-guest:1:") and guest["member"] == forge.ids["erin"]
    alice.fails("coalition", "add", "campaign", who, "--role", "reader", "--approval", guest["code"],
                contains="approves role writer")
    alice.fails("coalition", "add", "campaign", f"dora@{org}", "--approval", guest["code"], contains="not dora@")
    alice.fails("coalition", "add", "campaign", who, "--approval", guest["code"][:-8] + "AAAAAAAA",
                contains="coalition.admit")  # a changed statement
    assert forge.ids["erin"] not in forge.d.members  # nothing refused let her chain in
    (tmp_path / "guest.code").write_text(guest["code"] + "\n")
    assert alice.json("coalition", "add", "campaign", who, "--approval", str(tmp_path / "guest.code"))["key_shared"]
    members = {m["name"]: (m["organization"], m["role"])
               for m in alice.json("coalition", "show", "campaign")["members"]}
    assert members[f"erin@{org}"] == (org, "writer") and set(members) == {"alice", f"erin@{org}"}  # a guest: NAME@ORG
    note = tmp_path / "plan.txt"
    note.write_text("joint campaign plan\n")
    alice.ok("put", "campaign", str(note))
    forge.org.server = forge.server.restart()  # the guest's chain and add replay from storage as they were stored

    # What the host's server sends erin's guest session: her space, its members' chains; nothing of the host's roster.
    seen = asyncio.run(_guest_view(forge, forge.device("erin"), space))
    status, directory = seen["directory"]
    assert status == 200 and set(directory["members"]) == {forge.ids["alice"], forge.ids["erin"]}
    assert set(directory["teams"]) == {space} and directory["org"]["seq"] == 0
    assert directory["org"]["root"] == forge.d.require_org().root.hex()
    for label in ("org", "audit", "restore", "attest"):
        assert seen[label][0] == 403, (label, seen[label])
    assert seen["bob"][0] == 404 and seen["ops"][0] == 404  # as for a member or team the server does not hold
    assert seen["alice"][0] == 200 and seen["space"][0] == 200 and seen["docs"][0] == 200
    assert len(seen["docs"][1]["docs"]) == 1
    assert [b["gen"] for b in seen["boxes"][1]["boxes"]] == [1]
    team_key(forge, "erin", space, 1)  # her box opens with her own keys (PUK from her own organization)
    assert bob.json("coalition", "ls") == []

    # Removed by the host: her sessions and logins end (401), the key rotates, and she opens nothing newer.
    assert alice.json("coalition", "remove", "campaign", who)["rotated"] is True
    with pytest.raises(AssertionError, match="nor a guest of any of its coalition spaces"):
        asyncio.run(_guest_view(forge, forge.device("erin"), space))
    with pytest.raises(AssertionError, match="holds no key"):
        team_key(forge, "erin", space, 2)
    # The approval was used once: it cannot bring her back.
    alice.fails("coalition", "add", "campaign", who, "--approval", guest["code"], contains="used once")


def test_the_guests_route_refuses_what_the_judge_refuses(forge: Forge, ally: Member, make_member: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /api/v1/teams/{team}/guests: a member chain enters only with an add the one judge accepts (an approval
    signed with the key the space pins, for that member, by a space admin, on the current head); anything else is
    a 4xx and stores nothing."""
    _erin(forge, ally, make_member, monkeypatch)
    alice, ids = forge.org.alice, forge.ids
    code = ally.json("coalition", "pairing-code", "campaign")
    space = alice.json("coalition", "create", "campaign", "--with", code["code"])["space"]
    alice.ok("team", "add", "campaign", "bob", "--role", "writer")
    guest = GuestCode.parse(ally.json("coalition", "approve", "campaign", "erin", "--space", space)["code"])
    chain = [b64(x.wire) for x in guest.chain]
    add = {"member": ids["erin"], "role": "writer", "until": None, "key": None}
    approved = {**add, "approval": {"statement": guest.statement, "sig": guest.sig}}
    head = forge.d.team(space).seq
    cases = [  # (who posts, the team in the path, the body, the status)
        ("alice", space, {"member_links": chain, "link": b64(team_link(forge, space, "alice", "team.add", add).wire)},
         400),  # no approval: a host member's add, not a guest's
        ("alice", space, {"member_links": [b64(b"not a link")],
                          "link": b64(team_link(forge, space, "alice", "team.add", approved).wire)}, 400),
        ("alice", space, {"member_links": chain, "link": b64(team_link(
            forge, space, "alice", "team.add", {**approved, "member": ids["bob"]}).wire)}, 400),  # another member
        ("bob", space, {"member_links": chain, "link": b64(team_link(forge, space, "bob", "team.add", approved).wire)},
         403),  # a writer is no space admin
        ("alice", "0" * len(space), {"member_links": chain,
                              "link": b64(team_link(forge, space, "alice", "team.add", approved).wire)}, 404),
        ("alice", space, {"member_links": chain, "link": b64(team_link(
            forge, space, "alice", "team.add", approved, seq=head, prev=forge.d.team_links[space][-2].hash).wire)},
         409),  # not on the current head
    ]

    async def post() -> list[int]:
        async with Http(forge.server) as h:
            tokens = {m: await login_as(h, ids[m], forge.device(m)) for m in ("alice", "bob")}
            return [(await h.call("POST", f"/api/v1/teams/{team}/guests", js=body, token=tokens[who]))[0]
                    for who, team, body, _ in cases]

    assert asyncio.run(post()) == [status for *_, status in cases]
    assert ids["erin"] not in forge.d.members and forge.d.team(space).seq == head
