"""Issue 15: ``mvault invite ls`` / ``invite revoke`` and ``mvault status``, through the real CLI against the
real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Member, Org, ServerThread, join_member, security_team
from tests.helpers.members import unlock_here


def _links(server: ServerThread) -> int:
    db = server.db()
    try:
        return int(db.execute("SELECT COUNT(*) FROM links").fetchone()[0])
    finally:
        db.close()


def _invite(org: Org, *args: str) -> tuple[str, dict[str, Any]]:
    """A new invite by alice: its code and its row in ``invite ls``."""
    code = org.alice.json("invite", *args)["invite"]
    rows = org.alice.json("invite", "ls")
    return code, rows[-1]


# -- invite ls -------------------------------------------------------------------------------------


def test_invite_ls_shows_a_new_invite_and_hides_a_used_one(org: Org, make_member: Any) -> None:
    unlock_here(org.alice)  # the invite commands, not the passphrase step, are tested here
    assert org.alice.json("invite", "ls") == []  # bob's invite is used
    code, row = _invite(org, "--role", "compa", "--note", "bootcamp-3", "--days", "2")
    assert row["by_name"] == "alice" and row["role"] == "compa" and row["note"] == "bootcamp-3"
    assert row["state"] == "open" and row["used_by"] is None and row["revoked_by"] is None
    assert row["expires"] - row["created"] == 2 * 86400
    human = org.alice.ok("invite", "ls").out
    assert row["id"] in human and "bootcamp-3" in human and "alice" in human and "compa" in human
    # Any member sees the organization's invites (they are in the org chain every member replays).
    assert [r["id"] for r in org.bob.json("invite", "ls")] == [row["id"]]

    make_member("erin").ok("join", code, "--name", "erin")
    assert org.alice.json("invite", "ls") == []
    assert org.alice.ok("invite", "ls").out == ""  # piped: no rows (on a terminal: "no open invites")
    org.alice.env_extra["MVAULT_FORCE_TTY"] = "1"
    assert "no open invites" in org.alice.ok("invite", "ls").out
    del org.alice.env_extra["MVAULT_FORCE_TTY"]
    every = org.alice.json("invite", "ls", "--all")
    assert [r["state"] for r in every] == ["used", "used"]
    assert every[-1]["used_by_name"] == "erin" and every[-1]["id"] == row["id"]
    assert "used by erin" in org.alice.ok("invite", "ls", "--all").out


def test_expired_invites_only_with_all(org: Org) -> None:
    _, row = _invite(org, "--days", "1")
    org.server.advance(2 * 86400)
    later = Member(org.alice.home, "alice", org.alice.passphrase_file, {"MVAULT_TEST_CLOCK_OFFSET": str(2 * 86400)})
    assert later.json("invite", "ls") == []
    assert [r["state"] for r in later.json("invite", "ls", "--all") if r["id"] == row["id"]] == ["expired"]
    later.fails("invite", "revoke", row["id"], contains="expired already")


# -- invite revoke ---------------------------------------------------------------------------------


def test_revoked_invite_cannot_be_used(org: Org, make_member: Any) -> None:
    unlock_here(org.alice)
    code, row = _invite(org, "--note", "met at the rally")
    r = org.alice.json("invite", "revoke", row["id"])
    assert r["state"] == "revoked" and r["invite"] == row["invite"] and r["by_name"] == "alice"
    assert org.alice.json("invite", "ls") == []
    [gone] = [x for x in org.alice.json("invite", "ls", "--all") if x["id"] == row["id"]]
    assert gone["state"] == "revoked" and gone["revoked_by_name"] == "alice"
    before = _links(org.server)
    make_member("mallory").fails("join", code, "--name", "mallory", contains="revoked")
    assert _links(org.server) == before
    org.alice.fails("invite", "revoke", row["id"], contains="revoked already")
    # A fresh replay of the chain (bob's client) agrees.
    assert [x["state"] for x in org.bob.json("invite", "ls", "--all") if x["id"] == row["id"]] == ["revoked"]


def test_revoke_by_seq_and_by_prefix(org: Org) -> None:
    unlock_here(org.alice)
    _, first = _invite(org)
    _, second = _invite(org)
    org.alice.ok("invite", "revoke", str(first["seq"]))
    out = org.alice.ok("invite", "revoke", second["invite"][:8]).out
    assert f"revoked invite {second['id']}" in out
    assert org.alice.json("invite", "ls") == []
    org.alice.fails("invite", "revoke", "zz", contains="hex digits")
    org.alice.fails("invite", "revoke", "ffffffffff", contains="no invite")


def test_who_may_revoke(org: Org, make_member: Any) -> None:
    """Its author may revoke an invite, and NCC may revoke anyone's; another member may not."""
    unlock_here(org.alice, org.bob)
    carol = join_member(org, make_member, "carol")
    bobs = org.bob.json("invite")["invite"]
    [bob_row] = [r for r in org.alice.json("invite", "ls") if r["by_name"] == "bob"]
    _, alice_row = _invite(org)
    before = _links(org.server)
    carol.fails("invite", "revoke", bob_row["id"], contains="by bob: only its author")
    org.bob.fails("invite", "revoke", alice_row["id"], contains="by alice: only its author")
    assert _links(org.server) == before
    org.alice.ok("invite", "revoke", bob_row["id"])  # NCC
    org.bob.fails("invite", "revoke", bob_row["id"], contains="revoked already")
    make_member("dave").fails("join", bobs, "--name", "dave", contains="revoked")
    _, bob_second = org.bob.json("invite"), org.bob.json("invite", "ls")[-1]
    org.bob.ok("invite", "revoke", bob_second["id"])  # its author
    assert org.alice.json("invite", "ls") == [alice_row]


def test_a_revocation_is_in_the_audit_log(org: Org, make_member: Any) -> None:
    carol = security_team(org, make_member)
    _, row = _invite(org)
    org.alice.ok("invite", "revoke", row["id"])
    [event] = carol.json("audit", "log", "--action", "org.invite.revoke")
    assert event["actor_name"] == "alice" and event["rules"] == ["offboarding"]
    assert carol.json("audit", "verify")["problems"] == []


def test_a_used_invite_cannot_be_revoked(org: Org) -> None:
    [bob_invite] = org.alice.json("invite", "ls", "--all")
    org.alice.fails("invite", "revoke", bob_invite["id"], contains="was used by bob")


def test_invite_group_keeps_the_old_form(org: Org, make_member: Any) -> None:
    code = org.alice.ok("invite", "--role", "compa", "--days", "3").out.strip()
    assert code.startswith("mv1-")
    before = _links(org.server)
    r = org.alice.run("invite", "--role", "compa", "ls")  # not silently ignored (a usage error: exit 2)
    assert r.code == 2 and "--role is for creating an invite" in r.err and not r.out
    assert _links(org.server) == before


# -- status ----------------------------------------------------------------------------------------


def _without_passphrase(m: Member, **env: str) -> Member:
    """The same home in a shell that has no passphrase file (and maybe an unlock session)."""
    return Member(m.home, m.name, m.passphrase_file, {"MVAULT_PASSPHRASE_FILE": "", **env})


def test_status_locked_then_unlocked(org: Org) -> None:
    locked = _without_passphrase(org.alice)
    st = locked.json("status")  # no prompt (stdin is no terminal: a prompt would have failed the command)
    assert st["session"]["state"] == "locked" and st["session"]["agent"] is False
    assert st["server"]["url"] is None and st["member"] is None and st["checkpoint"] is None
    assert st["session"]["kdf"]["memory_kib"] >= 65536
    assert any("locked" in w for w in st["warnings"])
    human = locked.ok("status").out
    assert "session:    locked" in human and "server:" not in human
    locked.fails("status", "--unlock", contains="no passphrase")  # --unlock asks: here nobody can answer

    st = org.alice.json("status")  # MVAULT_PASSPHRASE_FILE opens the keys, as for every command
    assert st["session"]["state"] == "passphrase file"
    assert st["server"]["url"] == org.server.url and st["server"]["reachable"] is True
    assert st["server"]["certificate"] == "matches the pin" and st["server"]["version"]
    assert st["member"]["name"] == "alice" and "ncc" in st["member"]["roles"]
    assert st["device"]["name"] == "device-1"
    assert st["checkpoint"]["size"] > 0 and st["pending"] == [] and st["warnings"] == []
    human = org.alice.ok("status").out
    assert "member:     alice (member, ncc; admitted) on device-1" in human and "pending:    nothing" in human

    token = org.alice.json("unlock", "--minutes", "5")["session"]
    agent = _without_passphrase(org.alice, MVAULT_SESSION=token).json("status")
    assert agent["session"]["state"] == "agent" and agent["session"]["agent"] is True
    assert 0 < agent["session"]["seconds_left"] <= 300 and agent["member"]["name"] == "alice"
    other_shell = locked.json("status")  # an agent runs, but this shell does not hold its secret
    assert other_shell["session"]["state"] == "locked" and other_shell["session"]["agent"] is True


def test_status_with_the_server_down(org: Org) -> None:
    size = org.alice.json("status")["checkpoint"]["size"]
    org.server.stop()
    r = org.alice.ok("status", "--json")
    st = r.json()
    assert st["server"]["reachable"] is False and st["server"]["url"] == org.server.url
    assert st["member"]["name"] == "alice" and st["checkpoint"]["size"] >= size
    assert any("does not answer" in w for w in st["warnings"])
    assert "does not answer" in org.alice.ok("status").out
    offline = org.alice.json("status", "--offline")
    assert offline["server"]["reachable"] is None and offline["member"]["name"] == "alice"


def test_status_lists_pending_work_without_doing_it(org: Org, make_member: Any) -> None:
    org.alice.ok("invite", "--note", "for status")
    org.bob.ok("leave", "drafting")  # the key must rotate: alice's next ordinary command does it
    before = _links(org.server)
    st = org.alice.json("status")
    kinds = {p["kind"]: p for p in st["pending"]}
    assert kinds["rotate"]["team"] == "drafting"
    assert kinds["invites"]["open"] == 1 and kinds["invites"]["yours"] == 1
    assert _links(org.server) == before  # status did nothing
    assert "drafting: " in org.alice.ok("status").out
    assert [p["kind"] for p in org.bob.json("status")["pending"]] == ["invites"]
    assert {p["yours"] for p in org.bob.json("status")["pending"]} == {0}
    org.alice.ok("whoami")  # does the pending rotation
    assert [p["kind"] for p in org.alice.json("status")["pending"]] == ["invites"]


def test_status_fails_on_a_server_with_another_certificate(org: Org, tmp_path: Path) -> None:
    """A security problem is not a status: the command fails (and the locked status, which asks no server,
    cannot see it)."""
    port = org.server.port
    org.server.stop()
    impostor = ServerThread(tmp_path / "impostor-data", port).start()
    try:
        org.alice.fails("status", contains="certificate does not match")
        assert _without_passphrase(org.alice).json("status")["session"]["state"] == "locked"
        assert org.alice.json("status", "--offline")["server"]["reachable"] is None
    finally:
        impostor.stop()


def test_status_without_an_identity(make_member: Any) -> None:
    make_member("nobody").fails("status", contains="no member vault identity")
