"""The batch download (``version_bodies``, server/routes/bodies.py) against the real server: each item the exact
stored body that ``version_body`` streams, or refused alone with the status the single read would answer; each
item audited as a single read (a ``doc.read`` event each, so the ``bulk-access`` rule counts every one); a
malformed request refused whole; the usual answers to callers who may not read.

Most tests share one organization per module (``w``, ``tests/helpers/api_fixtures.py``).
"""

from __future__ import annotations

import json

from client.downloadbatch import split_answer
from security.events import Event
from server.http import MAX_JSON
from server.routes.bodies import MAX_ITEM
from tests.helpers.api_fixtures import past_carol
from tests.helpers.api_world import World, session, stored_upload, team_key
from tests.helpers.audit_world import AuditWorld, keys_of, new_events
from tests.helpers.db import log_size
from tests.helpers.http import Http, login, refused
from vault.wire.schemas import MAX_BODIES


def bodies_path(team: str) -> str:
    return f"/api/v1/teams/{team}/bodies"


async def test_each_body_is_sent_or_refused_alone(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        small, empty, big, gone = [await stored_upload(w, s, h, key, size=n) for n in (3000, 0, MAX_ITEM + 1, 10)]
        (w.server.data_dir / "blobs" / gone.vid[:2] / gone.vid).unlink()  # lost on the server's disk (blob = vid)
        carol = await login(h, w.carol)
        status, side_docs = await h.call("GET", f"/api/v1/teams/{w.side}/docs", token=carol)
        others = [d["vid"] for d in side_docs["docs"]] or ["e" * 32]  # another team's version: unknown here
        asked = [small.vid, empty.vid, big.vid, "f" * 32, others[0], gone.vid]
        events = log_size(w.server)
        status, raw = await h.call("POST", bodies_path(w.drafting), token=s.session.api.token, js={"vids": asked})
        assert status == 200 and h.headers["Content-Type"] == "application/octet-stream"
        assert log_size(w.server) == events + len(asked)  # one audit event per item, refused ones included
        items = split_answer(raw, len(asked))
        assert [st for st, _ in items] == [200, 200, 413, 404, 404, 404]
        assert items[0][1] == small.body and items[1][1] == empty.body
        for (_, payload), why in zip(items[2:6], ("fetched alone", "no such", "no such", "missing"), strict=True):
            error = json.loads(payload)
            assert set(error) == {"error", "message"} and why in error["message"], error
        # The same bytes as the single read streams.
        status, single = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{small.vid}/body",
                                      token=s.session.api.token)
        assert status == 200 and single == items[0][1]


async def test_a_malformed_request_is_refused_whole(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        token = s.session.api.token
        cases = [
            ("no ids", {"vids": []}, "vids"),
            ("too many ids", {"vids": ["a" * 32] * (MAX_BODIES + 1)}, "vids"),
            ("not an id", {"vids": ["NOTHEX"]}, "vids"),
            ("an id twice", {"vids": ["a" * 32] * 2}, "once"),
            ("an unknown field", {"vids": ["a" * 32], "more": 1}, "more"),
            ("no object", ["a" * 32], ""),
        ]
        for label, body, contains in cases:
            events = log_size(w.server)
            await refused(h, "POST", bodies_path(w.drafting), 400, token=token, js=body, contains=contains, what=label)
            assert log_size(w.server) <= events + 1  # at most the refusal itself, no doc.read
        await refused(h, "POST", bodies_path(w.drafting), 400, token=token, data=b"{not json", what="not JSON")
        await refused(h, "POST", bodies_path(w.drafting), 413, token=token, data=b" " * (MAX_JSON + 1),
                      what="too large")


async def test_only_readers_of_visible_teams_may_ask(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        up = await stored_upload(w, s, h, await team_key(s, w.drafting))
        carol = await login(h, w.carol)
        for label, token, team in (("team carol is not in", carol, w.drafting),
                                   ("team bob is not in", s.session.api.token, w.side),
                                   ("unknown team", s.session.api.token, "c" * 32)):
            await refused(h, "POST", bodies_path(team), 404, token=token, js={"vids": [up.vid]}, what=label)
        past_carol(w)  # carol's reader role in "side" has ended
        carol = await login(h, w.carol)
        await refused(h, "POST", bodies_path(w.side), 403, token=carol, js={"vids": [up.vid]}, contains="may not read")


async def test_each_item_is_audited_as_a_single_read(aw: AuditWorld) -> None:
    async with session(aw, aw.bob) as s, Http(aw.server) as h:
        status, docs = await h.call("GET", f"/api/v1/teams/{aw.drafting}/docs", token=s.session.api.token)
        vid = docs["docs"][0]["vid"]
        start = log_size(aw.server)
        status, _ = await h.call("GET", f"/api/v1/teams/{aw.drafting}/versions/{vid}/body", token=s.session.api.token)
        assert status == 200
        missing = "9" * 32
        await h.call("GET", f"/api/v1/teams/{aw.drafting}/versions/{missing}/body", token=s.session.api.token)
        singles = new_events(aw.server, start, keys_of(aw.bob))
        start = log_size(aw.server)
        status, _ = await h.call("POST", bodies_path(aw.drafting), token=s.session.api.token,
                                 js={"vids": [vid, missing]})
        assert status == 200
        batched = new_events(aw.server, start, keys_of(aw.bob))

    def shape(e: Event) -> tuple[object, ...]:
        return e.action, e.result, e.res, e.detail.get("error")

    assert [shape(e) for e in batched] == [shape(singles[0]), shape(singles[1])]
    assert shape(singles[0]) == ("doc.read", "ok", {"team": aw.drafting, "vid": vid, "doc": docs["docs"][0]["doc"]},
                                 None)
