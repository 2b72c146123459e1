"""Issue 18, a suspected infiltrator: ``mvault incident suspect`` pauses a member's sensitive memberships without
cutting a device, exactly as a lost-device cut's pause does (the client, the server's 403, every reader refusing
content a colluding server plants), until ``mvault incident clear``. The real server and the real CLI; the
organization of tests/test_incidents.py (carol is the Security Team)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from client.home import Home, Secrets
from server.context import DIRECTORY
from tests.conftest import Org
from tests.helpers.db import sql
from tests.helpers.forgery import Forge, plant_version
from tests.helpers.http import Http, login_as, refused
from tests.helpers.keyholder import open_box
from tests.helpers.worlds import World, Worlds, security_member, security_world
from vault.envelope import DocWriter
from vault.teamkeys import TeamKey


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


def _key(org: Org, keys: Secrets, team: str, gen: int) -> TeamKey:
    for _member, box in sql(org, "SELECT member, box FROM team_boxes WHERE team=? AND gen=?", team, gen):
        key = open_box(keys.puks, bytes(box))
        if key is not None:
            return key
    raise AssertionError(f"no key of {team} generation {gen}")


def test_suspect_pauses_without_a_cut_until_clear(org: Org, make_member: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob, carol = org.alice, org.bob, security_member(org, make_member)
    alice.ok("team", "create", "cell", "--kind", "circle")
    alice.ok("team", "add", "cell", "bob", "--role", "writer")
    doc = tmp_path / "note.md"
    doc.write_text("from bob")
    # who may not: NCC while the Security Team has a member, a plain member, the member themselves
    alice.fails("incident", "suspect", "bob", contains="the Security Team handles incidents")
    bob.fails("incident", "suspect", "alice", contains="may not pause a suspected member")
    carol.fails("incident", "suspect", "carol", contains="cannot pause themselves")
    report = carol.json("incident", "suspect", "bob", "--reason", "talked to the police")
    assert report["incident_kind"] == "suspect" and report["paused_teams"] == ["cell"]
    assert isinstance(report["id"], str)
    carol.fails("incident", "suspect", "bob", contains="paused already")
    assert "talked to the police" not in carol.run("members", "--json").out  # only in the private record
    # No device is cut: bob logs in and writes outside sensitive teams; the circle refuses (client, then server).
    bob.ok("whoami")
    bob.ok("put", "drafting", str(doc))
    bob.fails("put", "cell", str(doc), contains="paused (incident")
    d = org.server.app[DIRECTORY]
    cell = d.team_by_name("cell")
    assert cell is not None and not d.require_org().incidents.cuts
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    keys = {}
    for m in (alice, bob, carol):
        monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
        keys[m.name] = Home(m.home).unlock()
    ids = {ms.name: mid for mid, ms in d.members.items()}
    key = _key(org, keys["bob"], cell.team_id, cell.generation)
    now = int(org.server.clock())
    writer = DocWriter(key=key, team_seq=cell.seq, device=keys["bob"].device, author=ids["bob"],
                       doc=key.doc_id("planted.md"), seq=1, parent=None, time=now, name="planted.md", size=100)
    upload = writer.upload_prefix() + writer.encrypt(os.urandom(100)) + writer.finish()

    async def upload_refused() -> None:
        async with Http(org.server) as h:
            token = await login_as(h, ids["bob"], keys["bob"].device)
            await refused(h, "POST", f"/api/v1/teams/{cell.team_id}/docs/{key.doc_id('planted.md')}", 403,
                          contains="sensitive memberships are paused", token=token, data=upload)

    asyncio.run(upload_refused())
    # A colluding server stores bob's version anyway: every reader refuses it.
    f = Forge(org, carol, keys, ids, cell.team_id, cell.team_id)
    plant_version(f, "bob", key, "planted.md", seq=1, parent=None, when=now, team_seq=cell.seq, data=os.urandom(100))
    alice.fails("get", "cell", "planted.md", "-o", str(tmp_path / "x"), contains="paused since")
    assert not (tmp_path / "x").exists()
    sql(org, "DELETE FROM versions WHERE doc=?", key.doc_id("planted.md"))
    # `incident clear` lifts the pause: bob writes in the circle again.
    cleared = carol.json("incident", "clear", report["id"], "--note", "cleared after interview")
    assert isinstance(cleared["closed"]["effect"]["clear_seq"], int)
    bob.ok("put", "cell", str(doc))
    alice.ok("get", "cell", "note.md", "-o", str(tmp_path / "got.md"))
    assert (tmp_path / "got.md").read_text() == "from bob"
