"""Issue 20, the guest's own client: an allied organization's member works in the host's coalition space from
``mvault`` on their own device (``coalition join`` with a space admin's join code, then ``mvault --space NAME ...``),
on two real servers through the real CLI. The guest's client judges the space without the host's organization
chain (vault/chains/outside.py); what the host's server serves it is checked, and never holds the host's roster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Member
from tests.helpers.allies import ally as ally_fixture
from tests.helpers.forgery import Forge
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.guests import Space, guest_space

forge = forge_fixture  # the fixtures (tests/helpers/forgery.py, tests/helpers/allies.py)
ally = ally_fixture


@pytest.fixture
def space(forge: Forge, ally: Member, make_member: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Space:
    return guest_space(forge, ally, make_member, monkeypatch, tmp_path)


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
    assert [m["text"] for m in alice.json("thread", "read", name, "plans")] == texts
    # erin's own organization is untouched: her ordinary commands still reach her own server
    assert erin.json("whoami")["member"] == space.erin_id
