"""Document envelopes: "the storage is the attacker", wrong keys, and a malicious author.

Every read goes through the same pipeline a client uses: parse the record, verify the
author's signature, unwrap the data key, decrypt the metadata, stream the body in pieces,
and release the plaintext only after ``finish()``. Each tampering must raise one specific
``VaultError`` subclass.
"""

from __future__ import annotations

import pytest

from tests.helpers.envelope import (
    FRAME_CT,
    HDR,
    TEAM_A,
    TEAM_B,
    TEAM_SEQ,
    Doc,
    data_of,
    expect,
    flip,
    forge,
    frames_of,
    read_doc,
    replace_record,
    resign,
    write_doc,
)
from vault.bodyformat import BODY_V1
from vault.crypto import primitives as p
from vault.encoding import decode, encode
from vault.envelope import (
    FRAME,
    BodyDecryptor,
    Core,
    body_length,
    open_record,
)
from vault.errors import (
    BadSignature,
    DecryptionFailed,
    EncodingError,
    IntegrityError,
    Truncated,
)
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey


@pytest.fixture(scope="module")
def author() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture(scope="module")
def key_a() -> TeamKey:
    return TeamKey.generate(TEAM_A, 1)


@pytest.fixture(scope="module")
def doc(key_a: TeamKey, author: DeviceKeys) -> Doc:
    """Four frames: three full ones and a 5-byte final frame."""
    return write_doc(key_a, author, data_of(3 * FRAME + 5), 99_991)


# -- the storage is the attacker: body ------------------------------------------------------------


@pytest.mark.parametrize(("frame", "offset"), [(0, 0), (0, 40), (1, FRAME_CT // 2), (2, FRAME_CT - 1),
                                               (3, 0), (3, 21)])
def test_bit_flip_in_body_frame(doc: Doc, key_a: TeamKey, author: DeviceKeys, frame: int,
                                offset: int) -> None:
    body = flip(doc.body, HDR + frame * FRAME_CT + offset)
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


@pytest.mark.parametrize("offset", [0, 11, HDR - 1])
def test_bit_flip_in_stream_header(doc: Doc, key_a: TeamKey, author: DeviceKeys, offset: int) -> None:
    body = flip(doc.body, offset)
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


def test_frames_reordered(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    f = frames_of(doc.body)
    body = b"".join([doc.body[:HDR], f[1], f[0], f[2], f[3]])
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


def test_frame_duplicated_streaming(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    f = frames_of(doc.body)
    body = b"".join([doc.body[:HDR], f[0], f[0], f[1], f[2], f[3]])
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


def test_frame_duplicated_whole_body(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    # Fed in one piece the excess length is caught before any frame is decrypted.
    f = frames_of(doc.body)
    body = b"".join([doc.body[:HDR], f[0], f[1], f[1], f[2], f[3]])
    expect(IntegrityError, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public, None))


def test_frame_duplicated_in_place_of_another(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    f = frames_of(doc.body)
    body = b"".join([doc.body[:HDR], f[0], f[0], f[2], f[3]])  # same length as the original
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


def test_middle_frame_dropped(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    f = frames_of(doc.body)
    body = b"".join([doc.body[:HDR], f[0], f[2], f[3]])
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


@pytest.mark.parametrize("frames_kept", [0, 1, 3])
def test_body_truncated_at_frame_boundary(doc: Doc, key_a: TeamKey, author: DeviceKeys,
                                          frames_kept: int) -> None:
    body = doc.body[: HDR + frames_kept * FRAME_CT]
    expect(Truncated, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


@pytest.mark.parametrize("cut", [0, 1, HDR - 1, HDR + 1000, -1, -17])
def test_body_truncated_anywhere(doc: Doc, key_a: TeamKey, author: DeviceKeys, cut: int) -> None:
    body = doc.body[:cut]
    expect(Truncated, lambda: read_doc(doc.record.raw, body, key_a, author.sign_public))


def test_body_with_trailing_data(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    expect(IntegrityError, lambda: read_doc(doc.record.raw, doc.body + b"\x00", key_a, author.sign_public))


def test_finish_without_feeding_is_truncated(doc: Doc, key_a: TeamKey) -> None:
    dec = BodyDecryptor(open_record(doc.record, key_a))
    expect(Truncated, dec.finish)


def test_body_of_another_version(key_a: TeamKey, author: DeviceKeys) -> None:
    v1 = write_doc(key_a, author, data_of(FRAME + 9, 1))
    v2 = write_doc(key_a, author, data_of(FRAME + 9, 2), seq=2, parent=v1.record.version_id)
    assert read_doc(v2.record.raw, v2.body, key_a, author.sign_public) == v2.plaintext
    expect(DecryptionFailed, lambda: read_doc(v2.record.raw, v1.body, key_a, author.sign_public))
    expect(DecryptionFailed, lambda: read_doc(v1.record.raw, v2.body, key_a, author.sign_public))


def test_body_of_another_version_with_another_size(key_a: TeamKey, author: DeviceKeys) -> None:
    v1 = write_doc(key_a, author, data_of(100))
    v2 = write_doc(key_a, author, data_of(200))
    expect(Truncated, lambda: read_doc(v2.record.raw, v1.body, key_a, author.sign_public))
    expect(IntegrityError, lambda: read_doc(v1.record.raw, v2.body, key_a, author.sign_public))


# -- the storage is the attacker: record ----------------------------------------------------------


@pytest.mark.parametrize("field", ["wrapped", "meta", "body_hash", "sig"])
@pytest.mark.parametrize("where", [0, -1])
def test_bit_flip_in_record_field(doc: Doc, key_a: TeamKey, author: DeviceKeys, field: str,
                                  where: int) -> None:
    value = getattr(doc.record, field)
    raw = replace_record(doc.record, **{field: flip(value, where)})
    expect(BadSignature, lambda: read_doc(raw, doc.body, key_a, author.sign_public))


@pytest.mark.parametrize("field", ["nonce", "meta_nonce", "key_commit"])
def test_bit_flip_in_core(doc: Doc, key_a: TeamKey, author: DeviceKeys, field: str) -> None:
    core_raw = doc.record.core.raw
    value = getattr(doc.record.core, field)
    raw = replace_record(doc.record, core=core_raw.replace(value, flip(value, 3)))
    expect(BadSignature, lambda: read_doc(raw, doc.body, key_a, author.sign_public))


@pytest.mark.parametrize(
    ("field", "value"),
    [("team", TEAM_B), ("team_seq", TEAM_SEQ + 1), ("gen", 2), ("seq", 7), ("parent", "p" * 32),
     ("author", "someone-else"), ("time", 0), ("body_len", body_length(3 * FRAME + 4)), ("doc", "doc-2")],
)
def test_altered_core_field_without_signature(doc: Doc, key_a: TeamKey, author: DeviceKeys, field: str,
                                              value: object) -> None:
    core = decode(doc.record.core.raw)
    assert isinstance(core, dict)
    core[field] = value
    raw = replace_record(doc.record, core=encode(core))
    expect(BadSignature, lambda: read_doc(raw, doc.body, key_a, author.sign_public))


def test_structural_damage_in_record_is_encoding_error(doc: Doc, key_a: TeamKey,
                                                       author: DeviceKeys) -> None:
    expect(EncodingError, lambda: read_doc(flip(doc.record.raw, 0), doc.body, key_a, author.sign_public))
    expect(EncodingError, lambda: read_doc(doc.record.raw[:-1], doc.body, key_a, author.sign_public))
    expect(EncodingError, lambda: read_doc(doc.record.raw + b"N", doc.body, key_a, author.sign_public))
    short_sig = replace_record(doc.record, sig=doc.record.sig[:-1])
    expect(EncodingError, lambda: read_doc(short_sig, doc.body, key_a, author.sign_public))
    core = decode(doc.record.core.raw)
    assert isinstance(core, dict)
    core["frame"] = FRAME // 2
    bad_frame = replace_record(doc.record, core=encode(core))
    expect(EncodingError, lambda: read_doc(bad_frame, doc.body, key_a, author.sign_public))
    core["frame"], core["body_len"] = FRAME, body_length(0) - 1
    bad_len = replace_record(doc.record, core=encode(core))
    expect(EncodingError, lambda: read_doc(bad_len, doc.body, key_a, author.sign_public))


# -- wrong keys ------------------------------------------------------------------------------------


def test_record_of_team_a_opened_with_team_b_key(doc: Doc, author: DeviceKeys) -> None:
    key_b = TeamKey.generate(TEAM_B, 1)
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, doc.body, key_b, author.sign_public))
    # A team-B seed presented under team A's name does not unwrap either.
    impostor = TeamKey(TEAM_A, 1, key_b.seed)
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, doc.body, impostor, author.sign_public))


def test_wrong_key_generation(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    gen2 = TeamKey.generate(TEAM_A, 2)
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, doc.body, gen2, author.sign_public))
    same_seed_other_gen = TeamKey(TEAM_A, 2, key_a.seed)
    expect(DecryptionFailed, lambda: read_doc(doc.record.raw, doc.body, same_seed_other_gen,
                                              author.sign_public))


def test_record_written_for_gen2_refuses_gen1_key(key_a: TeamKey, author: DeviceKeys) -> None:
    gen2 = TeamKey.generate(TEAM_A, 2)
    d = write_doc(gen2, author, b"rotated")
    assert read_doc(d.record.raw, d.body, gen2, author.sign_public) == b"rotated"
    expect(DecryptionFailed, lambda: read_doc(d.record.raw, d.body, key_a, author.sign_public))


# -- a malicious author (re-signs what it alters) -------------------------------------------------


def test_key_commit_altered_and_resigned(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    core = decode(doc.record.core.raw)
    assert isinstance(core, dict)
    core["key_commit"] = flip(core["key_commit"], 0)  # type: ignore[arg-type]
    r = doc.record
    raw = resign(author, encode(core), r.wrapped, r.meta, r.body_hash)
    expect(DecryptionFailed, lambda: read_doc(raw, doc.body, key_a, author.sign_public))


def test_key_commitment_mismatch_with_consistent_wrap(key_a: TeamKey, author: DeviceKeys) -> None:
    # The wrap, metadata and body are all valid under the data key, but the header commits to
    # another key: only the commitment check stands between this record and the reader.
    raw, body = forge(key_a, author, [(b"hello", True)], commit_key=p.random_bytes(32))
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public))
    good_raw, good_body = forge(key_a, author, [(b"hello", True)])
    assert read_doc(good_raw, good_body, key_a, author.sign_public) == b"hello"


@pytest.mark.parametrize(
    ("field", "value"),
    [("body_len", body_length(3 * FRAME + 4)), ("seq", 9), ("doc", "doc-2"), ("time", 5),
     ("parent", "p" * 32), ("author", "author-2"), ("team_seq", TEAM_SEQ + 1)],
)
def test_core_altered_and_resigned_breaks_the_wrap(doc: Doc, key_a: TeamKey, author: DeviceKeys,
                                                   field: str, value: object) -> None:
    # The header is the wrap's AD: even the author cannot move a data key to another header.
    core = decode(doc.record.core.raw)
    assert isinstance(core, dict)
    core[field] = value
    r = doc.record
    raw = resign(author, encode(core), r.wrapped, r.meta, r.body_hash)
    expect(DecryptionFailed, lambda: read_doc(raw, doc.body, key_a, author.sign_public))


def test_metadata_size_disagrees_with_body_length(key_a: TeamKey, author: DeviceKeys) -> None:
    raw, body = forge(key_a, author, [(b"hello", True)], size=6)
    expect(IntegrityError, lambda: read_doc(raw, body, key_a, author.sign_public))


@pytest.mark.parametrize(
    "padded",
    [
        b"\x00" * 255,  # not a whole bucket
        b"\x00\x00\x00\x05N" + b"\x00" * 251,  # length beyond the value
        (lambda r: len(r).to_bytes(4, "big") + r + b"\x01" * (256 - 4 - len(r)))(encode({"name": "x", "size": 5})),
        (lambda r: len(r).to_bytes(4, "big") + r + b"\x00" * (256 - 4 - len(r)))(encode({"name": "x"})),
    ],
)
def test_malformed_metadata_is_decryption_failed(key_a: TeamKey, author: DeviceKeys, padded: bytes) -> None:
    raw, body = forge(key_a, author, [(b"hello", True)], padded_meta=padded)
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public))


def test_body_hash_altered_and_resigned(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    r = doc.record
    raw = resign(author, r.core.raw, r.wrapped, r.meta, flip(r.body_hash, 0))
    expect(IntegrityError, lambda: read_doc(raw, doc.body, key_a, author.sign_public))


def test_stream_without_final_tag_is_truncated(key_a: TeamKey, author: DeviceKeys) -> None:
    raw, body = forge(key_a, author, [(b"hello", False)])
    expect(Truncated, lambda: read_doc(raw, body, key_a, author.sign_public))


def test_final_tag_before_the_last_frame(key_a: TeamKey, author: DeviceKeys) -> None:
    raw, body = forge(key_a, author, [(b"\x00" * FRAME, True), (b"tail", True)])
    expect(IntegrityError, lambda: read_doc(raw, body, key_a, author.sign_public))
    expect(IntegrityError, lambda: read_doc(raw, body, key_a, author.sign_public, None))


def test_full_frame_final_then_empty(key_a: TeamKey, author: DeviceKeys) -> None:
    # A full frame tagged final, then an empty final frame: the stream ends early.
    raw, body = forge(key_a, author, [(b"\x01" * FRAME, True), (b"", True)])
    expect(IntegrityError, lambda: read_doc(raw, body, key_a, author.sign_public))


def test_forged_layout_with_short_middle_frame(key_a: TeamKey, author: DeviceKeys) -> None:
    # Every frame but the last holds exactly FRAME bytes; a stream framed otherwise does not
    # decrypt, even when its total length and signature are right.
    raw, body = forge(key_a, author, [(b"a" * 10, False), (b"b" * (FRAME - 9), True)])
    assert len(body) == body_length(FRAME + 1, FRAME, BODY_V1)
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public))
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public, None))


def test_core_parse_rejects_unknown_fields(doc: Doc) -> None:
    core = decode(doc.record.core.raw)
    assert isinstance(core, dict)
    core["extra"] = 1
    with pytest.raises(EncodingError):
        Core.parse(encode(core))
    core.pop("extra")
    core["v"] = 2
    with pytest.raises(EncodingError):
        Core.parse(encode(core))
    core["v"] = 1
    Core.parse(encode(core))
    for bad in (0, -1, "3", None):  # the team state a header names is a chain sequence number (>= 1)
        core["team_seq"] = bad
        with pytest.raises(EncodingError):
            Core.parse(encode(core))
    del core["team_seq"]
    with pytest.raises(EncodingError):
        Core.parse(encode(core))
