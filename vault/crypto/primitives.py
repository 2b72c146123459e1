"""Raw primitives: libsodium via PyNaCl bindings, Argon2id via argon2-cffi, SHA-256, BLAKE3 (the ``blake3``
package, by the BLAKE3 authors) and ChaCha20-Poly1305 through OpenSSL (``cryptography``).

Every failure of an authenticated decryption is reported as ``DecryptionFailed``; a bad
signature as ``BadSignature``. Callers never see library exceptions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

import blake3 as _blake3
import nacl.bindings as sodium
import nacl.exceptions
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl._sodium import ffi as _ffi  # type: ignore[import-not-found]  # the libsodium PyNaCl binds: secretstream frames without copies (below)
from nacl._sodium import lib as _lib

from vault.errors import BadSignature, DecryptionFailed, Truncated

KEY_BYTES: Final = 32
SIGN_PK_BYTES: Final = sodium.crypto_sign_PUBLICKEYBYTES
SIGN_SK_BYTES: Final = sodium.crypto_sign_SECRETKEYBYTES
SIG_BYTES: Final = sodium.crypto_sign_BYTES
BOX_PK_BYTES: Final = sodium.crypto_box_PUBLICKEYBYTES
SEAL_OVERHEAD: Final = sodium.crypto_box_SEALBYTES
AEAD_NONCE_BYTES: Final = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
AEAD_TAG_BYTES: Final = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES
STREAM_HEADER_BYTES: Final = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
STREAM_ABYTES: Final = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
TAG_MESSAGE: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_PERSON: Final = b"mvault-v1-kdf"  # BLAKE2b personalization (<= 16 bytes)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_hasher() -> hashlib._Hash:
    return hashlib.sha256()


def blake3_hasher() -> _blake3.blake3:
    """BLAKE3 (32-byte output when ``digest()`` is called without a length), fed in pieces."""
    return _blake3.blake3()


def tagged_hash(label: bytes, data: bytes) -> bytes:
    """SHA-256 with a domain label: H(label || 0x00 || data)."""
    return hashlib.sha256(label + b"\x00" + data).digest()


def kdf(key: bytes, label: bytes, size: int = KEY_BYTES) -> bytes:
    """Keyed BLAKE2b subkey: the parent key keys the hash, the label is the message. The same function as
    libsodium's ``crypto_generichash_blake2b_salt_personal`` (zero salt, the personalization zero-padded; RFC 7693's
    parameter block), computed by ``hashlib``'s BLAKE2b: ~1.4 us a call against ~10 us through PyNaCl's checks (a
    pull or an upload derives ~5 subkeys a file). A key of 16-64 bytes, an output of 1-64 (else ``ValueError``)."""
    if len(key) < 16:
        raise ValueError("kdf key too short")
    return hashlib.blake2b(label, digest_size=size, key=key, person=_PERSON).digest()


def equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


# -- signatures (Ed25519) -------------------------------------------------------------


def sign_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(public, secret) from a 32-byte seed."""
    pk, sk = sodium.crypto_sign_seed_keypair(seed)
    return bytes(pk), bytes(sk)


def sign(secret: bytes, tag: bytes, message: bytes) -> bytes:
    signed = sodium.crypto_sign(tag + b"\x00" + message, secret)
    return bytes(signed[:SIG_BYTES])


def verify(public: bytes, tag: bytes, message: bytes, signature: bytes) -> None:
    if len(public) != SIGN_PK_BYTES or len(signature) != SIG_BYTES:
        raise BadSignature("signature or key has the wrong size")
    try:
        sodium.crypto_sign_open(signature + tag + b"\x00" + message, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as e:
        raise BadSignature("signature does not verify") from e


def sign_plain(secret: bytes, message: bytes) -> bytes:
    """Ed25519 over ``message`` itself, without a domain tag: only for formats others define (C2SP signed
    notes, ``vault/signednote.py``), whose text never holds a 0x00 byte. Every tagged message holds one
    (``tag || 0x00 || m``), so no plain message is ever a tagged one: the two cannot be confused."""
    if b"\x00" in message:
        raise ValueError("a plain signature is only for text without 0x00 bytes")
    return bytes(sodium.crypto_sign(message, secret)[:SIG_BYTES])


def verify_plain(public: bytes, message: bytes, signature: bytes) -> None:
    """Raises ``BadSignature`` unless ``signature`` is Ed25519 of ``message`` itself (see ``sign_plain``)."""
    if len(public) != SIGN_PK_BYTES or len(signature) != SIG_BYTES:
        raise BadSignature("signature or key has the wrong size")
    try:
        sodium.crypto_sign_open(signature + message, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as e:
        raise BadSignature("signature does not verify") from e


# -- X25519 sealed boxes ----------------------------------------------------------------


def box_keypair(seed: bytes) -> tuple[bytes, bytes]:
    pk, sk = sodium.crypto_box_seed_keypair(seed)
    return bytes(pk), bytes(sk)


def seal(public: bytes, message: bytes) -> bytes:
    return bytes(sodium.crypto_box_seal(message, public))


def seal_open(public: bytes, secret: bytes, box: bytes) -> bytes:
    try:
        return bytes(sodium.crypto_box_seal_open(box, public, secret))
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError) as e:
        raise DecryptionFailed() from e


def box_shared(their_public: bytes, my_secret: bytes) -> bytes:
    """Raw X25519 shared secret; a low-order public key (all-zero result) is refused."""
    try:
        return bytes(sodium.crypto_scalarmult(my_secret, their_public))
    except (nacl.exceptions.CryptoError, nacl.exceptions.RuntimeError, nacl.exceptions.TypeError,
            nacl.exceptions.ValueError) as e:
        raise DecryptionFailed() from e


# -- XChaCha20-Poly1305 AEAD ----------------------------------------------------------------


def aead_encrypt(key: bytes, nonce: bytes, ad: bytes, plaintext: bytes) -> bytes:
    return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key))


def aead_decrypt(key: bytes, nonce: bytes, ad: bytes, ciphertext: bytes) -> bytes:
    try:
        return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key))
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError) as e:
        raise DecryptionFailed() from e


def aead_seal(key: bytes, ad: bytes, plaintext: bytes) -> bytes:
    """``nonce || AEAD(key, nonce, ad, plaintext)`` with a fresh random nonce."""
    nonce = random_bytes(AEAD_NONCE_BYTES)
    return nonce + aead_encrypt(key, nonce, ad, plaintext)


def aead_open(key: bytes, ad: bytes, blob: bytes) -> bytes:
    """Inverse of ``aead_seal``; anything short or altered is ``DecryptionFailed``."""
    if len(blob) < AEAD_NONCE_BYTES + AEAD_TAG_BYTES:
        raise DecryptionFailed()
    return aead_decrypt(key, blob[:AEAD_NONCE_BYTES], ad, blob[AEAD_NONCE_BYTES:])


# -- secretstream (XChaCha20-Poly1305) ---------------------------------------------------


# Frames are read in place (any bytes-like object) and written into a fresh buffer that libsodium fills
# whole, so it is not zeroed first: PyNaCl's own push/pull want ``bytes`` in and copy their output out,
# two extra passes over every MiB of a transfer. A frame's output is never reused, so it may be held
# (by the network's send queue, by a writer) for as long as anyone likes.
_UNZEROED = _ffi.new_allocator(should_clear_after_alloc=False)
_MESSAGE_MAX = sodium.crypto_secretstream_xchacha20poly1305_MESSAGEBYTES_MAX
Frame = bytes | bytearray | memoryview


class StreamPush:
    """Encrypting side of a secretstream. ``header`` must be stored before the frames."""

    def __init__(self, key: bytes) -> None:
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header = bytes(sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, key))

    def push(self, chunk: Frame, final: bool = False) -> memoryview:
        n = len(chunk)
        if n > _MESSAGE_MAX:
            raise ValueError("secretstream frame is too long")
        out = _UNZEROED("unsigned char[]", n + STREAM_ABYTES)
        with _ffi.from_buffer(chunk) as m:
            rc = _lib.crypto_secretstream_xchacha20poly1305_push(self._state.statebuf, out, _ffi.NULL, m, n, _ffi.NULL,
                                                                 0, TAG_FINAL if final else TAG_MESSAGE)
        if rc != 0:
            raise RuntimeError("secretstream push failed")
        return memoryview(_ffi.buffer(out))


class StreamPull:
    """Decrypting side; ``pull`` returns (plaintext, is_final)."""

    def __init__(self, key: bytes, header: bytes) -> None:
        if len(header) != STREAM_HEADER_BYTES:
            raise Truncated("stream header is incomplete")
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self._tag = _ffi.new("unsigned char *")
        try:
            sodium.crypto_secretstream_xchacha20poly1305_init_pull(self._state, header, key)
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError) as e:
            raise DecryptionFailed() from e

    def pull(self, frame: Frame) -> tuple[memoryview, bool]:
        n = len(frame) - STREAM_ABYTES
        if n < 0 or n > _MESSAGE_MAX:
            raise DecryptionFailed()
        out = _UNZEROED("unsigned char[]", max(n, 1))
        with _ffi.from_buffer(frame) as c:
            rc = _lib.crypto_secretstream_xchacha20poly1305_pull(self._state.statebuf, out, _ffi.NULL, self._tag, c,
                                                                 n + STREAM_ABYTES, _ffi.NULL, 0)
        tag = self._tag[0]
        if rc != 0 or tag not in (TAG_MESSAGE, TAG_FINAL):
            raise DecryptionFailed()
        return memoryview(_ffi.buffer(out, n)), tag == TAG_FINAL


# -- ChaCha20-Poly1305 (RFC 8439) through OpenSSL: the frames of document body format 2 ----------------------

FRAME_AEAD_NONCE_BYTES: Final = 12
FRAME_AEAD_TAG_BYTES: Final = 16


class FrameAead:
    """One key's ChaCha20-Poly1305 (IETF, 96-bit nonce, 16-byte tag, no associated data). The caller builds the
    nonces (``vault/bodyformat.py``: a STREAM construction that never repeats one under a key)."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def seal(self, nonce: bytes, plaintext: Frame) -> bytes:
        return self._aead.encrypt(nonce, plaintext, None)

    def open(self, nonce: bytes, ciphertext: Frame) -> bytes:
        if len(ciphertext) < FRAME_AEAD_TAG_BYTES:
            raise DecryptionFailed()
        try:
            return self._aead.decrypt(nonce, ciphertext, None)
        except InvalidTag as e:
            raise DecryptionFailed() from e

    def open_into(self, nonce: bytes, ciphertext: Frame, out: memoryview) -> None:
        """``open`` into ``out`` (exactly ``len(ciphertext) - 16`` bytes); on a bad tag ``out``'s content is
        undefined and ``DecryptionFailed`` is raised: the caller must not use it."""
        if len(ciphertext) < FRAME_AEAD_TAG_BYTES or len(out) != len(ciphertext) - FRAME_AEAD_TAG_BYTES:
            raise DecryptionFailed()
        try:
            self._aead.decrypt_into(nonce, ciphertext, None, out)
        except InvalidTag as e:
            raise DecryptionFailed() from e


# -- Argon2id -----------------------------------------------------------------------------


def argon2id(secret: bytes, salt: bytes, time_cost: int, memory_kib: int, parallelism: int) -> bytes:
    return hash_secret_raw(
        secret=secret,
        salt=salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )
