"""A document version's body formats: their lengths, their hash and their frames (``docs/format.md``, "Documents").

Format 1 (``core`` without ``"body"``): libsodium's secretstream (XChaCha20-Poly1305), a 24-byte stream header then
1 MiB frames of 17 bytes' overhead, the last one tagged ``TAG_FINAL``; the signed body hash is SHA-256.

Format 2 (``core["body"] == 2``, every new version): no stream header; frame ``i`` is ChaCha20-Poly1305 (through
OpenSSL) of 1 MiB of plaintext (the last frame: what is left, possibly nothing) under
``KDF(data_key, "mvault/v1/doc/body2-frame-key")`` with the 96-bit nonce ``prefix (4 bytes, core["body_nonce"]) ||
u56 i (big-endian) || 0x01 for the last frame, else 0x00``, no associated data (age's STREAM payload); the signed
body hash is BLAKE3 (32 bytes). The key is fresh per version (the data key is), the counter never repeats within a
body and the last-frame flag is part of the nonce: a frame moved, dropped, taken from another version, or a body cut
short at a frame's boundary does not decrypt.
"""

from __future__ import annotations

from typing import Protocol

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.errors import DecryptionFailed, EncodingError, IntegrityError

BODY_V1 = 1
BODY_V2 = 2
BODY_NEW = BODY_V2  # what new versions are written in
BODY_FORMATS = (BODY_V1, BODY_V2)
PREFIX_BYTES = 4  # core["body_nonce"], format 2
_COUNTER_BYTES = 7
_MAX_FRAMES = 1 << (8 * _COUNTER_BYTES)


class Hasher(Protocol):
    def update(self, data: p.Frame, /) -> object: ...

    def digest(self) -> bytes: ...


def header_bytes(body: int) -> int:
    """Bytes before the first frame: the secretstream header (format 1), none (format 2)."""
    return p.STREAM_HEADER_BYTES if body == BODY_V1 else 0


def tag_bytes(body: int) -> int:
    """Bytes a frame's ciphertext adds to its plaintext."""
    return p.STREAM_ABYTES if body == BODY_V1 else p.FRAME_AEAD_TAG_BYTES


def body_length(size: int, frame: int, body: int) -> int:
    """Ciphertext body length for a plaintext of ``size`` bytes (always one final frame)."""
    return header_bytes(body) + size + tag_bytes(body) * (size // frame + 1)


def plaintext_length(body_len: int, frame: int, body: int) -> int:
    """Inverse of ``body_length``; raises ``EncodingError`` when no size fits."""
    rest, tag = body_len - header_bytes(body), tag_bytes(body)
    full = frame + tag
    n_full = max(0, rest - tag) // full
    size = n_full * frame + (rest - n_full * full - tag)
    if size < 0 or body_length(size, frame, body) != body_len:
        raise EncodingError("body length does not correspond to any plaintext size")
    return size


def body_hasher(body: int) -> Hasher:
    """The hash a version of body format ``body`` signs over its ciphertext body: SHA-256 (1), BLAKE3 (2)."""
    if body == BODY_V1:
        return p.sha256_hasher()
    if body == BODY_V2:
        return p.blake3_hasher()
    raise EncodingError("unsupported document body format")


def body_hash(body: int, data: p.Frame) -> bytes:
    hasher = body_hasher(body)
    hasher.update(data)
    return hasher.digest()


def hash_name(body: int) -> str:
    """The body hash's name, for messages (``mvault-server check``)."""
    return "SHA-256" if body == BODY_V1 else "BLAKE3"


class Sealer(Protocol):
    header: bytes

    def push(self, chunk: p.Frame, final: bool = False) -> p.Frame: ...


class Opener(Protocol):
    def pull(self, frame: p.Frame, last: bool) -> tuple[p.Frame, bool]: ...


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= _MAX_FRAMES:
        raise IntegrityError("document body has too many frames")
    return prefix + counter.to_bytes(_COUNTER_BYTES, "big") + (b"\x01" if last else b"\x00")


class FramesPush:
    """Format 2's sealing side: frame after frame, the counter in the nonce; nothing after the last."""

    header = b""

    def __init__(self, data_key: bytes, prefix: bytes) -> None:
        if len(prefix) != PREFIX_BYTES:
            raise ValueError("body nonce prefix has the wrong size")
        self._aead = p.FrameAead(p.kdf(data_key, labels.KDF_DATA_FRAMES))
        self._prefix = prefix
        self._counter = 0
        self._done = False

    def push(self, chunk: p.Frame, final: bool = False) -> p.Frame:
        if self._done:
            raise IntegrityError("no frame follows the last one")
        nonce = _nonce(self._prefix, self._counter, final)
        self._counter += 1
        self._done = final
        return self._aead.seal(nonce, chunk)


class FramesPull:
    """Format 2's opening side. ``last``: the frame ends the signed body (the reader knows from ``body_len``); a
    frame sealed as another position, or as not-last where it is last (a truncation), does not decrypt."""

    def __init__(self, data_key: bytes, prefix: bytes) -> None:
        self._aead = p.FrameAead(p.kdf(data_key, labels.KDF_DATA_FRAMES))
        self._prefix = prefix
        self._counter = 0

    def pull(self, frame: p.Frame, last: bool) -> tuple[p.Frame, bool]:
        plaintext = self._aead.open(_nonce(self._prefix, self._counter, last), frame)
        self._counter += 1
        return plaintext, last

    def pull_into(self, frame: p.Frame, last: bool, out: memoryview) -> tuple[p.Frame, bool]:
        """``pull`` with the plaintext decrypted into ``out`` (``len(frame) - 16`` bytes), returned."""
        self._aead.open_into(_nonce(self._prefix, self._counter, last), frame, out)
        self._counter += 1
        return out, last


class _SecretstreamPull:
    """Format 1's opening side, the same shape as ``FramesPull``."""

    def __init__(self, key: bytes, header: bytes) -> None:
        self._stream = p.StreamPull(key, header)

    def pull(self, frame: p.Frame, last: bool) -> tuple[p.Frame, bool]:
        return self._stream.pull(frame)


def sealer(body: int, data_key: bytes, prefix: bytes | None) -> Sealer:
    """The frames' sealing side of a new version of body format ``body``."""
    if body == BODY_V1:
        return p.StreamPush(p.kdf(data_key, labels.KDF_DATA_STREAM))
    assert prefix is not None
    return FramesPush(data_key, prefix)


def opener(body: int, data_key: bytes, prefix: bytes | None, header: bytes) -> Opener:
    """The frames' opening side (``header``: the body's first ``header_bytes(body)`` bytes)."""
    if body == BODY_V1:
        return _SecretstreamPull(p.kdf(data_key, labels.KDF_DATA_STREAM), header)
    if prefix is None:
        raise DecryptionFailed()
    return FramesPull(data_key, prefix)
