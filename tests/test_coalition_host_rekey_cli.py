"""Review 16 (session 16), end to end: the host's NCC rekeys its coalition key for a space in its own chain (no
command makes one yet: the test's in-process client posts the ``org.coalition`` with ``replaces``, as the chain
tests do); the next command of a host member of the space that signs a host statement (here `coalition add`) first
carries the rekey into the space (client/hostkey.py ``carry_rekeys``), and the guest's client follows it. Two real
servers (tests/helpers/forgery.py, tests/helpers/allies.py) and the real CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from client import coalitionkeys
from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.forgery import Forge
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guests import Space, guest_space
from tests.helpers.members import session
from vault.chains.coalition import CoalitionKey, rekey_statement, signed_statement

forge = forge_fixture
ally = ally_fixture


@pytest.fixture
def space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Space:
    return guest_space(forge, ally, make_member, monkeypatch, tmp_path)


async def rekey_host_key(forge: Forge, name: str) -> bytes:
    """alice (the host's NCC, holding the key) replaces the host's coalition key for ``name`` in the host's chain,
    keeping the new seed in her keystore first; returns the new key."""
    async with session(forge.server, forge.org.alice) as s:
        held = await coalitionkeys.seed(s, name)
        assert held is not None
        old, new = CoalitionKey(held), CoalitionKey.generate()
        s.session.secrets.coalitions[name] = new.seed
        s.session.home.save_secrets(s.session.secrets)
        root = (await s.chains.view()).org.root
        statement = rekey_statement(root, new.public, s.session.now())
        await s.chains.append_org("org.coalition", {"name": name, "key": new.public, "host": root,
                                                    "replaces": old.public, "rekey": signed_statement(old, statement)})
        assert (await s.chains.view(refresh=True)).org.coalitions[name].key == new.public
        return new.public


def test_a_host_rekey_is_carried_into_the_space_and_the_guest_follows(space: Space, forge: Forge,
                                                                       tmp_path: Path) -> None:
    alice, erin, name = space.alice, space.erin, space.name
    erin.ok("coalition", "join", space.code)
    old = forge.d.team(space.id).host_key
    new = asyncio.run(rekey_host_key(forge, name))
    assert forge.d.team(space.id).host_key == old  # the space holds the old key until a member carries the rekey
    alice.ok("coalition", "add", name, "bob")  # carries it, then approves bob with the new key
    team = forge.d.team(space.id)
    assert team.host_key == new and team.host_retired == {old: team.seq - 1}
    assert forge.ids["bob"] in team.members
    types = [x.type for x in forge.d.team_links[space.id][-2:]]
    assert types == ["coalition.rekey", "team.add"]
    note = tmp_path / "from-bob.txt"
    note.write_text("bob's note\n")
    forge.org.bob.ok("put", name, str(note))
    erin.ok("--space", name, "get", name, "from-bob.txt", "-o", str(tmp_path / "got"))  # the guest's replay follows
    assert (tmp_path / "got").read_text() == "bob's note\n"
