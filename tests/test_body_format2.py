"""Document body format 2 (issue 17; docs/format.md, "Documents"): BLAKE3 body hash, ChaCha20-Poly1305 frames in
a STREAM construction. The construction alone catches what it must (an author signing whatever body it likes:
frames reordered, dropped, taken from another version, a missing last frame, another format's body), the header's
format field is signed (a server cannot downgrade it), and format 1 versions stored before still open everywhere:
``mvault get``, ``mvault-server check`` and ``backup``. Every failure of ``mvault get`` is exit 3 and leaves
nothing in place.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import client.docs
from tests.conftest import Org
from tests.helpers.backup_world import server_cli
from tests.helpers.envelope import data_of, expect, read_doc, resign, write_doc
from tests.helpers.members import get_ok, in_session, put, unlock_here
from tests.helpers.tampering import (
    DECRYPTION,
    SIGNATURE,
    MiB,
    blob_file,
    blob_replaced,
    column_replaced,
    dec,
    edit_record,
    get_fails,
    version_row,
)
from vault.bodyformat import BODY_V1, BODY_V2, PREFIX_BYTES, FramesPull
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import decode, encode
from vault.envelope import FRAME, Core, DocWriter, Record, pad_metadata, plaintext_length, unpad_metadata
from vault.errors import DecryptionFailed, EncodingError
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey

TAG = 16
FRAME_CT = FRAME + TAG
EXIT_SECURITY = 3


@pytest.fixture(scope="module")
def author() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture(scope="module")
def key_a() -> TeamKey:
    return TeamKey.generate("a" * 32, 1)

# -- the construction, with an author who signs whatever it likes (the hash cannot help) ---------------------------


def _forged_v2(key: TeamKey, author: DeviceKeys, record: Record, body: bytes, core_changes: dict[str, Any]) -> bytes:
    """``record`` with its header changed and re-signed over ``body``'s hash (of the format the header names)."""
    core = decode(record.core.raw)
    assert isinstance(core, dict)
    core.update(core_changes)
    core = {k: v for k, v in core.items() if v is not None}
    fmt = core.get("body", BODY_V1)
    digest = blake3.blake3(body).digest() if fmt == BODY_V2 else p.sha256(body)
    # The data key is wrapped with the header as its AD: wrap it again for the changed header, as an author can.
    data_key = p.aead_decrypt(key.doc_key, record.core.nonce, labels.AD_DOC_WRAP + b"\x00" + record.core.raw,
                              record.wrapped)
    core_raw = encode(core)
    wrapped = p.aead_encrypt(key.doc_key, record.core.nonce, labels.AD_DOC_WRAP + b"\x00" + core_raw, data_key)
    meta_value = unpad_metadata(p.aead_decrypt(p.kdf(data_key, labels.KDF_DATA_META), record.core.meta_nonce,
                                               labels.AD_DOC_META + b"\x00" + record.core.raw, record.meta))
    assert isinstance(meta_value, dict)
    padded = pad_metadata({**meta_value, "size": plaintext_length(len(body), FRAME, fmt)})
    meta = p.aead_encrypt(p.kdf(data_key, labels.KDF_DATA_META), record.core.meta_nonce,
                          labels.AD_DOC_META + b"\x00" + core_raw, padded)
    return resign(author, core_raw, wrapped, meta, digest)


def _frames(body: bytes) -> list[bytes]:
    return [body[i:i + FRAME_CT] for i in range(0, len(body), FRAME_CT)]


def test_frames_follow_the_documented_nonces(key_a: TeamKey, author: DeviceKeys) -> None:
    """An independent reader (docs/format.md's formulas, `cryptography` and `blake3` only) opens every frame."""
    data = data_of(2 * FRAME + 5)
    d = write_doc(key_a, author, data, 99_991, body_format=BODY_V2)
    core = d.record.core
    assert core.body == BODY_V2 and core.body_nonce is not None and len(core.body_nonce) == PREFIX_BYTES
    assert d.record.body_hash == blake3.blake3(d.body).digest()
    opened = p.aead_decrypt(key_a.doc_key, core.nonce, b"mvault/v1/doc/wrap\x00" + core.raw, d.record.wrapped)
    frame_key = p.kdf(opened, b"mvault/v1/doc/body2-frame-key")
    aead = ChaCha20Poly1305(frame_key)
    frames = _frames(d.body)
    assert [len(f) for f in frames] == [FRAME_CT, FRAME_CT, 5 + TAG]
    plain = b"".join(aead.decrypt(core.body_nonce + i.to_bytes(7, "big") + (b"\x01" if i == 2 else b"\x00"), f, None)
                     for i, f in enumerate(frames))
    assert plain == data


@pytest.mark.parametrize("case", ["reordered", "middle dropped", "a frame of another version", "a frame repeated"])
def test_stream_catches_what_a_signed_hash_would_not(key_a: TeamKey, author: DeviceKeys, case: str) -> None:
    """The author re-signs the altered body (its hash and length are then right): the frames themselves refuse."""
    data = data_of(3 * FRAME + 7)
    d = write_doc(key_a, author, data, body_format=BODY_V2)
    other = write_doc(key_a, author, data, body_format=BODY_V2)
    fr, ofr = _frames(d.body), _frames(other.body)
    altered = {
        "reordered": [fr[1], fr[0], fr[2], fr[3]],
        "middle dropped": [fr[0], fr[2], fr[3]],
        "a frame of another version": [fr[0], ofr[1], fr[2], fr[3]],
        "a frame repeated": [fr[0], fr[0], fr[2], fr[3]],
    }[case]
    body = b"".join(altered)
    raw = _forged_v2(key_a, author, d.record, body, {"body_len": len(body)})
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public))
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public, None))


def test_the_last_frame_flag(key_a: TeamKey, author: DeviceKeys) -> None:
    """A body cut after a whole frame has no valid length (the last frame is never full), so the last-frame flag
    is a second guard: a frame sealed as not-last does not open as the last, nor the last as another."""
    d = write_doc(key_a, author, data_of(FRAME + 9), body_format=BODY_V2)
    data_key = p.aead_decrypt(key_a.doc_key, d.record.core.nonce,
                              labels.AD_DOC_WRAP + b"\x00" + d.record.core.raw, d.record.wrapped)
    first, last = _frames(d.body)
    assert d.record.core.body_nonce is not None
    with pytest.raises(DecryptionFailed):
        FramesPull(data_key, d.record.core.body_nonce).pull(first, True)
    pull = FramesPull(data_key, d.record.core.body_nonce)
    pull.pull(first, False)
    with pytest.raises(DecryptionFailed):
        pull.pull(last, False)
    pull = FramesPull(data_key, d.record.core.body_nonce)
    assert pull.pull(first, False)[1] is False and pull.pull(last, True)[1] is True
    core = decode(d.record.core.raw)
    assert isinstance(core, dict)
    with pytest.raises(EncodingError):  # cut after a whole frame: refused by its signed length before any frame
        Core.parse(encode({**core, "body_len": len(first)}))


def test_a_header_of_one_format_with_a_body_of_the_other_is_refused(key_a: TeamKey, author: DeviceKeys) -> None:
    data = data_of(FRAME + 100)
    v1 = write_doc(key_a, author, data, body_format=BODY_V1)
    v2 = write_doc(key_a, author, data, body_format=BODY_V2)
    # Format 2 claimed over a format-1 body: its length cannot be a format-2 length here, so take the secretstream
    # frames without their 24-byte header (the same length as a format-2 body of another size) and sign that.
    body = v1.body[24:]
    raw = _forged_v2(key_a, author, v1.record, body, {"body": BODY_V2, "body_nonce": os.urandom(4),
                                                      "body_len": len(body)})
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public))
    # Format 1 claimed over a format-2 body (the author drops the field and signs the SHA-256).
    body = b"\x00" * 24 + v2.body[:-1]  # a plausible format-1 length: 24 + FRAME + 17 + 99 + 17
    raw = _forged_v2(key_a, author, v2.record, body, {"body": None, "body_nonce": None, "body_len": len(body)})
    expect(DecryptionFailed, lambda: read_doc(raw, body, key_a, author.sign_public))


def test_the_format_field_is_canonical(key_a: TeamKey, author: DeviceKeys) -> None:
    core = decode(write_doc(key_a, author, b"x", body_format=BODY_V2).record.core.raw)
    assert isinstance(core, dict)
    Core.parse(encode(core))
    for change in ({"body": 1}, {"body": 3}, {"body": "2"}, {"body_nonce": b"\x00" * 3}, {"body_nonce": None}):
        bad = {k: v for k, v in {**core, **change}.items() if v is not None}
        with pytest.raises(EncodingError):
            Core.parse(encode(bad))
    old = decode(write_doc(key_a, author, b"x", body_format=BODY_V1).record.core.raw)
    assert isinstance(old, dict) and "body" not in old and "body_nonce" not in old
    with pytest.raises(EncodingError):
        Core.parse(encode({**old, "body_nonce": b"\x00" * 4}))


# -- a real server that tampers, a real client that catches it --------------------------------------------------


def _get_fails(org: Org, where: Path, contains: str, **kw: Any) -> None:
    get_fails(org.bob, "drafting", "big.bin", where, contains, **kw)
    r = org.bob.run("get", "drafting", "big.bin", "-o", str(where / "again.bin"))
    assert r.code == EXIT_SECURITY, (r.code, r.err)
    assert not (where / "again.bin").exists()


def test_a_server_tampering_with_a_format2_body_is_caught(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    content = os.urandom(3 * MiB + 1000)
    vid = put(alice, "drafting", tmp_path / "big.bin", content)
    row = version_row(org, vid)
    assert Record.parse(row["record"]).core.body == BODY_V2
    body = blob_file(org, row["blob"]).read_bytes()
    fr = _frames(body)
    assert [len(f) for f in fr] == [FRAME_CT, FRAME_CT, FRAME_CT, 1000 + TAG]
    flipped = bytearray(body)
    flipped[FRAME_CT + 77] ^= 1
    cases = [
        ("a frame's bit flipped", bytes(flipped), DECRYPTION),
        ("frames reordered", fr[1] + fr[0] + fr[2] + fr[3], DECRYPTION),
        ("truncated before the last frame", b"".join(fr[:3]), "truncated"),
        ("the last frame only", fr[3], "truncated"),
    ]
    for what, data, contains in cases:
        with blob_replaced(org, vid, data):
            _get_fails(org, tmp_path / what, contains)
            _get_fails(org, tmp_path / f"{what}, over a file", contains, existing=b"keep me")
    # The header's format field altered by the server (a downgrade to format 1, or another nonce prefix): signed.
    forgeries = [("downgraded", _downgraded(row["record"])),
                 ("nonce prefix", edit_record(row["record"], "core.body_nonce", lambda v: bytes(4)))]
    for what, forged in forgeries:
        with column_replaced(org, vid, "record", forged):
            _get_fails(org, tmp_path / what, SIGNATURE)
    get_ok(bob, "drafting", "big.bin", tmp_path / "ok", content)


def _downgraded(raw: bytes) -> bytes:
    """The record as a format-1 version: the format and its nonce prefix taken out of the signed header."""
    rec = dict(dec(raw))
    core = dict(dec(rec["core"]))
    del core["body"], core["body_nonce"]
    rec["core"] = encode(core)
    return encode(rec)


def test_a_stored_format1_version_still_opens_checks_and_backs_up(org: Org, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = org.alice, org.bob
    unlock_here(alice, bob)
    old, new = os.urandom(MiB + 300), os.urandom(MiB + 301)
    src = tmp_path / "big.bin"
    src.write_bytes(old)
    with monkeypatch.context() as m:  # an older client: the real client library writing format 1
        m.setattr(client.docs, "DocWriter", functools.partial(DocWriter, body=BODY_V1))
        in_session(org.server, alice, lambda c: c.docs.put("drafting", src), m)
    v1 = version_row(org, alice.json("history", "drafting", "big.bin")[0]["vid"])
    assert Record.parse(v1["record"]).core.body == BODY_V1
    assert len(blob_file(org, v1["blob"]).read_bytes()) == 24 + MiB + 300 + 2 * 17
    v2 = put(alice, "drafting", src, new)
    assert Record.parse(version_row(org, v2)["record"]).core.body == BODY_V2
    get_ok(bob, "drafting", "big.bin", tmp_path / "new", new)
    get_ok(bob, "drafting", "big.bin", tmp_path / "old", old, version=1)
    # The server's check and backup hash each blob with its own format's hash.
    data = org.server.data_dir
    ok = server_cli("check", "--data", str(data))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert server_cli("backup", "--data", str(data), "--to", str(tmp_path / "b.tar")).returncode == 0
    for n, vid in enumerate((v1["vid"], v2)):
        blob = blob_file(org, version_row(org, vid)["blob"])
        with blob_replaced(org, vid, flip_at(blob.read_bytes(), 1000)):
            bad = server_cli("check", "--data", str(data))
            assert bad.returncode == 1 and "blob-corrupt" in bad.stdout, bad.stdout
            assert ("SHA-256" if n == 0 else "BLAKE3") in bad.stdout
            refused = server_cli("backup", "--data", str(data), "--to", str(tmp_path / f"bad-{n}.tar"))
            assert refused.returncode != 0 and "does not match its record" in refused.stderr, refused.stderr
            r = bob.run("get", "drafting", "big.bin", "-o", str(tmp_path / f"bad-{n}.bin"),
                        *(("--version", "1") if n == 0 else ()))
            assert r.code == EXIT_SECURITY and not (tmp_path / f"bad-{n}.bin").exists(), r.err


def flip_at(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 1
    return bytes(out)
