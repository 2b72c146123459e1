"""The server is the attacker: it tampers with the documents it stores and serves; clients catch it.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Org
from tests.helpers.db import rows_deleted
from tests.helpers.members import get_ok, put, unlock_here
from tests.helpers.tampering import (
    BIG,
    DECRYPTION,
    FRAME_CT,
    HEADER,
    SIGNATURE,
    TAG,
    MiB,
    blob_file,
    blob_replaced,
    column_replaced,
    dec,
    edit_record,
    flip,
    flip_middle,
    frames,
    get_fails,
    team_id,
    version_row,
)

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (tests/helpers/postgres.py)

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
    unlock_here(alice, bob)
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
    unlock_here(alice, bob)
    content = os.urandom(BIG)
    vid = put(alice, "drafting", tmp_path / "big.bin", content)
    body = blob_file(org, version_row(org, vid)["blob"]).read_bytes()
    assert len(body) == HEADER + 3 * FRAME_CT + 1000 + TAG
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
    unlock_here(alice, bob)
    content = os.urandom(BIG)
    vid = put(alice, "drafting", tmp_path / "big.bin", content)
    body = blob_file(org, version_row(org, vid)["blob"]).read_bytes()
    header, fr = frames(body)
    assert [len(f) for f in fr] == [FRAME_CT, FRAME_CT, FRAME_CT, 1000 + TAG]
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
        ("bytes appended after the final frame", body + b"\x00" * TAG, "longer"),
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
    unlock_here(alice, bob)
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
    unlock_here(alice, bob)
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
    unlock_here(alice, bob)
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
