"""Document envelopes: round trips, and "the storage is the attacker".

Every read goes through the same pipeline a client uses: parse the record, verify the
author's signature, unwrap the data key, decrypt the metadata, stream the body in pieces,
and release the plaintext only after ``finish()``. Each tampering must raise one specific
``VaultError`` subclass.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import decode, encode
from vault.envelope import (
    FRAME,
    MAGIC,
    BodyDecryptor,
    Core,
    DocWriter,
    Record,
    body_length,
    open_record,
    pad_metadata,
    plaintext_length,
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

HDR = p.STREAM_HEADER_BYTES
FRAME_CT = FRAME + p.STREAM_ABYTES
STREAM_CHUNK = 65_537  # an odd piece size, as a network read would deliver
VECTORS = Path(__file__).parent / "vectors" / "envelope.json"
TEAM_A = "a" * 32
TEAM_B = "b" * 32
TEAM_SEQ = 3  # the team chain head the writer saw


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Doc:
    record: Record
    body: bytes
    plaintext: bytes
    upload: bytes


def write_doc(key: TeamKey, device: DeviceKeys, plaintext: bytes, chunk: int | None = None, *,
              seq: int = 1, parent: str | None = None, name: str = "plan.txt") -> Doc:
    w = DocWriter(key=key, team_seq=TEAM_SEQ, device=device, author="author-1", doc="doc-1", seq=seq,
                  parent=parent, time=1_700_000_000, name=name, size=len(plaintext), mime="text/plain", mtime=42)
    prefix = w.upload_prefix()
    parts = [prefix]
    step = chunk or max(1, len(plaintext))
    for i in range(0, len(plaintext), step):
        parts.append(w.encrypt(plaintext[i : i + step]))
    parts.append(w.finish())
    upload = b"".join(parts)
    assert w.record is not None
    body = upload[len(prefix) - HDR : -p.SIG_BYTES]
    return Doc(w.record, body, plaintext, upload)


def read_doc(record_raw: bytes, body: bytes, key: TeamKey, author_public: bytes,
             chunk: int | None = STREAM_CHUNK) -> bytes:
    record = Record.parse(record_raw)
    record.verify(author_public)
    opened = open_record(record, key)
    dec = BodyDecryptor(opened)
    out: list[bytes] = []
    step = chunk or max(1, len(body))
    for i in range(0, len(body), step):
        out += dec.feed(body[i : i + step])
    dec.finish()
    return b"".join(out)


def frames_of(body: bytes) -> list[bytes]:
    frames = [body[i : i + FRAME_CT] for i in range(HDR, len(body), FRAME_CT)]
    assert b"".join([body[:HDR], *frames]) == body
    return frames


def replace_record(record: Record, **fields: bytes) -> bytes:
    value = decode(record.raw)
    assert isinstance(value, dict)
    value.update(fields)
    return encode(value)


def flip(data: bytes, offset: int, bit: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= bit
    return bytes(out)


def resign(device: DeviceKeys, core_raw: bytes, wrapped: bytes, meta: bytes, body_hash: bytes) -> bytes:
    """The author (an insider, not the storage) signs whatever it likes."""
    unsigned = Record.build(core_raw, wrapped, meta, body_hash, bytes(p.SIG_BYTES))
    sig = device.sign(labels.SIG_DOC, unsigned.statement)
    return Record.build(core_raw, wrapped, meta, body_hash, sig).raw


def forge(key: TeamKey, device: DeviceKeys, frames: list[tuple[bytes, bool]], *, size: int | None = None,
          commit_key: bytes | None = None, padded_meta: bytes | None = None,
          core_changes: dict[str, Any] | None = None) -> tuple[bytes, bytes]:
    """A record + body built by hand, consistently wrapped and signed by the author."""
    data_key = p.random_bytes(32)
    plain_size = sum(len(f) for f, _ in frames) if size is None else size
    core: dict[str, Any] = {
        "v": 1, "team": key.team_id, "team_seq": TEAM_SEQ, "doc": "doc-1", "seq": 1, "parent": None, "gen": key.gen,
        "author": "author-1", "device": device.device_id, "time": 1, "frame": FRAME,
        "body_len": sum(len(f) + p.STREAM_ABYTES for f, _ in frames) + HDR,
        "key_commit": p.kdf(commit_key or data_key, labels.KDF_DATA_COMMIT),
        "nonce": p.random_bytes(24), "meta_nonce": p.random_bytes(24),
    }
    core.update(core_changes or {})
    core_raw = encode(core)
    wrapped = p.aead_encrypt(key.doc_key, core["nonce"], labels.AD_DOC_WRAP + b"\x00" + core_raw, data_key)
    if padded_meta is None:
        padded_meta = pad_metadata({"name": "x", "size": plain_size, "mime": "a/b", "mtime": 0})
    meta = p.aead_encrypt(p.kdf(data_key, labels.KDF_DATA_META), core["meta_nonce"],
                          labels.AD_DOC_META + b"\x00" + core_raw, padded_meta)
    stream = p.StreamPush(p.kdf(data_key, labels.KDF_DATA_STREAM))
    body = stream.header + b"".join(stream.push(f, final=final) for f, final in frames)
    return resign(device, core_raw, wrapped, meta, p.sha256(body)), body


# -- fixtures -----------------------------------------------------------------------------------


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


def expect(exc: type[VaultError], fn: Callable[[], object]) -> VaultError:
    with pytest.raises(VaultError) as info:
        fn()
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    return info.value


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "write_chunk", "read_chunk"),
    [
        (0, 1, 1),
        (1, 1, 1),
        (1, None, 7),
        (FRAME - 1, 99_991, STREAM_CHUNK),
        (FRAME - 1, None, None),
        (FRAME, 333_333, FRAME_CT),
        (FRAME, FRAME, 1_000_003),
        (FRAME + 1, 524_287, STREAM_CHUNK),
        (FRAME + 1, FRAME + 1, FRAME_CT + 1),
        (3 * FRAME + 5, 99_991, STREAM_CHUNK),
        (3 * FRAME + 5, FRAME - 3, FRAME_CT - 1),
        (3 * FRAME + 5, None, None),
    ],
)
def test_round_trip(key_a: TeamKey, author: DeviceKeys, size: int, write_chunk: int | None,
                    read_chunk: int | None) -> None:
    plaintext = data_of(size, seed=size)
    d = write_doc(key_a, author, plaintext, write_chunk)
    assert len(d.body) == body_length(size) == d.record.core.body_len
    assert plaintext_length(len(d.body)) == size
    assert p.sha256(d.body) == d.record.body_hash
    assert d.upload.startswith(MAGIC)
    assert read_doc(d.record.raw, d.body, key_a, author.sign_public, read_chunk) == plaintext


def test_metadata_and_record_fields(doc: Doc, key_a: TeamKey, author: DeviceKeys) -> None:
    record = Record.parse(doc.record.raw)
    assert record == doc.record
    assert record.version_id == doc.record.version_id and len(record.version_id) == 32
    opened = open_record(record, key_a)
    assert opened.name == "plan.txt"
    assert opened.size == len(doc.plaintext)
    assert opened.meta["mime"] == "text/plain" and opened.meta["mtime"] == 42
    core = record.core
    assert (core.team, core.gen, core.seq, core.parent, core.device) == (TEAM_A, 1, 1, None, author.device_id)
    assert core.team_seq == TEAM_SEQ
    # Nothing readable leaks into what the server stores.
    assert b"plan.txt" not in doc.upload and b"text/plain" not in doc.upload


def test_fresh_data_key_per_version(key_a: TeamKey, author: DeviceKeys) -> None:
    a = write_doc(key_a, author, b"same")
    b = write_doc(key_a, author, b"same")
    assert a.body != b.body
    assert a.record.core.key_commit != b.record.core.key_commit
    assert a.record.version_id != b.record.version_id


def test_metadata_is_padded_to_hide_name_length(key_a: TeamKey, author: DeviceKeys) -> None:
    short = write_doc(key_a, author, b"x", name="a")
    longer = write_doc(key_a, author, b"x", name="a" * 100)
    assert len(short.record.meta) == len(longer.record.meta)


def test_writer_refuses_size_changes(key_a: TeamKey, author: DeviceKeys) -> None:
    w = DocWriter(key=key_a, team_seq=1, device=author, author="a", doc="d", seq=1, parent=None, time=1,
                  name="n", size=10)
    with pytest.raises(IntegrityError):
        w.encrypt(b"x" * 11)
    w = DocWriter(key=key_a, team_seq=1, device=author, author="a", doc="d", seq=1, parent=None, time=1,
                  name="n", size=10)
    w.encrypt(b"x" * 9)
    with pytest.raises(IntegrityError):
        w.finish()


def test_writer_refuses_overlong_name(key_a: TeamKey, author: DeviceKeys) -> None:
    with pytest.raises(EncodingError):
        DocWriter(key=key_a, team_seq=1, device=author, author="a", doc="d", seq=1, parent=None, time=1,
                  name="é" * 513, size=0)


@pytest.mark.parametrize("name", ["report\udcff.pdf", "\ud800"])
def test_writer_refuses_names_that_are_not_unicode(key_a: TeamKey, author: DeviceKeys, name: str) -> None:
    # os.listdir hands back undecodable bytes as lone surrogates (surrogateescape).
    with pytest.raises(EncodingError):
        DocWriter(key=key_a, team_seq=1, device=author, author="a", doc="d", seq=1, parent=None, time=1,
                  name=name, size=0)
    with pytest.raises(EncodingError):
        key_a.doc_id(name)


def test_doc_id_is_keyed_and_stable(key_a: TeamKey) -> None:
    assert key_a.doc_id("plan.txt") == key_a.doc_id("plan.txt")
    assert key_a.doc_id("plan.txt") != key_a.doc_id("plan.txt ")
    assert key_a.doc_id("plan.txt") != TeamKey.generate(TEAM_A, 1).doc_id("plan.txt")
    assert len(key_a.doc_id("plan.txt")) == 32


def test_no_plaintext_before_signature_check(doc: Doc, key_a: TeamKey) -> None:
    # A record signed by someone else is refused before any key is unwrapped.
    other = DeviceKeys.generate()
    expect(BadSignature, lambda: read_doc(doc.record.raw, doc.body, key_a, other.sign_public))


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
    assert len(body) == body_length(FRAME + 1)
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
