"""Passphrase keystore: local secrets under XChaCha20-Poly1305 with an Argon2id key.

File layout (see docs/format.md)::

    b"MVKS1\\n" || u32 header_len || header || ciphertext
    header     = canonical {"v": 1, "kdf": {"alg": "argon2id", "t", "m", "p", "salt"}, "nonce"}
    ciphertext = XChaCha20-Poly1305(key, nonce, AD = AD_KEYSTORE || 0x00 || header, secrets)

The header is authenticated as AD, so altered KDF parameters fail decryption; parameters
below the enforced minimum are refused *before* any derivation (a downgraded file cannot
make us spend less work).

An unlock session (``mvault unlock``) wraps the derived key under a random session secret
held only in the user's environment, with an authenticated expiry; see ``seal_session``. The
wrapped key lives only in the unlock agent's memory (``client/agent.py``), never on disk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import EncodingError, KeystoreError, WeakParameters, WrongPassphrase

MAGIC = b"MVKS1\n"
SESSION_MAGIC = b"MVSS1\n"


@dataclass(frozen=True)
class KdfParams:
    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4


MINIMUM = KdfParams()
MAXIMUM = KdfParams(time_cost=64, memory_kib=4 * 1024 * 1024, parallelism=64)


def check_params(params: KdfParams) -> None:
    if (
        params.time_cost < MINIMUM.time_cost
        or params.memory_kib < MINIMUM.memory_kib
        or params.parallelism < MINIMUM.parallelism
    ):
        raise WeakParameters(
            f"keystore KDF parameters below the minimum (t>={MINIMUM.time_cost}, "
            f"m>={MINIMUM.memory_kib} KiB, p>={MINIMUM.parallelism}); refusing to use them"
        )
    if (
        params.time_cost > MAXIMUM.time_cost
        or params.memory_kib > MAXIMUM.memory_kib
        or params.parallelism > MAXIMUM.parallelism
    ):
        raise KeystoreError("keystore KDF parameters are implausibly large; refusing")


def derive_key(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    check_params(params)
    try:
        secret = passphrase.encode("utf-8")
    except UnicodeEncodeError as e:  # e.g. undecodable bytes from the environment (surrogateescape)
        raise KeystoreError("the passphrase is not valid text (check its encoding)") from e
    return p.argon2id(secret, salt, params.time_cost, params.memory_kib, params.parallelism)


def _ad(header: bytes) -> bytes:
    return labels.AD_KEYSTORE + b"\x00" + header


def seal_keystore(secrets: Value, key: bytes, salt: bytes, params: KdfParams) -> bytes:
    nonce = p.random_bytes(p.AEAD_NONCE_BYTES)
    header = encode(
        {
            "v": 1,
            "kdf": {
                "alg": "argon2id",
                "t": params.time_cost,
                "m": params.memory_kib,
                "p": params.parallelism,
                "salt": salt,
            },
            "nonce": nonce,
        }
    )
    ct = p.aead_encrypt(key, nonce, _ad(header), encode(secrets))
    return MAGIC + struct.pack(">I", len(header)) + header + ct


@dataclass(frozen=True)
class KeystoreHeader:
    params: KdfParams
    salt: bytes
    nonce: bytes
    raw: bytes


def parse_keystore(blob: bytes) -> tuple[KeystoreHeader, bytes]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise KeystoreError("not a Member Vault keystore (bad magic)")
    (hlen,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if hlen > 4096 or start + hlen > len(blob):
        raise KeystoreError("keystore header is truncated")
    raw = blob[start : start + hlen]
    try:
        f = Fields(decode(raw), "keystore header", {"v", "kdf", "nonce"})
        if f.int_("v") != 1:
            raise KeystoreError("unsupported keystore version")
        k = f.dict_("kdf", {"alg", "t", "m", "p", "salt"})
        if k.str_("alg") != "argon2id":
            raise KeystoreError("unsupported keystore KDF")
        params = KdfParams(k.int_("t", 1), k.int_("m", 8), k.int_("p", 1))
        header = KeystoreHeader(params, k.bytes_("salt", 16), f.bytes_("nonce", p.AEAD_NONCE_BYTES), raw)
    except EncodingError as e:
        raise KeystoreError(f"keystore header is malformed: {e}") from e
    return header, blob[start + hlen :]


def open_keystore(blob: bytes, passphrase: str) -> tuple[Value, bytes, KeystoreHeader]:
    """Return (secrets, derived key, header); raises ``WrongPassphrase`` on any mismatch."""
    header, ct = parse_keystore(blob)
    key = derive_key(passphrase, header.salt, header.params)
    return open_with_key(blob, key), key, header


def open_with_key(blob: bytes, key: bytes) -> Value:
    header, ct = parse_keystore(blob)
    check_params(header.params)
    try:
        plaintext = p.aead_decrypt(key, header.nonce, _ad(header.raw), ct)
    except Exception as e:
        raise WrongPassphrase() from e
    return decode(plaintext)


def new_salt() -> bytes:
    return p.random_bytes(16)


# -- unlock sessions ----------------------------------------------------------------------


def new_session_secret() -> bytes:
    return p.random_bytes(32)


def seal_session(key: bytes, session_secret: bytes, expires: int) -> bytes:
    nonce = p.random_bytes(p.AEAD_NONCE_BYTES)
    header = encode({"v": 1, "expires": expires, "nonce": nonce})
    wrap = p.kdf(session_secret, labels.KDF_SESSION)
    ct = p.aead_encrypt(wrap, nonce, labels.AD_SESSION + b"\x00" + header, key)
    return SESSION_MAGIC + struct.pack(">I", len(header)) + header + ct


def open_session(blob: bytes, session_secret: bytes, now: int) -> bytes:
    """The keystore key from an unlock session, or ``KeystoreError`` if expired/altered."""
    if not blob.startswith(SESSION_MAGIC) or len(blob) < len(SESSION_MAGIC) + 4:
        raise KeystoreError("unlock session file is malformed")
    if len(session_secret) != 32:
        raise KeystoreError("unlock session secret is malformed; run `mvault unlock`")
    (hlen,) = struct.unpack(">I", blob[len(SESSION_MAGIC) : len(SESSION_MAGIC) + 4])
    start = len(SESSION_MAGIC) + 4
    raw = blob[start : start + hlen]
    try:
        f = Fields(decode(raw), "session header", {"v", "expires", "nonce"})
        if f.int_("v") != 1:
            raise EncodingError("unsupported unlock session version")
        expires = f.int_("expires")
        nonce = f.bytes_("nonce", p.AEAD_NONCE_BYTES)
    except EncodingError as e:
        raise KeystoreError("unlock session file is malformed") from e
    wrap = p.kdf(session_secret, labels.KDF_SESSION)
    try:
        key = p.aead_decrypt(wrap, nonce, labels.AD_SESSION + b"\x00" + raw, blob[start + hlen :])
    except Exception as e:
        raise KeystoreError("unlock session does not match this keystore; run `mvault unlock`") from e
    if now >= expires:
        raise KeystoreError("unlock session expired; run `mvault unlock` again")
    return key
