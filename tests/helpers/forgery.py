"""A colluding or forging server's toolkit against a real organization: the ``forge`` fixture (alice, bob and
carol with their keys), links made by hand on the server's heads, forgeries the server serves."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from client.home import Home, Secrets
from server.context import DIRECTORY
from server.directory import Directory
from tests.conftest import UNLOCKED, Member, Org, ServerThread
from tests.helpers.db import sql
from tests.helpers.keyholder import open_box
from tests.helpers.worlds import World, Worlds
from vault.bodyformat import BODY_NEW
from vault.encoding import Value, decode, encode
from vault.envelope import MAGIC, PUT, DocWriter
from vault.keys import DeviceKeys
from vault.links import Link, make_link, parse_link
from vault.teamkeys import TeamKey


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


def forge_world(worlds: Worlds) -> World:
    """The world ``forge`` starts from: ``org``, carol joined, team "ops" (alice admin, bob and carol readers). The
    ``org_world`` fixture (tests/helpers/worlds.py) gives it to every test that uses ``forge``."""
    return worlds.org_then("org-forge", _forge_build)


def _forge_build(org: Org, make_member: Callable[[str], Member]) -> None:
    carol = make_member("carol")
    carol.ok("join", org.alice.json("invite")["invite"], "--name", "carol")
    org.alice.ok("team", "create", "ops", "--kind", "program")
    org.alice.ok("team", "add", "ops", "bob", "--role", "reader")
    org.alice.ok("team", "add", "ops", "carol", "--role", "reader")


@pytest.fixture
def forge(org: Org, make_member: Any, monkeypatch: pytest.MonkeyPatch) -> Forge:
    carol = make_member("carol")
    if not carol.home.exists():  # ``org`` not copied from ``forge_world`` (a module with a server of its own)
        _forge_build(org, make_member)
    # Each member's keys (their keystore opened with the passphrase, in this process) and an unlock session (an
    # agent holding the key, as ``mvault unlock`` starts it) that spares their CLI runs the Argon2 step.
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    keys = {}
    for m in (org.alice, org.bob, carol):
        monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
        home = Home(m.home)
        keys[m.name] = home.unlock()
        UNLOCKED.add(m.home)  # its agent is stopped after the test
        m.env_extra["MVAULT_SESSION"] = home.start_session(30 * 60)[0]
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


def team_key(f: Forge, name: str, team: str, gen: int) -> TeamKey:
    """The key of ``team``'s generation ``gen`` that member ``name`` holds (opened from their box)."""
    for _member, box in sql(f.org, "SELECT member, box FROM team_boxes WHERE team=? AND gen=?", team, gen):
        key = open_box(f.keys[name].puks, bytes(box))
        if key is not None:
            return key
    raise AssertionError(f"{name} holds no key of {team} generation {gen}")


def plant_version(f: Forge, author: str, key: TeamKey, name: str, *, seq: int, parent: str | None, when: int,
                  team_seq: int, data: bytes = b"", op: str = PUT, extra: dict[str, Value] | None = None,
                  body_format: int = BODY_NEW) -> str:
    """A colluding server stores version ``seq`` of document ``name`` (on top of ``parent``), signed by ``author``
    with ``key`` (dated ``when``, naming ``team_seq``), with its body, as if it had been uploaded: its vid."""
    writer = DocWriter(key=key, team_seq=team_seq, device=f.device(author), author=f.ids[author],
                       doc=key.doc_id(name), seq=seq, parent=parent, time=when, name=name, size=len(data), op=op,
                       extra_meta=extra, body=body_format)
    upload = writer.upload_prefix() + (writer.encrypt(data) if data else b"") + writer.finish()
    assert writer.record is not None
    (n,) = struct.unpack(">I", upload[len(MAGIC):len(MAGIC) + 4])
    body = upload[len(MAGIC) + 4 + n:-64]
    vid = writer.record.version_id
    blob = f.server.data_dir / "blobs" / vid[:2] / vid
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(body)
    sql(f.org, "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", vid, key.team_id, key.doc_id(name), seq,
        writer.record.raw, vid, len(body), when)
    return vid


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
