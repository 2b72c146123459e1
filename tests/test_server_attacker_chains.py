"""The server is the attacker: it rolls back documents and chains, serves other members' key boxes,
and alters or forges chain links; clients catch it (and a forged link in storage stops the server).

As in ``tests/test_server_attacker_docs.py``: the member's next command must fail with exit code 1
and one clear line on stderr; after the damage is undone the same command succeeds again. The
tampering helpers are in ``tests/helpers/tampering.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import Org, ServerThread
from tests.helpers.db import copy_db, rows_deleted, sql, storage_copy
from tests.helpers.forgery import relink
from tests.helpers.members import get_ok, put, unlock_here
from tests.helpers.tampering import (
    ROLLBACK,
    SIGNATURE,
    dec,
    directory,
    flip_middle,
    get_fails,
    member_id,
    team_id,
)
from vault.chains import MemberState, member_id_for
from vault.encoding import encode
from vault.errors import VaultError
from vault.keys import DeviceKeys, PukKeys
from vault.links import make_link, parse_link
from vault.teamkeys import TeamKey, box_hash

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

# -- rollback ----------------------------------------------------------------------------------


def test_rollback_of_a_document_is_reported(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    doc = tmp_path / "notes.md"
    v1 = put(alice, "drafting", doc, b"version one\n")
    v2 = put(alice, "drafting", doc, b"version two\n")
    get_ok(bob, "drafting", "notes.md", tmp_path / "seen-v2", b"version two\n")  # bob has now seen v2
    with rows_deleted(org, v2):
        get_fails(bob, "drafting", "notes.md", tmp_path / "rolled", ROLLBACK)
        get_fails(bob, "drafting", "notes.md", tmp_path / "rolled-v1", ROLLBACK, version=1)
        bob.fails("history", "drafting", "notes.md", contains=ROLLBACK)
        bob.fails("ls", "drafting", contains=ROLLBACK)
        # The writer who stored v2 notices too, and refuses to write on top of the old head.
        alice.fails("put", "drafting", str(doc), contains=ROLLBACK)
    with rows_deleted(org, v1, v2):  # the whole document hidden
        get_fails(bob, "drafting", "notes.md", tmp_path / "gone", ROLLBACK)
        bob.fails("ls", "drafting", contains=ROLLBACK)
    get_ok(bob, "drafting", "notes.md", tmp_path / "ok", b"version two\n")
    assert [h["version"] for h in bob.json("history", "drafting", "notes.md")] == [1, 2]


def test_rollback_is_reported_by_a_batch_put(org: Org, tmp_path: Path) -> None:
    """A put of many files learns which documents exist from one listing; a document we pinned
    still has its versions checked, so hiding versions (or the whole document) is caught, and
    the batch stores no fork of it."""
    alice = org.alice
    unlock_here(alice)
    doc, other = tmp_path / "notes.md", tmp_path / "other.md"
    v1 = put(alice, "drafting", doc, b"version one\n")
    v2 = put(alice, "drafting", doc, b"version two\n")
    other.write_bytes(b"unrelated\n")
    with rows_deleted(org, v2):
        # The security error itself (not a generic batch failure), and no more uploads after it.
        r = alice.fails("put", "drafting", str(doc), str(other), contains=ROLLBACK)
        assert "files were stored before it" in r.err and "batch" not in r.err
    notes_doc = sql(org, "SELECT doc FROM versions WHERE vid=?", v1)[0][0]
    with rows_deleted(org, v1, v2):
        alice.fails("put", "drafting", str(other), str(doc), contains=ROLLBACK)
        assert sql(org, "SELECT count(*) FROM versions WHERE doc=?", notes_doc) == [(0,)]  # no fork written
    assert sql(org, "SELECT vid FROM versions WHERE doc=? ORDER BY seq", notes_doc) == [(v1,), (v2,)]
    assert [h["version"] for h in alice.json("history", "drafting", "notes.md")] == [1, 2]


# -- team key boxes and PUK boxes --------------------------------------------------------------


def test_team_key_box_of_another_member_served_to_bob(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    alice.ok("team", "create", "ops", "--kind", "program")
    alice.ok("team", "add", "ops", "bob", "--role", "reader")
    drafting, ops = team_id(bob, "drafting"), team_id(bob, "ops")
    alice_id, bob_id = member_id(alice), member_id(bob)
    put(alice, "drafting", tmp_path / "keys.txt", b"team key protected\n")

    def box(team: str, member: str) -> bytes:
        rows = sql(org, "SELECT box FROM team_boxes WHERE team=? AND member=? AND gen=1", team, member)
        assert len(rows) == 1
        return bytes(rows[0][0])

    bobs = box(drafting, bob_id)
    cases = [
        ("alice's box copied over bob's", box(drafting, alice_id)),
        ("bob's box of another team", box(ops, bob_id)),
        ("bob's box with one bit flipped", flip_middle(bobs)),
        ("a fresh key sealed to bob's real PUK", None),
    ]
    for i, (what, forged) in enumerate(cases):
        if forged is None:  # the server knows bob's public PUK: it can seal any key it likes to him
            puk_pk = directory(org).members[bob_id].puk_box_public
            forged = TeamKey.generate(drafting, 1).seal_for(bob_id, 1, puk_pk)
        sql(org, "UPDATE team_boxes SET box=? WHERE team=? AND member=? AND gen=1", forged, drafting, bob_id)
        try:
            err = get_fails(bob, "drafting", "keys.txt", tmp_path / f"out-{i}", "team key box")
            assert "commitment" in err, what
            bob.fails("ls", "drafting", contains="team key box")
        finally:
            sql(org, "UPDATE team_boxes SET box=? WHERE team=? AND member=? AND gen=1", bobs, drafting, bob_id)
    get_ok(bob, "drafting", "keys.txt", tmp_path / "ok", b"team key protected\n")


def test_puk_box_of_another_member_served_to_bob(org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device without a cached PUK fetches its PUK box; the server cannot substitute one."""
    alice, bob = org.alice, org.bob
    put(alice, "drafting", tmp_path / "puk.txt", b"behind the member key\n")
    bob_id, alice_id = member_id(bob), member_id(alice)
    # Bob's device forgets its PUK (as a device that never cached it would be).
    monkeypatch.delenv("MVAULT_SESSION", raising=False)
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(bob.passphrase_file))
    home = Home(bob.home)
    secrets = home.unlock()
    real_puk = secrets.puks.pop(1)
    home.save_secrets(secrets)

    (bob_box,) = sql(org, "SELECT box FROM puk_boxes WHERE member=?", bob_id)[0]
    (alice_box,) = sql(org, "SELECT box FROM puk_boxes WHERE member=?", alice_id)[0]
    bob_device = directory(org).members[bob_id].devices
    (device,) = bob_device.values()
    fake_puk = PukKeys.generate(1).seal_for_device(bob_id, device.box_public)
    for i, forged in enumerate((alice_box, flip_middle(bytes(bob_box)), fake_puk)):
        sql(org, "UPDATE puk_boxes SET box=? WHERE member=?", forged, bob_id)
        try:
            get_fails(bob, "drafting", "puk.txt", tmp_path / f"out-{i}", "PUK box")
        finally:
            sql(org, "UPDATE puk_boxes SET box=? WHERE member=?", bob_box, bob_id)
    assert 1 not in Home(bob.home).unlock().puks  # nothing forged was cached
    get_ok(bob, "drafting", "puk.txt", tmp_path / "ok", b"behind the member key\n")
    assert Home(bob.home).unlock().puks[1].seed == real_puk.seed


# -- chains ------------------------------------------------------------------------------------


def test_altered_team_link_is_rejected(org: Org, tmp_path: Path) -> None:
    """The server changes bob's role in the team.add link (writer -> admin) and serves it."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    put(alice, "drafting", tmp_path / "c.txt", b"chain\n")
    tid = team_id(bob, "drafting")
    links = directory(org).team_links[tid]
    assert [link.type for link in links] == ["team.create", "team.add"]
    original = links[1]

    def promote(inner: dict[str, Any]) -> None:
        body = dict(inner["body"])
        assert body["role"] == "writer"
        body["role"] = "admin"
        inner["body"] = body

    def redate(inner: dict[str, Any]) -> None:
        inner["time"] += 1

    for change in (promote, redate):
        links[1] = relink(original, change)
        try:
            bob.fails("whoami", contains=SIGNATURE)
            alice.fails("team", "show", "drafting", contains=SIGNATURE)
            get_fails(bob, "drafting", "c.txt", tmp_path / f"out-{change.__name__}", SIGNATURE)
        finally:
            links[1] = original
    # The signature itself altered.
    sig_flipped = parse_link(encode({**dec(original.wire), "sig": flip_middle(original.sig)}))
    links[1] = sig_flipped
    try:
        bob.fails("whoami", contains=SIGNATURE)
    finally:
        links[1] = original
    get_ok(bob, "drafting", "c.txt", tmp_path / "ok", b"chain\n")


def test_forged_team_links_are_rejected(org: Org, tmp_path: Path) -> None:
    """Links the server makes up: signed with its own key, or by a member it invented."""
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    put(alice, "drafting", tmp_path / "f.txt", b"forged\n")
    tid, alice_id = team_id(bob, "drafting"), member_id(alice)
    d = directory(org)
    links = d.team_links[tid]
    head = links[-1]
    server_device = DeviceKeys.generate()

    # 1. A team.add in alice's name, signed by a device the server made up.
    fake = make_link(chain=tid, seq=head.seq + 1, prev=head.hash, time=head.time + 1, signer=alice_id,
                     device=server_device, type_="team.add",
                     body={"member": alice_id, "role": "admin", "until": None, "org_seq": d.require_org().seq,
                           "key": {"gen": 1, "boxes": []}})
    links.append(fake)
    try:
        bob.fails("whoami", contains="not an active device")
        get_fails(bob, "drafting", "f.txt", tmp_path / "out-device", "not an active device")
    finally:
        links.remove(fake)

    # 2. The same link claiming alice's real device: the signature cannot match.
    real_device = next(iter(d.members[alice_id].devices))
    claimed = relink(fake, lambda inner: inner.__setitem__("device", real_device))
    links.append(claimed)
    try:
        bob.fails("whoami", contains=SIGNATURE)
    finally:
        links.remove(claimed)

    # 3. A member the server invented (a valid, self-signed member chain) adds itself as admin.
    intruder_dev, intruder_puk = DeviceKeys.generate(), PukKeys.generate(1)
    intruder_id = member_id_for(intruder_dev.sign_public)
    puk_box = intruder_puk.seal_for_device(intruder_id, intruder_dev.box_public)
    member_link = make_link(
        chain=None, seq=1, prev=None, time=int(time.time()), signer=intruder_id, device=intruder_dev,
        type_="member.create",
        body={"name": "mallory",
              "device": {"id": intruder_dev.device_id, "sign_pk": intruder_dev.sign_public,
                         "box_pk": intruder_dev.box_public, "name": "device-1", "kind": "device"},
              "puk": {"gen": 1, "sign_pk": intruder_puk.sign_public, "box_pk": intruder_puk.box_public},
              "puk_boxes": [{"device": intruder_dev.device_id, "hash": box_hash(puk_box)}]},
    )
    key = TeamKey.generate(tid, 1)
    box = key.seal_for(intruder_id, 1, intruder_puk.box_public)
    add = make_link(chain=tid, seq=head.seq + 1, prev=head.hash, time=max(head.time + 1, int(time.time())),
                    signer=intruder_id, device=intruder_dev, type_="team.add",
                    body={"member": intruder_id, "role": "admin", "until": None, "org_seq": d.require_org().seq,
                          "key": {"gen": 1, "boxes": [{"member": intruder_id, "puk_gen": 1,
                                                        "hash": box_hash(box)}]}})
    d.members[intruder_id] = MemberState.create(member_link)
    d.member_links[intruder_id] = [member_link]
    links.append(add)
    try:
        bob.fails("whoami", contains="may not add")
        alice.fails("team", "show", "drafting", contains="may not add")
        get_fails(bob, "drafting", "f.txt", tmp_path / "out-intruder", "may not add")
    finally:
        links.remove(add)
        del d.members[intruder_id], d.member_links[intruder_id]
    get_ok(bob, "drafting", "f.txt", tmp_path / "ok", b"forged\n")


def test_chain_rollback_after_pin_is_detected(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    put(alice, "drafting", tmp_path / "r.txt", b"rollback\n")
    bob.ok("whoami")  # bob has pinned the team chain at its team.add link
    tid = team_id(bob, "drafting")
    d = directory(org)

    # The team chain's last link dropped.
    last = d.team_links[tid].pop()
    try:
        bob.fails("whoami", contains=ROLLBACK)
        alice.fails("team", "ls", contains=ROLLBACK)
        get_fails(bob, "drafting", "r.txt", tmp_path / "out-team", ROLLBACK)
    finally:
        d.team_links[tid].append(last)

    # The organization chain's last link (bob's join) dropped.
    join = d.org_links.pop()
    assert join.type == "org.join"
    try:
        bob.fails("whoami", contains=ROLLBACK)
        alice.fails("whoami", contains=ROLLBACK)
    finally:
        d.org_links.append(join)

    # The whole team hidden from the directory.
    team = d.teams.pop(tid)
    try:
        alice.fails("whoami", contains="no longer shows")
    finally:
        d.teams[tid] = team

    # The links reordered (team.add served first).
    links = d.team_links[tid]
    links.reverse()
    try:
        bob.fails("whoami", contains="must start with team.create")
    finally:
        links.reverse()
    get_ok(bob, "drafting", "r.txt", tmp_path / "ok", b"rollback\n")


def test_forged_link_in_storage_stops_the_server(org: Org, tmp_path: Path) -> None:
    """The server replays its own chains at start: an altered stored link is refused there."""
    alice, bob = org.alice, org.bob
    tid = team_id(bob, "drafting")
    copy = tmp_path / "server-copy"
    org.server, config = storage_copy(org.server, copy)
    dst = copy_db(copy, config)
    try:
        (wire,) = dst.execute("SELECT wire FROM links WHERE chain=? AND seq=2", (tid,)).fetchone()

        def promote(inner: dict[str, Any]) -> None:
            inner["body"] = {**inner["body"], "role": "admin"}

        forged = relink(parse_link(bytes(wire)), promote)
        dst.execute("UPDATE links SET wire=? WHERE chain=? AND seq=2", (forged.wire, tid))
    finally:
        dst.close()
    with pytest.raises(VaultError, match="signature"):
        ServerThread(copy, **config).start()
    # The real server (untouched) still serves both members.
    alice.ok("whoami")
    bob.ok("whoami")
