"""The HTTP API against the real server: teams, documents, and interrupted uploads and restarts.

Every refused request must answer ``{"error": str, "message": str}`` with a 4xx status
(never a 500) and leave the stored state exactly as it was: the rows of ``links``,
``team_boxes``, ``puk_boxes`` and ``versions`` and the files under ``blobs/`` and ``tmp/``.
Most tests share one organization per module (``w``, ``tests/helpers/api_fixtures.py``).
"""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from server.context import CONFIG
from tests.helpers.api_fixtures import (
    _prelude,
    _wait_for_empty_tmp,
    bad_sig,
    past_carol,
    team_add_link,
)
from tests.helpers.api_world import (
    World,
    docs_path,
    make_upload,
    new_doc,
    now,
    session,
    team_create_link,
    team_json,
    team_key,
    team_seq_of,
)
from tests.helpers.db import snapshot
from tests.helpers.http import Http, b64, login, raw_exchange, refuse_bad_json, refused, request_head
from vault.chains import team_id_for
from vault.envelope import MAGIC, MAX_PRELUDE, body_length
from vault.links import make_link
from vault.teamkeys import TeamKey

pytestmark = pytest.mark.usefixtures("world_backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

# == teams ===========================================================================================


async def test_create_team_and_add_a_member(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.chains.view(refresh=True)
        link, boxes = team_create_link(s, view, f"scratch-{os.urandom(3).hex()}")
        status, res = await h.call("POST", "/api/v1/teams", token=s.session.api.token, js=team_json(link, boxes))
        team_id = team_id_for(view.org.org_id, link.body.bytes_("nonce", 16))
        assert status == 201 and res == {"team": team_id, "seq": 1}, res

        view = await s.chains.view(refresh=True)
        key = await s.keys.team_key(view.teams[team_id], 1)
        add, add_boxes = team_add_link(s, view, team_id, key, w.bob.member_id)
        status, res = await h.call("POST", f"/api/v1/teams/{team_id}/links", token=s.session.api.token,
                                   js=team_json(add, add_boxes))
        assert status == 201 and res == {"team": team_id, "seq": 2}, res

    async with session(w, w.bob) as bs:
        view = await bs.chains.view(refresh=True)
        assert view.teams[team_id].role_of(bs.session.me, now(w)) == "reader"
        assert (await team_key(bs, team_id)).seed == key.seed
        assert (await bs.session.api.get(f"/api/v1/teams/{team_id}/docs")) == {"docs": []}


async def test_create_team_rejects_bad_requests(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.chains.view(refresh=True)
        name = f"never-{os.urandom(3).hex()}"
        link, boxes = team_create_link(s, view, name)
        valid = team_json(link, boxes)
        await refuse_bad_json(h, "/api/v1/teams", valid, ["link"], token=s.session.api.token)
        other_box = team_create_link(s, view, name)[1][s.session.me]
        cases = [
            ("no key boxes", {**valid, "boxes": {}}),
            ("box that is not base64", {**valid, "boxes": {s.session.me: "@@"}}),
            ("box for someone else", {**valid, "boxes": {w.bob.member_id: valid["boxes"][s.session.me]}}),
            ("extra box", {**valid, "boxes": {**valid["boxes"], w.bob.member_id: valid["boxes"][s.session.me]}}),
            ("box not matching its commitment", {**valid, "boxes": {s.session.me: b64(other_box)}}),
            ("boxes as a list", {**valid, "boxes": [valid["boxes"][s.session.me]]}),
            ("name already taken", team_json(*team_create_link(s, view, "drafting"))),
            ("unknown kind", team_json(*team_create_link(s, view, name, kind="bogus"))),
            ("an hour old", team_json(*team_create_link(s, view, name, when=now(w) - 3600))),
            ("bad signature", team_json(bad_sig(link), boxes)),
            ("not a team.create", team_json(team_add_link(s, view, w.drafting, TeamKey(w.drafting, 1, b"k" * 32),
                                                          w.carol.member_id)[0], boxes)),
        ]
        for label, body in cases:
            await refused(h, "POST", "/api/v1/teams", 400, token=s.session.api.token, js=body, what=label)

        ahead = team_create_link(s, view, name, org_seq=view.org.seq + 1)
        await refused(h, "POST", "/api/v1/teams", 400, token=s.session.api.token, js=team_json(*ahead),
                      contains="organization state", what="made against an org state that does not exist")
        older = team_create_link(s, view, name, org_seq=view.org.seq - 1)
        await refused(h, "POST", "/api/v1/teams", 409, token=s.session.api.token, js=team_json(*older),
                      contains="organization chain moved on", what="made against an older org state")

        bob_token = await login(h, w.bob)
        await refused(h, "POST", "/api/v1/teams", 403, token=bob_token, js=valid,
                      contains="logged-in device", what="alice's link from bob's session")
    async with session(w, w.bob) as bs:
        link, boxes = team_create_link(bs, await bs.chains.view(refresh=True), name)
        async with Http(w.server) as h:
            await refused(h, "POST", "/api/v1/teams", 403, token=bs.session.api.token, js=team_json(link, boxes),
                          contains="may not create", what="a plain member creates a program team")


async def test_team_links_reject_bad_requests(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.chains.view(refresh=True)
        key = await team_key(s, w.drafting)
        team = view.teams[w.drafting]
        carol = w.carol.member_id
        link, boxes = team_add_link(s, view, w.drafting, key, carol)
        valid = team_json(link, boxes)
        path = f"/api/v1/teams/{w.drafting}/links"
        await refuse_bad_json(h, path, valid, ["link"], token=s.session.api.token)
        side_link = team_add_link(s, view, w.side, await team_key(s, w.side), w.bob.member_id)
        cases = [
            ("a sequence ahead", team_json(*team_add_link(s, view, w.drafting, key, carol, seq_delta=2))),
            ("wrong previous link", team_json(*team_add_link(s, view, w.drafting, key, carol, prev=b"\x02" * 32))),
            ("a link of another team", team_json(*side_link)),
            ("bad signature", team_json(bad_sig(link), boxes)),
            ("an hour old", team_json(*team_add_link(s, view, w.drafting, key, carol, when=now(w) - 3600))),
            ("dated before the head", team_json(*team_add_link(s, view, w.drafting, key, carol,
                                                               when=team.time - 1))),
            ("no key box", {**valid, "boxes": {}}),
            ("box not matching its commitment",
             {**valid, "boxes": {carol: b64(key.seal_for(carol, 1, view.members[carol].puk_box_public))}}),
            ("box for someone else", {**valid, "boxes": {w.bob.member_id: valid["boxes"][carol]}}),
            ("adds a member already in the team",
             team_json(*team_add_link(s, view, w.drafting, key, w.bob.member_id))),
            ("unknown role", team_json(*team_add_link(s, view, w.drafting, key, carol, role="owner"))),
            ("key generation that does not exist",
             team_json(*team_add_link(s, view, w.drafting, TeamKey(w.drafting, 2, b"k" * 32), carol))),
        ]
        for label, body in cases:
            await refused(h, "POST", path, 400, token=s.session.api.token, js=body, what=label)

        await refused(h, "POST", f"/api/v1/teams/{'e' * 32}/links", 404, token=s.session.api.token, js=valid,
                      what="unknown team")
        status, chain = await h.call("GET", f"/api/v1/chains/team/{w.drafting}", token=s.session.api.token)
        assert status == 200
        for i, wire in enumerate(chain["links"][1:], start=2):
            await refused(h, "POST", path, 409, token=s.session.api.token, js={"link": wire, "boxes": {}},
                          what=f"replay of link {i}")
        await refused(h, "POST", path, 400, token=s.session.api.token, js={"link": chain["links"][0], "boxes": {}},
                      contains="another chain", what="the team.create link sent as an append")
        stale = team_add_link(s, view, w.drafting, key, carol, seq_delta=0, prev=b"\x00" * 32)
        await refused(h, "POST", path, 409, token=s.session.api.token, js=team_json(*stale), what="current sequence")
        older = team_add_link(s, view, w.drafting, key, carol, org_seq=view.org.seq - 1)
        await refused(h, "POST", path, 409, token=s.session.api.token, js=team_json(*older),
                      contains="organization chain moved on", what="made against an older org state")
        ahead = team_add_link(s, view, w.drafting, key, carol, org_seq=view.org.seq + 1)
        await refused(h, "POST", path, 400, token=s.session.api.token, js=team_json(*ahead),
                      contains="organization state", what="made against an org state that does not exist")

        bob_token = await login(h, w.bob)
        await refused(h, "POST", path, 403, token=bob_token, js=valid, contains="logged-in device",
                      what="alice's link from bob's session")
    async with session(w, w.bob) as bs, Http(w.server) as h:
        bview = await bs.chains.view(refresh=True)
        bkey = await team_key(bs, w.drafting)
        by_bob = team_json(*team_add_link(bs, bview, w.drafting, bkey, carol))
        await refused(h, "POST", path, 403, token=bs.session.api.token, js=by_bob, contains="may not",
                      what="a writer adds a member")
        side_by_bob = make_link(chain=w.side, seq=3, prev=b"\x00" * 32, time=now(w), signer=bs.session.me,
                                device=bs.session.device, type_="team.add", body={})
        await refused(h, "POST", f"/api/v1/teams/{w.side}/links", 404, token=bs.session.api.token,
                      js=team_json(side_by_bob, {}), what="a team bob is not in")
    async with session(w, w.alice) as s:
        assert (await s.chains.view(refresh=True)).teams[w.drafting].seq == team.seq


# == documents =======================================================================================


async def test_put_and_read_versions(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        v1 = make_upload(w, s, key, doc, size=2000)
        status, res = await h.call("POST", docs_path(w.drafting, doc), token=s.session.api.token, data=v1.data)
        assert status == 201 and res == {"vid": v1.vid, "seq": 1}, res
        v2 = make_upload(w, s, key, doc, seq=2, parent=v1.vid, size=0)
        status, res = await h.call("POST", docs_path(w.drafting, doc), token=s.session.api.token, data=v2.data)
        assert status == 201 and res == {"vid": v2.vid, "seq": 2}, res

        alice = await login(h, w.alice)
        for token in (s.session.api.token, alice):
            status, listing = await h.call("GET", f"/api/v1/teams/{w.drafting}/docs", token=token)
            assert status == 200
            heads = {d["doc"]: d for d in listing["docs"]}
            assert heads[doc]["vid"] == v2.vid and heads[doc]["seq"] == 2
            status, versions = await h.call("GET", docs_path(w.drafting, doc), token=token)
            assert status == 200
            assert [(v["vid"], v["seq"], v["body_len"]) for v in versions["versions"]] == [
                (v1.vid, 1, body_length(2000)), (v2.vid, 2, body_length(0))]
            for v in (v1, v2):
                status, body = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{v.vid}/body",
                                            token=token)
                assert status == 200 and body == v.body
    assert snapshot(w.server)["tmp"] == []
    assert (w.server.data_dir / "blobs" / v1.vid[:2] / v1.vid).read_bytes() == v1.body


async def test_put_rejects_malformed_uploads(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        up = make_upload(w, s, key, doc, size=3000)
        head, body = up.data[:up.head_len], up.body
        flipped_sig = up.data[:-1] + bytes([up.data[-1] ^ 1])
        mid = up.head_len + len(body) // 2
        flipped_body = up.data[:mid] + bytes([up.data[mid] ^ 1]) + up.data[mid + 1:]
        cases = [
            ("empty upload", b"", "ended inside"),
            ("wrong magic", b"MVDOC9\n" + up.data[len(MAGIC):], "magic"),
            ("not a document at all", b"%PDF-1.7\n" + os.urandom(200), "magic"),
            ("ends inside the length", MAGIC + b"\x00\x01", "ended inside"),
            ("ends inside the prelude", head[:-10], "ended inside"),
            ("prelude too large", MAGIC + struct.pack(">I", MAX_PRELUDE + 1) + b"\x00" * 64, "too large"),
            ("prelude is not canonical bytes", MAGIC + struct.pack(">I", 5) + b"hello" + body, ""),
            ("prelude without a core", MAGIC + _prelude({"wrapped": b"w" * 48, "meta": b"m"}) + body, ""),
            ("document of another doc id", make_upload(w, s, key, new_doc()).data, "another team or document"),
            ("document of another team", make_upload(w, s, TeamKey(w.side, 1, b"s" * 32), doc).data,
             "another team or document"),
            ("dated an hour ago", make_upload(w, s, key, doc, when=now(w) - 3600).data, "time"),
            ("dated an hour ahead", make_upload(w, s, key, doc, when=now(w) + 3600).data, "time"),
            ("body shorter than declared", up.data[:mid], "ended"),
            ("no signature", head + body, "ended inside the signature"),
            ("half a signature", up.data[:-32], "ended inside the signature"),
            ("bytes after the signature", up.data + b"\x00", "after the signature"),
            ("a second document appended", up.data + up.data, "after the signature"),
            ("signature altered", flipped_sig, "signature"),
            ("body altered", flipped_body, "signature"),
        ]
        for label, data, contains in cases:
            await refused(h, "POST", path, 400, token=s.session.api.token, data=data, contains=contains, what=label)
        for bad_doc in ("NOTHEX", "A" * 32, "0" * 31, "0" * 33, "g" * 32):
            await refused(h, "POST", docs_path(w.drafting, bad_doc), 400, token=s.session.api.token, data=up.data,
                          what=f"doc id {bad_doc}")
        # Nothing was half-stored: the same upload is still accepted as version 1.
        status, res = await h.call("POST", path, token=s.session.api.token, data=up.data)
        assert status == 201 and res["seq"] == 1, res


async def test_put_refuses_other_authors_and_non_writers(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        as_alice = make_upload(w, s, key, doc, device=w.alice.device, author=w.alice.member_id)
        await refused(h, "POST", path, 403, token=s.session.api.token, data=as_alice.data,
                      contains="uploading device", what="authored and signed by alice")
        alice_device = make_upload(w, s, key, doc, device=w.alice.device)
        await refused(h, "POST", path, 403, token=s.session.api.token, data=alice_device.data,
                      contains="uploading device", what="signed by alice's device")
        mine = make_upload(w, s, key, doc)
        alice_token = await login(h, w.alice)
        await refused(h, "POST", path, 403, token=alice_token, data=mine.data,
                      contains="uploading device", what="bob's document from alice's session")
        await refused(h, "POST", docs_path(w.side, doc), 404, token=s.session.api.token, data=mine.data,
                      what="a team bob is not in")
    async with session(w, w.carol) as cs, Http(w.server) as h:
        side_key = await team_key(cs, w.side)
        doc = new_doc()
        up = make_upload(w, cs, side_key, doc)
        await refused(h, "POST", docs_path(w.side, doc), 403, token=cs.session.api.token, data=up.data,
                      contains="may not write", what="a reader writes")


async def test_put_conflicts(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        v1 = make_upload(w, s, key, doc)
        status, res = await h.call("POST", path, token=s.session.api.token, data=v1.data)
        assert status == 201, res
        team_seq = team_seq_of(w, w.drafting)
        for label, data, contains in (
            ("the same upload again", v1.data, "document changed"),
            ("another first version", make_upload(w, s, key, doc).data, "document changed"),
            ("parent that is not the head", make_upload(w, s, key, doc, seq=2, parent="ab" * 16).data,
             "document changed"),
            ("sequence that skips one", make_upload(w, s, key, doc, seq=3, parent=v1.vid).data, "document changed"),
            ("old team key generation", make_upload(w, s, TeamKey(w.drafting, 2, b"n" * 32), doc, seq=2,
                                                    parent=v1.vid).data, "generation"),
            # The header names the team state the writer saw: it must be the current one.
            ("an older team state", make_upload(w, s, key, doc, seq=2, parent=v1.vid,
                                                team_seq=team_seq - 1).data, "team changed"),
            ("a team state that does not exist yet", make_upload(w, s, key, doc, seq=2, parent=v1.vid,
                                                                 team_seq=team_seq + 1).data, "team changed"),
        ):
            await refused(h, "POST", path, 409, token=s.session.api.token, data=data, what=label, contains=contains)
        v2 = make_upload(w, s, key, doc, seq=2, parent=v1.vid)
        status, res = await h.call("POST", path, token=s.session.api.token, data=v2.data)
        assert status == 201 and res["seq"] == 2, res
        # alice edited from v1 at the same time: stale parent.
        async with session(w, w.alice) as a:
            stale = make_upload(w, a, key, doc, seq=2, parent=v1.vid)
            await refused(h, "POST", path, 409, token=a.session.api.token, data=stale.data,
                          contains="changed on the server", what="stale parent")


async def test_put_too_large(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc, size=5000)
        w.server.app[CONFIG].max_upload = body_length(5000) - 1
        await refused(h, "POST", docs_path(w.drafting, doc), 413, token=s.session.api.token, data=up.data)
        w.server.app[CONFIG].max_upload = body_length(5000)
        status, res = await h.call("POST", docs_path(w.drafting, doc), token=s.session.api.token, data=up.data)
        assert status == 201, res


async def test_doc_reads_need_a_current_role(w: World) -> None:
    async with session(w, w.carol) as cs, Http(w.server) as h:
        past_carol(w)  # carol's reader role in "side" has ended
        token = await login(h, w.carol)
        for label, path in (
            ("list", f"/api/v1/teams/{w.side}/docs"),
            ("versions", docs_path(w.side, new_doc())),
            ("body", f"/api/v1/teams/{w.side}/versions/{'0' * 32}/body"),
        ):
            await refused(h, "GET", path, 403, token=token, contains="may not read", what=label)
        # Still a member of the team's chain, so the team itself is visible to her.
        status, _ = await h.call("GET", f"/api/v1/chains/team/{w.side}", token=cs.session.api.token)
        assert status == 200


async def test_doc_reads_of_unknown_or_invisible_things(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc)
        status, _ = await h.call("POST", docs_path(w.drafting, doc), token=s.session.api.token, data=up.data)
        assert status == 201
        carol = await login(h, w.carol)
        for label, token, team in (("team bob is not in", s.session.api.token, w.side),
                                   ("team carol is not in", carol, w.drafting),
                                   ("unknown team", s.session.api.token, "c" * 32)):
            for path in (f"/api/v1/teams/{team}/docs", docs_path(team, doc),
                         f"/api/v1/teams/{team}/versions/{up.vid}/body"):
                await refused(h, "GET", path, 404, token=token, what=f"{label}: {path}")
        # A document of a team bob reads that has no version yet: none, not a refusal (a client asks before its first
        # version, every `mvault put` of a new file). The team's visibility above decides the 404s.
        status, body = await h.call("GET", docs_path(w.drafting, new_doc()), token=s.session.api.token)
        assert (status, body) == (200, {"versions": []})
        await refused(h, "GET", f"/api/v1/teams/{w.drafting}/versions/{'d' * 32}/body", 404,
                      token=s.session.api.token, what="unknown version")
        for bad_doc in ("NOTHEX", "A" * 32, "0" * 31, "0" * 33):
            await refused(h, "GET", docs_path(w.drafting, bad_doc), 400, token=s.session.api.token, what=bad_doc)


# == interrupted uploads and restarts ================================================================


async def test_interrupted_upload_leaves_nothing_and_restart_works(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        up = make_upload(w, s, key, doc, size=3 * 1024 * 1024 + 17)
        before = snapshot(w.server)
        for label, cut in (("inside the header", 20),
                           ("half way through the body", up.head_len + len(up.body) // 2),
                           ("just before the signature", len(up.data) - 64),
                           ("one byte short", len(up.data) - 1)):
            head = request_head(w.server, "POST", path, len(up.data), s.session.api.token, "application/octet-stream")
            await raw_exchange(w.server, head, [up.data[:cut]], close=True)
            await _wait_for_empty_tmp(w.server)
            assert snapshot(w.server) == before, f"upload cut off {label} changed the stored state"
            status, versions = await h.call("GET", path, token=s.session.api.token)
            assert (status, versions) == (200, {"versions": []}), f"after a cut {label}"
            status, listing = await h.call("GET", f"/api/v1/teams/{w.drafting}/docs", token=s.session.api.token)
            assert status == 200 and doc not in {d["doc"] for d in listing["docs"]}

    # A crash could leave a temporary file and an unreferenced blob; start-up removes both.
    (w.server.data_dir / "tmp" / "upload-crashed").write_bytes(b"partial")
    (w.server.data_dir / "blobs" / "zz").mkdir(exist_ok=True)
    (w.server.data_dir / "blobs" / "zz" / ("zz" + "0" * 30)).write_bytes(b"orphan")
    w.server = await asyncio.to_thread(w.server.restart)
    assert snapshot(w.server) == before

    async with session(w, w.bob) as s, Http(w.server) as h:
        status, res = await h.call("POST", path, token=s.session.api.token, data=up.data)
        assert status == 201 and res == {"vid": up.vid, "seq": 1}, res
        status, body = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{up.vid}/body",
                                    token=s.session.api.token)
        assert status == 200 and body == up.body
    assert "drafting" in w.bob.member.json("whoami")["teams"]
