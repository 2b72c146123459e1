"""Issue 20, the guest's own client: ``mvault --space NAME sync DIR`` and ``mvault --space NAME thread follow`` as an
allied organization's member against the host's server, on two real servers through the real CLI: the member's sync
engine with every check it has (deletions only from signed acts judged by the outside view of the space, a withheld
or rolled-back listing stops the pass with nothing changed, conflicts kept, readers sync down only, removal stops
with the files kept), and each pass recorded as a batch of ``coalition.act`` records in the guest's OWN
organization's audit log."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MVAULT, Member, Org, security_team
from tests.helpers.allies import own_server
from tests.helpers.db import rows_deleted, sql
from tests.helpers.forgery import Forge, plant_version, team_key
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guest_world import copied_ally, space_org_world, world_space
from tests.helpers.guests import Space, reader_guest
from tests.helpers.sync_world import Watcher, files_of, wait_until
from tests.helpers.tampering import ROLLBACK
from vault.envelope import DELETE

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = copied_ally  # the world's ally server, copied (a fresh one for a test without ``space``)
org_world = space_org_world  # a test asking for ``space`` starts from a world built once per worker


@pytest.fixture
def space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Space:
    s = world_space(forge, ally, make_member, monkeypatch, tmp_path)  # guest_space's, copied from the world
    s.erin.ok("coalition", "join", s.code)
    return s


def _acts(sam: Member, who: str) -> list[tuple[str, int]]:
    events = sam.json("audit", "log", "--action", "coalition.act")
    return [(e["detail"]["act"], e["detail"]["count"]) for e in events if e["actor"] == who and e["result"] == "ok"]


def _sync(m: Member, space: Space, folder: Path, *more: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = m.json("--space", space.name, "sync", str(folder), *more)
    return rows


def test_the_guest_syncs_the_space_both_ways_and_each_pass_is_recorded_at_home(
        space: Space, ally: Member, make_member: Any, tmp_path: Path) -> None:
    alice, erin, name = space.alice, space.erin, space.name
    sam = security_team(Org(own_server(tmp_path), ally, erin), make_member, "sam")
    folder = tmp_path / "erin-campaign"
    assert [(r["action"], r["name"]) for r in _sync(erin, space, folder, "--dry-run")] == [("pull", "plan.txt")]
    assert not folder.exists()
    assert [(r["action"], r["name"]) for r in _sync(erin, space, folder)] == [("pull", "plan.txt")]
    assert files_of(folder) == {"plan.txt": b"joint campaign plan\n"}
    (folder / "ideas.txt").write_text("from the ally\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "more.txt").write_text("more\n")
    assert sorted((r["action"], r["name"]) for r in _sync(erin, space, folder)) == [("push", "ideas.txt"),
                                                                                   ("push", "sub/more.txt")]
    back = tmp_path / "back.txt"
    alice.ok("get", name, "sub/more.txt", "-o", str(back))
    assert back.read_text() == "more\n"
    # alice's signed deletion reaches erin's folder; both change plan.txt: the team's version under the name, erin's
    # kept beside it as a conflict copy (uploaded).
    alice.ok("rm", name, "ideas.txt")
    mine = tmp_path / "plan.txt"
    mine.write_text("alice's second plan\n")
    alice.ok("put", name, str(mine))
    (folder / "plan.txt").write_text("erin's own edit\n")
    r = erin.run("--space", name, "--json", "sync", str(folder))
    assert r.code == 1, r  # a conflict
    rows = {row["action"]: row for row in json.loads(r.out)}
    assert set(rows) == {"delete-local", "conflict"}
    assert not (folder / "ideas.txt").exists() and (folder / "plan.txt").read_text() == "alice's second plan\n"
    assert (folder / rows["conflict"]["copy"]).read_text() == "erin's own edit\n"
    assert _sync(erin, space, folder) == []  # in step
    # every synced folder is listed, the space's too (no network)
    status = erin.json("sync", "status")
    assert [(s["team"], s["team_name"], s["space"], s["files"]) for s in status] == [(space.id, name, True, 3)]
    assert "campaign (--space)" in erin.ok("sync", "status").out
    # in erin's own organization's log (her join came before sam's audit key: not readable by him): per pass one
    # read and one put record counting documents (none for the dry run or the pass in step); the conflict pass read
    # alice's version and stored erin's copy
    assert _acts(sam, space.erin_id) == [("read", 1), ("put", 2), ("read", 1), ("put", 1)]


def test_a_reader_guest_syncs_down_only(space: Space, forge: Forge, ally: Member, make_member: Any,
                                        tmp_path: Path) -> None:
    fred = reader_guest(space, forge, ally, make_member)
    folder = tmp_path / "fred-campaign"
    assert [r["action"] for r in _sync(fred, space, folder)] == ["pull"]
    (folder / "mine.txt").write_text("a reader's file\n")
    (folder / "plan.txt").write_text("a reader's edit\n")
    r = fred.run("--space", space.name, "--json", "sync", str(folder))
    assert r.code == 1, r
    assert sorted((row["action"], row["name"]) for row in json.loads(r.out)) == [("not-pushed", "mine.txt"),
                                                                              ("not-pushed", "plan.txt")]
    assert [d["name"] for d in space.alice.json("ls", space.name)] == ["plan.txt"]
    assert len(space.alice.json("history", space.name, "plan.txt")) == 1
    assert (folder / "mine.txt").exists() and (folder / "plan.txt").read_text() == "a reader's edit\n"


def test_the_host_server_lying_to_the_guests_sync_stops_the_pass(space: Space, forge: Forge, tmp_path: Path) -> None:
    """A rolled-back (withheld) version, a deletion signed by a space reader and one by a host member outside the
    space: each stops the pass (exit 3) before anything changes in the folder."""
    alice, erin, name = space.alice, space.erin, space.name
    folder = tmp_path / "erin-campaign"
    _sync(erin, space, folder)
    v2 = tmp_path / "plan.txt"
    v2.write_text("second plan\n")
    vid = alice.json("put", name, str(v2))[0]["vid"]
    _sync(erin, space, folder)
    assert (folder / "plan.txt").read_text() == "second plan\n"
    with rows_deleted(forge.org, vid):  # the server serves the space as it was before v2 (erin saw v2)
        assert erin.fails("--space", name, "sync", str(folder), contains=ROLLBACK).code == 3
    assert files_of(folder) == {"plan.txt": b"second plan\n"}
    every = [v for (v,) in sql(forge.org, "SELECT vid FROM versions WHERE team=?", space.id)]
    with rows_deleted(forge.org, *every):  # the whole document withheld: absence is never a deletion
        assert erin.fails("--space", name, "sync", str(folder), contains=ROLLBACK).code == 3
    assert files_of(folder) == {"plan.txt": b"second plan\n"}
    # bob is a reader of the space (added past the join code: judged by team role alone), carol no member of it
    alice.ok("team", "add", name, "bob", "--role", "reader")
    team = forge.d.team(space.id)
    key = team_key(forge, "alice", space.id, team.generation)
    doc = sql(forge.org, "SELECT doc FROM versions WHERE vid=?", vid)[0][0]
    for author, error in (("bob", "may not"), ("carol", "signed by an unknown member")):
        planted = plant_version(forge, author, key, "plan.txt", seq=3, parent=vid, when=forge.now(),
                                team_seq=forge.d.team(space.id).seq, op=DELETE)
        assert sql(forge.org, "SELECT doc FROM versions WHERE vid=?", planted)[0][0] == doc
        try:
            assert erin.fails("--space", name, "sync", str(folder), contains=error).code == 3
        finally:
            sql(forge.org, "DELETE FROM versions WHERE vid=?", planted)
        assert files_of(folder) == {"plan.txt": b"second plan\n"}
    assert _sync(erin, space, folder) == []


def test_removal_stops_the_guests_watch_with_its_files_kept(space: Space, ally: Member, make_member: Any,
                                                            tmp_path: Path) -> None:
    """The watch pulls and pushes live, each pass recorded at home (counts, no record for a pass with nothing to
    do); the guest's removal stops it (exit 1) with every file kept, and a later pass changes nothing."""
    alice, erin, name = space.alice, space.erin, space.name
    sam = security_team(Org(own_server(tmp_path), ally, erin), make_member, "sam")
    folder = tmp_path / "erin-campaign"
    w = Watcher(erin, folder, command=("--space", name, "sync"))
    try:
        w.wait_rows(0, ["plan.txt"], "the first pass")
        mark = w.mark()
        note = tmp_path / "news.txt"
        note.write_text("news from the host\n")
        alice.ok("put", name, str(note))
        w.wait_rows(mark, ["news.txt"], "alice's new document, pulled live")
        mark = w.mark()
        (folder / "reply.txt").write_text("erin's reply\n")
        w.wait_rows(mark, ["reply.txt"], "erin's save, pushed")
        wait_until("erin's reply at the host", lambda: "reply.txt" in {d["name"] for d in alice.json("ls", name)},
                   w)
        alice.ok("coalition", "remove", name, f"erin@{space.ally_name}")
        wait_until("the watch to stop", lambda: w.proc.poll() is not None)
    finally:
        code, err = w.stop()
    assert code in (1, 3) and code != 3, err
    assert "nor a guest" in err or "no longer in team" in err, err
    assert files_of(folder) == {"plan.txt": b"joint campaign plan\n", "news.txt": b"news from the host\n",
                                "reply.txt": b"erin's reply\n"}
    r = erin.run("--space", name, "sync", str(folder))
    assert r.code == 1 and files_of(folder)["reply.txt"] == b"erin's reply\n", r
    acts = _acts(sam, space.erin_id)
    assert sum(n for a, n in acts if a == "read") == 2 and [n for a, n in acts if a == "put"] == [1], acts


def test_the_guest_follows_a_thread_and_its_reads_are_recorded_at_home(
        space: Space, ally: Member, make_member: Any, tmp_path: Path) -> None:
    alice, erin, name = space.alice, space.erin, space.name
    sam = security_team(Org(own_server(tmp_path), ally, erin), make_member, "sam")
    alice.ok("thread", "create", name, "plans")
    alice.ok("thread", "post", name, "plans", "missed while away")
    p = subprocess.Popen([MVAULT, "--space", name, "thread", "follow", name, "plans", "--json"], env=erin.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        lines = [json.loads(p.stdout.readline()) for _ in range(2)]
        assert lines[0]["text"] == "missed while away" and lines[1] == {"state": "live"}
        alice.ok("thread", "post", name, "plans", "live one")
        live = json.loads(p.stdout.readline())
        assert live["text"] == "live one" and live["sender_name"] == "alice"
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0, p.stderr.read() if p.stderr else ""
    finally:
        if p.poll() is None:
            p.kill()
    # one read before it starts (review round 13), then the two messages it showed, counted at its end
    assert _acts(sam, space.erin_id) == [("read", 1), ("read", 2)]
