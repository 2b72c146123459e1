"""Documents written and read as a client does, and forged ones, for the envelope tests
(``tests/test_envelope_*.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vault.bodyformat import BODY_V1, header_bytes
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import decode, encode
from vault.envelope import (
    FRAME,
    BodyDecryptor,
    DocWriter,
    Record,
    open_record,
    pad_metadata,
)
from vault.errors import (
    VaultError,
)
from vault.fileio import Buffer
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey

# The envelope tests' documents are of body format 1 (secretstream) unless they ask for another
# (tests/test_body_format2.py has format 2's own).
HDR = p.STREAM_HEADER_BYTES
FRAME_CT = FRAME + p.STREAM_ABYTES
STREAM_CHUNK = 65_537  # an odd piece size, as a network read would deliver
VECTORS = Path(__file__).parent.parent / "vectors" / "envelope.json"
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
              seq: int = 1, parent: str | None = None, name: str = "plan.txt", body_format: int = BODY_V1) -> Doc:
    w = DocWriter(key=key, team_seq=TEAM_SEQ, device=device, author="author-1", doc="doc-1", seq=seq,
                  parent=parent, time=1_700_000_000, name=name, size=len(plaintext), mime="text/plain", mtime=42,
                  body=body_format)
    prefix = w.upload_prefix()
    parts: list[Buffer] = [prefix]
    step = chunk or max(1, len(plaintext))
    for i in range(0, len(plaintext), step):
        parts.append(w.encrypt(plaintext[i : i + step]))
    parts.append(w.finish())
    upload = b"".join(parts)
    assert w.record is not None
    body = upload[len(prefix) - header_bytes(body_format) : -p.SIG_BYTES]
    return Doc(w.record, body, plaintext, upload)


def read_doc(record_raw: bytes, body: bytes, key: TeamKey, author_public: bytes,
             chunk: int | None = STREAM_CHUNK) -> bytes:
    record = Record.parse(record_raw)
    record.verify(author_public)
    opened = open_record(record, key)
    dec = BodyDecryptor(opened)
    out: list[Buffer] = []
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


def expect(exc: type[VaultError], fn: Callable[[], object]) -> VaultError:
    with pytest.raises(VaultError) as info:
        fn()
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    return info.value
