"""Issue 15: ``mvault invite ls`` / ``invite revoke`` and ``mvault status``, through the real CLI against the
real server."""

from __future__ import annotations

from typing import Any

from tests.conftest import Member, Org, ServerThread, join_member


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
    assert "no open invites" in org.alice.ok("invite", "ls").out
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
