"""The lost-device incident end to end, against the real server and the real CLI (issue 18).

The ``forge`` world (tests/helpers/forgery.py: alice founder and NCC, admin of "drafting" and "ops"; bob writer
in "drafting", reader in "ops"; carol reader in "ops"), plus: carol holds the org role security, team "cell"
(kind circle: sensitive) has bob as a writer, and bob has a second device ("spare", from a paper key) besides
the laptop he loses. Carol cuts the laptop off with ``mvault incident lost-device``."""

from __future__ import annotations

import asyncio
import datetime
import os
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from client.lost import clear_pause
from tests.conftest import Member
from tests.helpers import forgery
from tests.helpers.db import sql
from tests.helpers.forgery import Forge, Forgery, plant_version, served, team_key
from tests.helpers.http import Http, b64, login_as, refused
from tests.helpers.lost import lost_device
from tests.helpers.members import session
from vault.chains.incidents import last_body, last_signed
from vault.envelope import DocWriter
from vault.links import make_link
from vault.teamkeys import TeamKey

forge = forgery.forge  # the fixture


@pytest.fixture
def cut(forge: Forge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Forge, Member, str, dict[str, Any]]:
    """The incident: (the world, bob's spare device, the lost laptop's name, carol's --json report)."""
    f = forge
    alice, bob, carol = f.org.alice, f.org.bob, f.carol
    alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
    alice.ok("team", "create", "cell", "--kind", "circle")
    alice.ok("team", "add", "cell", "bob", "--role", "writer")
    sheet = bob.json("recovery-key", "--name", "paper")
    spare = Member(tmp_path / "home-bob-spare", "bob", bob.passphrase_file)
    spare.ok("recover", sheet["recovery_key"], "--server", sheet["server"], "--cert", sheet["cert"], "--name", "spare")
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(spare.passphrase_file))
    f.keys["bob"] = Home(spare.home).unlock()  # what bob signs from now on, he signs with the spare
    laptop = next(d["name"] for d in bob.json("device", "ls") if d["this"])
    r = lost_device(carol, "bob", laptop, "--json")
    assert r.code == 0, r.err
    return f, spare, laptop, r.json()


def test_lost_device_cuts_rotates_pauses_and_clear_lifts_it(cut: tuple[Forge, Member, str, dict[str, Any]],
                                                            tmp_path: Path) -> None:
    f, spare, laptop, report = cut
    alice, bob, carol = f.org.alice, f.org.bob, f.carol
    cell = f.d.team_by_name("cell")
    assert cell is not None
    laptop_id = next(d.device_id for d in f.d.members[f.ids["bob"]].devices.values() if d.name == laptop)
    # What carol's command did: the cut, the pause, the rotation of "ops" (she holds its key: she reads it), the
    # two others left to their key holders, the reviews.
    assert report["incident_kind"] == "lost-device" and (report["member"], report["device"]) == (f.ids["bob"],
                                                                                                 laptop_id)
    assert report["cut_seq"] == f.d.require_org().seq and report["paused_teams"] == ["cell"]
    assert report["rotated_teams"] == ["ops"] and report["pending_rotation_teams"] == ["cell", "drafting"]
    # weekly from the day carol's command ran: between the cut link it signed and now (two days when midnight, UTC,
    # fell in between: the day of now alone failed then)
    days = {datetime.datetime.fromtimestamp(t, datetime.UTC).date() for t in (f.d.require_org().time, f.now())}
    assert report["reviews_due"] in [[(day + datetime.timedelta(days=7 * w)).isoformat() for w in range(1, 5)]
                                     for day in sorted(days)]
    # The laptop is cut off: no login.
    bob.fails("whoami", contains="cut off by the Security Team")
    # The next command of a key holder rotates every team the laptop could read, leaving bob's key out.
    gens = {t.name: t.generation for t in f.d.teams.values()}
    alice.ok("whoami")
    for name in ("cell", "drafting", "ops"):
        team = f.d.team_by_name(name)
        assert team is not None and team.generation == gens[name] + (name != "ops"), name
        assert (team.generation, f.ids["bob"]) not in team.boxes and team.withheld == {f.ids["bob"]: team.generation}
    doc = tmp_path / "note.md"
    doc.write_text("from the spare")
    spare.fails("put", "drafting", str(doc))  # no key of the new generation while the laptop holds his PUK
    # Bob revokes the laptop himself (his PUK rolls); the next key holder's run shares with him again.
    spare.ok("device", "revoke", laptop)
    r = alice.ok("whoami")
    assert "shared the key of team cell with bob" in r.err and "shared the key of team drafting with bob" in r.err
    # Non-sensitive teams work; the circle refuses new content (client first, then the server, then every reader).
    spare.ok("put", "drafting", str(doc))
    spare.fails("put", "cell", str(doc), contains="paused (lost-device incident)")
    f.keys["bob"] = Home(spare.home).unlock()  # his keys after the PUK roll
    held = team_key(f, "bob", cell.team_id, f.d.team(cell.team_id).generation)
    key = TeamKey(held.team_id, held.gen, held.seed, team_key(f, "alice", cell.team_id, 1).name_key)  # names: gen 1's
    writer = DocWriter(key=key, team_seq=f.d.team(cell.team_id).seq, device=f.device("bob"), author=f.ids["bob"],
                       doc=key.doc_id("planted.md"), seq=1, parent=None, time=f.now(), name="planted.md", size=100)
    upload = writer.upload_prefix() + writer.encrypt(os.urandom(100)) + writer.finish()

    async def upload_refused() -> None:
        async with Http(f.server) as h:
            token = await login_as(h, f.ids["bob"], f.device("bob"))
            await refused(h, "POST", f"/api/v1/teams/{cell.team_id}/docs/{key.doc_id('planted.md')}", 403,
                          contains="sensitive memberships are paused", token=token, data=upload)

    asyncio.run(upload_refused())
    plant_version(f, "bob", key, "planted.md", seq=1, parent=None, when=f.now(), team_seq=f.d.team(cell.team_id).seq,
                  data=os.urandom(100))
    alice.fails("get", "cell", "planted.md", "-o", str(tmp_path / "x"), contains="paused since")
    assert not (tmp_path / "x").exists()
    sql(f.org, "DELETE FROM versions WHERE doc=?", key.doc_id("planted.md"))
    # `mvault incident clear` (clear_pause) lifts the pause: the spare writes in the circle again.

    async def clear() -> int:
        async with session(f.server, carol) as s:
            return await clear_pause(s, "bob")

    assert asyncio.run(clear()) == f.d.require_org().seq
    spare.ok("put", "cell", str(doc))
    alice.ok("get", "cell", "note.md", "-o", str(tmp_path / "got.md"))
    assert (tmp_path / "got.md").read_text() == "from the spare"


def test_forged_cuts_and_clears_are_refused_by_the_server_and_every_client(
        cut: tuple[Forge, Member, str, dict[str, Any]]) -> None:
    f, _spare, _laptop, _report = cut
    org = f.d.require_org()

    def link(signer: str, type_: str, body: dict[str, Any], time: int | None = None) -> Any:
        return make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=time or max(f.now(), org.time),
                         signer=f.ids[signer], device=f.device(signer), type_=type_, body=body)

    clear_self = link("bob", "org.clear", {"member": f.ids["bob"]})
    cut_by_ncc = link("alice", "org.device.cut", {"member": f.ids["carol"], "device": f.device("carol").device_id})
    clear_by_ncc = link("alice", "org.clear", {"member": f.ids["bob"]})
    # Dated no later than the newest team link: who may comes first, so the answer is 403 whatever the date (a
    # same-second cut once got 409 "dated before a team link" and told a forger the clocks were the problem: CI).
    early_cut = link("alice", "org.device.cut", {"member": f.ids["carol"], "device": f.device("carol").device_id},
                     time=org.time)

    async def posted_refused() -> None:
        async with Http(f.server) as h:
            for who, forged, why in (("bob", clear_self, "may not clear a paused member"),
                                     ("alice", cut_by_ncc, "the Security Team handles incidents"),
                                     ("alice", early_cut, "the Security Team handles incidents"),
                                     ("alice", clear_by_ncc, "the Security Team handles incidents")):
                token = await login_as(h, f.ids[who], f.device(who))
                await refused(h, "POST", "/api/v1/org/links", 403, contains=why, token=token,
                              js={"link": b64(forged.wire)})

    asyncio.run(posted_refused())
    # A server that serves them anyway (it cannot sign as carol: it can only pass on what others signed).
    for forged, why in ((clear_self, "may not clear a paused member"),
                        (cut_by_ncc, "the Security Team handles incidents")):
        with served(f, Forgery(forged.type, "org", forged, why)):
            for m in (f.org.alice, f.carol):
                m.fails("whoami", contains=why)
    assert f.d.require_org().seq == org.seq and f.d.require_org().incidents.open_pause(f.ids["bob"]) is not None


def test_a_cut_that_does_not_name_the_devices_last_links_is_refused_and_changes_nothing(forge: Forge) -> None:
    """A cut records the last link the device signed in each chain (``last``), exactly as the server holds them:
    one that leaves a chain out (the cutter's view was stale: the device signed since) is a 409 and stores
    nothing; the same cut naming them is taken. Every replay then refuses what the device signs beyond them,
    whatever the date (tests/test_review9_exploits.py)."""
    f = forge
    f.org.alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
    org, bob = f.d.require_org(), f.d.members[f.ids["bob"]]
    laptop = f.device("bob").device_id
    right = last_signed(laptop, bob, f.d.teams.values())
    assert right[f.ids["bob"]] == (1, bob.root)  # the laptop made bob's member chain
    t = max([f.now(), org.time] + [team.time + 1 for team in f.d.teams.values()])

    def cut_naming(last: dict[str, tuple[int, bytes]]) -> Any:
        return make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=t, signer=f.ids["carol"],
                         device=f.device("carol"), type_="org.device.cut",
                         body={"member": f.ids["bob"], "device": laptop, "last": last_body(last)})

    stale = {c: v for c, v in right.items() if c != f.ids["bob"]}

    async def post() -> None:
        async with Http(f.server) as h:
            token = await login_as(h, f.ids["carol"], f.device("carol"))
            await refused(h, "POST", "/api/v1/org/links", 409, contains="does not name the last links", token=token,
                          js={"link": b64(cut_naming(stale).wire)})
            status, res = await h.call("POST", "/api/v1/org/links", token=token,
                                       js={"link": b64(cut_naming(right).wire)})
            assert status in (200, 201), res

    asyncio.run(post())
    cut = f.d.require_org().incidents.cut_of(f.ids["bob"], laptop)
    assert cut is not None and cut.last == right
