"""The audit log's signatures, each under its own domain tag (docs/format.md, "Audit log").

* the server's log key (Ed25519, from a 32-byte seed kept next to the log) signs checkpoints;
* a Security Team device cosigns a checkpoint (``security.events.cosign_statement``);
* a Security Team device signs the audit-key statement (``security.events.audit_key_statement``);
* a Security Team device signs the acceptance of a server restored from an older backup
  (``security.restore``);
* a Security Team device signs a timeline evidence bundle (``client/audit/timeline.py``).

The statements' bytes are built in ``security/events.py``; this module only signs and verifies them.
"""

from __future__ import annotations

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.keys import DeviceKeys

SEED_BYTES = 32


def new_log_seed() -> bytes:
    """A fresh seed for the server's checkpoint-signing key."""
    return p.random_bytes(SEED_BYTES)


def log_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """``(public, secret)`` of the server's log key from its seed."""
    return p.sign_keypair(seed)


def source_tag_key(seed: bytes) -> bytes:
    """The key of ``source_tag``, derived from the log seed (which stays in the data directory, never in the
    database): the tags a database holds are useless without the data directory's seed."""
    return p.kdf(seed, labels.KDF_SOURCE_TAG)


def notice_key(seed: bytes) -> bytes:
    """The key of ``notice_tag``, derived from the log seed (in the data directory, never in the database)."""
    return p.kdf(seed, labels.KDF_NOTICE)


def notice_tag(key: bytes, body: bytes) -> bytes:
    """16 bytes that prove a notice between server processes (``server/store/notices.py``) was made by one that
    holds the data directory: keyed BLAKE2b of its body under ``notice_key``. Anyone who may connect to the
    database may send a notice; only the processes can tag one."""
    return p.kdf(key, body, 16)


def source_tag(key: bytes, address: str) -> bytes:
    """16 bytes that stand for a source address in the database (request budgets, failed logins): keyed
    BLAKE2b of the address under ``source_tag_key``, so that every server process sharing the data directory
    computes the same tag and nobody reading only the database learns (or tests guesses of) an address."""
    return p.kdf(key, address.encode(), 16)


def sign_checkpoint(log_secret: bytes, checkpoint_raw: bytes) -> bytes:
    return p.sign(log_secret, labels.SIG_CHECKPOINT, checkpoint_raw)


def verify_checkpoint(log_public: bytes, checkpoint_raw: bytes, sig: bytes) -> None:
    """Raises ``BadSignature`` unless ``sig`` is the log key's signature of the checkpoint."""
    p.verify(log_public, labels.SIG_CHECKPOINT, checkpoint_raw, sig)


def sign_cosignature(device: DeviceKeys, statement: bytes) -> bytes:
    return device.sign(labels.SIG_COSIGN, statement)


def verify_cosignature(sign_public: bytes, statement: bytes, sig: bytes) -> None:
    """Raises ``BadSignature`` unless ``sig`` is the device's cosignature of ``statement``."""
    p.verify(sign_public, labels.SIG_COSIGN, statement, sig)


def sign_audit_key(device: DeviceKeys, statement: bytes) -> bytes:
    return device.sign(labels.SIG_AUDIT_KEY, statement)


def verify_audit_key(sign_public: bytes, statement: bytes, sig: bytes) -> None:
    """Raises ``BadSignature`` unless ``sig`` is the device's signature of the audit-key statement."""
    p.verify(sign_public, labels.SIG_AUDIT_KEY, statement, sig)


def sign_restore(device: DeviceKeys, statement: bytes) -> bytes:
    return device.sign(labels.SIG_RESTORE, statement)


def verify_restore(sign_public: bytes, statement: bytes, sig: bytes) -> None:
    """Raises ``BadSignature`` unless ``sig`` is the device's signature of the restore acceptance."""
    p.verify(sign_public, labels.SIG_RESTORE, statement, sig)


def sign_timeline(device: DeviceKeys, body: bytes) -> bytes:
    """The exporting device's signature of a timeline evidence bundle's body (docs/format.md, "Timeline bundle")."""
    return device.sign(labels.SIG_TIMELINE, body)


def verify_timeline(sign_public: bytes, body: bytes, sig: bytes) -> None:
    """Raises ``BadSignature`` unless ``sig`` is the device's signature of the bundle's body."""
    p.verify(sign_public, labels.SIG_TIMELINE, body, sig)
