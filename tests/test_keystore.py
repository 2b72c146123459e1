"""Keystore and unlock sessions with the real Argon2id minimum (t=3, m=64 MiB, p=4).

Each derivation costs ~0.1 s, so the keystore is created once per module and the tests
that only need the derived key reuse it through ``open_with_key``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest

import vault.crypto.primitives as primitives
from vault.crypto import labels
from vault.encoding import decode, encode
from vault.errors import KeystoreError, WeakParameters, WrongPassphrase
from vault.keystore import (
    MAGIC,
    MINIMUM,
    SESSION_MAGIC,
    KdfParams,
    check_params,
    derive_key,
    new_salt,
    new_session_secret,
    open_keystore,
    open_session,
    open_with_key,
    parse_keystore,
    seal_keystore,
    seal_session,
)

PASSPHRASE = "correct horse battery staple ✓"
SECRETS = {"device": {"sign": b"\x01" * 32, "box": b"\x02" * 32}, "member": "abc", "n": 7}


@dataclass(frozen=True)
class Sealed:
    blob: bytes
    key: bytes
    salt: bytes


@pytest.fixture(scope="module")
def sealed() -> Sealed:
    salt = new_salt()
    key = derive_key(PASSPHRASE, salt, MINIMUM)
    return Sealed(seal_keystore(SECRETS, key, salt, MINIMUM), key, salt)


def split(blob: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    (hlen,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    header = decode(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + hlen])
    assert isinstance(header, dict)
    return header, blob[len(MAGIC) + 4 + hlen :]


def join(header: dict, ct: bytes) -> bytes:  # type: ignore[type-arg]
    raw = encode(header)
    return MAGIC + struct.pack(">I", len(raw)) + raw + ct


def with_kdf(blob: bytes, **changes: object) -> bytes:
    header, ct = split(blob)
    header["kdf"] = {**header["kdf"], **changes}
    return join(header, ct)


@pytest.fixture
def no_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if Argon2id runs: weak or absurd parameters are refused before any work."""

    def boom(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("Argon2id must not run for refused parameters")

    monkeypatch.setattr(primitives, "argon2id", boom)


# -- round trip ---------------------------------------------------------------------------------


def test_create_open_round_trip(sealed: Sealed) -> None:
    secrets, key, header = open_keystore(sealed.blob, PASSPHRASE)
    assert secrets == SECRETS
    assert key == sealed.key
    assert header.params == MINIMUM
    assert header.salt == sealed.salt
    assert sealed.blob.startswith(MAGIC)


def test_open_with_key_round_trip(sealed: Sealed) -> None:
    assert open_with_key(sealed.blob, sealed.key) == SECRETS


def test_resealing_uses_a_fresh_nonce(sealed: Sealed) -> None:
    again = seal_keystore(SECRETS, sealed.key, sealed.salt, MINIMUM)
    assert again != sealed.blob
    assert split(again)[0]["nonce"] != split(sealed.blob)[0]["nonce"]
    assert open_with_key(again, sealed.key) == SECRETS


def test_header_records_the_kdf_parameters(sealed: Sealed) -> None:
    header, _ = split(sealed.blob)
    assert header["v"] == 1
    assert header["kdf"] == {"alg": "argon2id", "t": 3, "m": 64 * 1024, "p": 4, "salt": sealed.salt}


def test_plaintext_secrets_do_not_appear_in_the_file(sealed: Sealed) -> None:
    assert b"\x01" * 32 not in sealed.blob
    assert b"member" not in sealed.blob


# -- wrong passphrase and altered files ------------------------------------------------------------


def test_wrong_passphrase(sealed: Sealed) -> None:
    with pytest.raises(WrongPassphrase):
        open_keystore(sealed.blob, PASSPHRASE + " ")


def test_wrong_key(sealed: Sealed) -> None:
    with pytest.raises(WrongPassphrase):
        open_with_key(sealed.blob, bytes(32))


def test_changed_salt_is_wrong_passphrase(sealed: Sealed) -> None:
    blob = with_kdf(sealed.blob, salt=bytes(16))
    with pytest.raises(WrongPassphrase):
        open_keystore(blob, PASSPHRASE)


def test_raised_time_cost_is_wrong_passphrase(sealed: Sealed) -> None:
    blob = with_kdf(sealed.blob, t=4)
    with pytest.raises(WrongPassphrase):
        open_keystore(blob, PASSPHRASE)


def test_altered_header_is_authenticated_even_with_the_right_key(sealed: Sealed) -> None:
    # Raising p is above the minimum, so no WeakParameters: the AD mismatch must catch it.
    with pytest.raises(WrongPassphrase):
        open_with_key(with_kdf(sealed.blob, p=5), sealed.key)
    header, ct = split(sealed.blob)
    header["nonce"] = bytes(24)
    with pytest.raises(WrongPassphrase):
        open_with_key(join(header, ct), sealed.key)


@pytest.mark.parametrize(
    "changes",
    [{"m": 64 * 1024 - 1}, {"m": 8}, {"t": 2}, {"t": 1}, {"p": 3}, {"p": 1}, {"t": 1, "m": 8, "p": 1}],
)
def test_lowered_parameters_are_weak(sealed: Sealed, no_derivation: None, changes: dict) -> None:  # type: ignore[type-arg]
    blob = with_kdf(sealed.blob, **changes)
    with pytest.raises(WeakParameters):
        open_keystore(blob, PASSPHRASE)
    # Even someone holding the key refuses a downgraded file.
    with pytest.raises(WeakParameters):
        open_with_key(blob, sealed.key)


@pytest.mark.parametrize("changes", [{"m": 2**40}, {"t": 10_000}, {"p": 1_000}])
def test_absurd_parameters_are_refused_before_work(
    sealed: Sealed, no_derivation: None, changes: dict  # type: ignore[type-arg]
) -> None:
    with pytest.raises(KeystoreError) as info:
        open_keystore(with_kdf(sealed.blob, **changes), PASSPHRASE)
    assert type(info.value) is KeystoreError


def test_bit_flip_in_ciphertext(sealed: Sealed) -> None:
    for offset in (-1, -16, -17, -len(split(sealed.blob)[1])):
        blob = bytearray(sealed.blob)
        blob[offset] ^= 0x01
        with pytest.raises(WrongPassphrase):
            open_with_key(bytes(blob), sealed.key)


def test_bit_flip_in_ciphertext_with_passphrase(sealed: Sealed) -> None:
    blob = bytearray(sealed.blob)
    blob[-5] ^= 0x80
    with pytest.raises(WrongPassphrase):
        open_keystore(bytes(blob), PASSPHRASE)


def test_truncated_file(sealed: Sealed, no_derivation: None) -> None:
    header_end = len(sealed.blob) - len(split(sealed.blob)[1])
    for cut in (0, 3, len(MAGIC), len(MAGIC) + 3, len(MAGIC) + 4, len(MAGIC) + 10, header_end - 1):
        with pytest.raises(KeystoreError):
            parse_keystore(sealed.blob[:cut])
        with pytest.raises(KeystoreError):
            open_keystore(sealed.blob[:cut], PASSPHRASE)


def test_truncated_ciphertext(sealed: Sealed) -> None:
    header_end = len(sealed.blob) - len(split(sealed.blob)[1])
    for cut in (header_end, header_end + 1, len(sealed.blob) - 1):
        with pytest.raises(WrongPassphrase):
            open_with_key(sealed.blob[:cut], sealed.key)


def test_bad_magic(sealed: Sealed) -> None:
    with pytest.raises(KeystoreError, match="magic"):
        parse_keystore(b"MVKS2\n" + sealed.blob[len(MAGIC) :])


def test_oversized_header_length(sealed: Sealed) -> None:
    blob = MAGIC + struct.pack(">I", 4097) + sealed.blob[len(MAGIC) + 4 :] + bytes(5000)
    with pytest.raises(KeystoreError, match="truncated"):
        parse_keystore(blob)


@pytest.mark.parametrize(
    ("field", "value"),
    [("v", 2), ("v", "1"), ("nonce", bytes(23)), ("extra", 1)],
)
def test_malformed_header_fields(sealed: Sealed, no_derivation: None, field: str, value: object) -> None:
    header, ct = split(sealed.blob)
    header[field] = value
    with pytest.raises(KeystoreError) as info:
        open_keystore(join(header, ct), PASSPHRASE)
    assert type(info.value) is KeystoreError


@pytest.mark.parametrize(
    "changes",
    [{"alg": "argon2i"}, {"salt": bytes(15)}, {"t": "3"}, {"m": True}, {"extra": 1}, {"t": 0}],
)
def test_malformed_kdf_fields(sealed: Sealed, no_derivation: None, changes: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(KeystoreError) as info:
        open_keystore(with_kdf(sealed.blob, **changes), PASSPHRASE)
    assert type(info.value) is KeystoreError


def test_check_params_boundaries() -> None:
    check_params(MINIMUM)
    with pytest.raises(WeakParameters):
        check_params(KdfParams(time_cost=2))
    with pytest.raises(KeystoreError):
        check_params(KdfParams(memory_kib=4 * 1024 * 1024 + 1))


def test_derive_key_refuses_weak_parameters(no_derivation: None) -> None:
    with pytest.raises(WeakParameters):
        derive_key(PASSPHRASE, new_salt(), KdfParams(memory_kib=1024))


def test_passphrase_that_is_not_text_is_a_keystore_error(no_derivation: None) -> None:
    # os.environ and files read with surrogateescape can hand us lone surrogates.
    with pytest.raises(KeystoreError):
        derive_key("bad\udcff", new_salt(), MINIMUM)


# -- unlock sessions --------------------------------------------------------------------------------


def test_session_round_trip(sealed: Sealed) -> None:
    secret = new_session_secret()
    blob = seal_session(sealed.key, secret, expires=2_000)
    assert blob.startswith(SESSION_MAGIC)
    assert sealed.key not in blob
    key = open_session(blob, secret, now=1_999)
    assert key == sealed.key
    assert open_with_key(sealed.blob, key) == SECRETS


def test_session_expired() -> None:
    secret = new_session_secret()
    blob = seal_session(b"k" * 32, secret, expires=2_000)
    for now in (2_000, 2_001, 10**12):
        with pytest.raises(KeystoreError, match="expired"):
            open_session(blob, secret, now=now)


def test_session_wrong_secret() -> None:
    blob = seal_session(b"k" * 32, new_session_secret(), expires=2_000)
    with pytest.raises(KeystoreError, match="does not match"):
        open_session(blob, new_session_secret(), now=1_000)


@pytest.mark.parametrize("secret", [b"", b"short", bytes(31), bytes(33), bytes(65)])
def test_session_malformed_secret(secret: bytes) -> None:
    blob = seal_session(b"k" * 32, new_session_secret(), expires=2_000)
    with pytest.raises(KeystoreError):
        open_session(blob, secret, now=1_000)


def session_parts(blob: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    start = len(SESSION_MAGIC) + 4
    (hlen,) = struct.unpack(">I", blob[len(SESSION_MAGIC) : start])
    header = decode(blob[start : start + hlen])
    assert isinstance(header, dict)
    return header, blob[start + hlen :]


def session_join(header: dict, ct: bytes) -> bytes:  # type: ignore[type-arg]
    raw = encode(header)
    return SESSION_MAGIC + struct.pack(">I", len(raw)) + raw + ct


def test_session_tampered_expiry() -> None:
    secret = new_session_secret()
    blob = seal_session(b"k" * 32, secret, expires=2_000)
    header, ct = session_parts(blob)
    header["expires"] = 10**12
    with pytest.raises(KeystoreError, match="does not match"):
        open_session(session_join(header, ct), secret, now=5_000)


def test_session_tampered_ciphertext_and_nonce() -> None:
    secret = new_session_secret()
    blob = seal_session(b"k" * 32, secret, expires=2_000)
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    with pytest.raises(KeystoreError):
        open_session(bytes(flipped), secret, now=1_000)
    header, ct = session_parts(blob)
    header["nonce"] = bytes(24)
    with pytest.raises(KeystoreError):
        open_session(session_join(header, ct), secret, now=1_000)


def test_session_unknown_version_refused() -> None:
    # An authentic session sealed with another format version is refused, not guessed at.
    secret = new_session_secret()
    for header in ({"v": 2, "expires": 2_000, "nonce": bytes(24)}, {"expires": 2_000, "nonce": bytes(24)}):
        raw = encode(header)
        wrap = primitives.kdf(secret, labels.KDF_SESSION)
        ct = primitives.aead_encrypt(wrap, bytes(24), labels.AD_SESSION + b"\x00" + raw, b"k" * 32)
        with pytest.raises(KeystoreError):
            open_session(session_join(header, ct), secret, now=1_000)


def test_session_truncated_and_bad_magic() -> None:
    secret = new_session_secret()
    blob = seal_session(b"k" * 32, secret, expires=2_000)
    for cut in range(0, len(blob), 7):
        with pytest.raises(KeystoreError):
            open_session(blob[:cut], secret, now=1_000)
    with pytest.raises(KeystoreError, match="malformed"):
        open_session(MAGIC + blob[len(SESSION_MAGIC) :], secret, now=1_000)
