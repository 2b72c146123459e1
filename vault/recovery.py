"""Recovery codes: a paper key a person can copy by hand (``mvault recovery-key``, ``mvault recover``).

A code is 16 groups of 5 characters of Crockford's base32 (``0-9 A-Z`` without ``I L O U``)::

    K7Q2M-9XH3A-...   (80 characters; read case-insensitively, ``I``/``L`` as ``1``, ``O`` as ``0``,
                       spaces, dashes and line breaks ignored)

Each group is one digit ``x_i`` (i = 1..16) modulo the prime ``P = 2**25 - 39``, written as a 25-bit number
in 5 characters, most significant first. Digits 1..14 are ``N`` written in base ``P``, most significant first;
digits 15 and 16 make ``sum(x_i) = 0`` and ``sum(i * x_i) = 0`` (mod ``P``). That is a Reed-Solomon-like code
of distance 3 over the groups: one mistyped group (whatever characters replace it) changes the first sum by
some ``e != 0`` and the second by ``i * e``, so it is always detected and its number is ``i = s2 / s1``; two
mistyped groups are always detected (not always located).

``N = 2 << 344 | int(secret || member || org)`` (big-endian): a 4-bit format number (2; the older ``mvr1-``
codes are format 1), the 16-byte secret that seeds the paper device, the member id (16 bytes, the raw form of
its 32 hex characters) and the first 11 bytes of the organization root. The server's URL and certificate
fingerprint are not in the code: they are printed beside it (not secret) and given to ``recover`` separately.
See docs/format.md and SECURITY.md ("Recovery keys").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vault.errors import InviteError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHABET)} | {"I": 1, "L": 1, "O": 0}
P = 2**25 - 39
GROUP_CHARS = 5
DATA_GROUPS = 14
GROUPS = DATA_GROUPS + 2
FORMAT = 2
SECRET_BYTES = 16
MEMBER_BYTES = 16
ORG_PREFIX_BYTES = 11
PAYLOAD_BITS = 8 * (SECRET_BYTES + MEMBER_BYTES + ORG_PREFIX_BYTES)
_SEPARATORS = re.compile(r"[\s\-]+")


@dataclass(frozen=True)
class RecoveryCode:
    secret: bytes  # 16 bytes: the paper device's seeds are derived from it (vault.keys.DeviceKeys.from_paper)
    member_id: str  # 32 lowercase hex characters
    org_prefix: bytes  # the first 11 bytes of the organization root

    def groups(self) -> list[str]:
        """The code as its 16 groups of 5 characters."""
        if len(self.secret) != SECRET_BYTES or len(self.org_prefix) != ORG_PREFIX_BYTES:
            raise ValueError("recovery code: wrong secret or organization prefix size")
        member = bytes.fromhex(self.member_id)
        if len(member) != MEMBER_BYTES:
            raise ValueError("recovery code: a member id is 16 bytes")
        n = FORMAT << PAYLOAD_BITS | int.from_bytes(self.secret + member + self.org_prefix, "big")
        digits = []
        for _ in range(DATA_GROUPS):
            n, d = divmod(n, P)
            digits.append(d)
        digits.reverse()
        return [_group(d) for d in digits + list(_check_digits(digits))]

    def encode(self) -> str:
        return "-".join(self.groups())

    @classmethod
    def parse(cls, text: str) -> RecoveryCode:
        """Read a typed code; a mistyped group is named ("group 7 looks mistyped")."""
        digits = _digits(_split(text))
        s1 = sum(digits) % P
        s2 = sum(i * d for i, d in enumerate(digits, 1)) % P
        if s1 or s2:
            where = s2 * pow(s1, -1, P) % P if s1 else 0
            if 1 <= where <= GROUPS:
                raise InviteError(f"recovery key: group {where} looks mistyped (check it against the paper)")
            raise InviteError("recovery key: more than one group looks mistyped (check it against the paper)")
        n = 0
        for d in digits[:DATA_GROUPS]:
            n = n * P + d
        if n >> PAYLOAD_BITS != FORMAT:
            raise InviteError("recovery key: not a format this version reads (or several groups are mistyped)")
        raw = (n & ((1 << PAYLOAD_BITS) - 1)).to_bytes(PAYLOAD_BITS // 8, "big")
        member = raw[SECRET_BYTES : SECRET_BYTES + MEMBER_BYTES]
        return cls(raw[:SECRET_BYTES], member.hex(), raw[SECRET_BYTES + MEMBER_BYTES :])


def looks_like_recovery_code(text: str) -> bool:
    """Whether ``text`` is meant as this format (not an ``mvr1-`` code): at most a few characters off."""
    compact = _SEPARATORS.sub("", text)
    return not compact.lower().startswith("mvr1") and len(compact) <= GROUPS * GROUP_CHARS + 10


def check_server_url(url: str) -> str:
    """The server line's URL, as ``recover --server`` takes it."""
    url = url.strip().rstrip("/")
    if not url.startswith("https://") or len(url) > 512 or any(c.isspace() or not c.isprintable() for c in url):
        raise InviteError("--server: give the server's https:// URL, as printed beside the recovery key")
    return url


def parse_cert_fingerprint(text: str) -> bytes:
    """The server line's certificate fingerprint: 64 hex digits (SHA-256), colons and spaces allowed."""
    compact = re.sub(r"[\s:]+", "", text.strip().lower().removeprefix("sha256:"))
    if not re.fullmatch(r"[0-9a-f]{64}", compact):
        raise InviteError("--cert: give the certificate's SHA-256 fingerprint (64 hex digits), as printed beside "
                          "the recovery key")
    return bytes.fromhex(compact)


def _group(d: int) -> str:
    return "".join(ALPHABET[(d >> (5 * k)) & 31] for k in range(GROUP_CHARS - 1, -1, -1))


def _check_digits(data: list[int]) -> tuple[int, int]:
    """(x15, x16) with x15 + x16 = -A and 15 x15 + 16 x16 = -B (mod P), A = sum x_i, B = sum i x_i."""
    a = sum(data) % P
    b = sum(i * d for i, d in enumerate(data, 1)) % P
    return (b - 16 * a) % P, (15 * a - b) % P


def _split(text: str) -> list[str]:
    """The typed groups: as separated when the separators make 16 groups, else every 5 characters."""
    parts = [p for p in _SEPARATORS.split(text.strip().upper()) if p]
    if len(parts) == GROUPS:
        for i, part in enumerate(parts, 1):
            if len(part) != GROUP_CHARS:
                raise InviteError(f"recovery key: group {i} has {len(part)} characters (each has {GROUP_CHARS})")
        return parts
    compact = "".join(parts)
    if len(compact) != GROUPS * GROUP_CHARS:
        raise InviteError(f"recovery key: {len(compact)} characters where it has {GROUPS * GROUP_CHARS} "
                          f"({GROUPS} groups of {GROUP_CHARS}); check for a missing or doubled group")
    return [compact[i : i + GROUP_CHARS] for i in range(0, len(compact), GROUP_CHARS)]


def _digits(groups: list[str]) -> list[int]:
    digits = []
    bad = []
    for i, group in enumerate(groups, 1):
        value = 0
        for c in group:
            if c not in _VALUE:
                raise InviteError(f"recovery key: group {i} has {c!r}, which is not in a recovery key "
                                  f"(letters and digits except U)")
            value = value << 5 | _VALUE[c]
        if value >= P:
            bad.append(i)
        digits.append(value)
    if len(bad) == 1:
        raise InviteError(f"recovery key: group {bad[0]} looks mistyped (check it against the paper)")
    if bad:
        raise InviteError("recovery key: more than one group looks mistyped (check it against the paper)")
    return digits
