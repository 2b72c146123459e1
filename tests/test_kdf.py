"""``vault.crypto.primitives.kdf`` is libsodium's keyed BLAKE2b with salt and personalization, byte for byte.

Since session 18 it is computed with ``hashlib.blake2b`` (the same RFC 7693 function, without PyNaCl's per-call
checks); every stored id, commitment and subkey depends on it staying the very function libsodium computes, so it is
compared here with ``crypto_generichash_blake2b_salt_personal`` itself, over every output size and key length the
bounds allow, and the same sizes are refused.
"""

from __future__ import annotations

import os

import nacl.bindings as sodium
import pytest

from vault.crypto import primitives as p


def libsodium_kdf(key: bytes, label: bytes, size: int) -> bytes:
    return bytes(sodium.crypto_generichash_blake2b_salt_personal(label, digest_size=size, key=key,
                                                                 person=b"mvault-v1-kdf"))


def test_kdf_is_libsodiums_keyed_blake2b_for_every_size_and_key_length() -> None:
    for size in range(1, 65):
        for key_len in (16, 17, 31, 32, 33, 48, 63, 64):
            key = os.urandom(key_len)
            for label in (b"", b"mvault/v1/doc/name-id", os.urandom(size * 3)):
                assert p.kdf(key, label, size) == libsodium_kdf(key, label, size), (size, key_len, label)
    key = os.urandom(32)
    assert p.kdf(key, b"x") == libsodium_kdf(key, b"x", 32)  # the default size
    assert p.kdf(bytearray(key), b"x") == p.kdf(key, b"x")  # a bytes-like key, as libsodium took it


@pytest.mark.parametrize(("key_len", "size"), [(65, 32), (32, 65), (32, 0)])
def test_kdf_refuses_what_libsodium_refused(key_len: int, size: int) -> None:
    with pytest.raises(Exception):  # noqa: B017,PT011 (PyNaCl raises its ValueError or RuntimeError)
        libsodium_kdf(os.urandom(key_len), b"label", size)
    with pytest.raises(ValueError):
        p.kdf(os.urandom(key_len), b"label", size)


@pytest.mark.parametrize("key_len", [0, 8, 15])
def test_kdf_refuses_a_short_key(key_len: int) -> None:
    with pytest.raises(ValueError, match="too short"):
        p.kdf(os.urandom(key_len), b"label")
