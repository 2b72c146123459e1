"""The server forges membership (issue 3): adds, roles, replays, rollbacks, rotations, devices.

Against the real server and the real ``mvault`` CLI (fixture ``org``: alice founded the
organization and is NCC, bob writes in team "drafting"; here carol, an organization member
outside "drafting", joins too, and team "ops" holds alice, bob and carol). Each forgery is a
link someone without the right signs, a genuine link moved where it does not belong, or a
chain served as it was before the client pinned it:

* POSTed to the API, every forged link is refused (400/403/409) and no stored row changes;
* put straight into the server's in-memory chains (what it serves), every client's next
  ``mvault whoami`` / ``ls`` fails with one clear line, and works again once the forgery is gone (in ``make
  test`` alice's and bob's clients take the forgeries in turn, and ``ls`` runs for the first forgery of each
  chain; ``make test-long`` runs each through both, with ``ls`` each time);
* put into the server's storage, the server itself refuses to start (it replays its chains);
* a chain served at an older (or forked) head after a client pinned it is reported as a rollback.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from server.directory import Directory
from tests.conftest import ServerThread
from tests.helpers.api_world import device_body, member_json
from tests.helpers.db import copy_db, storage_copy
from tests.helpers.forgery import Forge, Forgery, relink, served, team_link
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.http import Http, b64, login_as, refused
from vault.crypto import labels
from vault.encoding import encode
from vault.errors import VaultError
from vault.keys import DeviceKeys, PukKeys
from vault.links import Link, make_link, parse_link, sign_device_proof
from vault.teamkeys import TeamKey, box_hash

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

forge = forge_fixture  # the fixture (tests/helpers/forgery.py)

LONG = bool(os.environ.get("MVAULT_LONG"))  # make test-long: each served forgery checked by both members

SIGNATURE = "signature does not verify"
ROLLBACK = "rolled back"


# -- forged links ------------------------------------------------------------------------------------


def org_link(f: Forge, signer: str, type_: str, body: dict[str, Any]) -> Link:
    org = f.d.require_org()
    return make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=max(f.now(), org.time),
                     signer=f.ids[signer], device=f.device(signer), type_=type_, body=body)


def add_body(f: Forge, team: str, member: str, role: str = "writer") -> tuple[dict[str, Any], dict[str, bytes]]:
    """A team.add of ``member`` with a box of a key the forger made up (the chain cannot see the seed)."""
    state, ms = f.d.team(team), f.d.members[f.ids[member]]
    box = TeamKey.generate(team, state.generation).seal_for(ms.member_id, ms.puk_gen, ms.puk_box_public)
    return ({"member": ms.member_id, "role": role, "until": None,
             "key": {"gen": state.generation,
                     "boxes": [{"member": ms.member_id, "puk_gen": ms.puk_gen, "hash": box_hash(box)}]}},
            {ms.member_id: box})


def rotation_body(f: Forge, team: str, members: list[str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A team.rotate body whose new generation is boxed to exactly ``members`` (names)."""
    state = f.d.team(team)
    key = TeamKey.generate(team, state.generation + 1)
    boxes = {}
    commits = []
    for name in members:
        ms = f.d.members[f.ids[name]]
        boxes[ms.member_id] = key.seal_for(ms.member_id, ms.puk_gen, ms.puk_box_public)
        commits.append({"member": ms.member_id, "puk_gen": ms.puk_gen, "hash": box_hash(boxes[ms.member_id])})
    # The previous seed under the new one: its bytes are opaque to the chain (clients check them on use).
    return {"key": {"gen": key.gen, "canary": key.canary, "boxes": commits, "prev": os.urandom(72)}}, boxes


def device_add(f: Forge, member: str, new: DeviceKeys, *, proof: bytes | None = None,
               signer: DeviceKeys | None = None) -> tuple[Link, dict[str, bytes]]:
    """A device.add on a member chain, signed with the member's device; ``proof`` replaces the new device's."""
    mid, secrets = f.ids[member], f.keys[member]
    ms = f.d.members[mid]
    puk = secrets.puks[ms.puk_gen] if ms.puk_gen in secrets.puks else secrets.puks[max(secrets.puks)]
    box = puk.seal_for_device(mid, new.box_public)
    head = f.d.member_links[mid][-1]
    link = make_link(chain=mid, seq=head.seq + 1, prev=head.hash, time=max(f.now(), head.time), signer=mid,
                     device=signer or secrets.device, type_="device.add",
                     body={"device": device_body(new, name=f"dev-{os.urandom(2).hex()}"), "puk_gen": puk.generation,
                           "puk_boxes": [{"device": new.device_id, "hash": box_hash(box)}],
                           "proof": sign_device_proof(new, mid) if proof is None else proof})
    return link, {new.device_id: box}


def signed_by(link: Link, device: DeviceKeys) -> Link:
    """The same link bytes (naming its real signer and device) with a signature by another key."""
    return parse_link(encode({"link": link.raw, "sig": device.sign(labels.SIG_TEAM_LINK, link.raw), "xsig": None}))


def flipped_sig(link: Link) -> Link:
    return parse_link(encode({"link": link.raw, "sig": bytes([link.sig[0] ^ 1]) + link.sig[1:], "xsig": link.xsig}))


def team_json(link: Link, boxes: dict[str, bytes]) -> dict[str, Any]:
    return {"link": b64(link.wire), "boxes": {m: b64(b) for m, b in boxes.items()}}


def heads(d: Directory) -> dict[str, tuple[int, bytes]]:
    org = d.require_org()
    out = {"org": (org.seq, org.head)}
    out.update({mid: (ms.seq, ms.head) for mid, ms in d.members.items()})
    out.update({tid: (t.seq, t.head) for tid, t in d.teams.items()})
    out.update({f"links:{k}": (len(v), v[-1].hash) for k, v in {**d.member_links, **d.team_links}.items()})
    out["links:org"] = (len(d.org_links), d.org_links[-1].hash)
    return out


def forgeries(f: Forge) -> list[Forgery]:
    """Every forgery of this file, made against the current heads (none of them is stored)."""
    drafting, ops = f.drafting, f.ops
    body, _ = add_body(f, drafting, "carol")
    by_admin = team_link(f, drafting, "alice", "team.add", body)
    invented = DeviceKeys.generate()
    ops_links = f.d.team_links[ops]
    draft_links = f.d.team_links[drafting]
    return [
        Forgery("team.add signed by a writer, not an admin", drafting,
                team_link(f, drafting, "bob", "team.add", body), "may not add"),
        Forgery("team.add with the admin's signature altered", drafting, flipped_sig(by_admin), SIGNATURE),
        Forgery("team.add in the admin's name, signed by another member's key", drafting,
                signed_by(by_admin, f.device("bob")), SIGNATURE),
        Forgery("team.add in the admin's name, from another member's device", drafting,
                team_link(f, drafting, "alice", "team.add", body, device=f.device("bob")), "not an active device"),
        Forgery("team.add in the admin's name, signed by a device the server made up", drafting,
                team_link(f, drafting, "alice", "team.add", body, device=invented), "not an active device"),
        Forgery("org.role grant of NCC signed by a non-NCC member", "org",
                org_link(f, "bob", "org.role", {"member": f.ids["bob"], "role": "ncc", "grant": True,
                                                "until": None}), "may not grant"),
        Forgery("team.role promotion signed by a non-admin", drafting,
                team_link(f, drafting, "bob", "team.role", {"member": f.ids["bob"], "role": "admin",
                                                            "until": None}), "may not role"),
        Forgery("a link replayed from another team", drafting, ops_links[len(draft_links)], "current head"),
        Forgery("another team's link re-pointed at this chain", drafting,
                relink(ops_links[len(draft_links)], lambda inner: inner.update(
                    chain=drafting, prev=draft_links[-1].hash)), SIGNATURE),
        Forgery("a link pointing at an older head", drafting,
                team_link(f, drafting, "alice", "team.add", body, prev=draft_links[0].hash), "current head"),
        Forgery("a rotation with an extra box for an outsider", drafting,
                team_link(f, drafting, "alice", "team.rotate",
                          rotation_body(f, drafting, ["alice", "bob", "carol"])[0]), "missing or extra box"),
        Forgery("a rotation missing a member's box", drafting,
                team_link(f, drafting, "alice", "team.rotate", rotation_body(f, drafting, ["alice"])[0]),
                "missing or extra box"),
        Forgery("a device.add whose proof is by another key (substituted device key)", f.ids["bob"],
                device_add(f, "bob", DeviceKeys.generate(), proof=sign_device_proof(invented, f.ids["bob"]))[0],
                SIGNATURE),
    ]


# == (a) forged links posted to the API ==============================================================


def test_forged_links_posted_to_the_api_are_refused(forge: Forge) -> None:
    f = forge
    f.org.alice.ok("put", "drafting", str(_doc(f, "before.txt", b"before the forgeries\n")))
    asyncio.run(_post_forgeries(f))
    # Nothing moved: both members still verify every chain, and bob still reads and writes.
    for m in f.clients():
        assert "drafting" in m.json("whoami")["teams"]
    f.org.bob.ok("put", "drafting", str(_doc(f, "after.txt", b"after the forgeries\n")))
    assert {d["name"] for d in f.org.alice.json("ls", "drafting")} == {"before.txt", "after.txt"}


def _doc(f: Forge, name: str, data: bytes) -> Path:
    path = f.org.alice.home.parent / name
    path.write_bytes(data)
    return path


async def _post_forgeries(f: Forge) -> None:
    d, drafting = f.d, f.drafting
    team_path, org_path = f"/api/v1/teams/{drafting}/links", "/api/v1/org/links"
    bob_path = f"/api/v1/members/{f.ids['bob']}/links"
    async with Http(f.server) as h:
        alice = await login_as(h, f.ids["alice"], f.device("alice"))
        bob = await login_as(h, f.ids["bob"], f.device("bob"))
        before = heads(d)
        body, boxes = add_body(f, drafting, "carol")
        good_add = team_link(f, drafting, "alice", "team.add", body)
        ops_link = d.team_links[f.ops][len(d.team_links[drafting])]
        invented = DeviceKeys.generate()
        extra, extra_boxes = rotation_body(f, drafting, ["alice", "bob", "carol"])
        missing, missing_boxes = rotation_body(f, drafting, ["alice"])
        right, right_boxes = rotation_body(f, drafting, ["alice", "bob"])
        right_link = team_link(f, drafting, "alice", "team.rotate", right)
        outsider_box = TeamKey.generate(drafting, 2).seal_for(f.ids["carol"], 1,
                                                             d.members[f.ids["carol"]].puk_box_public)
        substituted, substituted_boxes = device_add(f, "bob", DeviceKeys.generate(),
                                                    proof=sign_device_proof(invented, f.ids["bob"]))
        cases: list[tuple[str, str, str, dict[str, Any], int, str]] = [
            # An add-member link without a valid admin signature.
            ("team.add signed by a writer", bob, team_path,
             team_json(team_link(f, drafting, "bob", "team.add", body), boxes), 403, "may not add"),
            ("team.add with the admin's signature altered", alice, team_path,
             team_json(flipped_sig(good_add), boxes), 400, "signature"),
            ("team.add in the admin's name signed with another member's key", alice, team_path,
             team_json(signed_by(good_add, f.device("bob")), boxes), 400, "signature"),
            ("team.add in the admin's name from another member's device", bob, team_path,
             team_json(team_link(f, drafting, "alice", "team.add", body, device=f.device("bob")), boxes), 403,
             "logged-in device"),
            ("team.add signed by a device the server made up", alice, team_path,
             team_json(team_link(f, drafting, "alice", "team.add", body, device=invented), boxes), 403,
             "logged-in device"),
            ("team.add in the admin's name from a writer's session", bob, team_path, team_json(good_add, boxes), 403,
             "logged-in device"),
            ("org.admit signed by a non-NCC member", bob, org_path,
             {"link": b64(org_link(f, "bob", "org.admit", {"member": f.ids["carol"]}).wire)}, 403, "may not admit"),
            # A role grant signed by a non-NCC member (and a team role by a non-admin).
            ("org.role grant of NCC by a non-NCC member", bob, org_path,
             {"link": b64(org_link(f, "bob", "org.role", {"member": f.ids["bob"], "role": "ncc", "grant": True,
                                                          "until": None}).wire)}, 403, "may not grant"),
            ("team.role promotion by a non-admin", bob, team_path,
             team_json(team_link(f, drafting, "bob", "team.role", {"member": f.ids["bob"], "role": "admin",
                                                                   "until": None}), {}), 403, "may not role"),
            # A link replayed from another team.
            ("a link replayed from another team", alice, team_path, team_json(ops_link, {}), 400, "another chain"),
            ("another team's link re-pointed at this chain", alice, team_path,
             team_json(relink(ops_link, lambda inner: inner.update(chain=drafting,
                                                                    prev=d.team_links[drafting][-1].hash)), {}),
             400, "signature"),
            ("this team's own link replayed", alice, team_path, team_json(d.team_links[drafting][-1], {}), 409,
             "moved on"),
            # A link with an older prev (rolled back), or an older sequence number.
            ("a link pointing at an older head", alice, team_path,
             team_json(team_link(f, drafting, "alice", "team.add", body, prev=d.team_links[drafting][0].hash), boxes),
             400, "current head"),
            ("a link replacing the head", alice, team_path,
             team_json(team_link(f, drafting, "alice", "team.add", body, seq=d.team(drafting).seq,
                                 prev=d.team_links[drafting][0].hash), boxes), 409, "moved on"),
            # Rotations that box the wrong people, in the link or in the uploaded boxes.
            ("a rotation with an extra box for an outsider", alice, team_path,
             team_json(team_link(f, drafting, "alice", "team.rotate", extra), extra_boxes), 400, "missing or extra"),
            ("a rotation missing a box for a member", alice, team_path,
             team_json(team_link(f, drafting, "alice", "team.rotate", missing), missing_boxes), 400,
             "missing or extra"),
            ("a rotation whose uploaded boxes add an outsider's", alice, team_path,
             team_json(right_link, {**right_boxes, f.ids["carol"]: outsider_box}), 400, "do not match"),
            ("a rotation whose uploaded boxes miss a member's", alice, team_path,
             team_json(right_link, {f.ids["alice"]: right_boxes[f.ids["alice"]]}), 400, "do not match"),
            ("a rotation whose uploaded box is swapped", alice, team_path,
             team_json(right_link, {f.ids["alice"]: right_boxes[f.ids["bob"]],
                                    f.ids["bob"]: right_boxes[f.ids["alice"]]}), 400, "does not match"),
            # A device.add whose proof is by another key (the device key was substituted).
            ("device.add with a substituted device key", bob, bob_path,
             member_json(substituted, substituted_boxes), 400, "signature"),
            ("device.add proved for another member", bob, bob_path,
             member_json(*device_add(f, "bob", invented, proof=sign_device_proof(invented, f.ids["alice"]))), 400,
             "signature"),
            ("device.add signed by the new device itself", bob, bob_path,
             member_json(*device_add(f, "bob", invented, signer=invented)), 403, "logged-in device"),
            ("device.add on bob's chain from alice's session", alice, bob_path,
             member_json(*device_add(f, "bob", invented)), 403, "logged-in device"),
        ]
        for label, token, path, js, status, contains in cases:
            await refused(h, "POST", path, status, token=token, js=js, contains=contains, what=label)
        assert heads(d) == before, "a refused link changed the server's chains"


# == (b) forged links served by the server ===========================================================


@pytest.mark.long
def test_forged_links_served_by_the_server_are_caught_by_every_client(forge: Forge) -> None:
    f = forge
    alice, bob = f.org.alice, f.org.bob
    alice.ok("put", "drafting", str(_doc(f, "served.txt", b"served while the server forges\n")))
    for m in f.clients():
        m.ok("whoami")  # both have pinned every chain
    cases = forgeries(f)
    assert len(cases) >= 12
    listed: set[str] = set()  # the chains a forgery on which `ls` was shown to stop too
    for i, forgery in enumerate(cases):
        with served(f, forgery):
            # Each forgery through both members' clients with MVAULT_LONG (make test-long); in make test through
            # alice's or bob's in turn (and carol's each time). Every command verifies the chains before its own
            # work (with_session: maintenance's chains.view), so `ls` fails where `whoami` does, on the same code:
            # make test runs it for the first forgery of each chain (org, team, member), make test-long for all.
            for m in (alice, bob) if LONG else ((alice, bob)[i % 2],):
                r = m.fails("whoami", contains=forgery.client_error)
                assert r.err, forgery.label
                if LONG or forgery.chain not in listed:
                    m.fails("ls", "drafting", contains=forgery.client_error)
            listed.add(forgery.chain)
            if forgery.chain == f.drafting:  # a team carol is not in: she never sees its chain
                f.carol.ok("whoami")
            else:
                f.carol.fails("whoami", contains=forgery.client_error)
    # Undone, every client works again: the failures came from the forgeries alone.
    for m in (alice, bob):
        assert "drafting" in m.json("whoami")["teams"]
        assert [d["name"] for d in m.json("ls", "drafting")] == ["served.txt"]


def test_a_forged_team_link_does_not_reach_documents(forge: Forge, tmp_path: Path) -> None:
    """bob's get of a document fails too while a forged rotation is served (the key is never used)."""
    f = forge
    content = b"only the real key opens this\n"
    f.org.alice.ok("put", "drafting", str(_doc(f, "keys.txt", content)))
    body, _ = rotation_body(f, f.drafting, ["alice", "bob", "carol"])
    forgery = Forgery("rotation boxing an outsider", f.drafting, team_link(f, f.drafting, "alice", "team.rotate", body),
                      "missing or extra box")
    out = tmp_path / "out.txt"
    with served(f, forgery):
        f.org.bob.fails("get", "drafting", "keys.txt", "-o", str(out), contains=forgery.client_error)
        f.org.bob.fails("put", "drafting", str(_doc(f, "new.txt", b"x")), contains=forgery.client_error)
    assert not out.exists()
    f.org.bob.ok("get", "drafting", "keys.txt", "-o", str(out))
    assert out.read_bytes() == content


def test_forged_links_in_storage_stop_the_server(forge: Forge, tmp_path: Path) -> None:
    """The server replays its own chains at start: each forgery written into its storage is refused there."""
    f = forge
    for i, forgery in enumerate(forgeries(f)):
        copy = tmp_path / f"server-copy-{i}"
        f.org.server, config = storage_copy(f.server, copy)
        dst = copy_db(copy, config)
        try:
            chain = "org" if forgery.chain == "org" else forgery.chain
            kind = "org" if chain == "org" else ("member" if chain in f.d.members else "team")
            (head,) = dst.execute("SELECT MAX(seq) FROM links WHERE chain=?", (chain,)).fetchone()
            dst.execute("INSERT INTO links (chain, seq, kind, wire, time) VALUES (?, ?, ?, ?, 0)",
                        (chain, head + 1, kind, forgery.link.wire))
        finally:
            dst.close()
        with pytest.raises(VaultError, match=re.escape(forgery.client_error)):
            ServerThread(copy, **config).start()
    # The real server (untouched) serves everyone.
    for m in (*f.clients(), f.carol):
        m.ok("whoami")


# == rollback ============================================================================================


@contextmanager
def rolled_back(links: list[Link], to: int) -> Iterator[None]:
    """The server serves only the first ``to`` links of a chain."""
    dropped = links[to:]
    del links[to:]
    try:
        yield
    finally:
        links.extend(dropped)


@contextmanager
def replaced(links: list[Link], index: int, link: Link) -> Iterator[None]:
    original = links[index]
    links[index] = link
    try:
        yield
    finally:
        links[index] = original


def everyone_reports(f: Forge, *commands: tuple[str, ...]) -> None:
    for m in f.clients():
        for args in commands:
            m.fails(*args, contains=ROLLBACK)


def test_rolled_back_team_chain_is_reported(forge: Forge) -> None:
    f = forge
    alice = f.org.alice
    alice.ok("put", "drafting", str(_doc(f, "r.txt", b"rotated\n")))
    alice.ok("team", "rotate", "drafting")
    for m in f.clients():
        m.ok("whoami")  # pinned at the rotation
    links = f.d.team_links[f.drafting]
    assert links[-1].type == "team.rotate"
    with rolled_back(links, len(links) - 1):  # served as it was before the rotation: the old key again
        everyone_reports(f, ("whoami",), ("ls", "drafting"))
    with rolled_back(links, 1):
        everyone_reports(f, ("whoami",))
    # A fork: a valid link by alice in place of the pinned head.
    prev = links[-2]
    fork = make_link(chain=f.drafting, seq=links[-1].seq, prev=prev.hash, time=links[-1].time,
                     signer=f.ids["alice"], device=f.device("alice"), type_="team.role",
                     body={"member": f.ids["bob"], "role": "reader", "until": None, "org_seq": f.d.require_org().seq})
    with replaced(links, len(links) - 1, fork):
        everyone_reports(f, ("whoami",))
    for m in f.clients():
        assert [d["name"] for d in m.json("ls", "drafting")] == ["r.txt"]


def test_rolled_back_org_chain_is_reported(forge: Forge) -> None:
    f = forge
    f.org.alice.ok("role", "grant", "carol", "security")
    for m in (*f.clients(), f.carol):
        m.ok("whoami")
    links = f.d.org_links
    assert links[-1].type == "org.role"
    with rolled_back(links, len(links) - 1):  # the grant disappears
        everyone_reports(f, ("whoami",))
        f.carol.fails("whoami", contains=ROLLBACK)
    for m in f.clients():
        m.ok("whoami")


def test_rolled_back_member_chain_is_reported(forge: Forge) -> None:
    """Serving a member chain from before a device revocation would make the revoked device look active."""
    f = forge
    spare = DeviceKeys.generate()
    asyncio.run(_add_and_revoke(f, "bob", spare))
    for m in (*f.clients(), f.carol):
        m.ok("whoami")  # everyone pins bob's chain with the revocation (key holders rotate the teams)
    links = f.d.member_links[f.ids["bob"]]
    assert [link.type for link in links] == ["member.create", "device.add", "device.revoke"]
    with rolled_back(links, 2):
        everyone_reports(f, ("whoami",), ("ls", "drafting"))
        f.carol.fails("whoami", contains=ROLLBACK)
    for m in f.clients():
        m.ok("whoami")
        m.ok("ls", "drafting")


async def _add_and_revoke(f: Forge, member: str, spare: DeviceKeys) -> None:
    mid = f.ids[member]
    async with Http(f.server) as h:
        token = await login_as(h, mid, f.device(member))
        add, boxes = device_add(f, member, spare)
        status, res = await h.call("POST", f"/api/v1/members/{mid}/links", token=token, js=member_json(add, boxes))
        assert status == 201, res
        # Date the revocation after every team link boxed to the old member key: a revocation dated in
        # the same second as such a link makes that (older) team chain unreplayable for every client
        # (see test_chains_membership_team_state.py::test_a_revocation_dated_like_an_earlier_team_link_*).
        newest = max(t.time for t in f.d.teams.values())
        while f.now() <= newest:
            await asyncio.sleep(0.1)
        old = f.keys[member].puks[1]
        new = PukKeys.generate(2)
        box = new.seal_for_device(mid, f.device(member).box_public)
        revoke = make_link(chain=mid, seq=add.seq + 1, prev=add.hash, time=max(f.now(), add.time), signer=mid,
                           device=f.device(member), type_="device.revoke",
                           body={"device": spare.device_id,
                                 "puk": {"gen": 2, "sign_pk": new.sign_public, "box_pk": new.box_public},
                                 "puk_boxes": [{"device": f.device(member).device_id, "hash": box_hash(box)}],
                                 "prev": new.seal_previous(old)})
        status, res = await h.call("POST", f"/api/v1/members/{mid}/links", token=token,
                                   js=member_json(revoke, {f.device(member).device_id: box}))
        assert status == 201, res

