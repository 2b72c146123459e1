"""Every device of a member knows the coalition spaces the member joined (review round 15's open finding; session
17): the record in the member's own chain (``member.spaces``, sealed to the PUK; vault/joinedspaces.py), written by
``coalition join`` and ``leave`` and read by ``device revoke`` on any device, which carries the revocation to the
host of a space joined on another device only. Real servers: the host (alice's organization,
tests/helpers/forgery.py) and the ally (dora's, tests/helpers/allies.py) with its member erin (phone: her first
device; laptop: linked from it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client.home import Home
from server.context import DIRECTORY
from server.directory import Directory
from tests.conftest import Member
from tests.helpers.allies import own_server
from tests.helpers.forgery import Forge
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guest_world import Guest, guest_org_world
from tests.helpers.guest_world import laptop_guest as laptop_guest_fixture
from vault.errors import IntegrityError
from vault.joinedspaces import open_spaces, seal_spaces
from vault.keys import PukKeys

forge = forge_fixture
laptop_guest = laptop_guest_fixture
org_world = guest_org_world  # the tests start from a two-server world built once per worker


def _ally_dir(tmp_path: Path) -> Directory:
    d = own_server(tmp_path).app[DIRECTORY]
    assert isinstance(d, Directory)
    return d


def _record(tmp_path: Path, erin: Member, erin_id: str) -> dict[str, str]:
    """The record as erin's own server holds it, opened with the PUK her phone holds."""
    state = _ally_dir(tmp_path).member(erin_id)
    assert state.spaces is not None
    _, gen, box = state.spaces
    return open_spaces(box, Home(erin.home).unlock().puks[gen], erin_id)


def test_a_revocation_from_a_device_that_never_joined_reaches_the_space_and_the_record_is_resealed(
        forge: Forge, laptop_guest: Guest, tmp_path: Path) -> None:
    """erin joined on the laptop only; from the phone she revokes it: the phone reads the record in her chain, logs
    in at the host as a guest with its own keys, carries the revocation with its PUK boxes; the thief's laptop no
    longer logs in there. The record is then sealed to the new member key (the laptop's PUK does not open it)."""
    erin, laptop, space = laptop_guest.erin, laptop_guest.laptop, laptop_guest.space
    assert set(_record(tmp_path, erin, space.erin_id)) == {space.id}
    thief_keys = Home(laptop.home).unlock()
    revoked = erin.json("device", "revoke", "laptop")
    assert any("carried your device.revoke" in r and "coalition space campaign" in r for r in revoked["rotated"]), \
        revoked
    assert forge.d.member_links[space.erin_id][-1].type == "device.revoke"  # on the host's server
    laptop.fails("--space", space.name, "ls", space.name, contains="revoked")
    assert not list(erin.home.glob("carry.*"))  # the transient record of the space is gone
    assert not list(erin.home.glob("space.*"))  # and the phone did not join the space by it
    state = _ally_dir(tmp_path).member(space.erin_id)
    assert state.spaces is not None and state.spaces[1] == 2 == state.puk_gen  # sealed again, to the new key
    assert set(_record(tmp_path, erin, space.erin_id)) == {space.id}
    with pytest.raises(IntegrityError):
        open_spaces(state.spaces[2], thief_keys.puks[1], space.erin_id)


def test_the_revoked_device_emptying_the_record_first_does_not_keep_the_revocation_from_the_space(
        forge: Forge, laptop_guest: Guest, tmp_path: Path) -> None:
    """The thief, holding the laptop before erin revokes it, writes a record without the space (the laptop is still
    an active device: its link is valid). The phone believes no removal the revoked device made: it still carries
    the revocation to the space, and the record it seals again names the space."""
    erin, laptop, space = laptop_guest.erin, laptop_guest.laptop, laptop_guest.space
    thief = ("import asyncio, sys\nfrom pathlib import Path\nfrom client import joinedspaces\nfrom client.clock import "
             "SYSTEM\nfrom client.home import Home\n"
             "home = Home(Path(sys.argv[1]))\n"
             "assert asyncio.run(joinedspaces.update(home, home.unlock(), SYSTEM, left=sys.argv[2]))\n")
    subprocess.run([sys.executable, "-c", thief, str(laptop.home), space.id], env=laptop.env(), check=True,
                   cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert _record(tmp_path, erin, space.erin_id) == {}  # the thief's record, signed by the laptop
    revoked = erin.json("device", "revoke", "laptop")
    assert any("carried your device.revoke" in r and "coalition space campaign" in r for r in revoked["rotated"]), \
        revoked
    laptop.fails("--space", space.name, "ls", space.name, contains="revoked")
    assert set(_record(tmp_path, erin, space.erin_id)) == {space.id}


def test_leaving_a_space_takes_it_out_of_the_record(
        forge: Forge, laptop_guest: Guest, tmp_path: Path) -> None:
    """The laptop leaves the space: the record no longer names it. The phone then revokes the laptop: a leave by the
    revoked device is not believed on its word (a thief could write it), so the phone still tries the host, which
    refuses erin's whole chain (she is in none of its spaces): said in a warning, not an error, and the record sealed
    again leaves the space out."""
    erin, laptop, space = laptop_guest.erin, laptop_guest.laptop, laptop_guest.space
    assert set(_record(tmp_path, erin, space.erin_id)) == {space.id}
    laptop.ok("coalition", "leave", space.name)
    assert _record(tmp_path, erin, space.erin_id) == {}
    revoked = erin.json("device", "revoke", "laptop")
    warned = [r for r in revoked["rotated"] if "coalition space campaign" in r]
    assert len(warned) == 1 and warned[0].startswith("warning:") and "taken it out" in warned[0], revoked
    assert not any("carried" in r for r in revoked["rotated"]), revoked
    state = _ally_dir(tmp_path).member(space.erin_id)
    assert state.spaces is not None and state.spaces[1] == 2
    assert _record(tmp_path, erin, space.erin_id) == {}


def test_a_space_whose_host_does_not_take_the_revocation_fails_the_command_naming_it(
        forge: Forge, laptop_guest: Guest, tmp_path: Path) -> None:
    """A host's server that refuses the phone (here: the host's server stores nothing of erin's chain past the
    approval and refuses her phone's login, as a host that dropped the phone's device would) must not leave the
    revocation unsaid: the command is done at home, prints it, and exits non-zero naming the coalition space."""
    erin, space = laptop_guest.erin, laptop_guest.space  # the laptop joined the space
    host_links = forge.d.member_links[space.erin_id]
    phone = next(d["name"] for d in erin.json("device", "ls") if d["this"])
    assert phone
    original = list(host_links)
    forge.d.member_links[space.erin_id] = []  # the host's server serves no chain of erin: her phone's login fails
    try:
        revoked = erin.run("device", "revoke", "laptop")
    finally:
        forge.d.member_links[space.erin_id] = original
    assert revoked.code != 0, revoked
    assert "revoked laptop" in revoked.out  # done at home, and said
    assert "coalition space(s) you joined on another device: campaign" in revoked.err, revoked.err
    assert _ally_dir(tmp_path).member(space.erin_id).devices  # the home's revocation stands
    assert any(d["name"] == "laptop" and d["revoked"] for d in erin.json("device", "ls"))


def test_the_own_server_withholding_the_record_is_caught_by_the_revoking_device(
        forge: Forge, laptop_guest: Guest, tmp_path: Path) -> None:
    """erin's own server serves her phone her chain without the newest record (withholding it, or rolling back to
    the chain before it: the same to a client): the phone, which saw it once, refuses (exit 3) before revoking
    anything, never carrying nothing in silence. The record cannot be altered or swapped for another member's: a
    box opened for the wrong member or key is refused."""
    erin, space = laptop_guest.erin, laptop_guest.space  # the laptop joined the space
    erin.ok("device", "ls")  # the phone sees (and pins) its chain with the record
    links = _ally_dir(tmp_path).member_links[space.erin_id]
    assert links[-1].type == "member.spaces"
    withheld = links.pop()
    try:
        revoked = erin.run("device", "revoke", "laptop")
    finally:
        links.append(withheld)
    assert revoked.code == 3, (revoked.out, revoked.err)
    assert _ally_dir(tmp_path).member(space.erin_id).devices[
        next(d for d, v in _ally_dir(tmp_path).member(space.erin_id).devices.items() if v.name == "laptop")
    ].revoked is None  # nothing revoked on a chain the phone does not trust
    puk = PukKeys.generate(1)
    box = seal_spaces("someone-else", puk, {space.id: space.code})
    with pytest.raises(IntegrityError):
        open_spaces(box, puk, space.erin_id)
    with pytest.raises(IntegrityError):
        open_spaces(box, PukKeys.generate(1), "someone-else")
