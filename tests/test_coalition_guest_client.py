"""Issue 20, the guest's own client: an allied organization's member works in the host's coalition space from
``mvault`` on their own device (``coalition join`` with a space admin's join code, then ``mvault --space NAME ...``),
on two real servers through the real CLI. The guest's client judges the space without the host's organization
chain (vault/chains/outside.py); what the host's server serves it is checked, and never holds the host's roster."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from client.guestspace import JoinCode
from tests.conftest import Member, Org, security_team
from tests.helpers.allies import own_server
from tests.helpers.db import rows_deleted, sql
from tests.helpers.forgery import Forge, Forgery, plant_version, relink, served, team_key, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guest_world import copied_ally, space_org_world, world_space
from tests.helpers.guests import Space
from tests.helpers.tampering import ROLLBACK, SIGNATURE, column_replaced, edit_record
from vault.keys import DeviceKeys

RECORDER = Path(__file__).parent / "helpers" / "wire_log"

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = copied_ally  # the world's ally server, copied (a fresh one for a test without ``space``)
org_world = space_org_world  # a test asking for ``space`` starts from a world built once per worker


@pytest.fixture
def space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Space:
    return world_space(forge, ally, make_member, monkeypatch, tmp_path)  # guest_space's, copied from the world


def test_guest_and_host_member_both_read_and_write(space: Space, tmp_path: Path) -> None:
    alice, erin, name = space.alice, space.erin, space.name
    joined = erin.json("coalition", "join", space.code)
    assert joined["space"] == space.id and joined["role"] == "writer"
    assert sorted(joined["members"]) == [["alice", "host"], ["erin", space.ally_name]]
    g = ("--space", name)
    assert [d["name"] for d in erin.json(*g, "ls", name)] == ["plan.txt"]
    got = tmp_path / "got.txt"
    erin.ok(*g, "get", name, "plan.txt", "-o", str(got))
    assert got.read_text() == "joint campaign plan\n"
    mine = tmp_path / "erin-notes.txt"
    mine.write_text("notes from the ally\n")
    erin.ok(*g, "put", name, str(mine))
    back = tmp_path / "back.txt"
    alice.ok("get", name, "erin-notes.txt", "-o", str(back))
    assert back.read_text() == "notes from the ally\n"
    alice.ok("thread", "create", name, "plans")
    alice.ok("thread", "post", name, "plans", "hello from the host")
    erin.ok(*g, "thread", "post", name, "plans", "hello from the ally")
    texts = [m["text"] for m in erin.json(*g, "thread", "read", name, "plans")]
    assert texts == ["hello from the host", "hello from the ally"]
    read = alice.json("thread", "read", name, "plans")
    assert [m["text"] for m in read] == texts
    # the host's members read the guest with its organization (review round 12: a guest's name may mimic theirs)
    assert [(m["sender_name"], m["sender_guest_of"]) for m in read] == [("alice", None),
                                                                        (f"erin@{space.ally_name}", space.ally_name)]
    assert f"erin@{space.ally_name}: hello from the ally" in alice.ok("thread", "read", name, "plans").out
    # erin's own organization is untouched: her ordinary commands still reach her own server
    assert erin.json("whoami")["member"] == space.erin_id


def _seq(code: str) -> int:
    return JoinCode.parse(code).seq


def _wire_logged(m: Member, log: Path) -> Member:
    """``m`` with every exchange of its client recorded (tests/helpers/wire_log)."""
    return dataclasses.replace(m, env_extra={**m.env_extra, "PYTHONPATH": str(RECORDER), "WIRE_LOG": str(log)})


def test_the_guest_never_receives_the_hosts_roster(space: Space, forge: Forge, tmp_path: Path) -> None:
    """Every answer the guest's client gets from the host's server, for join, ls, get, put, history and threads:
    no organization chain, no member outside the space, no host team but the space (rule no-master-lists). (Its
    exchanges with its own server, recording its acts there, are its own organization's.)"""
    log = tmp_path / "wire"
    log.mkdir()
    space.alice.ok("thread", "create", space.name, "plans")
    erin = _wire_logged(space.erin, log)
    erin.ok("coalition", "join", space.code)
    g = ("--space", space.name)
    note = tmp_path / "n.txt"
    note.write_text("n\n")
    for args in (("ls", space.name), ("get", space.name, "plan.txt", "-o", str(tmp_path / "x")),
                 ("put", space.name, str(note)), ("history", space.name, "plan.txt"),
                 ("thread", "post", space.name, "plans", "hi"), ("thread", "read", space.name, "plans")):
        erin.ok(*g, *args)
    every = [json.loads(line) for f in log.iterdir() for line in f.read_text().splitlines()]
    entries = [e for e in every if e["url"] == forge.org.server.url]
    assert len(entries) > 20
    assert [e for e in every if e["path"] == "/api/v1/audit/attest"]  # the acts, sent to the own server only
    outside = [forge.ids[n] for n in ("bob", "carol")] + [forge.drafting, forge.ops]
    for e in entries:
        assert e["path"] != "/api/v1/chains/org" and not e["path"].startswith("/api/v1/audit"), e["path"]
        text = json.dumps(e)
        assert not any(x in text for x in outside), e["path"]
        if e["path"] == "/api/v1/directory":
            assert set(e["response"]["members"]) == {forge.ids["alice"], space.erin_id}
            assert set(e["response"]["teams"]) == {space.id} and e["response"]["org"]["seq"] == 0


def test_the_guests_client_catches_the_host_server(space: Space, forge: Forge, tmp_path: Path) -> None:
    """The host's server lies to the guest: a space link it signed itself in alice's name, alice's link altered, a
    document version by a member outside the space, a rolled-back document; the guest's client refuses each (and
    nothing is written); served no more, everything reads again."""
    alice, erin, name = space.alice, space.erin, space.name
    erin.ok("coalition", "join", space.code)
    g = ("--space", name)
    invented = {"member": forge.ids["carol"], "role": "writer", "until": None, "key": None}
    by_server = team_link(forge, space.id, "alice", "team.add", invented, device=DeviceKeys.generate())
    head = forge.d.team_links[space.id][-1]
    altered = relink(head, lambda b: b.update(time=b["time"] + 1))
    for forgery in (Forgery("server signs", space.id, by_server, "not an active device"),
                    Forgery("altered", space.id, altered, "")):
        with served(forge, forgery):
            assert erin.fails(*g, "ls", name, contains=forgery.client_error).code in (1, 3)
    # The server swaps the link the join code vouches for (the head then) for another: caught before any replay.
    links = forge.d.team_links[space.id]
    assert links[-1] is head and len(links) == _seq(space.code)
    links[-1] = altered
    try:
        assert erin.fails(*g, "ls", name, contains="join code vouches").code == 3
    finally:
        links[-1] = head
    # A version signed by carol (a host member, not in the space) with the space's key (a colluding member).
    key = team_key(forge, "alice", space.id, forge.d.team(space.id).generation)
    planted = plant_version(forge, "carol", key, "planted.txt", seq=1, parent=None, when=forge.now(),
                            team_seq=forge.d.team(space.id).seq, data=b"planted")
    for args in (("ls", name), ("get", name, "planted.txt", "-o", str(tmp_path / "planted"))):
        assert erin.fails(*g, *args, contains="signed by an unknown member").code == 3
    assert not (tmp_path / "planted").exists()
    sql(forge.org, "DELETE FROM versions WHERE vid=?", planted)
    # alice's version with its signed header altered by the server.
    first = sql(forge.org, "SELECT vid, record FROM versions WHERE team=?", space.id)[0]
    with column_replaced(forge.org, first[0], "record", edit_record(bytes(first[1]), "core.time", lambda t: t + 1)):
        assert erin.fails(*g, "get", name, "plan.txt", "-o", str(tmp_path / "altered"), contains=SIGNATURE).code == 3
    assert not (tmp_path / "altered").exists()
    # A rolled-back document: alice's second version, seen by erin, then hidden by the server.
    v2 = tmp_path / "plan.txt"
    v2.write_text("second plan\n")
    vid = alice.json("put", name, str(v2))[0]["vid"]
    erin.ok(*g, "history", name, "plan.txt")
    with rows_deleted(forge.org, vid):
        for args in (("ls", name), ("get", name, "plan.txt", "-o", str(tmp_path / "old"))):
            assert erin.fails(*g, *args, contains=ROLLBACK).code == 3, args
    assert not (tmp_path / "old").exists()
    erin.ok(*g, "get", name, "plan.txt", "-o", str(tmp_path / "new"))
    assert (tmp_path / "new").read_text() == "second plan\n"
    # Past the join code's link, each link is judged by team role: a reader's add (the server stores it) is refused.
    alice.ok("team", "add", name, "bob", "--role", "reader")
    by_reader = team_link(forge, space.id, "bob", "team.add", invented)
    with served(forge, Forgery("a reader adds", space.id, by_reader, "")):
        erin.fails(*g, "ls", name, contains="may not add")
    erin.ok(*g, "ls", name)


def test_a_rolled_back_space_chain_and_removal(space: Space, forge: Forge, tmp_path: Path) -> None:
    """The space's chain served shorter than the guest saw is a rollback (exit 3); alice's removal of erin ends her
    guest sessions (the host's server refuses her) and the key rotates to a generation she holds no box of."""
    alice, erin, name = space.alice, space.erin, space.name
    erin.ok("coalition", "join", space.code)
    alice.ok("team", "add", name, "bob", "--role", "reader")  # a link past the join code: judged by team role
    assert sorted(m["name"] for m in alice.json("coalition", "show", name)["members"]) == ["alice", "bob",
                                                                                  f"erin@{space.ally_name}"]
    erin.ok("--space", name, "ls", name)
    links = forge.d.team_links[space.id]
    last = links.pop()
    try:
        assert erin.fails("--space", name, "ls", name, contains=ROLLBACK).code == 3
    finally:
        links.append(last)
    alice.ok("coalition", "remove", name, f"erin@{space.ally_name}")
    erin.fails("--space", name, "ls", name, contains="nor a guest of any of its coalition spaces")
    gen = forge.d.team(space.id).generation
    team_key(forge, "alice", space.id, gen)
    with pytest.raises(AssertionError, match="holds no key"):
        team_key(forge, "erin", space.id, gen)


def test_bad_input_gets_a_clear_error_and_changes_nothing(space: Space, forge: Forge, tmp_path: Path) -> None:
    alice, erin, name = space.alice, space.erin, space.name
    erin.fails("coalition", "join", "mvault-space:1:AAAA", contains="malformed join code")
    usage = erin.run("coalition", "join", "not-a-code")
    assert usage.code == 2 and "neither a code" in usage.err
    erin.fails("--space", name, "ls", name, contains="no coalition space 'campaign' joined")
    code = JoinCode.parse(space.code)
    # A fork: a link alice signed at the join code's place, which the server does not serve (the code was made while
    # it showed alice that chain, say): the chain served, valid as it is, is not the one the code vouches for.
    links = forge.d.team_links[space.id]
    fork = team_link(forge, space.id, "alice", "team.review", {"digest": b"\x00" * 32}, seq=code.seq,
                     prev=links[code.seq - 2].hash)
    for wrong, error in ((dataclasses.replace(code, org_root=b"\x01" * 32), "another organization"),
                         (dataclasses.replace(code, head=fork.hash), "join code vouches")):
        assert erin.fails("coalition", "join", wrong.code, contains=error).code == 3
        assert not list(erin.home.glob("space.*"))  # nothing of a code that did not check out is kept
    forge.org.bob.fails("coalition", "join-code", name, contains="no team named")  # not in the space
    alice.ok("team", "add", name, "bob", "--role", "writer")
    forge.org.bob.fails("coalition", "join-code", name, contains="only an admin")
    erin.ok("coalition", "join", space.code)
    for args in (("coalition", "join-code", name), ("whoami",), ("members",)):
        erin.fails("--space", name, *args, contains="is for your own organization")
    newer = alice.json("coalition", "join-code", name)["code"]  # a newer code moves the anchor on; never back
    erin.ok("coalition", "join", newer)
    erin.fails("coalition", "join", space.code, contains="newer join code")
    assert [d["name"] for d in erin.json("--space", name, "ls", name)] == ["plan.txt"]



def test_the_guests_acts_are_recorded_in_its_own_organizations_log(space: Space, ally: Member, make_member: Any,
                                                                    tmp_path: Path) -> None:
    """Issue 20, "the audit log of each organization records its own members' acts in the space": erin's join,
    put, get and post in the host's space are ``coalition.act`` events in her own organization's log (read by sam,
    its Security Team), under the name her organization gave the space; her reads count for bulk-access; listings
    record nothing."""
    erin, name = space.erin, space.name
    sam = security_team(Org(own_server(tmp_path), ally, erin), make_member, "sam")
    erin.ok("coalition", "join", space.code)
    g = ("--space", name)
    note = tmp_path / "erin-notes.txt"
    note.write_text("notes from the ally\n")
    erin.ok(*g, "put", name, str(note))
    erin.ok(*g, "ls", name)
    erin.ok(*g, "get", name, "plan.txt", "-o", str(tmp_path / "got.txt"))
    space.alice.ok("thread", "create", name, "plans")
    erin.ok(*g, "thread", "post", name, "plans", "hello from the ally")
    batch = tmp_path / "batch"
    batch.mkdir()
    for i in range(19):
        (batch / f"n{i:02}.txt").write_text(f"note {i}\n")
    erin.ok(*g, "put", name, "-r", str(batch))
    assert len(erin.json(*g, "get", name, "/", "-o", str(tmp_path / "all"))) == 21
    events = sam.json("audit", "log", "--action", "coalition.act")
    mine = [e for e in events if e["actor"] == space.erin_id and e["result"] == "ok"]
    assert [(e["detail"]["act"], e["detail"]["count"]) for e in mine] == [
        ("join", 1), ("put", 1), ("read", 1), ("post", 1), ("put", 19), ("read", 21)], mine
    assert all(e["res"]["coalition"] == "campaign" and e["res"]["space"] == space.id for e in mine), mine
    # 22 reads in the space within minutes: counted by bulk-access as reads (max_reads 20 in 15 minutes)
    report = sam.run("audit", "report", "--json").json()
    bulk = next(r for r in report["rules"] if r["rule"] == "bulk-access")
    assert bulk["status"] == "alert" and any("read 22 documents" in f["message"] for f in bulk["findings"]), bulk


def test_an_act_the_own_server_does_not_log_fails_the_command_after_it_is_done(space: Space, tmp_path: Path) -> None:
    """The act on the host happened: the command prints it, then fails naming the act missing from the own log."""
    erin, name = space.erin, space.name
    erin.ok("coalition", "join", space.code)
    own_server(tmp_path).stop()
    note = tmp_path / "late.txt"
    note.write_text("stored while the own server is down\n")
    r = erin.run("--space", name, "--json", "put", name, str(note))
    assert r.code == 1, r
    assert json.loads(r.out)[0]["name"] == "late.txt"  # stored on the host's server, and said so
    assert "NOT in your own organization's audit log" in r.err and '"error": "transport"' in r.err, r.err
