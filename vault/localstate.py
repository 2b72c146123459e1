"""Client state at rest: caches (thread messages, unread counts) encrypted on disk.

A cache file is ``MAGIC || nonce || AEAD(kdf(device sign seed, KDF_LOCAL), nonce,
AD_LOCAL || 0x00 || name, encode(value))``: readable only with the unlocked keystore,
and bound to its name so two cache files cannot be swapped. The same recipe seals the client's
config and pins (names ``config`` and ``pins``).

A file whose name would say something (a team id) is stored under ``file_name(key, name)``:
a keyed hash of the name, so the directory listing does not tell which teams this member is in.
"""

from __future__ import annotations

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError
from vault.keys import DeviceKeys

MAGIC = b"MVLOC1\n"


def local_key(device: DeviceKeys) -> bytes:
    return p.kdf(device.sign_seed, labels.KDF_LOCAL)


def file_name(key: bytes, name: str) -> str:
    """The on-disk name for the local file called ``name``: 32 hex digits, meaningless without the key."""
    return p.kdf(key, labels.KDF_LOCAL_NAME + b"\x00" + name.encode("utf-8"), 16).hex()


def seal_local(key: bytes, name: str, value: Value) -> bytes:
    return MAGIC + p.aead_seal(key, labels.AD_LOCAL + b"\x00" + name.encode("utf-8"), encode(value))


def open_local(key: bytes, name: str, blob: bytes) -> Value:
    """The cached value; ``DecryptionFailed`` when the file was altered, swapped or is not ours."""
    if not blob.startswith(MAGIC):
        raise DecryptionFailed("local cache file is not one of ours")
    plain = p.aead_open(key, labels.AD_LOCAL + b"\x00" + name.encode("utf-8"), blob[len(MAGIC):])
    try:
        return decode(plain)
    except EncodingError as e:
        raise DecryptionFailed("local cache file is malformed") from e
