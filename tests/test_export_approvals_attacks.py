"""Issues 18 and 20: the server is the attacker for export approvals. An approval the server makes up, or one signed
by a member without the Security Team role, is refused by every client (nothing is exported); and the server itself
refuses, without the client's checks, every export record and approval link it should not accept (4xx, nothing
changed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from client.home import Home, Secrets
from server.context import DIRECTORY
from tests.helpers.db import sql
from tests.helpers.export_cell import Cell, cell
from tests.helpers.forgery import relink
from tests.helpers.http import Http, b64, login_as, refused
from tests.helpers.worlds import World, Worlds, security_world
from vault.links import Link, make_link

__all__ = ["cell"]  # the fixture


@pytest.fixture
def org_world(worlds: Worlds) -> World:
    return security_world(worlds)


def _keys(cell: Cell, monkeypatch: pytest.MonkeyPatch) -> dict[str, Secrets]:
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    out = {}
    for m in (cell.org.alice, cell.bob, cell.carol, cell.dave):
        monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
        out[m.name] = Home(m.home).unlock()
    return out


@contextmanager
def _served(cell: Cell, team_id: str, link: Link) -> Iterator[None]:
    """The server serves ``link`` at the end of the team chain (its own state is left as it was)."""
    links = cell.org.server.app[DIRECTORY].team_links[team_id]
    links.append(link)
    try:
        yield
    finally:
        links.remove(link)


def _approval(cell: Cell, keys: dict[str, Secrets], signer: str, request: bytes) -> Link:
    d = cell.org.server.app[DIRECTORY]
    team = d.team_by_name("cell")
    assert team is not None
    ids = {ms.name: mid for mid, ms in d.members.items()}
    return make_link(chain=team.team_id, seq=team.seq + 1, prev=team.head, time=int(cell.org.server.clock()),
                     signer=ids[signer], device=keys[signer].device, type_="export.approve",
                     body={"request": request, "org_seq": d.require_org().seq})


def test_a_server_made_or_wrongly_signed_approval_is_refused_by_every_client(
        cell: Cell, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = cell.request()
    cell.carol.ok("export", "approve", rid[:16])
    keys = _keys(cell, monkeypatch)
    team = cell.org.server.app[DIRECTORY].team_by_name("cell")
    assert team is not None
    out = cell.tmp / "out.age"
    # server-made: dave's name and device on carol's signed approval (the signature is carol's, over other bytes)
    carols = _approval(cell, keys, "carol", bytes.fromhex(rid))
    dave = next(mid for mid, ms in cell.org.server.app[DIRECTORY].members.items() if ms.name == "dave")
    made_up = relink(carols, lambda inner: inner.update(signer=dave, device=keys["dave"].device.device_id))
    # wrongly signed: alice's real device, but alice (NCC) does not hold the Security Team role
    alices = _approval(cell, keys, "alice", bytes.fromhex(rid))
    for forged, error in ((made_up, "signature"), (alices, "may not approve an export")):
        with _served(cell, team.team_id, forged):
            for m in (cell.bob, cell.carol, cell.org.alice):
                m.fails("export", "requests", contains=error)
            cell.bob.fails("export", "cell", "--request", rid[:16], "--out", str(out), contains=error)
        assert not out.exists()
    assert cell.exports() == []
    (listed,) = cell.bob.json("export", "requests", "--json")  # the honest chain again: one approval
    assert listed["status"] == "pending"


def test_the_server_refuses_what_it_should_not_record(cell: Cell, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = cell.request()
    unapproved = cell.request()  # a second request, which nobody approves
    cell.carol.ok("export", "approve", rid[:16])
    keys = _keys(cell, monkeypatch)
    d = cell.org.server.app[DIRECTORY]
    team = d.team_by_name("cell")
    assert team is not None
    ids = {ms.name: mid for mid, ms in d.members.items()}
    docs = sorted({str(r[0]) for r in sql(cell.org, "SELECT doc FROM versions WHERE team=?", team.team_id)})
    assert len(docs) == 2
    path = "/api/v1/audit/attest"

    def attest(request: str, **kw: Any) -> dict[str, Any]:
        return {"kind": "doc-export", "team": team.team_id, "count": len(docs), "request": request, "docs": docs,
                **kw}

    async def attempts() -> None:
        async with Http(cell.org.server) as h:
            bob = await login_as(h, ids["bob"], keys["bob"].device)
            alice = await login_as(h, ids["alice"], keys["alice"].device)
            # an approval link by a member without the Security Team role
            link = _approval(cell, keys, "alice", bytes.fromhex(rid))
            await refused(h, "POST", f"/api/v1/teams/{team.team_id}/links", 403, token=alice,
                          js={"link": b64(link.wire)}, contains="may not approve an export",
                          what="alice's approval")
            await refused(h, "POST", path, 403, token=bob, js=attest(rid), contains="1 of the 2", what="one approval")
            await refused(h, "POST", path, 403, token=bob, js=attest(unapproved), contains="0 of the 2",
                          what="no approval")
            await refused(h, "POST", path, 403, token=bob, js=attest("ab" * 32), contains="names no export request",
                          what="unknown request")
        cell.dave.ok("export", "approve", rid[:16])
        async with Http(cell.org.server) as h:
            bob = await login_as(h, ids["bob"], keys["bob"].device)
            alice = await login_as(h, ids["alice"], keys["alice"].device)
            await refused(h, "POST", path, 403, token=alice, js=attest(rid), contains="not yours", what="not hers")
            await refused(h, "POST", path, 403, token=bob, js=attest(rid, docs=["cd" * 16], count=1),
                          contains="not those of the request", what="another document")
            await refused(h, "POST", path, 403, token=bob, js=attest(rid, count=len(docs) + 1),
                          contains="not those of the request", what="a count beyond the documents")
            await refused(h, "POST", path, 400, token=bob, js=attest("zz"), what="a malformed request id")
            status, body = await h.call("POST", path, token=bob, js=attest(rid))
            assert status == 201, body
            await refused(h, "POST", path, 409, token=bob, js=attest(rid), contains="used already", what="twice")

    asyncio.run(attempts())
    (done,) = cell.exports()
    assert done["res"]["request"] == rid and done["actor"] == ids["bob"]
