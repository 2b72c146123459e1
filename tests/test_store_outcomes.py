"""Every refusal a store answers with (``server/store/records.py``), driven through the real server, and the
reply the routes make of it (``server/replies.py``): status, code and text, and nothing stored.

The checks made before an upload's body pass a version that a store refuses once its body has arrived:
an upload is held after its header (its body waits on an event) while another request changes what the
store will find, then the body goes on.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import Enum
from typing import Any

import pytest

from client.home import Home
from server.context import CONFIG
from server.store import protocols as P
from server.store import records as R
from server.usage import OverDailyCount, OverQuota, OverStoredBytes
from tests.conftest import Member, Org, join_member
from tests.helpers.api_world import Actor, Upload, World, docs_path, make_upload, new_doc, session, team_key
from tests.helpers.db import sql
from tests.helpers.http import Http, login


def actor(m: Member, monkeypatch: pytest.MonkeyPatch) -> Actor:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(m.home)
    return Actor(m, home, home.unlock(), home.config().member_id)


def world(org: Org, monkeypatch: pytest.MonkeyPatch) -> World:
    alice, bob = actor(org.alice, monkeypatch), actor(org.bob, monkeypatch)
    return World(org.server, alice, bob, bob, drafting=org.alice.json("team", "show", "drafting")["team"])


def caps(org: Org, **limits: int) -> None:
    org.server.app[CONFIG].quota_caps = dict(limits)


async def upload(w: World, doc: str | None = None) -> tuple[str, Upload]:
    """A first version of ``doc`` (a new document by default) by bob, made now."""
    doc = doc or new_doc()
    async with session(w, w.bob) as s:
        return doc, make_upload(w, s, await team_key(s, w.drafting), doc)


async def post(h: Http, w: World, token: str, doc: str, up: Upload) -> tuple[int, Any]:
    return await h.call("POST", docs_path(w.drafting, doc), token=token, data=up.data)


async def held(w: World, doc: str, up: Upload, meanwhile: Callable[[Http, str], Awaitable[None]]) -> tuple[int, Any]:
    """Bob's upload, held once its header passed the checks before the body, while ``meanwhile`` runs."""
    tmp = w.server.data_dir / "tmp"
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield up.data[:up.head_len]
        await go_on.wait()
        yield up.data[up.head_len:]

    async with Http(w.server) as h:
        token = await login(h, w.bob)
        call = asyncio.create_task(h.call("POST", docs_path(w.drafting, doc), token=token,
                                          data=body()))  # type: ignore[arg-type]
        while not any(tmp.iterdir()):  # the header was accepted: the body is awaited
            assert not call.done(), await call
            await asyncio.sleep(0.02)
        await meanwhile(h, token)
        go_on.set()
        return await call


def another(w: World, doc: str, up: Upload) -> Callable[[Http, str], Awaitable[None]]:
    """Meanwhile: bob stores another version."""
    async def put(h: Http, token: str) -> None:
        assert (await post(h, w, token, doc, up))[0] == 201
    return put


def refused_cleanly(org: Org, vid: str) -> bool:
    """Neither the version's row nor its blob was kept."""
    row = sql(org, "SELECT COUNT(*) FROM versions WHERE vid=?", vid)[0][0]
    return not row and not (org.server.data_dir / "blobs" / vid[:2] / vid).exists()


async def test_each_refusal_of_the_document_store_is_its_reply(org: Org, make_member: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(org, monkeypatch)

    # HeadMoved: another first version of the document was stored while this one's body arrived.
    doc, mine = await upload(w)
    _, theirs = await upload(w, doc)
    status, res = await held(w, doc, mine, another(w, doc, theirs))
    assert (status, res["error"]) == (409, "conflict"), res
    assert res["message"] == "document changed on the server (now at version 1); fetch, merge, put again"
    assert refused_cleanly(org, mine.vid) and not refused_cleanly(org, theirs.vid)

    # TeamMoved: a team link was stored while the body arrived (the route's check after the body; the
    # store's own check in its transaction gives the same reply).
    join_member(org, make_member, "carol")
    doc, mine = await upload(w)

    async def carol_joins_the_team(h: Http, token: str) -> None:
        await asyncio.to_thread(org.alice.ok, "team", "add", "drafting", "carol", "--role", "reader")

    status, res = await held(w, doc, mine, carol_joins_the_team)
    now_at = sql(org, "SELECT MAX(seq) FROM links WHERE chain=?", w.drafting)[0][0]
    assert (status, res["error"]) == (409, "conflict"), res
    assert res["message"] == f"the team changed during the upload (now at link {now_at}); sync and put again"
    assert refused_cleanly(org, mine.vid)

    # OverStoredBytes: another version took the room this one counted on.
    body_len = sql(org, "SELECT body_len FROM versions WHERE vid=?", theirs.vid)[0][0]
    have = sql(org, "SELECT bytes FROM authored_bytes WHERE member=? AND kind='version'", w.bob.member_id)[0][0]
    caps(org, stored_bytes=have + body_len + body_len // 2)
    (doc, mine), (other, theirs) = await upload(w), await upload(w)
    status, res = await held(w, doc, mine, another(w, other, theirs))
    assert (status, res["error"]) == (413, "quota_exceeded"), res
    assert res["message"] == (f"quota stored_bytes: you store {have + body_len} bytes of documents and this version "
                              f"adds {body_len}; the limit is {have + body_len + body_len // 2} bytes per member")
    assert refused_cleanly(org, mine.vid)

    # OverDailyCount: another version used the day's last one.
    today = sql(org, "SELECT COUNT(*) FROM authored WHERE member=? AND kind='version'", w.bob.member_id)[0][0]
    caps(org, versions_per_day=today + 1)
    (doc, mine), (other, theirs) = await upload(w), await upload(w)
    status, res = await held(w, doc, mine, another(w, other, theirs))
    assert (status, res["error"]) == (429, "quota_exceeded"), res
    assert res["message"].startswith(f"quota versions_per_day: at most {today + 1} new document versions per member "
                                     "in 24 hours; try again in "), res
    assert refused_cleanly(org, mine.vid)


async def test_each_refusal_of_the_thread_and_chain_stores_is_its_reply(org: Org,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(org, monkeypatch)
    org.bob.ok("thread", "create", "drafting", "talk")
    threads = f"/api/v1/teams/{w.drafting}/threads"
    count = "SELECT COUNT(*) FROM threads"
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        status, listed = await h.call("GET", threads, token=bob)
        assert status == 200 and len(listed["threads"]) == 1
        again = {"record": listed["threads"][0]["record"]}  # the same signed record, sent a second time

        # ThreadExists.
        status, res = await h.call("POST", threads, token=bob, js=again)
        assert (status, res) == (409, {"error": "conflict",
                                       "message": "a thread with this name already exists in the team"})
        assert sql(org, count)[0][0] == 1

        # OverDailyCount (threads: checked only in the store's transaction).
        caps(org, threads_per_day=1)
        status, res = await h.call("POST", threads, token=bob, js=again)
        assert (status, res["error"]) == (429, "quota_exceeded"), res
        assert res["message"].startswith("quota threads_per_day: at most 1 new threads per member in 24 hours; "
                                         "try again in "), res
        assert int(h.headers["Retry-After"]) > 0
        assert sql(org, count)[0][0] == 1

        # No thread head: a post to a thread the team does not have.
        unknown = "ab" * 16
        status, res = await h.call("POST", f"{threads}/{unknown}/messages", token=bob, js={"message": "AAAA"})
        assert (status, res) == (404, {"error": "not_found", "message": "no such thread in this team"})

    # ChainMoved: the store already holds a link at the position the next one takes (the directory in
    # memory does not know it), so the append is refused and nothing of it is stored.
    org_seq = sql(org, "SELECT MAX(seq) FROM links WHERE chain='org'")[0][0]
    sql(org, "INSERT INTO links (chain, seq, kind, wire, time) VALUES ('org', ?, 'org', x'00', 0)", org_seq + 1)
    boxes = sql(org, "SELECT COUNT(*) FROM puk_boxes")[0][0]
    r = org.alice.fails("invite", contains="the chain moved on; fetch and retry")
    assert r.err.startswith("error: "), r.err
    assert sql(org, "SELECT wire FROM links WHERE chain='org' AND seq=?", org_seq + 1) == [(b"\x00",)]
    assert sql(org, "SELECT COUNT(*) FROM puk_boxes")[0][0] == boxes
    sql(org, "DELETE FROM links WHERE chain='org' AND seq=?", org_seq + 1)
    org.alice.ok("invite")  # the server goes on


def _members(alias: object) -> set[type]:
    return set(typing.get_args(alias)) or {alias}


def test_the_protocols_declare_the_outcome_unions_the_routes_map() -> None:
    """The routes' ``match``es end in ``assert_never``: mypy proves them exhaustive over these unions. This
    checks the unions are the ones the store protocols return, member by member."""
    over: set[type] = {OverStoredBytes, OverDailyCount}
    assert _members(OverQuota) == over
    expected: dict[tuple[type, str], set[type]] = {
        (P.ChainStore, "append_links"): {R.LinksAppended, R.ChainMoved, R.LinksMoved},
        (P.DocumentStore, "add_version"): {R.VersionAdded, R.HeadMoved, R.TeamMoved, R.SignerMoved} | over,
        (P.ThreadStore, "add_thread"): {R.ThreadAdded, R.ThreadExists, R.SignerMoved} | over,
        (P.ThreadStore, "thread_head"): {R.StoredHead, type(None)},
        (P.SlotStore, "open_slot"): {R.SlotOpen, R.SlotsFull},
        (P.SlotStore, "read_slot"): {R.SlotRead, R.SlotMissing},
        (P.SlotStore, "fill_slot"): {R.SlotFill},
        (P.AuditLog, "add_cosig"): {R.CosigAdded, R.SignerMoved},
    }
    for (protocol, method), members in expected.items():
        assert _members(typing.get_type_hints(getattr(protocol, method))["return"]) == members, (protocol, method)
    for cls in members_of(expected):
        if cls is not type(None) and not issubclass(cls, Enum):
            assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]


def members_of(expected: dict[tuple[type, str], set[type]]) -> set[type]:
    return set().union(*expected.values())
