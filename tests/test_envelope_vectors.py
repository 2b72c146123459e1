"""Document envelopes: the shared vectors (each case states its expected outcome).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers.envelope import (
    FRAME_CT,
    HDR,
    STREAM_CHUNK,
    TEAM_A,
    TEAM_B,
    VECTORS,
    Doc,
    data_of,
    expect,
    flip,
    frames_of,
    read_doc,
    replace_record,
    resign,
    write_doc,
)
from vault.encoding import decode, encode
from vault.envelope import (
    FRAME,
)
from vault.errors import (
    BadSignature,
    DecryptionFailed,
    EncodingError,
    IntegrityError,
    Truncated,
    VaultError,
)
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey

# -- vectors -----------------------------------------------------------------------------------------

EXPECT: dict[str, type[VaultError] | None] = {
    "ok": None,
    "bad_signature": BadSignature,
    "truncated": Truncated,
    "decryption_failed": DecryptionFailed,
    "integrity": IntegrityError,
    "encoding": EncodingError,
}


def load_vectors() -> dict[str, Any]:
    data = json.loads(VECTORS.read_text())
    assert data["version"] == 1
    return data  # type: ignore[no-any-return]


VECTOR_DATA = load_vectors()


@dataclass(frozen=True)
class VectorWorld:
    key: TeamKey
    author: DeviceKeys
    doc: Doc
    other: Doc


@pytest.fixture(scope="module")
def world() -> VectorWorld:
    spec = VECTOR_DATA["document"]
    key = TeamKey.generate(TEAM_A, 1)
    author = DeviceKeys.generate()
    size = spec["frames"] * FRAME + spec["extra"]
    doc = write_doc(key, author, data_of(size, 7), spec["write_chunk"])
    other = write_doc(key, author, data_of(size, 8), spec["write_chunk"], seq=2,
                      parent=doc.record.version_id)
    return VectorWorld(key, author, doc, other)


def apply_case(case: dict[str, Any], w: VectorWorld) -> tuple[bytes, bytes, TeamKey, bytes]:
    record = w.doc.record
    record_raw, body, key, signer = record.raw, w.doc.body, w.key, w.author.sign_public
    target = case.get("target")
    bit = case.get("bit", 1)
    if target == "body":
        body = flip(body, case["offset"], bit)
    elif target == "stream_header":
        assert 0 <= case["offset"] < HDR
        body = flip(body, case["offset"], bit)
    elif target == "frame":
        body = flip(body, HDR + case["frame"] * FRAME_CT + case["offset"], bit)
    elif target == "record_field":
        value = getattr(record, case["field"])
        record_raw = replace_record(record, **{case["field"]: flip(value, case["offset"], bit)})
    elif target == "record_raw":
        record_raw = flip(record_raw, case["offset"], bit)
    elif target == "core":
        core = decode(record.core.raw)
        assert isinstance(core, dict)
        if "set" in case:
            core[case["field"]] = case["set"]
        else:
            core[case["field"]] = bytes.fromhex(case["set_hex"])
        if case.get("resign"):
            record_raw = resign(w.author, encode(core), record.wrapped, record.meta, record.body_hash)
        else:
            record_raw = replace_record(record, core=encode(core))
    elif target is not None:
        raise AssertionError(f"unknown target {target!r}")

    frames = frames_of(body)
    op = case.get("op")
    if op == "swap_frames":
        i, j = case["frames"]
        frames[i], frames[j] = frames[j], frames[i]
    elif op == "drop_frames":
        frames = [f for n, f in enumerate(frames) if n not in case["frames"]]
        if "then_append_frame" in case:
            frames.insert(len(frames) - 1, frames[case["then_append_frame"]])
    elif op == "duplicate_frame":
        frames.insert(case["frame"], frames[case["frame"]])
    elif op == "copy_frame":
        frames[case["to"]] = frames[case["from"]]
    elif op == "truncate_body":
        body = body[: case["length"]]
    elif op == "append":
        body = body + bytes.fromhex(case["hex"])
    elif op == "body_of_other_version":
        body = w.other.body
    elif op == "record_of_other_version":
        record_raw = w.other.record.raw
    elif op is not None:
        raise AssertionError(f"unknown op {op!r}")
    if op in ("swap_frames", "drop_frames", "duplicate_frame", "copy_frame"):
        body = body[:HDR] + b"".join(frames)

    which = case.get("key")
    if which == "other_team":
        key = TeamKey.generate(TEAM_B, 1)
    elif which == "other_generation":
        key = TeamKey.generate(TEAM_A, 2)
    elif which == "wrong_seed":
        key = TeamKey.generate(TEAM_A, 1)
    elif which is not None:
        raise AssertionError(f"unknown key {which!r}")
    if case.get("signer") == "other_device":
        signer = DeviceKeys.generate().sign_public
    return record_raw, body, key, signer


@pytest.mark.parametrize("case", VECTOR_DATA["cases"], ids=[c["name"] for c in VECTOR_DATA["cases"]])
def test_envelope_vector(case: dict[str, Any], world: VectorWorld) -> None:
    assert case["expect"] in EXPECT, case
    record_raw, body, key, signer = apply_case(case, world)
    chunk = case.get("read_chunk", STREAM_CHUNK)
    wanted = EXPECT[case["expect"]]
    if wanted is None:
        plaintext = read_doc(record_raw, body, key, signer, chunk)
        assert plaintext == world.doc.plaintext
    else:
        expect(wanted, lambda: read_doc(record_raw, body, key, signer, chunk))


def test_vectors_cover_every_outcome() -> None:
    seen = {c["expect"] for c in VECTOR_DATA["cases"]}
    assert seen == set(EXPECT)
    names = [c["name"] for c in VECTOR_DATA["cases"]]
    assert len(names) == len(set(names))
