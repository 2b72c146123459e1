"""Issue 17, session 23: a coalition space's guest follows its host's server move (``coalition.server``,
vault/chains/spacemove.py, client/spacemoves.py).

The host's NCC moves its server (``org.server`` in the host's chain, which a guest never sees); the NCC member's
client signs the new place with the host's coalition key for the space and carries it into the space's chain. A
guest's command and its ``sync --watch --space`` then go to the new place; a move the host's coalition key did not
sign, served by the old server, stops the guest (exit 3) where it was. Real servers: the host's (the old place), the
ally's, and a real second server serving a copy of the host's data (the new place, its own certificate)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from client.guestspace import sibling
from client.home import Home
from tests.conftest import Member, open_db
from tests.helpers.forgery import Forge, Forgery, served, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guest_world import copied_ally, space_org_world, world_space
from tests.helpers.guests import Space
from tests.helpers.http import Http, b64, login_as, refused
from tests.helpers.pki import ServerProcess
from tests.helpers.pki import servers as servers_fixture
from tests.helpers.sync_world import Watcher, wait_until
from tests.test_moved_server import copy_and_serve, new_place
from vault.chains.coalition import CoalitionKey, signed_statement
from vault.chains.spacemove import move_statement
from vault.encoding import Value
from vault.links import Link, make_link
from vault.pin import Pin

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/guest_world.py)
ally = copied_ally
org_world = space_org_world  # a test asking for ``space`` starts from a world built once per worker
copies = servers_fixture  # the servers a test starts (tests/helpers/pki.py)


@pytest.fixture
def space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Space:
    s = world_space(forge, ally, make_member, monkeypatch, tmp_path)
    s.erin.ok("coalition", "join", s.code)
    return s


def _space_cfg(erin: Member, space: Space) -> tuple[str, str]:
    """The place erin's client uses for the space (its sealed space config)."""
    cfg = sibling(Home(erin.home), space.id).config()
    return cfg.url, str(cfg.pin)


def _space_links(forge: Forge, space: Space) -> list[str]:
    """The space chain's link types at the old (in-process) server."""
    return [link.type for link in forge.d.team_links[space.id]]


def _versions(data: Path, space: Space) -> int:
    db = open_db(data, "")
    try:
        return int(db.execute("SELECT count(*) FROM versions WHERE team=?", (space.id,)).fetchone()[0])
    finally:
        db.close()


def _host_key(alice: Member) -> CoalitionKey:
    """The host's coalition key for the space, as alice's device holds it."""
    secrets = Home(alice.home).unlock(agent_ok=False, passphrase=alice.passphrase_file.read_text().strip())
    return CoalitionKey(secrets.coalitions["campaign"])


def _ls(erin: Member, space: Space) -> list[str]:
    return sorted(d["name"] for d in erin.json("--space", space.name, "ls", space.name))


def test_a_guests_command_follows_the_hosts_move(space: Space, forge: Forge, tmp_path: Path,
                                                 copies: list[ServerProcess]) -> None:
    """alice (the host's only NCC member, a space admin holding the host's key) announces the move: it is in force
    and carried into the space. erin's next command (at the old place, still running) says so and switches her
    space's place; the new place is not serving yet (her command fails, not as a security error); once the host's
    data is copied there her commands work there, and her pin of the space's chain went on with it."""
    alice, erin = space.alice, space.erin
    old = _space_cfg(erin, space)
    assert _ls(erin, space) == ["plan.txt"]
    data, port, url, pin = new_place(tmp_path, "new-place")
    moved = alice.json("server", "announce-move", url, "--pin", pin)
    assert moved["in_force"] is True
    assert _space_links(forge, space)[-1] == "coalition.server"
    assert "server moved" in alice.ok("whoami").err  # the host's members follow as before
    r = erin.ok("--space", space.name, "ls", space.name)
    assert f"the host's server of coalition space {space.name} moved to {url} (pin {pin})" in r.err, r.err
    assert _space_cfg(erin, space) == (url, pin) != old
    assert "moved" not in erin.run("--space", space.name, "ls", space.name).err  # said once
    r = erin.run("--space", space.name, "ls", space.name)
    assert r.code not in (0, 3), r  # the new place does not serve yet: a network failure, not a security stop
    copy_and_serve(forge.server, data, port, copies)
    assert _ls(erin, space) == ["plan.txt"]
    (tmp_path / "after.txt").write_text("written at the new place\n")
    erin.ok("--space", space.name, "put", space.name, str(tmp_path / "after.txt"))
    assert sorted(d["name"] for d in alice.json("ls", space.name)) == ["after.txt", "plan.txt"]  # alice followed too


def test_a_guests_watcher_follows_the_hosts_move(space: Space, forge: Forge, tmp_path: Path,
                                                 copies: list[ServerProcess]) -> None:
    """erin's ``sync --watch --space`` sees the move carried into the space at its next pass, says so, sends nothing
    more to the old place, retries the new place until it serves, then pushes there."""
    alice, erin = space.alice, space.erin
    folder = tmp_path / "erin-campaign"
    data, port, url, pin = new_place(tmp_path, "new-place")
    w = Watcher(erin, folder, "--backstop", "3600", command=("--space", space.name, "sync"))
    try:
        w.wait_rows(0, ["plan.txt"], "the first pass")
        assert alice.json("server", "announce-move", url, "--pin", pin)["in_force"] is True
        at_move = len(_space_links(forge, space))
        mark = w.mark()
        (folder / "after.txt").write_text("after the move\n")
        w.wait_rows(mark, [url], "the moved row")
        at_old = _versions(forge.server.data_dir, space)
        shutil.copytree(forge.server.data_dir, data, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("server.crt", "server.key"))
        copies.append(ServerProcess(data, port))
        copies[-1].start()
        at_new = _versions(data, space)
        wait_until("after.txt at the new place", lambda: _versions(data, space) > at_new, w)
        assert _versions(forge.server.data_dir, space) == at_old  # nothing more to the old place
        assert len(_space_links(forge, space)) == at_move
        w.alive()
    finally:
        w.stop()
    moves = [r for r in w.rows if r.get("action") == "moved"]
    assert len(moves) == 1 and moves[0]["name"] == url and "following it" in moves[0]["detail"], w.rows
    assert [r for r in w.rows[w.rows.index(moves[0]):] if r.get("action") == "retry"], w.rows
    assert _space_cfg(erin, space) == (url, pin)


def test_a_move_the_hosts_coalition_key_did_not_sign_is_refused(space: Space, forge: Forge, tmp_path: Path) -> None:
    """The old server serves a ``coalition.server`` carried by a member of the space (erin herself: any member may
    carry one) whose statement is signed with another key than the host's: erin's command stops (exit 3), her
    space's place unchanged; the host's own clients refuse it too. A statement signed with the host's key for another
    place than its chain's and for another space (as a malicious holder of the key or a replay would) is refused."""
    alice, erin = space.alice, space.erin
    old = _space_cfg(erin, space)
    team = forge.d.team(space.id)
    assert team.host_key is not None
    evil = Pin("cert", b"\x11" * 32)
    root = forge.d.require_org().root
    host_key = Home(alice.home).unlock(agent_ok=False, passphrase=alice.passphrase_file.read_text().strip()
                                       ).coalitions["campaign"]
    for key, space_id, why in ((CoalitionKey.generate(), space.id, "not signed with the space's host coalition key"),
                               (CoalitionKey(host_key), forge.drafting, "for another space")):
        statement = move_statement(space_id, root, "https://evil.example.org", evil, forge.now())
        link = make_link(chain=space.id, seq=team.seq + 1, prev=team.head, time=max(forge.now(), team.time),
                         signer=space.erin_id, device=forge.device("erin"), type_="coalition.server",
                         body={"statement": signed_statement(key, statement), "org_seq": team.org_seq})
        with served(forge, Forgery("move not signed by the host", space.id, link, why)):
            r = erin.fails("--space", space.name, "ls", space.name, contains=why)
            assert r.code == 3 and _space_cfg(erin, space) == old
            alice.fails("ls", space.name, contains=why)
    assert _ls(erin, space) == ["plan.txt"] and _space_cfg(erin, space) == old
    # The host's key signing a place its chain does not put in force (a lone NCC member, or a retired key's holder
    # with a server that keeps it): the host's own clients and honest server refuse it. A guest cannot tell (it
    # does not see the host's chain): what it trusts is the host's coalition key, as for the host's members' entry.
    statement = move_statement(space.id, root, "https://evil.example.org", evil, forge.now())
    link = make_link(chain=space.id, seq=team.seq + 1, prev=team.head, time=max(forge.now(), team.time),
                     signer=space.erin_id, device=forge.device("erin"), type_="coalition.server",
                     body={"statement": signed_statement(CoalitionKey(host_key), statement), "org_seq": team.org_seq})
    why = "does not put that place in force"
    with served(forge, Forgery("a move the host's chain does not make", space.id, link, why)):
        alice.fails("ls", space.name, contains=why)


def test_a_wrong_pin_at_the_new_place_stops_the_guest(space: Space, forge: Forge, tmp_path: Path,
                                                      copies: list[ServerProcess]) -> None:
    """The host announced a pin the new place does not present (a mistake, or a machine in the middle): the guest
    follows the signed move, and its command there stops with exit 3 (as a member's would), nothing sent."""
    alice, erin = space.alice, space.erin
    data, port, url, _ = new_place(tmp_path, "new-place")
    wrong = f"cert:{'00' * 32}"
    assert alice.json("server", "announce-move", url, "--pin", wrong)["in_force"] is True
    assert "moved to" in erin.ok("--space", space.name, "ls", space.name).err
    assert _space_cfg(erin, space) == (url, wrong)
    copy_and_serve(forge.server, data, port, copies)
    r = erin.run("--space", space.name, "ls", space.name)
    assert r.code == 3 and "pin" in r.err, r


def test_a_guest_who_missed_the_move_rejoins_with_a_fresh_join_code(space: Space, forge: Forge, tmp_path: Path,
                                                                    copies: list[ServerProcess]) -> None:
    """The old server is gone before erin ran a command: her command fails (not a security stop); a space admin of
    the host, whose client followed the move, makes a join code naming the new place, and erin joins with it: her
    commands work there (her pins of the space carried on)."""
    alice, erin = space.alice, space.erin
    data, port, url, pin = new_place(tmp_path, "new-place")
    assert alice.json("server", "announce-move", url, "--pin", pin)["in_force"] is True
    assert "server moved" in alice.ok("whoami").err
    copy_and_serve(forge.server, data, port, copies)
    r = erin.run("--space", space.name, "ls", space.name)
    assert r.code not in (0, 3), r
    code = alice.json("coalition", "join-code", space.name)["code"]
    erin.ok("coalition", "join", code)
    assert _space_cfg(erin, space) == (url, pin) and _ls(erin, space) == ["plan.txt"]


def test_a_two_person_move_reaches_the_guests_only_once_in_force(space: Space, forge: Forge, tmp_path: Path,
                                                                 copies: list[ServerProcess]) -> None:
    """Two NCC members on the host (alice, in the space and holding the host's key; bob, NCC but not in the space):
    alice's proposal moves nobody and nothing of it reaches the space's chain, even after her next command; bob's
    second signature puts it in force, and his command says it could not carry it (he is not in the space); alice's
    next command carries it, and erin's next command follows it to the new place."""
    alice, bob, erin = space.alice, forge.org.bob, space.erin
    old, links = _space_cfg(erin, space), _space_links(forge, space)
    alice.ok("role", "grant", "bob", "ncc")
    data, port, url, pin = new_place(tmp_path, "new-place")

    proposed = alice.json("server", "announce-move", url, "--pin", pin)
    assert proposed["in_force"] is False
    assert "carried" not in alice.ok("whoami").err  # her next command carries nothing: nothing is in force
    assert _space_links(forge, space) == links
    assert "moved" not in erin.ok("--space", space.name, "ls", space.name).err and _space_cfg(erin, space) == old

    r = bob.ok("server", "announce-move", url, "--pin", pin, "--json")
    second = r.json()
    assert second["in_force"] is True
    assert "not carried into coalition space(s) campaign" in r.err, r.err
    assert _space_links(forge, space) == links  # in force, not carried yet: the guests still see the old place
    assert "moved" not in erin.ok("--space", space.name, "ls", space.name).err and _space_cfg(erin, space) == old

    r = alice.ok("whoami")
    assert "carried the server move into coalition space campaign" in r.err and "server moved" in r.err, r.err
    carried = forge.d.team_links[space.id][-1]
    assert _space_links(forge, space) == [*links, "coalition.server"] and carried.signer == forge.ids["alice"]
    assert carried.body.int_("org_seq") >= second["seq"]  # it names an org state with both signatures
    r = erin.ok("--space", space.name, "ls", space.name)
    assert f"moved to {url} (pin {pin})" in r.err, r.err
    assert _space_cfg(erin, space) == (url, pin)
    copy_and_serve(forge.server, data, port, copies)
    assert _ls(erin, space) == ["plan.txt"]


def test_the_host_server_refuses_a_move_its_chain_does_not_make_and_a_replayed_one(
        space: Space, forge: Forge, tmp_path: Path) -> None:
    """Through the API (alice, a space admin, posts the team link herself): a ``coalition.server`` whose statement is
    signed with the host's key but names a place the host's organization chain does not put in force (a place only
    proposed by one NCC member; a place never announced) is refused with 400 (``bad_chain``), nothing stored; once
    the second NCC member's signature puts it in force and it is carried, the carried statement posted again is
    refused (used), and so is a fresh statement of the same place (already in force there)."""
    alice = space.alice
    key, root = _host_key(alice), forge.d.require_org().root
    alice.ok("role", "grant", "bob", "ncc")
    _, _, url, pin_text = new_place(tmp_path, "new-place")
    pin = Pin("cert", bytes.fromhex(pin_text.removeprefix("cert:")))
    assert alice.json("server", "announce-move", url, "--pin", pin_text)["in_force"] is False

    def move(statement: Value) -> Link:
        return team_link(forge, space.id, "alice", "coalition.server", {"statement": statement})

    async def post(cases: list[tuple[Link, str, str]]) -> None:
        async with Http(forge.server) as h:
            token = await login_as(h, forge.ids["alice"], forge.device("alice"))
            for link, why, what in cases:
                before = len(forge.d.team_links[space.id])
                body = await refused(h, "POST", f"/api/v1/teams/{space.id}/links", 400, token=token,
                                     js={"link": b64(link.wire), "boxes": {}}, contains=why, what=what)
                assert body["error"] == "bad_chain", body
                assert len(forge.d.team_links[space.id]) == before

    not_in_force = "does not put that place in force"
    proposed = signed_statement(key, move_statement(space.id, root, url, pin, forge.now()))
    elsewhere = signed_statement(key, move_statement(space.id, root, "https://evil.example.org",
                                                     Pin("cert", b"\x11" * 32), forge.now()))
    asyncio.run(post([(move(proposed), not_in_force, "a place proposed by one NCC member"),
                      (move(elsewhere), not_in_force, "a place the host never announced")]))

    assert forge.org.bob.json("server", "announce-move", url, "--pin", pin_text)["in_force"] is True
    assert "carried the server move" in alice.ok("whoami").err
    carried = forge.d.team_links[space.id][-1]
    assert carried.type == "coalition.server"
    replayed = carried.body.dict_("statement").raw
    in_force = forge.d.team(space.id).server
    assert in_force is not None and (in_force.url, in_force.pin) == (url, pin)
    again = signed_statement(key, move_statement(space.id, root, url, pin, in_force.time + 1))  # other bytes
    asyncio.run(post([(move(replayed), "used already", "the carried statement again"),
                      (move(again), "already in force", "a fresh statement of the place in force")]))
