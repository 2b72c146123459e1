"""Issue 13's findings against the real server: removal, expulsion and role loss cut off everything.

Each test is an exploit the hostile review ran (with a colluding server where it says so), made
against the real server and the real ``mvault`` CLI with the ``forge`` fixture of
``tests/helpers/forgery.py`` (alice: founder and NCC, admin of "drafting" and "ops"; bob:
writer in "drafting", reader in "ops"; carol: reader in "ops"). Each failed on the code before
the one judge (``security/authority.py``).
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from security.authority import ALLOWANCE
from tests.helpers import forgery
from tests.helpers.db import sql
from tests.helpers.forgery import Forge, Forgery, plant_version, served, team_key, team_link
from tests.helpers.http import Http, b64, login_as
from tests.helpers.keyholder import open_box
from vault.encoding import decode, encode
from vault.envelope import DocWriter
from vault.links import make_link, parse_link
from vault.teamkeys import TeamKey

forge = forgery.forge  # the fixture


def _generations_opened(f: Forge, name: str) -> dict[str, set[int]]:
    """Team id -> the key generations ``name`` opens from a full copy of the server's boxes."""
    out: dict[str, set[int]] = {}
    for team, _gen, _member, box in sql(f.org, "SELECT team, gen, member, box FROM team_boxes"):
        key = open_box(f.keys[name].puks, bytes(box))
        if key is not None:
            out.setdefault(team, set()).add(key.gen)
    return out


def _plant_document(f: Forge, author: str, key: TeamKey, doc_name: str, *, team_seq: int, when: int) -> None:
    """A colluding server stores a version ``author`` signed (dated ``when``, naming ``team_seq``) as the
    first version of a new document, with its body, as if it had been uploaded."""
    plant_version(f, author, key, doc_name, seq=1, parent=None, when=when, team_seq=team_seq, data=os.urandom(200))


def _file(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- 1. expelled members keep getting keys -------------------------------------------------------------


def test_an_expelled_member_gets_no_later_key_and_nothing_they_sign_is_accepted(forge: Forge, tmp_path: Path) -> None:
    f = forge
    alice = f.org.alice
    drafting_seq = f.d.team(f.drafting).seq
    alice.ok("remove", "bob", "--reason", "expelled")
    # Any later rotation in his teams (here: another member's removal) must not seal to bob.
    alice.ok("team", "remove", "ops", "carol")
    alice.ok("put", "drafting", str(_file(tmp_path, "after.md", "written after bob's expulsion")))
    opened = _generations_opened(f, "bob")
    assert opened.get(f.ops) == {1} and opened.get(f.drafting) == {1}, opened
    assert f.d.team(f.ops).generation >= 2 and f.d.team(f.drafting).generation == 2
    # Expulsion takes bob out of every team at once: the rotation left him without a box.
    for team in (f.drafting, f.ops):
        assert (f.d.team(team).generation, f.ids["bob"]) not in f.d.team(team).boxes

    # A colluding server stores a document bob signed after his expulsion (under the key he still has,
    # naming the team state he last saw): every reader refuses it.
    key = team_key(f, "bob", f.drafting, 1)
    _plant_document(f, "bob", key, "from-bob.md", team_seq=drafting_seq, when=f.now())
    alice.fails("get", "drafting", "from-bob.md", "-o", str(tmp_path / "x"), contains="not an admitted member")
    assert not (tmp_path / "x").exists()


# -- 2. removed writers can still publish ---------------------------------------------------------------


def test_a_removed_writer_cannot_publish_under_the_state_before_the_removal(forge: Forge, tmp_path: Path) -> None:
    f = forge
    alice = f.org.alice
    alice.ok("team", "role", "ops", "carol", "writer")
    before = f.d.team(f.ops).seq
    key = team_key(f, "carol", f.ops, 1)
    alice.ok("team", "remove", "ops", "carol")
    removed_at = f.d.team(f.ops).time
    # Dated after the allowance: refused by every reader, whatever state it names.
    _plant_document(f, "carol", key, "late.md", team_seq=before, when=removed_at + ALLOWANCE + 60)
    for m in (alice, f.org.bob):
        m.fails("get", "ops", "late.md", "-o", str(tmp_path / "x"), contains="which ended at")
    # Within the allowance it is accepted: the documented residue (SECURITY.md "Authority"), which needs a
    # colluding server (an honest one stores nothing naming an old state).
    _plant_document(f, "carol", key, "racing.md", team_seq=before, when=removed_at + 60)
    alice.ok("get", "ops", "racing.md", "-o", str(tmp_path / "z"))
    # Demoted to reader: the same.
    alice.ok("team", "role", "drafting", "bob", "reader")
    demoted_at = f.d.team(f.drafting).time
    drafting_key = team_key(f, "bob", f.drafting, 1)
    _plant_document(f, "bob", drafting_key, "demoted.md", team_seq=f.d.team(f.drafting).seq - 1,
                    when=demoted_at + ALLOWANCE + 60)
    alice.fails("get", "drafting", "demoted.md", "-o", str(tmp_path / "y"), contains="which ended at")


# -- 3. stale authority for links ------------------------------------------------------------------------


def test_a_former_ncc_member_cannot_replay_old_authority(forge: Forge, make_member: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    f = forge
    alice = f.org.alice
    dave = make_member("dave")
    dave.ok("join", alice.json("invite")["invite"], "--name", "dave")
    alice.ok("role", "grant", "dave", "ncc")
    as_ncc = f.d.require_org().seq
    alice.ok("role", "revoke", "dave", "ncc")
    alice.ok("remove", "dave", "--reason", "left")
    revoked_at = f.d.org_links[as_ncc].time  # the revocation: the link after the state dave was NCC in
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(dave.passphrase_file))
    f.keys["dave"] = Home(dave.home).unlock()  # the keys dave kept
    f.ids["dave"] = next(mid for mid, ms in f.d.members.items() if ms.name == "dave")
    ops = f.d.team(f.ops)
    forged = make_link(chain=f.ops, seq=ops.seq + 1, prev=ops.head, time=max(revoked_at + ALLOWANCE + 60, ops.time),
                       signer=f.ids["dave"], device=f.device("dave"), type_="team.role",
                       body={"member": f.ids["carol"], "role": "admin", "until": None, "org_seq": as_ncc})
    with served(f, Forgery("stale NCC authority", f.ops, forged, "")):
        for m in (alice, f.org.bob, f.carol):
            m.fails("team", "show", "ops", contains="may not role")


# -- 9. hidden team names cannot be probed ---------------------------------------------------------------


def test_team_names_cannot_be_probed_through_refusals(forge: Forge) -> None:
    f = forge
    f.org.alice.ok("role", "grant", "carol", "staff")

    async def probe(name: str) -> tuple[int, str]:
        org = f.d.require_org()
        ms = f.d.members[f.ids["carol"]]
        key = TeamKey.generate("x" * 32, 1)
        body = {"org": org.org_id, "org_seq": org.seq, "nonce": os.urandom(16), "name": name, "kind": "program",
                "history": True, "members": [{"member": ms.member_id, "role": "admin", "until": None}],
                "key": {"gen": 1, "canary": key.canary,
                        "boxes": [{"member": ms.member_id, "puk_gen": ms.puk_gen, "hash": bytes(32)}]}}
        link = make_link(chain=None, seq=1, prev=None, time=f.now(), signer=ms.member_id, device=f.device("carol"),
                         type_="team.create", body=body)
        async with Http(f.server) as h:
            token = await login_as(h, ms.member_id, f.device("carol"))
            status, res = await h.call("POST", "/api/v1/teams", token=token, js={"link": b64(link.wire), "boxes": {}})
        return status, str(res["message"])

    hidden = asyncio.run(probe("drafting"))  # exists, and carol is not in it
    free = asyncio.run(probe("no-such-team"))
    assert hidden == free, (hidden, free)
    assert "already exists" not in hidden[1]


# -- 10. a lapsed term keeps the roster visible ------------------------------------------------------------


def test_a_lapsed_term_ends_the_view_of_the_roster(forge: Forge, make_member: Any) -> None:
    f = forge
    alice = f.org.alice
    until = f.now() + 30
    role = team_link(f, f.ops, "alice", "team.role", {"member": f.ids["bob"], "role": "reader", "until": until})

    async def post() -> None:
        async with Http(f.server) as h:
            token = await login_as(h, f.ids["alice"], f.device("alice"))
            status, res = await h.call("POST", f"/api/v1/teams/{f.ops}/links", token=token,
                                       js={"link": b64(role.wire), "boxes": {}})
            assert status == 201, res

    asyncio.run(post())
    f.server.advance(60)  # bob's term is over
    alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "60"
    dave = make_member("dave")
    dave.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "60"
    dave.ok("join", alice.json("invite")["invite"], "--name", "dave")
    alice.ok("team", "add", "ops", "dave", "--role", "reader")
    dave_id = next(mid for mid, ms in f.d.members.items() if ms.name == "dave")

    async def bobs_view() -> tuple[Any, list[Any]]:
        async with Http(f.server) as h:
            token = await login_as(h, f.ids["bob"], f.device("bob"))
            _, directory = await h.call("GET", "/api/v1/directory", token=token)
            _, chain = await h.call("GET", f"/api/v1/chains/team/{f.ops}", token=token)
        return directory, chain["links"]

    directory, links = asyncio.run(bobs_view())
    served_links = [parse_link(base64.b64decode(x)) for x in links]
    assert all(lk.time < until for lk in served_links)
    assert not any(lk.body.raw.get("member") == dave_id for lk in served_links), "bob sees who joined after his term"
    assert directory["teams"][f.ops]["removed_at"] == len(served_links)
    # bob's client accepts the shortened chain (and shows no team "ops"), and still works elsewhere.
    bob = f.org.bob
    bob.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = "60"
    assert "ops" not in bob.json("whoami")["teams"]


# -- the invite-signature slot ---------------------------------------------------------------------------


def test_a_link_that_takes_no_cosignature_carries_none(forge: Forge) -> None:
    """A server that fills the unused invite-signature slot changes a link's hash without breaking its
    signature (false rollback alarms): such a link is refused."""
    f = forge
    link = team_link(f, f.ops, "alice", "team.role", {"member": f.ids["carol"], "role": "writer", "until": None})
    outer = decode(link.wire)
    assert isinstance(outer, dict)
    stuffed = parse_link(encode({"link": outer["link"], "sig": outer["sig"], "xsig": os.urandom(64)}))
    with served(f, Forgery("xsig on a team link", f.ops, stuffed, "")):
        f.org.alice.fails("team", "show", "ops", contains="carries no invite signature")


# -- two people for ncc and security ---------------------------------------------------------------------


def test_two_people_for_ncc_and_security_and_no_return_after_removal(forge: Forge) -> None:
    f = forge
    f.org.alice.fails("role", "grant", "alice", "security", contains="second person")
    f.org.alice.ok("role", "grant", "bob", "ncc")
    f.org.bob.ok("role", "grant", "alice", "security", "--until", "2099-01-01")
    assert "security" in {r for m in f.org.alice.json("members") if m["name"] == "alice" for r in m["roles"]}
    f.org.alice.ok("remove", "carol", "--reason", "left")
    f.org.alice.ok("whoami")  # rotates ops (carol held its key)
    f.org.alice.fails("admit", "carol", contains="cannot come back")


# -- found while tracing one upload (issue 14) ---------------------------------------------------------------


def test_an_upload_that_ends_after_a_removal_waits_for_the_rotation(forge: Forge) -> None:
    """The server re-checked only the team's link and key generation once an upload's body had arrived. An org
    removal changes neither, so a version whose upload began before carol's removal was stored under the key
    carol still holds. The check after the body is now the whole one: no new content while a rotation is due."""
    f = forge
    key = team_key(f, "alice", f.ops, 1)
    doc = key.doc_id("held.md")
    data = os.urandom(3 << 20)
    writer = DocWriter(key=key, team_seq=f.d.team(f.ops).seq, device=f.device("alice"), author=f.ids["alice"],
                       doc=doc, seq=1, parent=None, time=f.now(), name="held.md", size=len(data))
    upload = writer.upload_prefix() + writer.encrypt(data) + writer.finish()
    tmp = f.server.data_dir / "tmp"
    before = sql(f.org, "SELECT COUNT(*) FROM versions")[0][0]

    async def go() -> tuple[int, Any]:
        go_on = asyncio.Event()

        async def body() -> Any:
            yield upload[:1 << 20]
            await go_on.wait()
            yield upload[1 << 20:]

        async with Http(f.server) as h:
            token = await login_as(h, f.ids["alice"], f.device("alice"))
            call = asyncio.create_task(h.call("POST", f"/api/v1/teams/{f.ops}/docs/{doc}", token=token,
                                              data=body()))  # type: ignore[arg-type]
            while not any(tmp.iterdir()):  # the header was accepted: the body is being received
                assert not call.done(), await call
                await asyncio.sleep(0.02)
            await asyncio.to_thread(f.org.alice.ok, "remove", "carol", "--reason", "left")
            go_on.set()
            return await call

    status, res = asyncio.run(go())
    assert status == 409 and "must be rotated" in res["message"], res
    assert sql(f.org, "SELECT COUNT(*) FROM versions")[0][0] == before
    assert not any(tmp.iterdir())
