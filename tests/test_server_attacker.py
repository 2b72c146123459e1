"""The server is the attacker: it tampers with what it stores and serves; clients catch it.

Every test stores documents through the real ``mvault`` CLI, then changes the server's
bytes directly -- the SQLite rows (``versions.record``, ``versions.blob``, ``team_boxes.box``,
``puk_boxes.box``), the ciphertext blob files under ``data_dir/blobs/xx/<vid>``, and the chain
links the server holds in memory (it replays and validates its own stored chains at start, so
a forged link in storage stops the server itself, which is tested too). The member's next
``mvault get`` / ``ls`` / ``history`` / ``whoami`` must then fail with exit code 1 and one clear
line on stderr, and ``get`` must leave nothing behind: no output file, no ``.part`` temporary
file, and an existing file at the output path is left untouched. After the damage is undone
the same command succeeds again, which shows the failure came from the tampering alone.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from client.home import Home
from server.context import DIRECTORY
from server.directory import Directory
from tests.conftest import Member, Org, ServerThread
from tests.helpers.db import rows_deleted, sql
from tests.helpers.forgery import relink
from tests.helpers.members import get_ok, put, unlock_fast
from vault.chains import MemberState, member_id_for
from vault.encoding import decode, encode
from vault.errors import VaultError
from vault.keys import DeviceKeys, PukKeys
from vault.links import make_link, parse_link
from vault.teamkeys import TeamKey, box_hash

MiB = 1024 * 1024
HEADER = 24  # secretstream header
FRAME_CT = MiB + 17  # one full ciphertext frame
BIG = 3 * MiB + 1000  # three full frames and a final frame of 1000 bytes

SIGNATURE = "signature does not verify"
DECRYPTION = "decryption failed"
ROLLBACK = "rolled back"


# -- helpers ------------------------------------------------------------------------------------


def version_row(org: Org, vid: str) -> dict[str, Any]:
    rows = sql(org, "SELECT vid, team, doc, seq, record, blob FROM versions WHERE vid=?", vid)
    assert rows, f"no version {vid}"
    return dict(zip(("vid", "team", "doc", "seq", "record", "blob"), rows[0], strict=True))


def blob_file(org: Org, blob: str) -> Path:
    path = org.server.data_dir / "blobs" / blob[:2] / blob
    assert path.is_file(), path
    return path


@contextmanager
def blob_replaced(org: Org, vid: str, data: bytes) -> Iterator[None]:
    path = blob_file(org, version_row(org, vid)["blob"])
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)


@contextmanager
def column_replaced(org: Org, vid: str, column: str, value: Any) -> Iterator[None]:
    assert column in ("record", "blob", "team", "doc")
    original = version_row(org, vid)[column]
    sql(org, f"UPDATE versions SET {column}=? WHERE vid=?", value, vid)
    try:
        yield
    finally:
        sql(org, f"UPDATE versions SET {column}=? WHERE vid=?", original, vid)


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def flip_middle(data: bytes) -> bytes:
    return flip(data, len(data) // 2)


def dec(data: bytes) -> Any:
    """Decode canonical bytes into plain (mutable) Python values."""
    return decode(data)


def edit_record(raw: bytes, field: str, change: Callable[[Any], Any]) -> bytes:
    """Re-encode a stored record with one field changed (``core.x`` edits the signed header)."""
    rec = dict(dec(raw))
    if field.startswith("core."):
        core = dict(dec(rec["core"]))
        core[field[5:]] = change(core[field[5:]])
        rec["core"] = encode(core)
    else:
        rec[field] = change(rec[field])
    return encode(rec)


def frames(body: bytes) -> tuple[bytes, list[bytes]]:
    """Split a ciphertext body into the secretstream header and its frames."""
    header, rest = body[:HEADER], body[HEADER:]
    out = [rest[i : i + FRAME_CT] for i in range(0, len(rest), FRAME_CT)]
    return header, out


def get_fails(member: Member, team: str, name: str, where: Path, contains: str, *,
              version: int | None = None, existing: bytes | None = None) -> str:
    """``mvault get`` fails with one clear line and leaves nothing in the output directory.

    With ``existing`` the output path already holds a file, which must stay as it was.
    """
    where.mkdir(parents=True, exist_ok=False)
    target = where / "result.bin"
    if existing is not None:
        target.write_bytes(existing)
    args = ["get", team, name, "-o", str(target)]
    if version is not None:
        args += ["--version", str(version)]
    r = member.fails(*args, contains=contains)
    if existing is None:
        assert not target.exists(), "a failed get wrote its output file"
        assert list(where.iterdir()) == [], f"a failed get left files behind: {list(where.iterdir())}"
    else:
        assert target.read_bytes() == existing, "a failed get changed the existing output file"
        assert [p.name for p in where.iterdir()] == ["result.bin"], f"left behind: {list(where.iterdir())}"
    assert not list(member.home.parent.glob("**/*.part")), "a .part temporary file was left behind"
    return r.err


def team_id(member: Member, name: str) -> str:
    for t in member.json("team", "ls"):
        if t["name"] == name:
            return str(t["team"])
    raise AssertionError(f"no team {name}")


def member_id(member: Member) -> str:
    return str(member.json("whoami")["member"])


def directory(org: Org) -> Directory:
    d = org.server.app[DIRECTORY]
    assert isinstance(d, Directory)
    return d


# -- the document record (signed header) ---------------------------------------------------------


RECORD_CASES: list[tuple[str, str, Callable[[Any], Any], str]] = [
    ("header time", "core.time", lambda v: v + 1, SIGNATURE),
    ("header nonce bit", "core.nonce", flip_middle, SIGNATURE),
    ("header key commitment bit", "core.key_commit", flip_middle, SIGNATURE),
    ("header generation", "core.gen", lambda v: v + 1, SIGNATURE),
    ("header team state", "core.team_seq", lambda v: v - 1, SIGNATURE),
    ("header body length", "core.body_len", lambda v: v + 17, SIGNATURE),
    ("wrapped data key bit", "wrapped", flip_middle, SIGNATURE),
    ("encrypted metadata bit", "meta", flip_middle, SIGNATURE),
    ("signature bit", "sig", flip_middle, SIGNATURE),
    ("signed body hash bit", "body_hash", flip_middle, SIGNATURE),
]


def test_record_tampering_is_caught_before_anything_is_written(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_fast(alice, bob)
    content = os.urandom(5000)
    vid = put(alice, "drafting", tmp_path / "report.pdf", content)
    original = version_row(org, vid)["record"]
    for i, (what, field, change, expect) in enumerate(RECORD_CASES):
        forged = edit_record(original, field, change)
        assert forged != original
        with column_replaced(org, vid, "record", forged):
            err = get_fails(bob, "drafting", "report.pdf", tmp_path / f"out-{i}", expect)
            assert err, what
    # Raw bit flips straight in the stored bytes: inside the signed header, and in the structure.
    core = dec(dec(original)["core"])
    assert isinstance(core["nonce"], bytes)
    at = original.index(core["nonce"]) + 3
    with column_replaced(org, vid, "record", flip(original, at, 3)):
        get_fails(bob, "drafting", "report.pdf", tmp_path / "out-raw-core", SIGNATURE)
    with column_replaced(org, vid, "record", flip(original, 0)):
        get_fails(bob, "drafting", "report.pdf", tmp_path / "out-raw-0", "malformed document record")
    with column_replaced(org, vid, "record", original[:-10]):
        get_fails(bob, "drafting", "report.pdf", tmp_path / "out-raw-short", "malformed document record")
    # The listing and the history verify the same signatures.
    with column_replaced(org, vid, "record", edit_record(original, "sig", flip_middle)):
        bob.fails("ls", "drafting", contains=SIGNATURE)
        bob.fails("history", "drafting", "report.pdf", contains=SIGNATURE)
        get_fails(bob, "drafting", "report.pdf", tmp_path / "out-existing", SIGNATURE, existing=b"keep me")
    get_ok(bob, "drafting", "report.pdf", tmp_path / "out-ok", content)


# -- the ciphertext body -----------------------------------------------------------------------


def test_bit_flips_in_the_body(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_fast(alice, bob)
    content = os.urandom(BIG)
    vid = put(alice, "drafting", tmp_path / "big.bin", content)
    body = blob_file(org, version_row(org, vid)["blob"]).read_bytes()
    assert len(body) == HEADER + 3 * FRAME_CT + 1000 + 17
    cases = [
        ("stream header", flip(body, 5)),
        ("stream header last byte", flip(body, HEADER - 1, 7)),
        ("middle of the second frame", flip(body, HEADER + FRAME_CT + FRAME_CT // 2)),
        ("first frame's tag byte", flip(body, HEADER)),
        ("final frame's MAC", flip(body, len(body) - 1)),
    ]
    for i, (what, data) in enumerate(cases):
        with blob_replaced(org, vid, data):
            err = get_fails(bob, "drafting", "big.bin", tmp_path / f"out-{i}", DECRYPTION)
            assert err, what
    with blob_replaced(org, vid, flip(body, HEADER + 2 * FRAME_CT + 100)):
        get_fails(bob, "drafting", "big.bin", tmp_path / "out-existing", DECRYPTION, existing=b"old contents")
    get_ok(bob, "drafting", "big.bin", tmp_path / "out-ok", content)


def test_frames_reordered_duplicated_dropped_truncated(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_fast(alice, bob)
    content = os.urandom(BIG)
    vid = put(alice, "drafting", tmp_path / "big.bin", content)
    body = blob_file(org, version_row(org, vid)["blob"]).read_bytes()
    header, fr = frames(body)
    assert [len(f) for f in fr] == [FRAME_CT, FRAME_CT, FRAME_CT, 1000 + 17]
    assert header + b"".join(fr) == body
    cases = [
        ("first two frames swapped", header + fr[1] + fr[0] + fr[2] + fr[3], DECRYPTION),
        ("second and third frames swapped", header + fr[0] + fr[2] + fr[1] + fr[3], DECRYPTION),
        ("a frame repeated in place of the next", header + fr[0] + fr[0] + fr[2] + fr[3], DECRYPTION),
        ("a frame replayed (inserted twice)", header + fr[0] + fr[1] + fr[1] + fr[2] + fr[3], "longer"),
        ("a middle frame dropped", header + fr[0] + fr[2] + fr[3], DECRYPTION),
        ("the final frame moved first", header + fr[3] + fr[0] + fr[1] + fr[2], DECRYPTION),
        ("truncated before the final frame", header + fr[0] + fr[1] + fr[2], "truncated"),
        ("truncated after the first frame", header + fr[0], "truncated"),
        ("only the stream header", header, "truncated"),
        ("empty body", b"", "truncated"),
        ("cut inside the final frame", body[:-5], "truncated"),
        ("bytes appended after the final frame", body + b"\x00" * 17, "longer"),
        ("frames of another upload of the same content", None, DECRYPTION),
    ]
    other_vid = put(alice, "drafting", tmp_path / "big-copy.bin", content)
    other = blob_file(org, version_row(org, other_vid)["blob"]).read_bytes()
    assert len(other) == len(body)
    for i, (what, data, expect) in enumerate(cases):
        if data is None:  # same plaintext, same length, another data key: the header cannot vouch for it
            data = header + other[HEADER:]
        with blob_replaced(org, vid, data):
            err = get_fails(bob, "drafting", "big.bin", tmp_path / f"out-{i}", expect)
            assert err, what
    get_ok(bob, "drafting", "big.bin", tmp_path / "out-ok", content)


# -- one version's header with another's body --------------------------------------------------


def test_header_of_one_version_with_the_body_of_another(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_fast(alice, bob)
    v1_content, v2_content = os.urandom(4000), os.urandom(4000)  # equal sizes: only cryptography can tell
    doc = tmp_path / "minutes.txt"
    v1 = put(alice, "drafting", doc, v1_content)
    v2 = put(bob, "drafting", doc, v2_content)
    r1, r2 = version_row(org, v1), version_row(org, v2)
    assert (r1["seq"], r2["seq"]) == (1, 2)

    # The server points v2 at v1's blob (and the other way round).
    with column_replaced(org, v2, "blob", r1["blob"]), column_replaced(org, v1, "blob", r2["blob"]):
        get_fails(bob, "drafting", "minutes.txt", tmp_path / "swap-latest", DECRYPTION)
        get_fails(bob, "drafting", "minutes.txt", tmp_path / "swap-v1", DECRYPTION, version=1)
    # The blob files' bytes exchanged on disk.
    b1, b2 = (blob_file(org, r["blob"]).read_bytes() for r in (r1, r2))
    with blob_replaced(org, v2, b1), blob_replaced(org, v1, b2):
        get_fails(alice, "drafting", "minutes.txt", tmp_path / "files-latest", DECRYPTION)
        get_fails(alice, "drafting", "minutes.txt", tmp_path / "files-v1", DECRYPTION, version=1)
    # The record rows exchanged: v2's header claimed as version 1 and the reverse.
    with column_replaced(org, v1, "record", r2["record"]), column_replaced(org, v2, "record", r1["record"]):
        get_fails(bob, "drafting", "minutes.txt", tmp_path / "records", "reordered")
        bob.fails("history", "drafting", "minutes.txt", contains="reordered")
    # Whole rows exchanged (header and body travel together, but the order is wrong).
    with column_replaced(org, v1, "record", r2["record"]), column_replaced(org, v2, "record", r1["record"]), \
            column_replaced(org, v1, "blob", r2["blob"]), column_replaced(org, v2, "blob", r1["blob"]):
        get_fails(bob, "drafting", "minutes.txt", tmp_path / "rows", "reordered")
    # v1's header served in v2's place (v2 vanishes behind a replayed v1).
    with column_replaced(org, v2, "record", r1["record"]):
        get_fails(bob, "drafting", "minutes.txt", tmp_path / "replayed", "reordered")
    get_ok(bob, "drafting", "minutes.txt", tmp_path / "ok-2", v2_content)
    get_ok(alice, "drafting", "minutes.txt", tmp_path / "ok-1", v1_content, version=1)


def test_body_of_a_different_valid_version_id(org: Org, tmp_path: Path) -> None:
    """The server answers the body request for one version with the (valid) body of another."""
    alice, bob = org.alice, org.bob
    unlock_fast(alice, bob)
    a_content, b_content = os.urandom(MiB + 3), os.urandom(MiB + 3)
    va = put(alice, "drafting", tmp_path / "a.bin", a_content)
    vb = put(bob, "drafting", tmp_path / "b.bin", b_content)
    ra, rb = version_row(org, va), version_row(org, vb)
    assert ra["blob"] != rb["blob"] and ra["doc"] != rb["doc"]
    with column_replaced(org, va, "blob", rb["blob"]):
        get_fails(bob, "drafting", "a.bin", tmp_path / "by-row", DECRYPTION)
    with blob_replaced(org, va, blob_file(org, rb["blob"]).read_bytes()):
        get_fails(bob, "drafting", "a.bin", tmp_path / "by-file", DECRYPTION, existing=b"previous a.bin")
    # b.bin itself is still served correctly: only the mismatched pairing fails.
    get_ok(bob, "drafting", "b.bin", tmp_path / "ok-b", b_content)
    get_ok(bob, "drafting", "a.bin", tmp_path / "ok-a", a_content)


# -- a document of one team served as another team's -------------------------------------------


def test_document_of_team_a_served_as_team_b(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_fast(alice, bob)
    alice.ok("team", "create", "ops", "--kind", "program")
    alice.ok("team", "add", "ops", "bob", "--role", "writer")
    drafting, ops = team_id(bob, "drafting"), team_id(bob, "ops")
    secret, public = b"drafting-only " * 300, b"ops document. " * 300
    assert len(secret) == len(public)
    va = put(alice, "drafting", tmp_path / "plan.md", secret)
    vb = put(alice, "ops", tmp_path / "plan.md", public)
    ra, rb = version_row(org, va), version_row(org, vb)
    assert (ra["team"], rb["team"]) == (drafting, ops)

    # Team A's signed record (and its body) served under team B's document id.
    with column_replaced(org, vb, "record", ra["record"]):
        get_fails(bob, "ops", "plan.md", tmp_path / "record", "another document or team")
        bob.fails("history", "ops", "plan.md", contains="another document or team")
        bob.fails("ls", "ops", contains="another team")
        with column_replaced(org, vb, "blob", ra["blob"]):
            get_fails(bob, "ops", "plan.md", tmp_path / "record-and-body", "another document or team")
    # Only the body of team A's version behind team B's header.
    with column_replaced(org, vb, "blob", ra["blob"]):
        get_fails(bob, "ops", "plan.md", tmp_path / "body", DECRYPTION)
    # Team A's whole row moved into team B (the server re-files it under B's document id).
    with rows_deleted(org, vb), column_replaced(org, va, "team", ops), column_replaced(org, va, "doc", rb["doc"]):
        get_fails(bob, "ops", "plan.md", tmp_path / "moved", "another document or team")
    get_ok(bob, "ops", "plan.md", tmp_path / "ok-ops", public)
    get_ok(bob, "drafting", "plan.md", tmp_path / "ok-drafting", secret)


# -- rollback ----------------------------------------------------------------------------------


def test_rollback_of_a_document_is_reported(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_fast(alice, bob)
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
    unlock_fast(alice)
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
    unlock_fast(alice, bob)
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
    unlock_fast(alice, bob)
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
    unlock_fast(alice, bob)
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
    unlock_fast(alice, bob)
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
    copy.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(org.server.data_dir / name, copy / name)
    src, dst = org.server.db(), sqlite3.connect(copy / "vault.db")
    try:
        src.backup(dst)
    finally:
        src.close()
    try:
        (wire,) = dst.execute("SELECT wire FROM links WHERE chain=? AND seq=2", (tid,)).fetchone()

        def promote(inner: dict[str, Any]) -> None:
            inner["body"] = {**inner["body"], "role": "admin"}

        forged = relink(parse_link(bytes(wire)), promote)
        dst.execute("UPDATE links SET wire=? WHERE chain=? AND seq=2", (forged.wire, tid))
        dst.commit()
    finally:
        dst.close()
    with pytest.raises(VaultError, match="signature"):
        ServerThread(copy).start()
    # The real server (untouched) still serves both members.
    alice.ok("whoami")
    bob.ok("whoami")
