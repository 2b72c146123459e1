"""The batch upload (``put_versions``, server/routes/batch.py) against the real server: every item checked,
stored and audited as a single upload would be, a refused item failing alone; a malformed body refused whole
with nothing stored; the usual answers to callers who may not write.

Most tests share one organization per module (``w``, ``tests/helpers/api_fixtures.py``).
"""

from __future__ import annotations

import os
import struct

from client.uploadbatch import batch_body
from server.routes.batch import MAX_BATCH, MAX_ITEMS
from server.routes.docs import parse_prelude
from tests.helpers.api_world import Upload, World, docs_path, make_upload, new_doc, session, team_key
from tests.helpers.db import log_size, snapshot
from tests.helpers.http import Http, login, refused
from vault.envelope import MAGIC
from vault.teamkeys import TeamKey


def batch_path(team: str) -> str:
    return f"/api/v1/teams/{team}/versions"


def blob_of(w: World, vid: str) -> bytes | None:
    path = w.server.data_dir / "blobs" / vid[:2] / vid
    return path.read_bytes() if path.exists() else None


async def test_each_item_is_stored_or_refused_alone(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        first, empty, moved = (make_upload(w, s, key, new_doc(), size=n) for n in (2000, 0, 10))
        again = make_upload(w, s, key, new_doc(), size=5, seq=2, parent=first.vid)  # no such head: moved on
        twice = make_upload(w, s, key, docs_of(first), size=7)  # a second version of one document in the batch
        forged = make_upload(w, s, key, new_doc(), size=300)
        flipped = forged.data[:-1] + bytes([forged.data[-1] ^ 1])
        elsewhere = make_upload(w, s, TeamKey(w.side, 1, b"s" * 32), new_doc())
        items = [first.data, flipped, empty.data, again.data, twice.data, b"%PDF-1.7\n" + os.urandom(50),
                 elsewhere.data, moved.data]
        events = log_size(w.server)
        status, res = await h.call("POST", batch_path(w.drafting), token=s.session.api.token, data=batch_body(items))
        assert status == 201, res
        assert log_size(w.server) == events + len(items)  # one audit event per item, refused ones included
        got = [(o["status"], o["error"], o["vid"], o["seq"]) for o in res["outcomes"]]
        assert got == [(201, "", first.vid, 1), (400, "bad_signature", None, None), (201, "", empty.vid, 1),
                       (409, "conflict", None, None), (409, "conflict", None, None),
                       (400, "bad_encoding", None, None), (400, "integrity", None, None),
                       (201, "", moved.vid, 1)], got
        assert "moved" in res["outcomes"][3]["message"] or "changed" in res["outcomes"][3]["message"]
        for up in (first, empty, moved):  # stored, readable, each its own document
            status, body = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{up.vid}/body",
                                        token=s.session.api.token)
            assert status == 200 and body == up.body
        for up in (again, forged, elsewhere):  # refused: no version, no blob left behind
            status, none = await h.call("GET", docs_path(w.drafting, docs_of(up)), token=s.session.api.token)
            assert (status, none) == (200, {"versions": []})
            assert blob_of(w, up.vid) is None
        status, versions = await h.call("GET", docs_path(w.drafting, docs_of(first)), token=s.session.api.token)
        assert [v["vid"] for v in versions["versions"]] == [first.vid]
        assert snapshot(w.server)["tmp"] == []
        # The refused items go up again once fixed: nothing of them was half-stored.
        status, res = await h.call("POST", batch_path(w.drafting), token=s.session.api.token,
                                   data=batch_body([forged.data, make_upload(w, s, key, docs_of(first), seq=2,
                                                                             parent=first.vid).data]))
        assert [o["status"] for o in res["outcomes"]] == [201, 201], res


def docs_of(up: Upload) -> str:
    """The document id an upload names (read from its signed core, as the server reads it)."""
    core, _, _ = parse_prelude(up.data[len(MAGIC) + 4:up.head_len])
    return core.doc


async def test_a_malformed_body_is_refused_whole(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        good = make_upload(w, s, key, new_doc(), size=100)
        framed = batch_body([good.data])
        cases = [
            ("empty body", b"", "at least one item"),
            ("ends inside a length", framed + b"\x00\x00", "inside an item's length"),
            ("a length past the end", framed + struct.pack(">I", 1000) + b"x" * 10, "inside an item"),
            ("too many items", batch_body([good.data] * (MAX_ITEMS + 1)), f"at most {MAX_ITEMS}"),
        ]
        for label, data, contains in cases:
            await refused(h, "POST", batch_path(w.drafting), 400, token=s.session.api.token, data=data,
                          contains=contains, what=label)
        await refused(h, "POST", batch_path(w.drafting), 413, token=s.session.api.token,
                      data=b"\0" * (MAX_BATCH + 1), what="over the batch size")
        status, res = await h.call("POST", batch_path(w.drafting), token=s.session.api.token, data=framed)
        assert status == 201 and res["outcomes"][0]["vid"] == good.vid, res


async def test_only_writers_of_visible_teams_may_send_a_batch(w: World) -> None:
    async with session(w, w.carol) as cs, Http(w.server) as h:
        side_key = await team_key(cs, w.side)
        mine = make_upload(w, cs, side_key, new_doc())
        await refused(h, "POST", batch_path(w.side), 403, token=cs.session.api.token, data=batch_body([mine.data]),
                      contains="may not write")
        bob = await login(h, w.bob)
        await refused(h, "POST", batch_path(w.side), 404, token=bob, data=batch_body([mine.data]))
