"""``mvault incident departure|ls|show|review|clear``: the real server, the real CLI.

The organization is the one of tests/test_audit.py (alice founded it, bob writes in "drafting", carol is
the Security Team, admin of team "sec" whose key seals the audit log), built once. What the exposure report
must say is computed here from what the test made bob do, not from the code that reports it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.api import Api
from client.audit import incidents
from client.client import Client
from client.home import Home
from tests.conftest import Member, Org, ServerThread
from tests.helpers.db import sql
from tests.helpers.members import unlock_at_first_run, unlock_here
from tests.helpers.worlds import World, Worlds, security_member, security_world
from vault.errors import Conflict, IntegrityError

DAY = 86400


@dataclass
class Sec:
    org: Org
    alice: Member  # founder, NCC; holds the key of "drafting", not of "sec"
    bob: Member  # writer in "drafting"
    carol: Member  # Security Team (admin of "sec"), made NCC by the tests that need her to remove someone

    @property
    def server(self) -> ServerThread:
        return self.org.server


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


@pytest.fixture
def sec(org: Org, make_member: Any) -> Sec:
    """alice's and carol's commands go through an unlock agent from their first (no Argon2id each: carol's ~23
    incident commands, alice's ~15; session 21; the unlock itself: tests/test_auth.py)."""
    sec = Sec(org, org.alice, org.bob, security_member(org, make_member))
    unlock_at_first_run(sec.alice, sec.carol)
    return sec


def _put(m: Member, team: str, path: Path, text: str) -> str:
    path.write_text(text)
    [row] = m.json("put", team, str(path))
    return str(row["vid"])


def _generations(m: Member) -> dict[str, int]:
    return {t["name"]: t["generation"] for t in m.json("team", "ls")}


def _departed_world(sec: Sec, make_member: Any, tmp_path: Path) -> dict[str, Any]:
    """What bob could read and did, made by the test: the expected exposure, notify list and trust graph."""
    alice, bob = sec.alice, sec.bob
    unlock_here(alice, bob, sec.carol)  # their ~25 commands skip Argon2id (the unlock itself: tests/test_auth.py)
    alice.ok("role", "grant", "carol", "ncc", "--until", "2099-01-01")
    alice.ok("team", "create", "ops", "--kind", "program")
    alice.ok("team", "add", "ops", "bob", "--role", "admin")
    alice.ok("team", "create", "closed", "--kind", "program")  # never bob's
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    a, b = (row["vid"] for row in alice.json("put", "drafting", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")))
    c = _put(bob, "drafting", tmp_path / "c.txt", "by bob")
    o = _put(alice, "ops", tmp_path / "o.txt", "ops plan")
    _put(alice, "closed", tmp_path / "s.txt", "not for bob")
    bob.ok("get", "drafting", "a.txt", "-o", str(tmp_path / "got-a"))
    bob.ok("get", "ops", "o.txt", "-o", str(tmp_path / "got-o"))
    dave = make_member("dave")
    dave.ok("join", bob.json("invite")["invite"], "--name", "dave")  # bob's invite: dave waits for admission
    alice.ok("admit", "dave")
    bob.ok("vouch", "dave")
    bob.ok("team", "add", "ops", "dave", "--role", "reader")  # bob holds the ops key: he boxes it for dave
    ids = {m["name"]: m["member"] for m in alice.json("members")}  # one command for the three ids
    return {"readable": {"drafting": {a, b, c}, "ops": {o}}, "fetched": {"drafting": {a}, "ops": {o}},
            "alice": ids["alice"], "dave": ids["dave"], "bob": ids["bob"]}


def test_departure_removes_rotates_reports_and_records(sec: Sec, make_member: Any, tmp_path: Path) -> None:
    made = _departed_world(sec, make_member, tmp_path)
    before = _generations(sec.alice)
    info = sec.carol.json("incident", "departure", "bob", "--reason", "left for a rival \x1b[31mgroup")
    assert set(info) >= {"id", "kind", "member", "removal", "rotated_teams", "pending_rotation_teams", "exposure",
                         "notify", "trust_graph", "reviews_due"}
    assert info["kind"] == "departure" and info["member"] == made["bob"]
    # Removed: by carol (NCC), at once (bob holds no NCC or Security Team role); the reason is not in the chain.
    assert info["removal"]["status"] == "removed" and info["removal"]["seq"] > 0
    assert next(m for m in sec.alice.json("members") if m["name"] == "bob")["status"] == "removed"
    sec.bob.fails("ls", "drafting")
    assert "rival" not in str(sec.alice.json("audit", "log"))
    # Exposure: exactly the teams bob was in, every version he could decrypt, and what he fetched.
    teams = {t["name"]: t for t in info["exposure"]["teams"]}
    assert set(teams) == {"drafting", "ops"}
    for name, vids in made["readable"].items():
        assert {v["vid"] for v in teams[name]["versions"]} == vids, name
        assert {v["vid"] for v in teams[name]["versions"] if v["fetched"]} == made["fetched"][name], name
    # Whom to notify: the co-members of his teams, each once, with the teams they shared.
    assert {n["member"]: n["teams"] for n in info["notify"]} == {made["alice"]: ["drafting", "ops"],
                                                                   made["dave"]: ["ops"]}
    # The trust graph: the invite he made, the vouch and the team add he signed.
    graph = info["trust_graph"]
    assert [x["member"] for x in graph["invited"]] == [made["dave"]]
    assert [x["member"] for x in graph["vouched"]] == [made["dave"]]
    assert [(x["team_name"], x["member"]) for x in graph["added"]] == [("ops", made["dave"])]
    # Rotation: carol holds neither key, so both wait for a key holder; alice's next command rotates them.
    assert info["rotated_teams"] == [] and sorted(info["pending_rotation_teams"]) == ["drafting", "ops"]
    after = _generations(sec.alice)
    assert {t: after[t] for t in ("drafting", "ops")} == {"drafting": before["drafting"] + 1, "ops": before["ops"] + 1}
    assert len(info["reviews_due"]) == 4
    # The record: private, in the Security Team's team, with the reason; listed with its first review due.
    shown = sec.carol.json("incident", "show", info["id"])
    assert shown["incident"]["reason"] == "left for a rival \x1b[31mgroup" and shown["version"] == 1
    assert shown["incident"]["removal"] == info["removal"]
    human = sec.carol.ok("incident", "show", info["id"]).out
    assert "\x1b" not in human and "rival \\x1b[31mgroup" in human
    [row] = sec.carol.json("incident", "ls")
    assert row["id"] == info["id"] and row["next_review"] == shown["incident"]["opened"] + 7 * DAY
    assert not row["overdue"]


def test_reviews_fall_due_weekly_and_clear_closes(sec: Sec, make_member: Any, tmp_path: Path) -> None:
    dave = make_member("dave")
    dave.ok("join", sec.alice.json("invite")["invite"], "--name", "dave")
    sec.alice.ok("role", "grant", "carol", "ncc", "--until", "2099-01-01")
    opened = sec.carol.json("incident", "departure", "dave")
    iid = opened["id"]
    # A week and a day later, the first review is overdue: in `incident ls` and in the audit report.
    sec.server.advance(8 * DAY)
    sec.carol.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(8 * DAY)
    [row] = sec.carol.json("incident", "ls")
    assert row["overdue"] and row["reviews_done"] == 0
    page = tmp_path / "report.html"
    report = sec.carol.run("audit", "report", "--html", str(page), "--json").json()
    assert report["incidents"]["readable"] and [x["id"] for x in report["incidents"]["open"]] == [iid]
    assert report["incidents"]["open"][0]["overdue"]
    table = page.read_text().split('<section id="incidents">')[1].split("</section>")[0]
    assert iid in table and "dave" in table and ">overdue<" in table
    assert "OVERDUE" in sec.carol.run("audit", "report").out
    # A review records what it looked at; the next one is due a week after the first date.
    done = sec.carol.json("incident", "review", iid, "--note", "no activity")
    assert done["version"] == 2 and done["review"]["note"] == "no activity"
    [row] = sec.carol.json("incident", "ls")
    assert row["reviews_done"] == 1 and not row["overdue"] and row["next_review"] == row["opened"] + 14 * DAY
    # Clearing closes it: gone from ls, in ls --all, and no review may follow.
    sec.carol.ok("incident", "clear", iid, "--note", "done")
    assert sec.carol.json("incident", "ls") == []
    [closed] = sec.carol.json("incident", "ls", "--all")
    assert closed["status"] == "closed" and closed["next_review"] is None
    sec.carol.fails("incident", "review", iid, contains="closed")
    record = sec.carol.json("incident", "show", iid)
    assert record["version"] == 3 and record["incident"]["closed"]["note"] == "done"


def test_a_departure_the_runner_cannot_sign_alone_says_who_can(sec: Sec, make_member: Any) -> None:
    dave = make_member("dave")
    dave.ok("join", sec.alice.json("invite")["invite"], "--name", "dave")
    sec.alice.ok("role", "grant", "dave", "security", "--until", "2099-01-01")
    status = lambda: next(m for m in sec.alice.json("members") if m["name"] == "dave")["status"]  # noqa: E731
    # carol is not NCC: the incident is opened, the removal is left to the NCC member named.
    first = sec.carol.json("incident", "departure", "dave")
    assert first["removal"]["status"] == "needs_ncc" and first["removal"]["needs_names"] == ["alice"]
    assert "ask NCC alice" in sec.carol.ok("incident", "show", first["id"]).out and status() != "removed"
    # Made NCC, carol may propose it; dave holds a Security Team role, so alice (not carol, not dave) confirms.
    sec.alice.ok("role", "grant", "carol", "ncc", "--until", "2099-01-01")
    second = sec.carol.json("incident", "departure", "dave")
    assert second["removal"]["status"] == "proposed" and second["removal"]["needs_names"] == ["alice"]
    assert status() != "removed"
    sec.alice.ok("remove", "dave")
    assert status() == "removed"
    assert {r["id"] for r in sec.carol.json("incident", "ls")} == {first["id"], second["id"]}


def test_only_the_security_team_reads_or_opens_incidents(sec: Sec, make_member: Any) -> None:
    dave = make_member("dave")
    dave.ok("join", sec.alice.json("invite")["invite"], "--name", "dave")
    # alice is NCC but not in the Security Team's team: refused before anything is done (dave stays).
    sec.alice.fails("incident", "departure", "dave", contains="private to the Security Team")
    assert next(m for m in sec.alice.json("members") if m["name"] == "dave")["status"] != "removed"
    sec.alice.fails("incident", "ls", contains="private to the Security Team")
    sec.bob.fails("incident", "ls", contains="private to the Security Team")
    # Bad input: clear messages, nothing recorded.
    assert sec.carol.run("incident", "show", "zz").code == 2
    r = sec.carol.fails("incident", "show", "0123456789", contains="no incident")
    assert r.code == 1
    r = sec.carol.fails("incident", "departure", "nobody", contains="no member named")
    assert r.code == 1
    assert sec.carol.json("incident", "ls", "--all") == []


def test_a_server_dropping_a_version_of_the_record_is_caught(sec: Sec, make_member: Any) -> None:
    dave = make_member("dave")
    dave.ok("join", sec.alice.json("invite")["invite"], "--name", "dave")
    sec.alice.ok("role", "grant", "carol", "ncc", "--until", "2099-01-01")
    iid = sec.carol.json("incident", "departure", "dave")["id"]
    assert sec.carol.json("incident", "review", iid)["version"] == 2
    sec_team = next(t["team"] for t in sec.carol.json("team", "ls") if t["name"] == "sec")
    dropped = sql(sec.org, "DELETE FROM versions WHERE team=? AND seq=2 RETURNING vid", sec_team)
    assert len(dropped) == 1
    r = sec.carol.run("incident", "show", iid)
    assert r.code == 3 and "roll" in r.err.lower(), r.err


def test_two_edits_from_the_same_version_one_conflicts(sec: Sec, make_member: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A review stored meanwhile (another Security Team member's, here another process of carol's) is never
    overwritten by a change made from the version before it: a conflict, nothing stored."""
    dave = make_member("dave")
    dave.ok("join", sec.alice.json("invite")["invite"], "--name", "dave")
    sec.alice.ok("role", "grant", "carol", "ncc", "--until", "2099-01-01")
    iid = sec.carol.json("incident", "departure", "dave")["id"]
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(sec.carol.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(sec.carol.home)
    secrets = home.unlock()

    async def edit_from_version_1() -> None:
        async with Api(sec.server.url, bytes.fromhex(sec.server.fingerprint)) as api:
            c = await Client.open(home, secrets, api)
            read = await incidents.get(c, iid)
            assert read.version == 1
            sec.carol.ok("incident", "review", iid, "--note", "stored meanwhile")
            read.data["reviews"].append({"by": "x", "time": 1, "note": "stale", "until": 1, "events": []})
            with pytest.raises(Conflict, match="changed meanwhile"):
                await incidents.save(c, read.data, read.version)

    asyncio.run(edit_from_version_1())
    shown = sec.carol.json("incident", "show", iid)
    assert shown["version"] == 2 and [r["note"] for r in shown["incident"]["reviews"]] == ["stored meanwhile"]


# -- the record's shape and schedule (pure) ----------------------------------------------------------------


def _record(**change: Any) -> dict[str, Any]:
    base = {"format": incidents.FORMAT, "id": "0123456789", "kind": "departure", "member": "m" * 26,
            "member_name": "bob", "device": None, "opened": 1000, "opened_by": "c" * 26, "reason": "",
            "reviews_due": incidents.reviews_due(1000), "reviews": [], "closed": None}
    return base | change


@pytest.mark.parametrize("change", [
    {"format": "mvault/v2/incident"}, {"id": "9876543210"}, {"kind": "burglary"}, {"opened": True},
    {"opened": "1000"}, {"reviews_due": ["soon"]}, {"reviews": [{"by": "x", "time": 1, "note": ""}]},
    {"closed": {"by": "x", "time": 1}}, {"closed": "yes"}, {"reason": None},
])
def test_a_record_of_the_wrong_shape_is_refused(change: dict[str, Any]) -> None:
    raw = json.dumps(_record(**change)).encode()
    with pytest.raises(IntegrityError):
        incidents.parse(raw, "0123456789")


def test_the_schedule_is_weekly_and_a_review_covers_the_next_date() -> None:
    data = incidents.parse(json.dumps(_record()).encode(), "0123456789")
    assert data["reviews_due"] == [1000 + k * 7 * DAY for k in (1, 2, 3, 4)]
    assert incidents.row(data, 1000 + 7 * DAY - 1)["overdue"] is False
    assert incidents.row(data, 1000 + 7 * DAY)["overdue"] is True
    data["reviews"] = [{"by": "c", "time": 1000 + DAY, "note": "", "until": 1000 + DAY, "events": []}]
    assert incidents.next_review(data) == 1000 + 14 * DAY  # an early review covers the first date
    data["closed"] = {"by": "c", "time": 2000, "note": ""}
    assert incidents.next_review(data) is None and incidents.row(data, 10**10)["overdue"] is False
    with pytest.raises(ValueError):
        incidents.check_id("../../x.json")
