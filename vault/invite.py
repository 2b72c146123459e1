"""Invite codes: everything a new member needs to trust, given out of band.

``mv1-`` + base64url (no padding) of ``encode({...})``. Version 1 (``"v": 1``): ``url``, ``cert`` (the SHA-256
fingerprint of the server's TLS certificate), ``org`` (the organization's root fingerprint, the hash of its
``org.create`` link; ``None`` in the founder invite, which founds the organization) and ``secret`` (the 32-byte
one-time invite secret). Version 2 (``"v": 2``) replaces ``cert`` by ``pin_kind`` (``cert``, ``spki`` or
``webpki``, ``vault.pin``) and ``pin`` (its 32-byte value; empty for ``webpki``). A ``cert`` pin is still
written as version 1, so older clients keep reading such codes. The secret never reaches the server: only its
public key (``vault.links.invite_public``) is recorded. Device-link and recovery codes (``MemberCode``) take the
same two versions.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from vault.encoding import Fields, decode, encode
from vault.errors import EncodingError, InviteError, VaultError
from vault.pin import Pin

PREFIX = "mv1-"


def _pin_fields(pin: Pin) -> dict[str, Any]:
    """The version and pin keys of a code: version 1 for a ``cert`` pin, version 2 otherwise."""
    if pin.kind == "cert":
        return {"v": 1, "cert": pin.value}
    return {"v": 2, "pin_kind": pin.kind, "pin": pin.value}


def _read(raw: bytes, what: str, keys: set[str]) -> tuple[Fields, Pin]:
    value = decode(raw)
    v = Fields(value, what).int_("v") if isinstance(value, dict) and "v" in value else 0
    if v == 1:
        f = Fields(value, what, keys | {"v", "cert"})
        return f, Pin("cert", f.bytes_("cert", 32))
    if v == 2:
        f = Fields(value, what, keys | {"v", "pin_kind", "pin"})
        kind, value = f.str_("pin_kind", 16), f.bytes_("pin", max_size=32)
        try:
            return f, Pin(kind, value)
        except VaultError as e:
            raise InviteError(f"{what} names a transport pin this version does not know: {e.message}") from e
    raise InviteError(f"unsupported {what} version")


@dataclass(frozen=True)
class InviteCode:
    url: str
    cert_fingerprint: bytes  # the pin's value (empty for webpki)
    org_root: bytes | None
    secret: bytes
    pin_kind: str = "cert"

    @property
    def pin(self) -> Pin:
        return Pin(self.pin_kind, self.cert_fingerprint)

    def encode(self) -> str:
        raw = encode({**_pin_fields(self.pin), "url": self.url, "org": self.org_root, "secret": self.secret})
        return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def parse(cls, code: str) -> InviteCode:
        code = code.strip()
        if not code.startswith(PREFIX) or len(code) > 2048:
            raise InviteError("not a Member Vault invite code (it starts with mv1-)")
        body = code[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            f, pin = _read(raw, "invite", {"url", "org", "secret"})
            url = f.str_("url", 512)
            if not url.startswith("https://"):
                raise InviteError("invite names a server that is not HTTPS")
            return cls(url, pin.value, f.opt_bytes("org", 32), f.bytes_("secret", 32), pin.kind)
        except (binascii.Error, ValueError, EncodingError) as e:
            raise InviteError("invite code is damaged (copy it again, whole)") from e


@dataclass(frozen=True)
class MemberCode:
    """A device-link code (``mvd1-``) or a paper recovery key (``mvr1-``).

    Both carry what a fresh machine needs to trust (server URL, transport pin, organization root) plus the
    member id and a 32-byte secret: for a device link the one-time mailbox secret, for a recovery key the seed
    of the paper device.
    """

    prefix: str
    url: str
    cert_fingerprint: bytes  # the pin's value (empty for webpki)
    org_root: bytes
    member_id: str
    secret: bytes
    pin_kind: str = "cert"

    @property
    def pin(self) -> Pin:
        return Pin(self.pin_kind, self.cert_fingerprint)

    def encode(self) -> str:
        raw = encode({**_pin_fields(self.pin), "url": self.url, "org": self.org_root, "member": self.member_id,
                      "secret": self.secret})
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
            f, pin = _read(raw, what, {"url", "org", "member", "secret"})
            url = f.str_("url", 512)
            if not url.startswith("https://"):  # over http:// no pin is checked: the code's pin would mean nothing
                raise InviteError(f"{what} names a server that is not HTTPS")
            return cls(prefix, url, pin.value, f.bytes_("org", 32), f.str_("member", 64),
                       f.bytes_("secret", 32), pin.kind)
        except (binascii.Error, ValueError, EncodingError) as e:
            raise InviteError(f"{what} is damaged (copy it again, whole)") from e


DEVICE_PREFIX = "mvd1-"
RECOVERY_PREFIX = "mvr1-"
