"""The copied organizations of tests/helpers/worlds.py: each copy starts from the world as built, whatever an
earlier copy did, and the world's port stays taken between tests."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, Member, Org
from tests.helpers.worlds import World


def alice_in(dest: Path) -> Member:
    return Member(dest / "home-alice", "alice", dest / "passphrase")


def test_each_copy_starts_from_the_world_as_built(org_world: World, tmp_path: Path) -> None:
    first = org_world.restore(tmp_path / "first")
    try:
        alice = alice_in(tmp_path / "first")
        assert (tmp_path / "first" / "passphrase").read_text() == PASSPHRASE + "\n"
        assert alice.json("whoami")["teams"] == ["drafting"]
        alice.ok("team", "create", "scratch", "--kind", "program")
        assert sorted(alice.json("whoami")["teams"]) == ["drafting", "scratch"]
    finally:
        first.stop()
    second = org_world.restore(tmp_path / "second")
    try:
        assert second.restored and second.port == org_world.port and second.invite == org_world.invite
        assert alice_in(tmp_path / "second").json("whoami")["teams"] == ["drafting"]
    finally:
        second.stop()
    with socket.socket() as s, pytest.raises(OSError):  # no other server of this machine is given the port
        s.bind(("127.0.0.1", org_world.port))


def test_org_is_a_copy_in_the_tests_own_directory(org: Org, tmp_path: Path) -> None:
    assert org.server.restored and org.server.data_dir == tmp_path / "server-data"
    assert org.alice.home == tmp_path / "home-alice" and org.bob.home == tmp_path / "home-bob"
    assert org.bob.json("whoami")["teams"] == ["drafting"]
