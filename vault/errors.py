"""One error tree for Member Vault.

Every error a user can meet derives from :class:`VaultError`; its message is what the
CLI prints (one line, no traceback) and what the API returns as ``{"error": code,
"message": ...}``. The tree::

    VaultError
    ├── EncodingError            malformed canonical bytes, invite codes, requests
    ├── CryptoError
    │   ├── DecryptionFailed     any AEAD / secretstream / box failure, whatever the cause
    │   ├── BadSignature         a signature that does not verify
    │   ├── Truncated            a stream that ended without its final tag / short body
    │   └── IntegrityError       hashes, commitments or bindings that do not match
    │       └── ProofError       a Merkle inclusion or consistency proof that does not verify
    │           └── LogInconsistent  (raised by the client) the server's audit log contradicts an accepted
    │                                checkpoint: stop
    ├── KeystoreError
    │   ├── WrongPassphrase
    │   └── WeakParameters       KDF parameters below the enforced minimum
    ├── ChainError               a chain link that is invalid, unauthorized or out of order
    │   ├── RollbackDetected     the server served an older or forked chain / document
    │   ├── ClosingRefused       (raised by the client) a closing that does not verify against the pins: nothing
    │   │                        is wiped
    │   └── InviteNotOpen        an org.join names an invite that is unknown, used, revoked or expired
    ├── PolicyDenied             the actor lacks the right for this action
    ├── NotFound                 unknown team, document, member or version
    ├── Conflict                 the document moved on (concurrent writer) / duplicate
    ├── QuotaExceeded            a per-member quota of the security protocols (413 or 429)
    ├── InviteError              expired, used, revoked or unknown invite
    ├── AuthError                login / session failure
    │   ├── DeviceRevoked        the device was revoked (told only to a caller holding its key)
    │   └── OrgClosed            the organization was closed (org.closed): the server holds nothing more
    ├── ServerMismatch           certificate or organization fingerprint differs from the pin
    ├── TransportError           the server could not be reached or answered nonsense
    │
    │   raised by the client (client/):
    ├── BatchFailed              some files of a batch put failed; the others were stored
    ├── FetchFailed              some documents of a folder get failed; the others were fetched
    ├── BadName                  a document name that breaks a rule of vault/names.py
    ├── WouldOverwrite           get would replace a local file that is not the version fetched
    │
    │   raised by the server only (its answers carry their code and status):
    ├── Throttled                a source sent too many requests or failed too many logins (429)
    ├── ServiceUnavailable       the server cannot record or store right now (503)
    │   └── StorageUnavailable   its database went away; the server goes on once it is back (503)
    ├── InsufficientStorage      the server's disk is full: an upload was not stored (507)
    └── LogCorrupted             the stored audit log is not contiguous (the server refuses to start)

Decryption fails one way (``DecryptionFailed``) so that callers never branch on why.

``exit_code`` is the ``mvault`` exit code of an error (client/cli/main.py): ``EXIT_SECURITY`` (3)
for what the server or storage served failing a check here (``CryptoError`` and below,
``RollbackDetected``, ``ServerMismatch``), ``EXIT_FAILED`` (1) for everything else. The client
gives a refusal the server names with one of those codes ``EXIT_FAILED`` (client/api.py): the
server refused a request; it was not caught lying.
"""

from __future__ import annotations

import math

EXIT_FAILED = 1  # refused, a conflict, or a failure
EXIT_SECURITY = 3  # a security check failed: the server or storage served something false


class VaultError(Exception):
    """Base of every Member Vault error. ``code`` is a stable machine-readable name."""

    code = "vault_error"
    status = 400
    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class EncodingError(VaultError):
    code = "bad_encoding"


class CryptoError(VaultError):
    code = "crypto_error"
    exit_code = EXIT_SECURITY


class DecryptionFailed(CryptoError):
    code = "decryption_failed"

    def __init__(self, message: str = "decryption failed: data was altered or the key is wrong") -> None:
        super().__init__(message)


class BadSignature(CryptoError):
    code = "bad_signature"


class Truncated(CryptoError):
    code = "truncated"


class IntegrityError(CryptoError):
    code = "integrity"


class KeystoreError(VaultError):
    code = "keystore"


class WrongPassphrase(KeystoreError):
    code = "wrong_passphrase"

    def __init__(self, message: str = "wrong passphrase (or the keystore was altered)") -> None:
        super().__init__(message)


class WeakParameters(KeystoreError):
    code = "weak_kdf_parameters"


class ChainError(VaultError):
    code = "bad_chain"
    status = 400


class RollbackDetected(ChainError):
    code = "rollback"
    exit_code = EXIT_SECURITY


class InviteNotOpen(ChainError):
    """An org.join whose invite is unknown, already used, revoked or expired (the server answers ``InviteError``)."""


class PolicyDenied(VaultError):
    code = "forbidden"
    status = 403


class NotFound(VaultError):
    code = "not_found"
    status = 404


class Conflict(VaultError):
    """409. ``not_before``: for a link dated too early (``Directory.check_not_before``), the earliest time the
    server would take it at (the ``Error`` body's ``not_before``): sign it again dated then. ``server_time``: the
    server's clock when it refused (the body's ``server_time``, with ``not_before``)."""

    code = "conflict"
    status = 409

    def __init__(self, message: str, not_before: int | None = None, server_time: int | None = None) -> None:
        super().__init__(message)
        self.not_before = not_before
        self.server_time = server_time


class QuotaExceeded(VaultError):
    """A per-member quota: 413 (too large: nothing helps but deleting or a higher quota) or 429 (too
    many: ``retry_after`` seconds until the quota allows one more, when it is known)."""

    code = "quota_exceeded"
    status = 429

    def __init__(self, message: str, status: int = 429, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class InviteError(VaultError):
    code = "bad_invite"
    status = 403


class AuthError(VaultError):
    code = "unauthorized"
    status = 401


class DeviceRevoked(AuthError):
    """The device logging in (or whose session it is) was revoked from its member's chain. The server says so,
    with the device's name and the day, only to a caller that proved it holds the device key (SECURITY.md,
    "What ids tell a caller without a session")."""

    code = "device_revoked"


class ClosingRefused(ChainError):
    """The server says the organization was closed, but the closing it serves does not verify against what this
    device pinned (forged, below its quorum, of another organization): nothing was wiped."""

    code = "closing_refused"
    exit_code = EXIT_SECURITY


class OrgClosed(AuthError):
    """The server refuses every login and session: the organization was closed (``org.closed``). Only the
    server's word: the client believes a closing only once it verified it against its pinned chain
    (client/closing.py), and wipes nothing before."""

    code = "org_closed"


class ServerMismatch(VaultError):
    code = "server_mismatch"
    exit_code = EXIT_SECURITY


class TransportError(VaultError):
    code = "transport"


# -- the audit log's Merkle tree (security/merkle.py) ----------------------------------------


class ProofError(IntegrityError):
    """A Merkle inclusion or consistency proof does not verify: the log is not what it claims."""

    code = "log_inconsistent"
    status = 409

    def __init__(self, message: str = "Merkle proof does not verify") -> None:
        super().__init__(message)


# -- raised by the client (client/) -----------------------------------------------------------------


class BatchFailed(VaultError):
    """Some files of a batch put failed; the others were stored."""

    code = "batch_failed"

    def __init__(self, stored: list[tuple[str, int, str]], failed: list[tuple[str, BaseException]]) -> None:
        self.stored, self.failed = stored, failed
        why = "; ".join(f"{name}: {_reason(e)}" for name, e in failed)
        super().__init__(f"{len(failed)} of {len(stored) + len(failed)} files were not stored "
                         f"({len(stored)} were): {why}")


class FetchFailed(VaultError):
    """Some documents of a folder ``get`` were not fetched; the others were."""

    code = "fetch_failed"

    def __init__(self, fetched: int, failed: list[tuple[str, BaseException]]) -> None:
        self.failed = failed
        why = "; ".join(f"{name!r}: {_reason(e)}" for name, e in failed)
        super().__init__(f"{len(failed)} of {fetched + len(failed)} documents were not fetched ({fetched} were): {why}")


class BadName(VaultError):
    """A document name that breaks one of the rules of ``vault/names.py`` (the message names it)."""

    code = "bad_name"


class WouldOverwrite(VaultError):
    """``get`` would replace an existing local file whose content is not the version fetched."""

    code = "would_overwrite"


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


class LogInconsistent(ProofError):
    """The server's audit log contradicts a checkpoint this member accepted: stop."""

    def __init__(self, message: str) -> None:
        super().__init__("STOP: " + message + ". The audit log was rewritten, truncated or forked; do not trust "
                         "this server and tell your Security Team.")
        self.reason = message  # what was found, without the advice around it (client/restore.py explains)


class ServerBehind(LogInconsistent):
    """The server is behind what this device accepted before (a restore from an older backup, or a rollback):
    the message says what the device sees and that only the Security Team's acceptance lets it go on."""

    def __init__(self, message: str) -> None:
        ProofError.__init__(self, message)
        self.reason = message


# -- raised by the server only --------------------------------------------------------------------


class Throttled(VaultError):
    """429 with ``Retry-After``: this source sent too many requests, or failed too many logins."""

    code = "throttled"
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class ServiceUnavailable(VaultError):
    code = "unavailable"
    status = 503


class StorageUnavailable(ServiceUnavailable):
    """The server's database went away (stopped, crashed, unreachable): the request is answered 503 and the
    server goes on serving once the database is back (nothing is broken for good)."""


class InsufficientStorage(VaultError):
    """The server ran out of disk space (or a file size limit) while storing a request's bytes."""

    code = "insufficient_storage"
    status = 507


class LogCorrupted(VaultError):
    """The stored log is not a contiguous sequence of leaves (the server refuses to start)."""

    code = "log_corrupted"
    status = 500
