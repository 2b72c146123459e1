"""A full disk on the server during an upload (a real one: the data directory is a small tmpfs).

The upload gets a clear JSON error, 507 ``insufficient_storage``, not a bare 500; it is recorded in
the audit log like any refused request; it leaves no temporary file, no blob and no version row; and
once space is freed the same upload is stored.
Mounting a tmpfs needs root (CAP_SYS_ADMIN): elsewhere the test is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.home import Home
from client.uploadbatch import batch_body
from tests.conftest import Member, Org, ServerThread
from tests.helpers.api_world import Actor, World, docs_path, make_upload, new_doc, session, team_key
from tests.helpers.db import log_size, snapshot
from tests.helpers.http import Http, refused
from tests.helpers.tmpfs import server_on_tmpfs

TMPFS = 16 * 1024 * 1024  # the server's whole data directory
LEFT = 256 * 1024  # free space left for the databases once the disk is filled
BODY = 1024 * 1024  # an upload larger than what is left


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """The real server, its data directory a tmpfs of 16 MiB."""
    with server_on_tmpfs(tmp_path, TMPFS) as s:
        yield s


def fill(data: Path, leave: int) -> Path:
    """A file that takes all but ``leave`` bytes of the data directory's filesystem."""
    st = os.statvfs(data)
    filler = data / "filler"
    with filler.open("wb") as f:
        f.truncate(0)
        f.write(b"\0" * (st.f_bavail * st.f_frsize - leave))
    return filler


def actor(m: Member, monkeypatch: pytest.MonkeyPatch) -> Actor:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(m.passphrase_file))
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    home = Home(m.home)
    return Actor(m, home, home.unlock(), home.config().member_id)


async def test_an_upload_onto_a_full_disk_is_refused_cleanly(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    bob = actor(org.bob, monkeypatch)
    drafting = org.alice.json("team", "show", "drafting")["team"]
    w = World(org.server, bob, bob, bob, drafting=drafting)
    data = org.server.data_dir
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        up = make_upload(w, s, key, doc, size=BODY)
        filler = fill(data, LEFT)
        before, events = snapshot(w.server), log_size(w.server)
        answer = await refused(h, "POST", path, 507, token=s.session.api.token, data=up.data, contains="space")
        assert answer["error"] == "insufficient_storage", answer
        assert snapshot(w.server) == before  # no temporary file, no blob, no version row
        assert log_size(w.server) == events + 1  # the failed upload is an audit event like any refusal
        status, listed = await h.call("GET", path, token=s.session.api.token)  # no version stored
        assert status == 200 and listed == {"versions": []}, (status, listed)
        filler.unlink()
        status, res = await h.call("POST", path, token=s.session.api.token, data=up.data)
        assert status == 201 and res == {"vid": up.vid, "seq": 1}, res
        status, body = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{up.vid}/body",
                                    token=s.session.api.token)
        assert status == 200 and body == up.body
    org.bob.ok("ls", "drafting")


async def test_a_batch_onto_a_full_disk_is_refused_cleanly(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose blobs do not fit: 507 for the whole request, nothing of any item stored, every item an
    audit event; once there is space the same batch is stored."""
    bob = actor(org.bob, monkeypatch)
    w = World(org.server, bob, bob, bob, drafting=org.alice.json("team", "show", "drafting")["team"])
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        ups = [make_upload(w, s, key, new_doc(), size=size) for size in (1000, BODY)]
        path, body = f"/api/v1/teams/{w.drafting}/versions", batch_body([up.data for up in ups])
        filler = fill(org.server.data_dir, LEFT)  # the body arrives (in memory); its blobs do not fit
        before, events = snapshot(w.server), log_size(w.server)
        answer = await refused(h, "POST", path, 507, token=s.session.api.token, data=body, contains="space")
        assert answer["error"] == "insufficient_storage", answer
        assert snapshot(w.server) == before
        assert log_size(w.server) == events + len(ups)
        filler.unlink()
        status, res = await h.call("POST", path, token=s.session.api.token, data=body)
        assert status == 201 and [o["vid"] for o in res["outcomes"]] == [up.vid for up in ups], res
