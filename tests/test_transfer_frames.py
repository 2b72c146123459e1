"""The transfer path's frames without copies (issue 17's upload and download rows): secretstream frames sealed
and opened through libsodium directly (``vault/crypto/primitives.py``: input read in place, output never
zeroed nor copied out) are the same bytes PyNaCl's own binding makes and reads; a returned frame stays as it
was (the network may still hold it); an upload's body hash is taken in a second thread (``DocWriter.seal`` /
``absorb``), and a frame left out of it is refused."""

from __future__ import annotations

import nacl.bindings as sodium
import pytest

from tests.helpers.envelope import data_of, read_doc
from vault.bodyformat import BODY_V1, BODY_V2, header_bytes, tag_bytes
from vault.crypto import primitives as p
from vault.envelope import FRAME, DocWriter
from vault.errors import DecryptionFailed, IntegrityError, Truncated
from vault.keys import DeviceKeys
from vault.teamkeys import TeamKey

KEY = bytes(range(32))


def test_our_frames_are_pynacls_frames_both_ways() -> None:
    a, b = data_of(FRAME), data_of(100, seed=2)
    ours = p.StreamPush(KEY)
    fa, fb = ours.push(memoryview(a)), ours.push(bytearray(b), final=True)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, ours.header, KEY)
    assert sodium.crypto_secretstream_xchacha20poly1305_pull(state, bytes(fa)) == (a, p.TAG_MESSAGE)
    assert sodium.crypto_secretstream_xchacha20poly1305_pull(state, bytes(fb)) == (b, p.TAG_FINAL)

    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, KEY)
    ca = sodium.crypto_secretstream_xchacha20poly1305_push(state, a, None, p.TAG_MESSAGE)
    cb = sodium.crypto_secretstream_xchacha20poly1305_push(state, b"", None, p.TAG_FINAL)
    pull = p.StreamPull(KEY, header)
    got_a, final_a = pull.pull(memoryview(ca))
    got_b, final_b = pull.pull(cb)
    assert (bytes(got_a), final_a, bytes(got_b), final_b) == (a, False, b"", True)


def test_a_frame_stays_as_returned_and_a_flipped_bit_fails_as_before() -> None:
    push = p.StreamPush(KEY)
    first = push.push(data_of(1000))
    kept = bytes(first)
    for i in range(3):  # later frames get buffers of their own: the first is not overwritten
        push.push(data_of(1000, seed=3 + i))
    assert bytes(first) == kept
    pull = p.StreamPull(KEY, push.header)
    bad = bytearray(kept)
    bad[500] ^= 1
    with pytest.raises(DecryptionFailed):
        pull.pull(bad)
    with pytest.raises(DecryptionFailed):
        p.StreamPull(KEY, push.header).pull(b"short")


def _writer(size: int) -> DocWriter:
    return DocWriter(key=TeamKey.generate("a" * 32, 1), team_seq=1, device=DeviceKeys.generate(), author="author-1",
                     doc="doc-1", seq=1, parent=None, time=1_700_000_000, name="plan.txt", size=size)


@pytest.mark.parametrize("body_format", [BODY_V1, BODY_V2])
def test_sealed_and_absorbed_apart_is_the_same_document(body_format: int) -> None:
    """As the upload does it: whole frames sealed (the in-place path) and hashed afterwards; the document reads
    back whole, in pieces of every alignment."""
    size = 2 * FRAME + 3
    data = data_of(size)
    key = TeamKey.generate("a" * 32, 1)
    device = DeviceKeys.generate()
    w = DocWriter(key=key, team_seq=1, device=device, author="author-1", doc="doc-1", seq=1, parent=None,
                  time=1_700_000_000, name="plan.txt", size=size, body=body_format)
    hdr, tag = header_bytes(body_format), tag_bytes(body_format)
    pieces = [w.seal(memoryview(data)[i:i + FRAME]) for i in range(0, size, FRAME)]
    for piece in pieces:
        w.absorb(piece)
    tail = w.finish()
    assert w.record is not None
    body = w.upload_prefix()[len(w.upload_prefix()) - hdr:] + b"".join(pieces) + tail[:-p.SIG_BYTES]
    for chunk in (None, 7, FRAME, FRAME + tag, FRAME + tag + hdr):
        assert read_doc(w.record.raw, body, key, device.sign_public, chunk=chunk) == data


def test_a_sealed_frame_left_out_of_the_body_hash_is_refused() -> None:
    data = data_of(2 * FRAME + 3)
    w = _writer(len(data))
    w.absorb(w.seal(data[:FRAME]))
    w.seal(data[FRAME:2 * FRAME])  # never absorbed
    w.absorb(w.seal(data[2 * FRAME:]))
    with pytest.raises(IntegrityError, match="not added to the body hash"):
        w.finish()


@pytest.mark.parametrize("body_format", [BODY_V1, BODY_V2])
@pytest.mark.parametrize("chunk", [None, FRAME + p.STREAM_ABYTES, FRAME + p.FRAME_AEAD_TAG_BYTES, 4096])
def test_an_altered_or_cut_body_fails_in_place_and_gathered(chunk: int | None, body_format: int) -> None:
    """The storage (or the server) flips a bit of the second frame, or cuts the body after whole frames: the
    frames opened where they lie (a whole body in one piece) fail as the gathered ones do."""
    data = data_of(2 * FRAME + 3)
    key = TeamKey.generate("a" * 32, 1)
    device = DeviceKeys.generate()
    w = DocWriter(key=key, team_seq=1, device=device, author="author-1", doc="doc-1", seq=1, parent=None,
                  time=1_700_000_000, name="plan.txt", size=len(data), body=body_format)
    hdr, tag = header_bytes(body_format), tag_bytes(body_format)
    upload = w.upload_prefix() + w.encrypt(data) + w.finish()
    assert w.record is not None
    body = upload[len(w.upload_prefix()) - hdr:-p.SIG_BYTES]
    flipped = bytearray(body)
    flipped[hdr + FRAME + tag + 10] ^= 1
    with pytest.raises(DecryptionFailed):
        read_doc(w.record.raw, bytes(flipped), key, device.sign_public, chunk=chunk)
    with pytest.raises(Truncated):
        read_doc(w.record.raw, body[:hdr + 2 * (FRAME + tag)], key,
                 device.sign_public, chunk=chunk)
