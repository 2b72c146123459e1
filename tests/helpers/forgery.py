"""A colluding or forging server's toolkit against a real organization: the ``forge`` fixture (alice, bob and
carol with their keys), links made by hand on the server's heads, forgeries the server serves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from client.home import Home, Secrets
from server.context import DIRECTORY
from server.directory import Directory
from tests.conftest import Member, Org, ServerThread
from tests.helpers.members import unlock_fast
from vault.encoding import decode, encode
from vault.keys import DeviceKeys
from vault.links import Link, make_link, parse_link


def relink(link: Link, change: Callable[[dict[str, Any]], None]) -> Link:
    """The same link with its signed body altered and the original signature kept."""
    outer, inner = decode(link.wire), decode(link.raw)
    assert isinstance(outer, dict) and isinstance(inner, dict)
    outer, inner = dict(outer), dict(inner)
    change(inner)
    return parse_link(encode({**outer, "link": encode(inner)}))


@dataclass
class Forge:
    org: Org
    carol: Member
    keys: dict[str, Secrets]  # name -> keystore secrets (device keys, PUKs)
    ids: dict[str, str]  # name -> member id
    drafting: str
    ops: str

    @property
    def server(self) -> ServerThread:
        return self.org.server

    @property
    def d(self) -> Directory:
        d = self.server.app[DIRECTORY]
        assert isinstance(d, Directory)
        return d

    def now(self) -> int:
        return int(self.server.clock())

    def device(self, name: str) -> DeviceKeys:
        return self.keys[name].device

    def clients(self) -> list[Member]:
        return [self.org.alice, self.org.bob]


@pytest.fixture
def forge(org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> Forge:
    carol = make_member("carol")
    carol.ok("join", org.alice.json("invite")["invite"], "--name", "carol")
    unlock_fast(org.alice, org.bob, carol)
    org.alice.ok("team", "create", "ops", "--kind", "program")
    org.alice.ok("team", "add", "ops", "bob", "--role", "reader")
    org.alice.ok("team", "add", "ops", "carol", "--role", "reader")
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    keys = {}
    for m in (org.alice, org.bob, carol):
        monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
        keys[m.name] = Home(m.home).unlock()
    d = org.server.app[DIRECTORY]
    ids = {ms.name: mid for mid, ms in d.members.items()}
    drafting, ops = d.team_by_name("drafting"), d.team_by_name("ops")
    assert drafting is not None and ops is not None
    assert [link.type for link in d.team_links[ops.team_id]] == ["team.create", "team.add", "team.add"]
    return Forge(org, carol, keys, ids, drafting.team_id, ops.team_id)


def team_link(f: Forge, team: str, signer: str, type_: str, body: dict[str, Any], *,
              device: DeviceKeys | None = None, seq: int | None = None, prev: bytes | None = None) -> Link:
    """A link on top of a team chain's head as the server holds it, made against the current org state."""
    state = f.d.team(team)
    return make_link(chain=team, seq=state.seq + 1 if seq is None else seq, prev=state.head if prev is None else prev,
                     time=max(f.now(), state.time), signer=f.ids[signer], device=device or f.device(signer),
                     type_=type_, body={**body, "org_seq": f.d.require_org().seq})


@dataclass
class Forgery:
    label: str
    chain: str  # "org", a member id or a team id: where the server would put it
    link: Link
    client_error: str  # what every client reports when the server serves it


def served_list(f: Forge, chain: str) -> list[Link]:
    if chain == "org":
        return f.d.org_links
    if chain in f.d.member_links:
        return f.d.member_links[chain]
    return f.d.team_links[chain]


@contextmanager
def served(f: Forge, forgery: Forgery) -> Iterator[None]:
    """The server serves ``forgery`` at the end of its chain (its own state is left as it was)."""
    links = served_list(f, forgery.chain)
    links.append(forgery.link)
    try:
        yield
    finally:
        links.remove(forgery.link)
