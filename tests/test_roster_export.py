"""Issue 18, rule ``no-master-lists``: ``mvault org roster export|open`` end to end on the real server with the real
CLI (the organization of tests/test_incidents.py: carol is the Security Team). The member list is sealed to the named
members and the Security Team only, recorded first (the audit event ``roster.export`` with the device-signed record),
refused beyond three named readers outside the Security Team; a server that lets one through, or makes an export up,
is reported by the rule; a changed file is refused by its reader."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from server.rosters import roster_export
from tests.conftest import Member, Org, join_member
from tests.helpers.worlds import World, Worlds, security_member, security_world
from vault.encoding import decode, encode


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


def _rule(carol: Member) -> dict[str, Any]:
    report = carol.run("audit", "report", "--json").json()  # exit 1: other rules a young org breaks
    found: dict[str, Any] = next(x for x in report["rules"] if x["rule"] == "no-master-lists")
    return found


def _exports(carol: Member) -> list[dict[str, Any]]:
    return [e for e in carol.json("audit", "log", "--action", "roster.export") if e["result"] == "ok"]


def test_a_roster_for_named_readers_and_the_security_team_only(org: Org, make_member: Any, tmp_path: Path) -> None:
    alice, bob, carol = org.alice, org.bob, security_member(org, make_member)
    dave = join_member(org, make_member, "dave")
    out = tmp_path / "roster.bin"
    bob.fails("org", "roster", "export", "--out", str(out), "--to", "alice", contains="may not export the roster")
    done = alice.json("org", "roster", "export", "--out", str(out), "--to", "bob")
    assert len(done["readers"]) == 2 and len(done["outside_security_team"]) == 1 and done["members"] == 4
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"dave" not in out.read_bytes()  # sealed
    shown = bob.json("org", "roster", "open", str(out))
    assert sorted(m["name"] for m in shown["members"]) == ["alice", "bob", "carol", "dave"]
    assert "security" in {m["name"]: m["roles"] for m in shown["members"]}["carol"]
    assert shown["outside_security_team"] == done["outside_security_team"] and shown["readers"] == done["readers"]
    assert sorted(m["name"] for m in carol.json("org", "roster", "open", str(out))["members"]) == [
        "alice", "bob", "carol", "dave"]
    dave.fails("org", "roster", "open", str(out), contains="not sealed to you")
    alice.fails("org", "roster", "open", str(out), contains="not sealed to you")  # the exporter was not named
    alice.fails("org", "roster", "export", "--out", str(out), "--to", "bob", contains="exists already")
    (logged,) = _exports(carol)
    assert logged["detail"]["readers"] == 2 and logged["detail"]["outside"] == 1
    assert _rule(carol)["status"] == "ok"
    # one changed byte anywhere in the sealed part: refused before anything is shown
    data = decode(out.read_bytes())
    assert isinstance(data, dict) and isinstance(data["body"], bytes)
    body = bytearray(data["body"])
    body[-1] ^= 1
    changed = tmp_path / "changed.bin"
    changed.write_bytes(encode({**data, "body": bytes(body)}))
    bob.fails("org", "roster", "open", str(changed), contains="not the one its signed record names")


def test_four_named_readers_are_refused_and_a_server_that_lets_them_through_is_reported(
        org: Org, make_member: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, carol = org.alice, security_member(org, make_member)
    for name in ("dave", "erin"):
        join_member(org, make_member, name)
    four = [a for name in ("alice", "bob", "dave", "erin") for a in ("--to", name)]
    out = tmp_path / "roster.bin"
    alice.fails("org", "roster", "export", "--out", str(out), *four, contains="at most 3 readers outside")
    assert not out.exists() and _exports(carol) == []
    carol.ok("org", "roster", "export", "--out", str(out), *four[2:])  # three besides the Security Team: fine
    assert _rule(carol)["status"] == "ok"
    # a server that skips the limit: the export is logged with its signed record, and the rule reports it
    monkeypatch.setattr("server.rosters.outside_readers", lambda record, org: [])
    alice.ok("org", "roster", "export", "--out", str(tmp_path / "four.bin"), *four)
    found = _rule(carol)
    assert found["status"] == "violated", found
    (f,) = found["findings"]
    assert "to 4 members outside the Security Team" in f["message"]


def test_an_export_the_server_made_up_is_reported(org: Org, make_member: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that logs a roster export without the exporter's record (here: drops the record it was given) is
    reported: the rule believes only a record the exporter's device signed."""
    alice, carol = org.alice, security_member(org, make_member)

    async def drop_record(request: Any, f: Any) -> None:
        await roster_export(request, f)
        from server.notes import NOTES
        for n in request[NOTES]:
            if n.action == "roster.export":
                n.detail = {"readers": n.detail["readers"]}

    monkeypatch.setattr("server.routes.audit.roster_export", drop_record)
    alice.ok("org", "roster", "export", "--out", str(tmp_path / "r.bin"), "--to", "bob")
    found = _rule(carol)
    assert found["status"] == "violated" and "without a valid signed record" in found["findings"][0]["message"]
