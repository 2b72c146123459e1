"""Session 19: the two-server set-ups most coalition guest tests began with, built once per worker on ``forge``'s
world and copied for each test, as tests/test_coalition_rekey_cli.py does with its own (tests/helpers/worlds.py).

- Review rounds 18 and 19, joined spaces: the ``ally`` fixture, ``erin_of``, ``laptop_of``, ``guest_space`` and the
  laptop's join (tests/helpers/guests.py). A module uses it with ``org_world = guest_org_world`` (the world a test
  asking for ``laptop_guest`` starts from; ``forge_world`` for the others) and the ``laptop_guest`` fixture, which
  restarts the copied ally server on its port and gives erin (on her phone), her laptop and the space.
- The modules whose ``space`` fixture was ``guest_space(...)`` (erin not joined): ``org_world = space_org_world``,
  ``ally = copied_ally`` (the copied ally server restarted and its dora, or a fresh ally as ``ally`` for a test
  without ``space``) and ``space = world_space``."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Member, Org, ServerThread
from tests.helpers.forgery import Forge, _forge_build, forge_world
from tests.helpers.guests import Space, laptop_of
from tests.helpers.worlds import World, Worlds

PORTS: list[socket.socket] = []  # the ally servers' ports, held all session (tests/helpers/worlds.py ``Worlds``)


def _reserve_port() -> int:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    PORTS.append(s)
    return int(s.getsockname()[1])


def _setup(org: Org, make_member: Any, laptop: bool = True) -> None:
    """Built once per worker: the ally's server and its founder dora (NCC), her member erin (with a second device,
    the laptop, when ``laptop``), the host's space ``campaign`` with erin in it as a writer (``plan.txt`` its first
    document), joined on the laptop (no device joined without one). What the tests need is kept in ``guest.json``."""
    alice = org.alice
    root = make_member("dora").home.parent
    ally_server = ServerThread(root / "ally-server", _reserve_port()).start()
    try:
        dora, erin = make_member("dora"), make_member("erin")
        assert ally_server.invite is not None
        dora.ok("join", ally_server.invite, "--name", "dora")
        erin.ok("join", dora.json("invite")["invite"], "--name", "erin")
        erin_id = erin.json("whoami")["member"]
        device = laptop_of(erin, root) if laptop else None
        pairing = dora.json("coalition", "pairing-code", "campaign")["code"]
        space = alice.json("coalition", "create", "campaign", "--with", pairing)["space"]
        ally_name = alice.json("coalition", "show", "campaign")["allies"][0]["name"]
        guest = dora.json("coalition", "approve", "campaign", "erin", "--space", space)["code"]
        alice.ok("coalition", "add", "campaign", f"erin@{ally_name}", "--approval", guest)
        note = root / "plan.txt"
        note.write_text("joint campaign plan\n")
        alice.ok("put", "campaign", str(note))
        code = alice.json("coalition", "join-code", "campaign")["code"]
        if device is not None:
            device.ok("coalition", "join", code)
    finally:
        ally_server.stop()
    (root / "guest.json").write_text(json.dumps({"ally_port": ally_server.port, "space": space, "ally": ally_name,
                                                 "erin_id": erin_id, "code": code}))


@pytest.fixture
def guest_org_world(worlds: Worlds, request: pytest.FixtureRequest) -> World:
    """A module's ``org_world``: for a test that asks for ``laptop_guest``, ``forge_world``'s then ``_setup`` on it
    and on the ally's server (copied with it: tmp_path/ally-server); ``forge_world`` for the others."""
    if "laptop_guest" in request.fixturenames:
        return worlds.org_then("org-forge-laptop-guest", lambda org, make_member: (_forge_build(org, make_member),
                                                                                    _setup(org, make_member)))
    return forge_world(worlds)


@dataclass
class Guest:
    """``_setup``'s state, copied: erin (the ally's member) on her phone, her laptop, and the space."""

    erin: Member
    laptop: Member
    space: Space


@pytest.fixture
def laptop_guest(forge: Forge, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                 ) -> Iterator[Guest]:
    """The copied ally server restarted on its port; erin, her laptop and the space as ``erin_of``, ``laptop_of``
    and ``guest_space`` gave them (the laptop joined)."""
    setup = json.loads((tmp_path / "guest.json").read_text())
    ally_server = ServerThread(tmp_path / "ally-server", setup["ally_port"]).start()
    try:
        erin = make_member("erin")
        monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(erin.passphrase_file))
        forge.ids["erin"] = setup["erin_id"]
        laptop = Member(tmp_path / "home-erin-laptop", "erin", erin.passphrase_file)
        yield Guest(erin, laptop, Space(forge.org.alice, erin, "campaign", setup["space"], setup["ally"],
                                        setup["erin_id"], setup["code"]))
    finally:
        ally_server.stop()


@pytest.fixture
def space_org_world(worlds: Worlds, request: pytest.FixtureRequest) -> World:
    """A module's ``org_world``: for a test that asks for ``space``, ``forge_world``'s then ``_setup`` without the
    laptop; ``forge_world`` for the others."""
    if "space" in request.fixturenames:
        return worlds.org_then("org-forge-guest-space", lambda org, make_member: (
            _forge_build(org, make_member), _setup(org, make_member, laptop=False)))
    return forge_world(worlds)


@pytest.fixture
def copied_ally(tmp_path: Path, make_member: Any) -> Iterator[Member]:
    """The ally's founder dora on the ally's server: the world's copy restarted on its port (``space_org_world``),
    or a fresh one as tests/helpers/allies.py ``ally`` starts."""
    copied = tmp_path / "guest.json"
    if copied.exists():
        server = ServerThread(tmp_path / "ally-server", json.loads(copied.read_text())["ally_port"]).start()
        dora = make_member("dora")
    else:
        server = ServerThread(tmp_path / "ally-server").start()
        dora = make_member("dora")
        assert server.invite is not None
        dora.ok("join", server.invite, "--name", "dora")
    yield dora
    server.stop()


def world_space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                ) -> Space:
    """The copied world's space as ``guest_space`` gave it (``erin_of``'s keys and id in ``forge`` included)."""
    setup = json.loads((tmp_path / "guest.json").read_text())
    erin = make_member("erin")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(erin.passphrase_file))
    forge.keys["erin"] = Home(erin.home).unlock()
    forge.ids["erin"] = setup["erin_id"]
    return Space(forge.org.alice, erin, "campaign", setup["space"], setup["ally"], setup["erin_id"], setup["code"])
