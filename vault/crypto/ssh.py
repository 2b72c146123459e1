"""Ed25519 keys as OpenSSH writes them, and Ed25519 signatures over SSHSIG messages (``cryptography``).

Thin wrappers only: ``vault/sshsig.py`` is the recipe (the SSHSIG format of ``ssh-keygen -Y sign``).
The key's SSH form is the ``cryptography`` library's OpenSSH serialization, not ours.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key

from vault.errors import BadSignature, EncodingError

# Every SSHSIG message starts with these bytes (PROTOCOL.sshsig). No tagged message of ours does (they start
# with "mvault/"), and none of our plain-signed texts (C2SP notes) holds the 0x00 bytes every SSHSIG message
# holds: a signature over one can never pass for a signature over another.
SSHSIG_MAGIC: Final = b"SSHSIG"


def openssh_public(public: bytes) -> str:
    """``ssh-ed25519 AAAA...`` for a raw 32-byte Ed25519 public key."""
    key = Ed25519PublicKey.from_public_bytes(public)
    return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode("ascii")


def raw_public(openssh: str) -> bytes:
    """The raw 32-byte key of an ``ssh-ed25519 AAAA...`` line (``EncodingError`` for anything else)."""
    try:
        key = load_ssh_public_key(openssh.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise EncodingError(f"not an OpenSSH public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EncodingError("not an Ed25519 SSH key (ssh-ed25519)")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_sshsig(seed: bytes, message: bytes) -> bytes:
    """Ed25519 (seed: the device's 32-byte signing seed) over an SSHSIG message."""
    if not message.startswith(SSHSIG_MAGIC):
        raise ValueError("only SSHSIG messages are signed here")
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def verify_sshsig(public: bytes, message: bytes, signature: bytes) -> None:
    """Raises ``BadSignature`` unless ``signature`` is Ed25519 by ``public`` over the SSHSIG ``message``."""
    if not message.startswith(SSHSIG_MAGIC) or len(public) != 32 or len(signature) != 64:
        raise BadSignature("not an Ed25519 SSH signature")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        raise BadSignature("the SSH signature does not verify") from None
