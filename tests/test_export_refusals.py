"""Issue 20, exports: who may export, what the audit log records, and bad input (clear errors, nothing written).

The real server and CLI (tests/conftest.py), the attestation refused at the HTTP level too (a modified client
cannot record an export it may not make), and the ``exports`` rule as a pure function."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from server.context import DIRECTORY
from tests.conftest import Member, Org
from tests.helpers.chain_world import MWorld
from tests.helpers.http import Http, login_as, refused
from tests.helpers.rules import audit, circle_of, event, ok, only, result
from tests.helpers.worlds import World, Worlds, security_member, security_world


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    """carol in the Security Team, admin of team "sec" (kind security: sensitive)."""
    return security_world(worlds)


@pytest.fixture
def carol(org: Org, make_member: Any) -> Member:
    return security_member(org, make_member)


def _exports(m: Member) -> list[dict[str, Any]]:
    return list(m.json("audit", "log", "--action", "doc.export"))


def test_bad_input_is_refused_clearly_and_writes_nothing(org: Org, carol: Member, tmp_path: Path) -> None:
    alice = org.alice
    doc = tmp_path / "plan.md"
    doc.write_text("plan\n")
    alice.ok("put", "drafting", str(doc), "--as", "plan.md")
    carol.ok("put", "sec", str(doc), "--as", "threats.md")
    out = tmp_path / "out"
    alice.fails("export", "nosuch", "--out", str(out), contains="no team named 'nosuch'")
    alice.fails("export", "drafting", "nosuch.md", "--out", str(out), contains="no document named 'nosuch.md'")
    org.bob.fails("export", "sec", "--out", str(out), contains="no team named 'sec'")  # bob is not in it
    # a sensitive team: the server refuses (the Security Team's approval cannot be recorded yet)
    r = carol.fails("export", "sec", "--out", str(out), contains="Security Team's approval under two-person")
    assert r.code == 1
    assert not out.exists()
    # an existing output is never written into or over (checked before unlocking)
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    alice.fails("export", "drafting", "--out", str(out), contains="exists already")
    target = tmp_path / "x.age"
    target.write_text("mine\n")
    alice.fails("export", "drafting", "--age-recipient", "age1" + "q" * 58, "--out", str(target),
                contains="age recipient")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and target.read_text() == "mine\n"
    assert alice.run("export", "drafting", "--identity", str(target), "--out", str(tmp_path / "y")).code == 2
    assert alice.run("export", "verify", str(tmp_path / "none")).code == 2
    assert alice.run("export", "drafting").code == 2  # no --out
    # none of the refused exports is recorded as done; the one made is, with the rules it concerns
    assert [e for e in _exports(carol) if e["result"] == "ok"] == []
    alice.ok("export", "drafting", "--out", str(tmp_path / "made"))
    (done,) = [e for e in _exports(carol) if e["result"] == "ok"]
    drafting = org.server.app[DIRECTORY].team_by_name("drafting")
    assert drafting is not None
    assert done["res"]["team"] == drafting.team_id and done["detail"]["count"] == 1
    assert set(done["rules"]) == {"exports", "no-master-lists"}
    report = carol.run("audit", "report", "--json")  # exit 1: other rules this young organization breaks
    rule = next(x for x in report.json()["rules"] if x["rule"] == "exports")
    assert rule["status"] == "ok", rule


def test_the_server_refuses_an_export_record_it_should_not_make(org: Org, carol: Member,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    d = org.server.app[DIRECTORY]
    sec, drafting = d.team_by_name("sec"), d.team_by_name("drafting")
    assert sec is not None and drafting is not None
    ids = {ms.name: mid for mid, ms in d.members.items()}
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(carol.passphrase_file))
    keys = {m.name: Home(m.home).unlock() for m in (carol, org.bob)}
    path = "/api/v1/audit/attest"

    async def post() -> None:
        async with Http(org.server) as h:
            bob = await login_as(h, ids["bob"], keys["bob"].device)
            sec_team = {"kind": "doc-export", "team": sec.team_id, "count": 1}
            await refused(h, "POST", path, 404, token=bob, js=sec_team, what="a team bob is not in")
            await refused(h, "POST", path, 400, token=bob, js={"kind": "doc-export", "count": 1},
                          what="no team")
            c = await login_as(h, ids["carol"], keys["carol"].device)
            await refused(h, "POST", path, 403, token=c, js=sec_team, contains="approval",
                          what="a sensitive team")
            await refused(h, "POST", path, 404, token=c, js={"kind": "doc-export", "team": drafting.team_id,
                                                              "count": 1}, what="a team carol is not in")

    asyncio.run(post())
    assert [e for e in _exports(carol) if e["result"] == "ok"] == []


def test_the_exports_rule_flags_an_export_of_a_sensitive_team() -> None:
    world = MWorld()
    alice = world.admit("alice")
    circle = circle_of(world, (alice, "writer"))
    program = world.create_team(world.founder, [(world.founder, "admin"), (alice, "writer")], kind="program")
    t = world.time
    fine = event(t, "doc.export", alice.id, alice.device.device_id, res={"team": program.team_id},
                 detail={"count": 3})
    ok(result(audit(world, [circle, program], [fine]), "exports"))
    refused_one = event(t, "doc.export", alice.id, alice.device.device_id, result="denied",
                        res={"team": circle.team_id}, detail={"count": 3})
    ok(result(audit(world, [circle, program], [fine, refused_one]), "exports"))
    bad = event(t, "doc.export", alice.id, alice.device.device_id, res={"team": circle.team_id}, detail={"count": 2})
    f = only(result(audit(world, [circle, program], [fine, refused_one, bad]), "exports"), "violation")
    assert f.subject == circle.team_id and f.events == (2,) and alice.id in f.message
