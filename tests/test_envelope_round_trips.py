"""Document envelopes: round trips.

Every read goes through the same pipeline a client uses: parse the record, verify the
author's signature, unwrap the data key, decrypt the metadata, stream the body in pieces,
and release the plaintext only after ``finish()`` (``tests/helpers/envelope.py``).
"""

from __future__ import annotations

import tracemalloc

import blake3
import pytest

from tests.helpers.envelope import (
    FRAME_CT,
    STREAM_CHUNK,
    TEAM_A,
    TEAM_SEQ,
    Doc,
    data_of,
    expect,
    read_doc,
    write_doc,
)
from vault.bodyformat import BODY_V1, BODY_V2
from vault.crypto import primitives as p
from vault.encoding import encode
from vault.envelope import (
    FRAME,
    MAGIC,
    BodyDecryptor,
    DocWriter,
    Record,
    body_length,
    open_record,
    plaintext_length,
)
from vault.errors import (
    BadSignature,
    EncodingError,
    IntegrityError,
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
@pytest.mark.parametrize("body", [BODY_V1, BODY_V2])
def test_round_trip(key_a: TeamKey, author: DeviceKeys, size: int, write_chunk: int | None,
                    read_chunk: int | None, body: int) -> None:
    plaintext = data_of(size, seed=size)
    d = write_doc(key_a, author, plaintext, write_chunk, body_format=body)
    assert d.record.core.body == body
    assert len(d.body) == body_length(size, FRAME, body) == d.record.core.body_len
    assert plaintext_length(len(d.body), FRAME, body) == size
    assert (p.sha256(d.body) if body == BODY_V1 else blake3.blake3(d.body).digest()) == d.record.body_hash
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


def test_a_record_built_from_its_parts_is_the_parsed_one(doc: Doc) -> None:
    """``Record.build`` checks its parts as ``parse`` checks the bytes (without decoding what it just encoded), and
    takes a core already parsed only when it is the very bytes given (the server's upload, issue 16 session 13)."""
    r = doc.record
    parts = (r.core.raw, r.wrapped, r.meta, r.body_hash, r.sig)
    assert Record.build(*parts) == Record.build(*parts, r.core) == Record.parse(r.raw) == r
    other = write_doc(TeamKey.generate(TEAM_A, 1), DeviceKeys.generate(), b"other", seq=2, parent="ab" * 16).record
    assert Record.build(*parts, other.core).core == r.core  # a core of other bytes is not taken
    for bad in ((r.core.raw, r.wrapped[:-1], r.meta, r.body_hash, r.sig),  # wrapped key cut
                (r.core.raw, r.wrapped, r.meta, r.body_hash, r.sig + b"\x00"),  # signature too long
                (r.core.raw, r.wrapped, r.meta + b"\x00" * 5000, r.body_hash, r.sig)):  # metadata too long
        with pytest.raises(EncodingError):
            Record.parse(encode(dict(zip(("core", "wrapped", "meta", "body_hash", "sig"), bad, strict=True))))
        with pytest.raises(EncodingError):
            Record.build(*bad, r.core)


@pytest.mark.parametrize("pieces", [None, 1000, 7])
def test_a_small_body_is_decrypted_without_a_whole_frame_of_memory(key_a: TeamKey, author: DeviceKeys,
                                                                  pieces: int | None) -> None:
    """A 4 KiB document's decryptor gathers its frame in a buffer of its body's size, not a frame's (1 MiB, zeroed
    for every small file of a batch download before: issue 16 session 13); fed whole or in pieces, same plaintext."""
    doc = write_doc(key_a, author, data_of(4096))
    opened = open_record(doc.record, key_a)
    tracemalloc.start()
    try:
        dec = BodyDecryptor(opened)
        step = pieces or len(doc.body)
        plain = b"".join(bytes(x) for i in range(0, len(doc.body), step) for x in dec.feed(doc.body[i:i + step]))
        dec.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plain == doc.plaintext
    assert peak < 64 * 1024  # before: over 1 MiB
