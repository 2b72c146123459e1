"""Issue 3 end to end: removal really cuts access off, roles, devices, recovery, verification."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from tests.conftest import MVAULT, Member, Org, join_member
from tests.helpers.db import sql
from tests.helpers.keyholder import open_box
from tests.helpers.members import unlock_at_first_run, unlock_here
from tests.helpers.postgres import end_to_end_backends
from vault.envelope import BodyDecryptor, Record, open_record
from vault.errors import DecryptionFailed
from vault.keys import PukKeys
from vault.teamkeys import TeamKey

pytestmark = end_to_end_backends()  # SQLite; both with MVAULT_ALL_BACKENDS=1 (tests/conftest.py "Backends")


@pytest.fixture(autouse=True)
def _agents(org: Org) -> None:
    """alice's and bob's commands go through an unlock agent from their first: no Argon2id each
    (~70 of the file's ~100 Argon2id-paying CLI runs; session 21). The unlock itself: tests/test_auth.py.
    No test here looks at the unlock state."""
    unlock_at_first_run(org.alice, org.bob)


def _puk_seeds(member: Member, monkeypatch: pytest.MonkeyPatch) -> dict[int, PukKeys]:
    monkeypatch.setenv("MVAULT_PASSPHRASE_FILE", str(member.passphrase_file))
    return dict(Home(member.home).unlock().puks)


def _open_box(puks: dict[int, PukKeys], box: bytes) -> TeamKey:
    key = open_box(puks, box)
    if key is None:
        raise DecryptionFailed()
    return key


def _decrypt(record: bytes, blob: Path, key: TeamKey) -> bytes:
    opened = open_record(Record.parse(record), key)
    dec = BodyDecryptor(opened)
    out = b"".join(dec.feed(blob.read_bytes()))
    dec.finish()
    return out


def test_removed_member_cannot_decrypt_anything_created_after_removal(
        org: Org, make_member: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    carol = join_member(org, make_member, "carol")
    org.alice.ok("team", "create", "circle-3", "--kind", "circle")
    org.alice.ok("team", "add", "circle-3", "bob", "--role", "writer")
    org.alice.ok("team", "add", "circle-3", "carol", "--role", "writer")
    before = tmp_path / "before.md"
    before.write_text("written while carol was in the circle")
    carol.ok("put", "circle-3", str(before))
    carol_puks = _puk_seeds(carol, monkeypatch)  # carol keeps her keys after removal

    removed = org.alice.json("team", "remove", "circle-3", "carol")
    assert removed["rotated"] is True
    assert org.alice.json("team", "show", "circle-3")["generation"] == 2
    after = tmp_path / "after.md"
    after.write_text("SECRET-AFTER-REMOVAL plans for the spring")
    org.bob.ok("put", "circle-3", str(after))
    before.write_text("second version, after removal")
    org.bob.ok("put", "circle-3", str(before))

    # Through the server: the team is gone for her.
    carol.fails("ls", "circle-3", contains="no team named")
    carol.fails("get", "circle-3", "after.md", "-o", str(tmp_path / "x"), contains="no team named")

    # With a full copy of the server's database and blobs, and her own old keys:
    data = org.server.data_dir
    team_id = org.alice.json("team", "show", "circle-3")["team"]
    boxes = sql(org, "SELECT gen, member, box FROM team_boxes WHERE team=?", team_id)
    readable = {}
    for _gen, _member, box in boxes:
        try:
            key = _open_box(carol_puks, bytes(box))
            readable[key.gen] = key
        except DecryptionFailed:
            pass
    assert set(readable) == {1}, "a removed member must open no box of a later generation"
    versions = sorted(sql(org, "SELECT record, blob FROM versions WHERE team=?", team_id),
                      key=lambda v: Record.parse(bytes(v[0])).core.gen)  # the one written before her removal first
    assert len(versions) == 3
    old_record, old_blob = versions[0]
    # What she had before: still readable (SECURITY.md says so).
    assert _decrypt(bytes(old_record), data / "blobs" / old_blob[:2] / old_blob, readable[1]) == (
        b"written while carol was in the circle")
    for record, blob in versions[1:]:
        rec = Record.parse(bytes(record))
        assert rec.core.gen == 2
        with pytest.raises(DecryptionFailed):
            _decrypt(bytes(record), data / "blobs" / blob[:2] / blob, readable[1])
        with pytest.raises(DecryptionFailed):
            open_record(rec, TeamKey(team_id, 2, readable[1].seed))


def test_ncc_outside_a_circle_adds_and_removes_without_its_keys(org: Org, make_member: Any,
                                                                 tmp_path: Path) -> None:
    dana = join_member(org, make_member, "dana")
    erin = join_member(org, make_member, "erin")
    org.alice.ok("role", "grant", "dana", "ncc")
    org.alice.ok("team", "create", "circle-5", "--kind", "circle")
    org.alice.ok("team", "add", "circle-5", "bob", "--role", "admin")
    doc = tmp_path / "minutes.md"
    doc.write_text("circle minutes")
    org.bob.ok("put", "circle-5", str(doc))

    # NCC dana is not in the circle: she may add erin, but cannot give her a key she does not hold.
    added = dana.json("team", "add", "circle-5", "erin", "--role", "reader")
    assert added["key_shared"] is False
    dana.fails("get", "circle-5", "minutes.md", "-o", str(tmp_path / "d"), contains="no key")
    erin.fails("ls", "circle-5", contains="no key")
    pending = dana.json("team", "show", "circle-5")["pending"]
    assert any("erin" in p and "share" in p for p in pending)

    # A holder's client shares the key on its next run, whatever the command.
    r = org.bob.ok("whoami")
    assert "shared the key of team circle-5 with erin" in r.err
    erin.ok("get", "circle-5", "minutes.md", "-o", str(tmp_path / "e.md"))
    assert (tmp_path / "e.md").read_text() == "circle minutes"

    # NCC dana removes erin: no key to rotate with, so new content waits for a holder.
    assert dana.json("team", "remove", "circle-5", "erin")["rotated"] is False
    assert any("rotated" in p for p in dana.json("team", "show", "circle-5")["pending"])
    r = org.bob.ok("put", "circle-5", str(doc))  # bob's client rotates first, then writes
    assert "rotated the key of team circle-5" in r.err
    show = org.bob.json("team", "show", "circle-5")
    assert show["generation"] == 2 and show["pending"] == []
    erin.fails("ls", "circle-5", contains="no team named")


def test_leaving_triggers_rotation_and_history_reaches_new_members(org: Org, make_member: Any,
                                                                   tmp_path: Path) -> None:
    doc = tmp_path / "old.md"
    doc.write_text("from generation one")
    org.alice.ok("put", "drafting", str(doc))
    org.bob.ok("leave", "drafting")
    org.bob.fails("ls", "drafting", contains="no team named")
    r = org.alice.ok("team", "show", "drafting")
    assert "rotated the key of team drafting" in r.err
    frank = join_member(org, make_member, "frank")
    org.alice.ok("team", "add", "drafting", "frank", "--role", "reader")
    frank.ok("get", "drafting", "old.md", "-o", str(tmp_path / "f.md"))  # gen 1 via the history chain
    assert (tmp_path / "f.md").read_text() == "from generation one"


def test_no_history_team_keeps_old_documents_from_new_members(org: Org, make_member: Any, tmp_path: Path) -> None:
    org.alice.ok("team", "create", "action", "--kind", "program", "--no-history")
    org.alice.ok("team", "add", "action", "bob", "--role", "writer")
    doc = tmp_path / "plan.md"
    doc.write_text("before the rotation")
    org.alice.ok("put", "action", str(doc))
    org.alice.ok("team", "remove", "action", "bob")
    gail = join_member(org, make_member, "gail")
    org.alice.ok("team", "add", "action", "gail", "--role", "reader")
    gail.fails("get", "action", "plan.md", "-o", str(tmp_path / "g.md"), contains="no key for generation 1")
    assert not (tmp_path / "g.md").exists()
    listed = gail.json("ls", "action")
    assert [(d["name"], d["version"]) for d in listed] == [("(no key for generation 1)", 1)]
    # The name key survives rotations: a late joiner's put is version 2 of the same document.
    org.alice.ok("team", "role", "action", "gail", "writer")
    doc.write_text("after the rotation")
    assert gail.json("put", "action", str(doc))[0]["version"] == 2
    assert [d["name"] for d in org.alice.json("ls", "action")] == ["plan.md"]
    gail.ok("get", "action", "plan.md", "-o", str(tmp_path / "g2.md"))
    assert (tmp_path / "g2.md").read_text() == "after the rotation"


def test_admission_roles_and_bad_input(org: Org, make_member: Any) -> None:
    unlock_here(org.alice, org.bob)  # their ~30 commands skip Argon2id (the unlock itself: tests/test_auth.py)
    carol: Member = make_member("carol")
    carol.ok("join", org.bob.json("invite", "--note", "bootcamp spring")["invite"], "--name", "carol")
    assert {m["name"]: m["status"] for m in org.alice.json("members")}["carol"] == "pending"
    org.alice.fails("team", "add", "drafting", "carol", contains="not an admitted member")
    org.bob.fails("admit", "carol", contains="may not admit")
    org.alice.ok("admit", "carol")
    org.alice.fails("admit", "carol", contains="already admitted")
    org.alice.ok("team", "add", "drafting", "carol", "--role", "reader")

    org.bob.fails("role", "grant", "carol", "ncc", contains="may not grant")
    org.alice.ok("role", "grant", "carol", "security", "--until", "2099-01-01")
    roles = {m["name"]: m["roles"] for m in org.alice.json("members")}
    assert roles["carol"] == ["member", "security"]
    org.alice.fails("role", "grant", "carol", "staff", "--until", "2001-01-01", contains="past")
    org.alice.fails("role", "revoke", "alice", "ncc", contains="last NCC")
    org.alice.ok("role", "grant", "bob", "ncc")
    org.bob.ok("team", "create", "circle-9", "--kind", "circle")
    org.alice.ok("role", "revoke", "bob", "ncc")
    org.bob.fails("team", "create", "circle-10", "--kind", "circle", contains="may not create")

    # Bad input: unknown member, duplicate add, last admin, past expiry; nothing changes.
    org.alice.fails("team", "add", "drafting", "nobody", contains="no member named")
    org.alice.fails("team", "add", "drafting", "bob", contains="already in team")
    org.alice.fails("team", "role", "drafting", "alice", "writer", contains="last admin")
    org.alice.fails("team", "remove", "drafting", "alice", contains="leave")
    org.alice.fails("leave", "drafting", contains="last admin")
    org.alice.fails("team", "role", "drafting", "bob", "reader", "--until", "2000-01-01", contains="past")
    join_member(org, make_member, "dave")
    org.alice.fails("team", "add", "drafting", "dave", "--until", "2000-01-01", contains="past")
    assert "dave" not in {m["name"] for m in org.alice.json("team", "show", "drafting")["members"]}


def test_compas_are_readers_only(org: Org, make_member: Any, tmp_path: Path) -> None:
    compa = join_member(org, make_member, "compa1", role="compa")
    org.alice.fails("team", "add", "drafting", "compa1", "--role", "writer", contains="may not hold")
    org.alice.ok("team", "add", "drafting", "compa1", "--role", "reader")
    doc = tmp_path / "update.md"
    doc.write_text("public update")
    org.alice.ok("put", "drafting", str(doc))
    compa.ok("get", "drafting", "update.md", "-o", str(tmp_path / "c.md"))
    compa.fails("put", "drafting", str(doc), contains="may not write")


def test_device_link_revoke_and_recovery(org: Org, make_member: Any, tmp_path: Path) -> None:
    doc = tmp_path / "shared.md"
    doc.write_text("for every device")
    org.alice.ok("put", "drafting", str(doc))
    laptop = Member(tmp_path / "home-alice-laptop", "alice", org.alice.passphrase_file)
    adder = subprocess.Popen([MVAULT, "device", "add", "--json", "--wait", "60"], env=org.alice.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert adder.stdout is not None
    code = json.loads(adder.stdout.readline())["code"]
    laptop.ok("device", "link", code, "--name", "laptop")
    rest, err = adder.communicate(timeout=60)
    assert adder.returncode == 0, err
    assert json.loads(rest.strip().splitlines()[-1])["device"] == "laptop"
    laptop.ok("get", "drafting", "shared.md", "-o", str(tmp_path / "l.md"))
    assert (tmp_path / "l.md").read_text() == "for every device"
    laptop.fails("device", "link", code, contains="already holds an identity")

    gen_before = org.alice.json("team", "show", "drafting")["generation"]
    revoked = org.alice.json("device", "revoke", "laptop")
    assert revoked["puk_gen"] == 2 and any("drafting" in r for r in revoked["rotated"])
    assert org.alice.json("team", "show", "drafting")["generation"] == gen_before + 1
    laptop.fails("whoami", contains="no longer active")
    org.alice.fails("device", "revoke", "device-1", contains="another one of your devices")
    assert [d["name"] for d in org.alice.json("device", "ls") if d["revoked"] is None] == ["device-1"]

    # A paper key restores access on a fresh machine.
    sheet = org.alice.json("recovery-key")
    paper, line = sheet["recovery_key"], ("--server", sheet["server"], "--cert", sheet["cert"])
    fresh = Member(tmp_path / "home-alice-fresh", "alice", org.alice.passphrase_file)
    fresh.ok("recover", paper, *line)
    fresh.ok("get", "drafting", "shared.md", "-o", str(tmp_path / "r.md"))
    assert (tmp_path / "r.md").read_text() == "for every device"
    assert fresh.json("whoami")["member"] == org.alice.json("whoami")["member"]
    Member(tmp_path / "home-x", "x", org.alice.passphrase_file).fails("recover", paper[:-4] + "AAAA", *line)


def test_verification_and_key_change_warnings(org: Org, tmp_path: Path) -> None:
    a = org.alice.json("verify", "bob")
    b = org.bob.json("verify", "alice")
    assert a["safety_number"] == b["safety_number"] and len(a["safety_number"].split()) == 12
    assert a["verified"] == "no"
    assert org.alice.json("verify", "bob", "--confirm")["verified"] == "yes"
    assert {m["name"]: m["verified"] for m in org.alice.json("members")}["bob"] == "yes"

    org.bob.ok("recovery-key")  # bob's device set changes
    r = org.alice.ok("members")
    assert "bob's keys changed" in r.err and "UNVERIFIED" in r.err
    assert {m["name"]: m["verified"] for m in org.alice.json("members")}["bob"] == "changed"
    assert org.alice.json("verify", "bob")["safety_number"] != a["safety_number"]


def test_expired_mo_loses_admin_rights(org: Org, make_member: Any, tmp_path: Path) -> None:
    """Expiry is judged from the signed --until by clients and the server alike."""
    frank = join_member(org, make_member, "frank")
    join_member(org, make_member, "gina")
    org.alice.ok("team", "create", "circle-7", "--kind", "circle")
    tomorrow = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).date().isoformat()
    org.alice.ok("team", "add", "circle-7", "frank", "--role", "admin", "--until", tomorrow)
    frank.ok("team", "add", "circle-7", "bob", "--role", "reader")
    # Three days later (client clock and server clock moved together)...
    frank.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(3 * 86400)
    org.alice.env_extra["MVAULT_TEST_CLOCK_OFFSET"] = str(3 * 86400)
    org.server.advance(3 * 86400)
    frank.fails("team", "add", "circle-7", "gina", "--role", "reader")
    r = org.alice.ok("team", "show", "circle-7", "--json")  # alice's client rotates on this run
    assert "rotated the key of team circle-7" in r.err
    show = r.json()
    assert not [m for m in show["members"] if m["name"] == "frank"][0]["active"]
    assert show["generation"] == 2 and show["pending"] == []
    doc = tmp_path / "after-term.md"
    doc.write_text("after frank's term")
    org.alice.ok("put", "circle-7", str(doc))
    frank.fails("get", "circle-7", "after-term.md", "-o", str(tmp_path / "f.md"))
    assert not (tmp_path / "f.md").exists()
