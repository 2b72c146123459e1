"""Invite codes: everything a new member needs to trust, given out of band.

``mv1-`` + base64url (no padding) of ``encode({"v": 1, "url", "cert", "org", "secret"})``:
the server URL, the SHA-256 fingerprint of its TLS certificate, the organization's root
fingerprint (the hash of its ``org.create`` link; ``None`` in the founder invite, which
founds the organization) and the 32-byte one-time invite secret. The secret never
reaches the server: only its public key (``vault.links.invite_public``) is recorded.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from vault.encoding import Fields, decode, encode
from vault.errors import EncodingError, InviteError

PREFIX = "mv1-"


@dataclass(frozen=True)
class InviteCode:
    url: str
    cert_fingerprint: bytes
    org_root: bytes | None
    secret: bytes

    def encode(self) -> str:
        raw = encode(
            {"v": 1, "url": self.url, "cert": self.cert_fingerprint, "org": self.org_root, "secret": self.secret}
        )
        return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def parse(cls, code: str) -> InviteCode:
        code = code.strip()
        if not code.startswith(PREFIX) or len(code) > 2048:
            raise InviteError("not a Member Vault invite code (it starts with mv1-)")
        body = code[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            f = Fields(decode(raw), "invite", {"v", "url", "cert", "org", "secret"})
            if f.int_("v") != 1:
                raise InviteError("unsupported invite version")
            url = f.str_("url", 512)
            if not url.startswith("https://"):
                raise InviteError("invite names a server that is not HTTPS")
            return cls(url, f.bytes_("cert", 32), f.opt_bytes("org", 32), f.bytes_("secret", 32))
        except (binascii.Error, ValueError, EncodingError) as e:
            raise InviteError("invite code is damaged (copy it again, whole)") from e


@dataclass(frozen=True)
class MemberCode:
    """A device-link code (``mvd1-``) or a paper recovery key (``mvr1-``).

    Both carry what a fresh machine needs to trust (server URL, certificate fingerprint,
    organization root) plus the member id and a 32-byte secret: for a device link the
    one-time mailbox secret, for a recovery key the seed of the paper device.
    """

    prefix: str
    url: str
    cert_fingerprint: bytes
    org_root: bytes
    member_id: str
    secret: bytes

    def encode(self) -> str:
        raw = encode({"v": 1, "url": self.url, "cert": self.cert_fingerprint, "org": self.org_root,
                      "member": self.member_id, "secret": self.secret})
        return self.prefix + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def parse(cls, code: str, prefix: str) -> MemberCode:
        code = "".join(code.split())
        what = "recovery key" if prefix == RECOVERY_PREFIX else "device-link code"
        if not code.startswith(prefix) or len(code) > 2048:
            raise InviteError(f"not a Member Vault {what} (it starts with {prefix})")
        body = code[len(prefix) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            f = Fields(decode(raw), what, {"v", "url", "cert", "org", "member", "secret"})
            if f.int_("v") != 1:
                raise InviteError(f"unsupported {what} version")
            return cls(prefix, f.str_("url", 512), f.bytes_("cert", 32), f.bytes_("org", 32), f.str_("member", 64),
                       f.bytes_("secret", 32))
        except (binascii.Error, ValueError, EncodingError) as e:
            raise InviteError(f"{what} is damaged (copy it again, whole)") from e


DEVICE_PREFIX = "mvd1-"
RECOVERY_PREFIX = "mvr1-"
