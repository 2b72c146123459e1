"""Challenge-response login and session tokens (pure parts).

The device signs ``SIG_AUTH || 0x00 || encode({"origin", "nonce", "member", "device",
"time"})``; the server checks the signature against the device key in the member's
chain, that the nonce is one it issued, unused and unexpired, and that origin and time
match. Session tokens are random; the server stores only ``H(H_TOKEN || token)``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, decode, encode
from vault.keys import DeviceKeys

NONCE_BYTES = 32


def new_nonce() -> bytes:
    return p.random_bytes(NONCE_BYTES)


def new_token() -> str:
    return base64.urlsafe_b64encode(p.random_bytes(32)).decode("ascii").rstrip("=")


def token_hash(token: str) -> bytes:
    return p.tagged_hash(labels.H_TOKEN, token.encode("utf-8", "replace"))


def nonce_hash(nonce: bytes) -> bytes:
    return p.tagged_hash(labels.H_TOKEN, b"nonce\x00" + nonce)


@dataclass(frozen=True)
class AuthStatement:
    raw: bytes
    origin: str
    nonce: bytes
    member: str
    device: str
    time: int

    @classmethod
    def parse(cls, raw: bytes) -> AuthStatement:
        f = Fields(decode(raw), "login statement", {"origin", "nonce", "member", "device", "time"})
        return cls(raw, f.str_("origin", 512), f.bytes_("nonce", NONCE_BYTES), f.str_("member", 64),
                   f.str_("device", 64), f.int_("time", 0))


def sign_login(device: DeviceKeys, *, origin: str, nonce: bytes, member: str, time: int) -> tuple[bytes, bytes]:
    raw = encode({"origin": origin, "nonce": nonce, "member": member, "device": device.device_id, "time": time})
    return raw, device.sign(labels.SIG_AUTH, raw)


def verify_login(sign_public: bytes, statement: AuthStatement, sig: bytes) -> None:
    p.verify(sign_public, labels.SIG_AUTH, statement.raw, sig)


def sha256_hex(data: bytes) -> str:
    return p.sha256(data).hex()
