"""The HTTP API against the real server: team threads (create, list, post, read, follow) and their
refusals.

Every refused request must answer ``{"error": str, "message": str}`` with a 4xx status
(never a 500) and leave the stored state exactly as it was: the rows of ``links``,
``team_boxes``, ``puk_boxes`` and ``versions`` and the files under ``blobs/`` and ``tmp/``.
Most tests share one organization per module (``w``, ``tests/helpers/api_fixtures.py``).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import aiohttp
import pytest

from client import maintenance
from client.threads.team import Threads
from tests.helpers.api_fixtures import (
    msgs_path,
    next_message,
    past_carol,
    thread_in,
)
from tests.helpers.api_world import (
    World,
    now,
    session,
)
from tests.helpers.http import Http, b64, login, refuse_bad_json, refused
from vault.encoding import Fields, decode, encode
from vault.messages import MAX_RECORD, ThreadRecord, make_thread
from vault.teamkeys import TeamKey

pytestmark = pytest.mark.usefixtures("world_backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

# == team threads ===================================================================================


async def test_threads_create_list_post_read_follow(w: World) -> None:
    team, thread = await thread_in(w, w.alice, "drafting", "api-walk")
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        status, listing = await h.call("GET", f"/api/v1/teams/{team}/threads", token=bob)
        assert status == 200 and thread in [t["thread"] for t in listing["threads"]]
        fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs, cs.ws_connect(
                f"{w.server.url}/api/v1/teams/{team}/live", headers={"Authorization": f"Bearer {bob}"}) as ws:
            await ws.send_json({"after": {thread: 0}})
            assert (await ws.receive_json(timeout=10)) == {"type": "live"}
            m = await next_message(w, w.bob, "drafting", "api-walk", "over the API")
            status, res = await h.call("POST", msgs_path(team, thread), token=bob, js={"message": b64(m.raw)})
            assert status == 201 and res == {"id": m.id, "pos": 1}
            frame = await ws.receive_json(timeout=10)
            assert frame["type"] == "msg" and frame["pos"] == 1 and base64.b64decode(frame["record"]) == m.raw
        status, page = await h.call("GET", msgs_path(team, thread) + "?after=0", token=bob)
        assert status == 200 and [x["pos"] for x in page["messages"]] == [1]
        assert page["mine"] == {"seq": 1, "id": m.id, "time": m.header.time} and page["more"] is False
        status, page = await h.call("GET", msgs_path(team, thread) + "?after=1", token=bob)
        assert status == 200 and page["messages"] == []


async def test_thread_create_refusals(w: World) -> None:
    async with session(w, w.alice) as s:
        threads = await Threads.open(s, "drafting")
        key = await s.keys.team_key(threads.team, threads.team.generation)
        team = threads.team
    side_team, _ = await thread_in(w, w.alice, "side", "side-talk")

    def record(name: str, **kw: Any) -> str:
        f: dict[str, Any] = {"team_seq": team.seq, "expire": 0, "creator": w.alice.member_id,
                             "device": w.alice.device, "time": now(w)}
        f.update(kw)
        return b64(make_thread(kw.pop("key", key), name, **{k: v for k, v in f.items() if k != "key"}).raw)

    path = f"/api/v1/teams/{team.team_id}/threads"
    async with Http(w.server) as h:
        alice, bob, carol = await login(h, w.alice), await login(h, w.bob), await login(h, w.carol)
        await refuse_bad_json(h, path, {"record": record("bad-json")}, b64_fields=["record"], token=alice)
        await refused(h, "POST", path, 400, token=alice, what="another team's record",
                      js={"record": record("x", key=TeamKey(side_team, 1, os.urandom(32)))})
        await refused(h, "POST", path, 400, token=alice, contains="too far", what="old time",
                      js={"record": record("old", time=now(w) - 3600)})
        forged = ThreadRecord.parse(base64.b64decode(record("forged")))
        tampered = encode({"core": forged.core_raw, "sig": bytes(64)})
        await refused(h, "POST", path, 400, token=alice, what="bad signature", js={"record": b64(tampered)})
        await refused(h, "POST", path, 403, token=bob, contains="signed by the creating device",
                      what="alice's record from bob", js={"record": record("not-bobs")})
        async with session(w, w.carol) as s:
            side = (await s.chains.view()).team_by_name("side")
            ckey = await s.keys.team_key(side, side.generation)
        carol_rec = make_thread(ckey, "readers-thread", team_seq=side.seq, expire=0, creator=w.carol.member_id,
                                device=w.carol.device, time=now(w))
        await refused(h, "POST", f"/api/v1/teams/{side.team_id}/threads", 403, token=carol,
                      what="a reader creates", js={"record": b64(carol_rec.raw)})
        await refused(h, "POST", path, 409, token=alice, contains="team changed", what="stale team state",
                      js={"record": record("stale", team_seq=team.seq - 1)})
        status, _ = await h.call("POST", path, token=alice, js={"record": record("twice")})
        assert status == 201
        await refused(h, "POST", path, 409, token=alice, contains="already exists", js={"record": record("twice")})


async def test_thread_reads_refuse_bad_parameters(w: World) -> None:
    team, thread = await thread_in(w, w.alice, "drafting", "params")
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        for query in ("?after=-1", "?after=abc", "?after=" + "9" * 13, "?limit=x"):
            await refused(h, "GET", msgs_path(team, thread) + query, 400, token=bob, what=query)
        await refused(h, "GET", msgs_path(team, "not-a-thread-id"), 400, token=bob)


async def test_threads_of_invisible_teams_and_unknown_threads(w: World) -> None:
    side, side_thread = await thread_in(w, w.alice, "side", "hidden-from-bob")
    team, _ = await thread_in(w, w.alice, "drafting", "known")
    unknown = "0" * 32
    m = await next_message(w, w.alice, "drafting", "known")
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        await refused(h, "GET", f"/api/v1/teams/{side}/threads", 404, token=bob)
        await refused(h, "POST", f"/api/v1/teams/{side}/threads", 404, token=bob, js={"record": "x"})
        await refused(h, "GET", msgs_path(side, side_thread), 404, token=bob)
        await refused(h, "POST", msgs_path(side, side_thread), 404, token=bob, js={"message": "x"})
        await refused(h, "GET", msgs_path(team, unknown), 404, token=bob, contains="no such thread")
        await refused(h, "POST", msgs_path(team, unknown), 404, token=bob, contains="no such thread",
                      js={"message": b64(m.raw)})
        fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await cs.ws_connect(f"{w.server.url}/api/v1/teams/{side}/live",
                                    headers={"Authorization": f"Bearer {bob}"})
            assert e.value.status == 404
            async with cs.ws_connect(f"{w.server.url}/api/v1/teams/{team}/live",
                                     headers={"Authorization": f"Bearer {bob}"}) as ws:
                await ws.send_json({"after": {unknown: 0}})
                assert (await ws.receive_json(timeout=10))["error"] == "not_found"
                assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            for bad in ("not json", "[" * 30000, json.dumps({"after": {"x": 0}}),
                        json.dumps({"after": {}, "all": False}),
                        json.dumps({"surprise": 1}), json.dumps({"after": {unknown: -1}})):
                async with cs.ws_connect(f"{w.server.url}/api/v1/teams/{team}/live",
                                         headers={"Authorization": f"Bearer {bob}"}) as ws:
                    await ws.send_str(bad)
                    frame = await ws.receive_json(timeout=10)
                    assert frame["type"] == "error" and frame["error"] == "bad_encoding", (bad, frame)


async def test_post_refusals(w: World) -> None:
    team, thread = await thread_in(w, w.alice, "drafting", "refusals")
    side, side_thread = await thread_in(w, w.alice, "side", "carol-reads")
    _, other_thread = await thread_in(w, w.alice, "drafting", "refusals-other")
    path = msgs_path(team, thread)
    async with Http(w.server) as h:
        bob, carol = await login(h, w.bob), await login(h, w.carol)
        ok = await next_message(w, w.bob, "drafting", "refusals")
        await refuse_bad_json(h, path, {"message": b64(ok.raw)}, b64_fields=["message"], token=bob)
        other = await next_message(w, w.bob, "drafting", "refusals-other")
        await refused(h, "POST", path, 400, token=bob, contains="another team or thread", what="other thread",
                      js={"message": b64(other.raw)})
        skewed = await next_message(w, w.bob, "drafting", "refusals", time=now(w) - 3600)
        await refused(h, "POST", path, 400, token=bob, contains="too far", js={"message": b64(skewed.raw)})
        f = Fields(decode(ok.raw), "message")
        unsigned = encode({"header": f.raw["header"], "ct": f.raw["ct"], "sig": bytes(64)})
        await refused(h, "POST", path, 400, token=bob, what="bad signature", js={"message": b64(unsigned)})
        alices = await next_message(w, w.alice, "drafting", "refusals")
        await refused(h, "POST", path, 403, token=bob, contains="signed by the posting device",
                      js={"message": b64(alices.raw)})
        carols = await next_message(w, w.carol, "side", "carol-reads")
        await refused(h, "POST", msgs_path(side, side_thread), 403, token=carol, contains="may not post",
                      js={"message": b64(carols.raw)})
        await refused(h, "POST", path, 409, token=bob, contains="team changed", what="stale team state",
                      js={"message": b64((await next_message(w, w.bob, "drafting", "refusals",
                                                             team_seq=1)).raw)})
        gap = await next_message(w, w.bob, "drafting", "refusals", seq=5, prev="ab" * 16, prev_time=now(w) - 5)
        await refused(h, "POST", path, 409, token=bob, contains="last message", what="a gap in our own sequence",
                      js={"message": b64(gap.raw)})
        huge = b"x" * (MAX_RECORD + 1)
        await refused(h, "POST", path, 413, token=bob, js={"message": b64(huge)})
        status, _ = await h.call("POST", path, token=bob, js={"message": b64(ok.raw)})
        assert status == 201
        await refused(h, "POST", path, 409, token=bob, contains="last message", what="the same message again",
                      js={"message": b64(ok.raw)})
    async with session(w, w.alice) as s:
        await maintenance.rotate(s, (await s.chains.view(refresh=True)).team_by_name("drafting"))
    old = await next_message(w, w.bob, "drafting", "refusals", gen=1)
    async with Http(w.server) as h:
        await refused(h, "POST", path, 409, token=await login(h, w.bob), contains="not current",
                      js={"message": b64(old.raw)})


async def test_thread_reads_need_a_current_role(w: World) -> None:
    side, thread = await thread_in(w, w.alice, "side", "expiring-role")
    async with Http(w.server) as h:
        carol = await login(h, w.carol)
        status, _ = await h.call("GET", f"/api/v1/teams/{side}/threads", token=carol)
        assert status == 200  # while her role lasts
        past_carol(w)
        carol = await login(h, w.carol)
        await refused(h, "GET", f"/api/v1/teams/{side}/threads", 403, token=carol, contains="may not read")
        await refused(h, "GET", msgs_path(side, thread), 403, token=carol, contains="may not read")
        fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await cs.ws_connect(f"{w.server.url}/api/v1/teams/{side}/live",
                                    headers={"Authorization": f"Bearer {carol}"})
            assert e.value.status == 403
