"""Per-member quotas (issue 13): the ``[quotas]`` of the security protocols, enforced by the server.

Each quota, reached, gives a clear 413 or 429 naming it, stores nothing, and leaves another
member alone; the 24-hour quotas free up as the server's clock moves on, counts survive a
restart, and a quota changed through the two-NCC protocols flow takes effect. Low limits
come from the operator's caps (``Config.quota_caps``), which may only lower the protocols'.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.home import Home
from client.uploadbatch import batch_body
from security.protocols import default_text, defaults, parse
from server import usage as U
from server.context import CONFIG
from server.routes.devices import LINK_SLOT_TTL
from tests.conftest import Member, Org, ServerThread
from tests.helpers.api_world import Actor, World, docs_path, make_upload, new_doc, session, team_key
from tests.helpers.http import Http, login, refused
from vault.errors import EncodingError
from vault.keys import link_slot

DAY = 86400


def actor(m: Member, monkeypatch: pytest.MonkeyPatch) -> Actor:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(m.home)
    return Actor(m, home, home.unlock(), home.config().member_id)


def world_of(org: Org, monkeypatch: pytest.MonkeyPatch) -> World:
    alice, bob = actor(org.alice, monkeypatch), actor(org.bob, monkeypatch)
    drafting = org.alice.json("team", "show", "drafting")["team"]
    return World(org.server, alice, bob, bob, drafting=drafting)


def later(org: Org, monkeypatch: pytest.MonkeyPatch | None, seconds: int) -> None:
    """Move the server's clock, and every client's with it."""
    org.server.advance(seconds)
    for m in (org.alice, org.bob):
        m.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(seconds)
    if monkeypatch is not None:
        monkeypatch.setenv("MVAULT_TEST_CLOCK_OFFSET", str(seconds))


def caps(server: ServerThread, **limits: int) -> None:
    server.app[CONFIG].quota_caps = dict(limits)


def authored(server: ServerThread) -> int:
    con = server.db()
    try:
        return int(con.execute("SELECT COUNT(*) FROM authored").fetchone()[0])
    finally:
        con.close()


async def put(w: World, who: Actor, size: int = 300) -> tuple[int, Any, dict[str, str]]:
    """One new document by ``who``, over the API: (status, answer, headers)."""
    async with session(w, who) as s:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc, size=size)
        async with Http(w.server) as h:
            assert h._session is not None
            async with h._session.post(w.server.url + docs_path(w.drafting, doc), data=up.data,
                                       headers={"Authorization": f"Bearer {s.session.api.token}"}) as resp:
                return resp.status, await resp.json(), dict(resp.headers)


async def put_refused(w: World, who: Actor, status: int, contains: str, size: int = 300) -> dict[str, str]:
    async with session(w, who) as s:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc, size=size)
        async with Http(w.server) as h:
            before = authored(w.server)
            body = await refused(h, "POST", docs_path(w.drafting, doc), status, token=s.session.api.token, data=up.data,
                                 contains=contains)
            assert authored(w.server) == before
            return body


# -- the schema ------------------------------------------------------------------------------------------------


def test_quotas_in_the_protocols_are_strict() -> None:
    q = defaults().quotas
    assert q == {"stored_bytes": 20 * 1024**3, "version_bytes": 16 * 1024**3, "versions_per_day": 20000,
                 "threads_per_day": 200, "live_followers": 16, "link_slots": 4}
    assert "[quotas]" in default_text()
    assert parse("version = 2\n[quotas]\nlink_slots = 1\n").quotas == {**q, "link_slots": 1}
    assert parse("version = 2\n").quotas == q  # a file without [quotas] keeps the defaults
    for bad, message in (
        ("[quotas]\nlink_slot = 1\n", "unknown keys ['link_slot']"),
        ("[quotas]\nlink_slots = 0\n", "quotas.link_slots must be an integer"),
        ("[quotas]\nlink_slots = -1\n", "quotas.link_slots must be an integer"),
        ("[quotas]\nlink_slots = true\n", "quotas.link_slots must be an integer"),
        ("[quotas]\nlink_slots = 1.5\n", "quotas.link_slots must be an integer"),
        ("[quotas]\nlink_slots = \"4\"\n", "quotas.link_slots must be an integer"),
        ("[quotas]\nstored_bytes = 9223372036854775807\n", "quotas.stored_bytes must be an integer"),
        ("quotas = 4\n", "[quotas] must be a table"),
    ):
        with pytest.raises(EncodingError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse("version = 2\n" + bad)


# -- document versions -----------------------------------------------------------------------------------------


async def test_versions_per_day_refused_with_429_until_the_window_moves(org: Org, monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    w = world_of(org, monkeypatch)
    caps(w.server, versions_per_day=2)
    for _ in range(2):
        status, res, _ = await put(w, w.bob)
        assert status == 201, res
    body = await put_refused(w, w.bob, 429, "quota versions_per_day")
    assert "at most 2 new document versions per member in 24 hours" in body["message"], body
    status, res, headers = await put(w, w.bob)
    assert status == 429 and res["error"] == "quota_exceeded", res
    assert 0 < int(headers["Retry-After"]) <= DAY
    # An honest member is not affected.
    status, res, _ = await put(w, w.alice)
    assert status == 201, res
    # The CLI says so in one line.
    (tmp_path / "notes.txt").write_text("hello")
    org.bob.fails("put", "drafting", str(tmp_path / "notes.txt"), contains="quota versions_per_day")
    # The count is in the database: a restart keeps it.
    org.server = w.server = await asyncio.to_thread(w.server.restart)
    caps(w.server, versions_per_day=2)
    await put_refused(w, w.bob, 429, "versions_per_day")
    # A day later the quota has room again.
    later(org, monkeypatch, DAY + 60)
    status, res, _ = await put(w, w.bob)
    assert status == 201, res
    org.bob.ok("put", "drafting", str(tmp_path / "notes.txt"))


async def test_a_batch_over_the_quotas_stores_what_fits_and_refuses_the_rest_alone(
        org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch upload counts each item against the quotas in the store's transaction, in order: the items
    within ``versions_per_day`` are stored, the later ones refused alone with the single upload's 429, and an
    item over ``version_bytes`` gets its 413; nothing of a refused item is counted."""
    w = world_of(org, monkeypatch)
    caps(w.server, versions_per_day=3, version_bytes=8192)
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        ups = [make_upload(w, s, key, new_doc(), size=size) for size in (100, 20_000, 100, 100, 100, 100)]
        before = authored(w.server)
        status, res = await h.call("POST", f"/api/v1/teams/{w.drafting}/versions", token=s.session.api.token,
                                   data=batch_body([up.data for up in ups]))
        assert status == 201, res
        assert [(o["status"], o["error"]) for o in res["outcomes"]] == [
            (201, ""), (413, "quota_exceeded"), (201, ""), (201, ""), (429, "quota_exceeded"),
            (429, "quota_exceeded")], res
        assert "version_bytes" in res["outcomes"][1]["message"]
        assert "versions_per_day" in res["outcomes"][4]["message"]
        assert authored(w.server) == before + 3


def stored_bytes(server: ServerThread, member: str) -> int:
    con = server.db()
    try:
        row = con.execute("SELECT bytes FROM authored_bytes WHERE member=? AND kind='version'", (member,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


async def test_a_batch_reads_its_authors_usage_once_and_carries_it_forward_exactly(
        org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's versions are judged in one transaction: the author's usage is read by the first and carried forward
    by the next (it was read for each, counting every row of the author's last 24 hours again: a first sync of n
    files cost n^2 rows), and the stored bytes reach their quota at the very item where a fresh read would."""
    w = world_of(org, monkeypatch)
    reads: list[str] = []
    real, real_now = U.usage_of, U.usage_now

    async def counting(db: Any, member: str, kind: str, now: int, per_day: int) -> U.Usage:
        reads.append(kind)
        return await real(db, member, kind, now, per_day)

    def counting_now(conn: Any, member: str, kind: str, now: int, per_day: int) -> U.Usage:
        reads.append(kind)  # the same read, made in the connection's thread (server/store/sqlite/inthread.py)
        return real_now(conn, member, kind, now, per_day)

    monkeypatch.setattr(U, "usage_of", counting)
    monkeypatch.setattr(U, "usage_now", counting_now)
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        path = f"/api/v1/teams/{w.drafting}/versions"
        before = stored_bytes(w.server, w.bob.member_id)
        status, res = await h.call("POST", path, token=s.session.api.token,
                                   data=batch_body([make_upload(w, s, key, new_doc(), size=1000).data]))
        assert status == 201 and res["outcomes"][0]["status"] == 201, res
        each = stored_bytes(w.server, w.bob.member_id) - before  # one item's stored bytes
        caps(w.server, stored_bytes=before + 3 * each + each // 2)  # room for two more, not three
        reads.clear()
        status, res = await h.call("POST", path, token=s.session.api.token,
                                   data=batch_body([make_upload(w, s, key, new_doc(), size=1000).data
                                                    for _ in range(5)]))
        assert status == 201, res
        assert [(o["status"], o["error"]) for o in res["outcomes"]] == [
            (201, ""), (201, ""), (413, "quota_exceeded"), (413, "quota_exceeded"), (413, "quota_exceeded")], res
        assert "stored_bytes" in res["outcomes"][2]["message"]
        assert reads == ["version"]  # the code before: one read per item (5)
        assert stored_bytes(w.server, w.bob.member_id) == before + 3 * each


async def test_version_size_and_stored_bytes_refused_with_413_before_the_body(org: Org,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    w = world_of(org, monkeypatch)
    caps(w.server, version_bytes=1000)
    body = await put_refused(w, w.bob, 413, "quota version_bytes", size=2000)
    assert "at most 1000 bytes" in body["message"], body
    caps(w.server, stored_bytes=2500)
    status, res, _ = await put(w, w.bob, size=1000)
    assert status == 201, res
    body = await put_refused(w, w.bob, 413, "quota stored_bytes", size=2000)
    assert "the limit is 2500 bytes per member" in body["message"], body
    status, res, _ = await put(w, w.alice, size=2000)  # alice stores her own bytes
    assert status == 201, res
    # Usage comes from the database: after a restart, even one whose usage rows were lost (a database from
    # before quotas), the count is rebuilt from the signed records.
    con = w.server.db()
    con.execute("DELETE FROM authored")
    con.execute("DELETE FROM authored_bytes")
    con.close()
    org.server = w.server = await asyncio.to_thread(w.server.restart)
    assert authored(w.server) == len(w.server.db().execute("SELECT vid FROM versions").fetchall()) == 2
    caps(w.server, stored_bytes=2500)
    await put_refused(w, w.bob, 413, "quota stored_bytes", size=2000)
    status, res, _ = await put(w, w.bob, size=1000)
    assert status == 201, res
    # The operator cannot raise a quota above the protocols': only the lower of the two counts.
    caps(w.server, version_bytes=10**15)
    assert w.server.app[CONFIG].quota_caps["version_bytes"] > defaults().quotas["version_bytes"]
    w.server.app[CONFIG].max_upload = 10**16
    try:
        from server.access import quotas

        assert quotas(w.server.app)["version_bytes"] == defaults().quotas["version_bytes"]
    finally:
        w.server.app[CONFIG].max_upload = 16 * 1024**3


# -- threads, live connections, device links ------------------------------------------------------------------


def test_threads_per_day(org: Org) -> None:
    caps(org.server, threads_per_day=1)
    org.bob.ok("thread", "create", "drafting", "first")
    before = org.server.db().execute("SELECT COUNT(*) FROM threads").fetchone()[0]
    org.bob.fails("thread", "create", "drafting", "second", contains="quota threads_per_day")
    assert org.server.db().execute("SELECT COUNT(*) FROM threads").fetchone()[0] == before
    org.alice.ok("thread", "create", "drafting", "alices")  # an honest member is not affected
    org.server = org.server.restart()
    caps(org.server, threads_per_day=1)
    org.bob.fails("thread", "create", "drafting", "second", contains="threads_per_day")
    later(org, None, DAY + 60)
    org.bob.ok("thread", "create", "drafting", "second")


async def test_live_followers(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world_of(org, monkeypatch)
    org.bob.ok("thread", "create", "drafting", "talk")
    caps(w.server, live_followers=1)
    live = f"{w.server.url}/api/v1/teams/{w.drafting}/live"
    fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
    async with Http(w.server) as h, aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs:
        bob, alice = await login(h, w.bob), await login(h, w.alice)
        async with cs.ws_connect(live, headers={"Authorization": f"Bearer {bob}"}) as ws:
            await ws.send_json({"all": True})
            assert (await ws.receive_json(timeout=10))["type"] == "thread"
            assert (await ws.receive_json(timeout=10)) == {"type": "live"}
            async with cs.get(live, headers={"Authorization": f"Bearer {bob}", "Connection": "Upgrade",
                                             "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
                assert resp.status == 429
                res = await resp.json()
            assert res["error"] == "quota_exceeded" and "quota live_followers: at most 1" in res["message"], res
            org.bob.fails("thread", "follow", "drafting", "talk", contains="live_followers")
            async with cs.ws_connect(live, headers={"Authorization": f"Bearer {alice}"}) as other:  # honest
                await other.send_json({"all": True})
                assert (await other.receive_json(timeout=10))["type"] == "thread"
        # Closed: the connection is free again, once the server's handler has ended (a moment after the client's
        # close; the wait was 5 s, then the test went on and a loaded machine got a 429)
        end = asyncio.get_running_loop().time() + 30
        while not bob_free(w.server, w.bob.member_id):
            assert asyncio.get_running_loop().time() < end, "the server still counts bob's closed connection"
            await asyncio.sleep(0.1)
        async with cs.ws_connect(live, headers={"Authorization": f"Bearer {bob}"}) as ws:
            await ws.send_json({"all": True})
            assert (await ws.receive_json(timeout=10))["type"] == "thread"


def bob_free(server: ServerThread, member: str) -> bool:
    from server.context import HUB

    return member not in server.app[HUB].live


async def test_link_slots(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world_of(org, monkeypatch)
    caps(w.server, link_slots=2)
    async with Http(w.server) as h:
        bob, alice = await login(h, w.bob), await login(h, w.alice)
        for _ in range(2):
            status, res = await h.call("POST", f"/api/v1/device-links/{link_slot(os.urandom(32))}", token=bob, js={})
            assert status == 201, res
        slot = link_slot(os.urandom(32))
        await refused(h, "POST", f"/api/v1/device-links/{slot}", 429, token=bob, js={},
                      contains="quota link_slots: at most 2 open device-link codes")
        status, res = await h.call("GET", f"/api/v1/device-links/{slot}", token=bob)
        assert status == 404, res  # nothing was opened
        status, res = await h.call("POST", f"/api/v1/device-links/{slot}", token=alice, js={})
        assert status == 201, res  # an honest member is not affected
        w.server.advance(LINK_SLOT_TTL + 1)  # expired codes no longer count
        status, res = await h.call("POST", f"/api/v1/device-links/{link_slot(os.urandom(32))}", token=bob, js={})
        assert status == 201, res


# -- the organization decides -----------------------------------------------------------------------------------


def test_a_quota_changed_by_two_ncc_members_takes_effect(org: Org, make_member: Any, tmp_path: Path) -> None:
    dana = make_member("dana")
    dana.ok("join", org.alice.json("invite")["invite"], "--name", "dana")
    org.alice.ok("role", "grant", "dana", "ncc", "--until", "2099-01-01")
    org.bob.ok("thread", "create", "drafting", "one")
    org.bob.ok("thread", "create", "drafting", "two")
    text = org.alice.ok("audit", "protocols", "show").out
    changed = tmp_path / "p.toml"
    changed.write_text(text.replace("version = 1", "version = 2").replace(
        "threads_per_day = 200 ", "threads_per_day = 2 "))
    assert "threads_per_day = 2 " in changed.read_text()
    digest = org.alice.json("audit", "protocols", "propose", str(changed))["digest"]
    org.bob.ok("thread", "create", "drafting", "three")  # proposed is not in force
    dana.ok("audit", "protocols", "approve", digest[:16])
    org.bob.fails("thread", "create", "drafting", "four", contains="at most 2 new threads")
    org.alice.ok("thread", "create", "drafting", "alices")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("version = 1", "version = 3").replace("link_slots = 4", "link_slot = 4"))
    org.alice.fails("audit", "protocols", "propose", str(bad), contains="unknown keys")
