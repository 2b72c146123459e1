"""Issue 15, "people": messages name members and teams by name (ids stay in --json, names beside them), a
finding carries what its next command needs, and a revoked device is told so.

Everything through the real CLI against the real server."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MVAULT, Member, Org, join_member, security_team
from tests.helpers.members import unlock_at_first_run

HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


@pytest.fixture(autouse=True)
def _agents(org: Org) -> None:
    """alice's and bob's commands go through an unlock agent from their first: no Argon2id each (session 21).
    The unlock itself: tests/test_auth.py. No test here looks at the unlock state."""
    unlock_at_first_run(org.alice, org.bob)


def report_lines(carol: Member, rule: str) -> list[str]:
    r = carol.run("audit", "report")
    assert r.code in (0, 1), r.err
    return [line for line in r.out.splitlines() if line.startswith(f"{rule} [")]


def findings(carol: Member, rule: str) -> list[dict[str, Any]]:
    r = carol.run("audit", "report", "--json")
    assert r.code in (0, 1), r.err
    return list(next(x for x in r.json()["rules"] if x["rule"] == rule)["findings"])


def test_a_finding_names_people_and_its_command_approves(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)  # alice (the only NCC member) granted carol the security role
    carol_id = carol.json("whoami")["member"]
    org.alice.ok("role", "grant", "bob", "ncc", "--until", "2099-01-01")  # bob: a second NCC member

    (line,) = [x for x in report_lines(carol, "two-person") if "'security' to carol" in x]
    assert "by alice" in line and not HEX_ID.search(line), line  # names, not ids
    command = re.findall(r"`(mvault audit approve [0-9a-f]{16})`", line)
    assert len(command) == 1, line
    # --json: the ids as before, the names and the same command beside them.
    (f,) = [x for x in findings(carol, "two-person") if x["subject"] == carol_id and "'security'" in x["message"]]
    assert f["subject_name"] == "carol" and carol_id in f["message"] and "carol" in f["text"]
    assert f["next"] == f["next_command"] == command[0]

    org.bob.ok(*command[0].split()[1:])  # exactly what the finding printed
    # alice also made carol an admin of the security team alone: that finding's command is a team approval
    (team_f,) = [x for x in findings(carol, "two-person") if x["subject"] == carol_id]
    assert team_f["next_command"].startswith("mvault team approve ") and "admin grant" in team_f["message"]
    org.bob.ok(*team_f["next_command"].split()[1:])  # bob (NCC) approves as the second person: a signed link
    assert not [x for x in findings(carol, "two-person") if x["subject"] == carol_id]


def test_approve_takes_the_org_sequence_number_a_finding_prints(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)  # alice designated "sec" alone: reported until approved
    org.alice.ok("role", "grant", "bob", "ncc", "--until", "2099-01-01")
    (line,) = [x for x in report_lines(carol, "two-person") if "designation of team sec" in x]
    assert "by member alice alone" in line and not HEX_ID.search(line), line
    seq = re.search(r"org seq (\d+)", line)
    assert seq is not None, line
    approved = org.bob.json("audit", "approve", seq.group(1))
    assert approved["seq"] == int(seq.group(1)) and approved["type"] == "org.audit_team"
    assert approved["signer_name"] == "alice"
    assert not [x for x in report_lines(carol, "two-person") if "designation of team sec" in x]
    org.bob.fails("audit", "approve", "999", contains="no link 999")
    org.bob.fails("audit", "approve", "abc", contains="sequence number")


def test_an_error_about_a_member_names_them(org: Org, make_member: Any) -> None:
    compa = join_member(org, make_member, "compa1", role="compa")
    compa_id = compa.json("whoami")["member"]
    r = org.alice.fails("team", "add", "drafting", "compa1", "--role", "writer", contains="member compa1 may not")
    assert compa_id not in r.err and not HEX_ID.search(r.err), r.err
    # Where two members share a name, the start of the id tells them apart.
    other = make_member("bob2")
    other.ok("join", org.alice.json("invite", "--role", "compa")["invite"], "--name", "bob")
    other_id = other.json("whoami")["member"]
    org.alice.fails("team", "add", "drafting", other_id, "--role", "writer",
                    contains=f"member bob ({other_id[:8]}) may not")


def test_a_revoked_device_is_told_so_and_what_to_do(org: Org, make_member: Any, tmp_path: Path) -> None:
    carol = security_team(org, make_member)
    sheet = org.alice.json("recovery-key", "--name", "paper-1")
    paper, line = sheet["recovery_key"], ("--server", sheet["server"], "--cert", sheet["cert"])
    spare = Member(tmp_path / "home-alice-spare", "alice", org.alice.passphrase_file)
    spare.ok("recover", paper, *line, "--name", "spare")
    org.alice.ok("device", "revoke", "spare")
    org.alice.ok("device", "revoke", "paper-1")
    revoked = {d["name"]: d["revoked"] for d in org.alice.json("device", "ls")}
    day = datetime.datetime.fromtimestamp(revoked["spare"], datetime.UTC).strftime("%Y-%m-%d")

    r = spare.fails("whoami", contains=f"this device (spare) was revoked on {day}")
    assert "another of your devices" in r.err and "mvault recover" in r.err, r.err
    # The refusal is still an event of the Security Team's log (the key holder is accountable).
    spare_id = next(d["device"] for d in org.alice.json("device", "ls") if d["name"] == "spare")
    fails = carol.json("audit", "log", "--action", "auth.fail")
    assert [e for e in fails if e["device"] == spare_id and e["detail"]["error"] == "device_revoked"], fails

    # A revoked recovery key says so too (it is a device of the member's chain).
    fresh = Member(tmp_path / "home-alice-fresh", "alice", org.alice.passphrase_file)
    r = fresh.fails("recover", paper, *line, contains="this recovery key was revoked")
    assert f"(paper-1) was revoked on {day}" in r.err and "mvault recovery-key" in r.err, r.err
    assert not fresh.home.exists() or not any(fresh.home.iterdir())  # nothing left behind


def test_exposure_and_the_log_name_people_and_teams(org: Org, make_member: Any, tmp_path: Path) -> None:
    carol = security_team(org, make_member)
    bob_id, alice_id = org.bob.json("whoami")["member"], org.alice.json("whoami")["member"]
    doc = tmp_path / "plan.md"
    doc.write_text("plan")
    org.alice.ok("put", "drafting", str(doc))

    human = carol.ok("audit", "exposure", "bob").out
    assert human.startswith("bob: ") and "team drafting" in human and "notify: alice" in human, human
    assert not HEX_ID.search(human), human
    info = carol.json("audit", "exposure", "bob")
    assert info["member"] == bob_id and info["member_name"] == "bob"
    (team,) = [t for t in info["teams"] if t["team_name"] == "drafting"]
    assert team["co_member_ids"] == [alice_id] and team["co_members"] == ["alice"]
    assert {v["author_name"] for v in team["versions"]} == {"alice"}

    # (events before the audit key existed are not readable: carol's own addition to "sec" is the first)
    table = carol.ok("audit", "log", "--action", "team.add").out
    assert "member_name=carol" in table and "team_name=sec" in table, table  # in a pipe: beside the whole ids
    (added,) = carol.json("audit", "log", "--action", "team.add")
    assert added["member_name"] == "carol" and added["team_name"] == "sec" and added["res"]["member"] != "carol"


def test_a_findings_next_command_resolves_it(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)
    join_member(org, make_member, "compa1", role="compa")
    carol.ok("team", "add", "sec", "compa1", "--role", "reader")  # a compa in the security team: need-to-know
    (f,) = [x for x in findings(carol, "need-to-know") if x["subject_name"] == "compa1"]
    assert f["next"] == "mvault team remove sec compa1", f
    assert f["next_command"].startswith("mvault team remove ") and f["subject"] in f["next_command"]
    (line,) = [x for x in report_lines(carol, "need-to-know") if "compa1" in x]
    assert "compa compa1 is a member of security team sec" in line, line
    assert "\n  next: mvault team remove sec compa1\n" in carol.run("audit", "report").out
    carol.ok(*f["next"].split()[1:])
    # Resolved: what stays is history (issue 18), the compa was in the team; no command is left to run.
    left = [x for x in findings(carol, "need-to-know") if x["subject_name"] == "compa1"]
    assert [(x["next_command"], "since left" in x["message"]) for x in left] == [("", True)], left


def test_a_follower_on_a_revoked_device_is_told_so(org: Org, tmp_path: Path) -> None:
    org.alice.ok("thread", "create", "drafting", "talk")
    sheet = org.alice.json("recovery-key")
    spare = Member(tmp_path / "home-alice-spare", "alice", org.alice.passphrase_file)
    spare.ok("recover", sheet["recovery_key"], "--server", sheet["server"], "--cert", sheet["cert"], "--name", "spare")
    p = subprocess.Popen([MVAULT, "thread", "follow", "drafting", "talk", "--json"], env=spare.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert json.loads(p.stdout.readline()) == {"state": "live"}
        org.alice.ok("device", "revoke", "spare")
        org.alice.ok("thread", "post", "drafting", "talk", "after the revocation")
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1 and len(err.strip().splitlines()) == 1, err  # under --json: one JSON object
    error = json.loads(err)
    assert error["error"] == "device_revoked" and error["message"].startswith("this device (spare) was revoked on ")
    assert "another of your devices" in error["message"], err
