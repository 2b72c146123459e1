"""SSH signatures (``ssh-keygen -Y sign`` / ``-Y verify``, OpenSSH's PROTOCOL.sshsig) by a device's Ed25519 key.

An export's manifest is signed in this format so that anyone checks it with OpenSSH alone
(docs/format.md, "Export manifest")::

    signed = "SSHSIG" || string(namespace) || string("") || string("sha512") || string(SHA-512(data))
    blob   = "SSHSIG" || uint32(1) || string(public key blob) || string(namespace) || string("")
             || string("sha512") || string(string("ssh-ed25519") || string(Ed25519(signed)))

``string(x)`` is a big-endian uint32 length and ``x``; the public key blob is ``string("ssh-ed25519") ||
string(32-byte key)``. The armored form is ``-----BEGIN SSH SIGNATURE-----``, the blob in base64 in lines
of 70 characters, ``-----END SSH SIGNATURE-----``. Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Final

from vault.crypto import ssh
from vault.errors import BadSignature, EncodingError
from vault.keys import DeviceKeys

KEY_TYPE: Final = b"ssh-ed25519"
HASH: Final = b"sha512"
BEGIN: Final = "-----BEGIN SSH SIGNATURE-----"
END: Final = "-----END SSH SIGNATURE-----"
LINE: Final = 70
MAX_ARMORED: Final = 4096
_PRINCIPAL = re.compile(r"[A-Za-z0-9._@+-]{1,128}")
_NAMESPACE = re.compile(r"[a-z0-9.@-]{1,64}")


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _key_blob(public: bytes) -> bytes:
    return _string(KEY_TYPE) + _string(public)


def signed_message(data: bytes, namespace: str) -> bytes:
    """What the key signs for ``data`` under ``namespace``."""
    return (ssh.SSHSIG_MAGIC + _string(namespace.encode()) + _string(b"") + _string(HASH)
            + _string(hashlib.sha512(data).digest()))


def sign(device: DeviceKeys, data: bytes, namespace: str) -> str:
    """The armored SSH signature of ``data`` by ``device`` (what ``ssh-keygen -Y sign -n namespace`` writes)."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError("a namespace here is lowercase letters, digits, '.', '@' and '-'")
    sig = ssh.sign_sshsig(device.sign_seed, signed_message(data, namespace))
    blob = (ssh.SSHSIG_MAGIC + struct.pack(">I", 1) + _string(_key_blob(device.sign_public))
            + _string(namespace.encode()) + _string(b"") + _string(HASH) + _string(_string(KEY_TYPE) + _string(sig)))
    text = base64.b64encode(blob).decode("ascii")
    return "\n".join([BEGIN, *(text[i : i + LINE] for i in range(0, len(text), LINE)), END]) + "\n"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise EncodingError("the SSH signature is cut short")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def string(self) -> bytes:
        (n,) = struct.unpack(">I", self.take(4))
        return self.take(n)


@dataclass(frozen=True)
class Signature:
    public: bytes  # the raw Ed25519 key the signature names
    namespace: str
    sig: bytes


def parse(armored: str) -> Signature:
    """An armored SSH signature by an Ed25519 key (``EncodingError`` for anything else)."""
    if len(armored) > MAX_ARMORED:
        raise EncodingError("the SSH signature is too large")
    lines = armored.strip().splitlines()
    if len(lines) < 3 or lines[0] != BEGIN or lines[-1] != END:
        raise EncodingError(f"not an armored SSH signature ({BEGIN} ... {END})")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        raise EncodingError("the SSH signature is not base64") from None
    r = _Reader(blob)
    if r.take(6) != ssh.SSHSIG_MAGIC or r.take(4) != struct.pack(">I", 1):
        raise EncodingError("not an SSHSIG signature of version 1")
    key = _Reader(r.string())
    if key.string() != KEY_TYPE:
        raise EncodingError("the signature's key is not an Ed25519 key (ssh-ed25519)")
    public = key.string()
    namespace = r.string()
    r.string()  # reserved
    if r.string() != HASH:
        raise EncodingError("the signature's hash is not sha512")
    sig = _Reader(r.string())
    if sig.string() != KEY_TYPE:
        raise EncodingError("not an ssh-ed25519 signature")
    raw = sig.string()
    if len(public) != 32 or len(raw) != 64 or key.at != len(key.data) or sig.at != len(sig.data) or r.at != len(blob):
        raise EncodingError("malformed SSH signature")
    try:
        return Signature(public, namespace.decode("ascii"), raw)
    except UnicodeDecodeError:
        raise EncodingError("the signature's namespace is not ASCII") from None


def verify(armored: str, data: bytes, namespace: str, public: bytes) -> None:
    """Raises ``BadSignature`` unless ``armored`` is a signature of ``data`` under ``namespace`` by ``public``."""
    try:
        s = parse(armored)
    except EncodingError as e:
        raise BadSignature(f"the manifest signature is malformed: {e}") from None
    if s.namespace != namespace:
        raise BadSignature(f"the signature is for namespace {s.namespace!r}, not {namespace!r}")
    if s.public != public:
        raise BadSignature("the signature is by another key than the allowed signer's")
    ssh.verify_sshsig(public, signed_message(data, namespace), s.sig)


def fingerprint(public: bytes) -> str:
    """The key's fingerprint as ``ssh-keygen -l`` prints it: ``SHA256:`` and unpadded base64."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(_key_blob(public)).digest()).decode("ascii").rstrip("=")


def allowed_signers_line(principal: str, namespace: str, public: bytes) -> str:
    """One line of an OpenSSH ``allowed_signers`` file: the principal may sign in ``namespace`` with this key."""
    if not _PRINCIPAL.fullmatch(principal):
        raise ValueError("a principal here is letters, digits and ._@+-")
    return f'{principal} namespaces="{namespace}" {ssh.openssh_public(public)}\n'


def parse_allowed_signers_line(text: str) -> tuple[str, str, bytes]:
    """(principal, namespace, key) of an ``allowed_signers`` line as ``allowed_signers_line`` writes it."""
    parts = text.strip().split(" ")
    if len(parts) != 4 or not _PRINCIPAL.fullmatch(parts[0]):
        raise EncodingError("an allowed_signers line reads: PRINCIPAL namespaces=\"NS\" ssh-ed25519 KEY")
    ns = re.fullmatch(r'namespaces="([a-z0-9.@-]{1,64})"', parts[1])
    if ns is None:
        raise EncodingError("an allowed_signers line names one namespace")
    return parts[0], ns.group(1), ssh.raw_public(f"{parts[2]} {parts[3]}")
