"""What a client pins about the server's TLS transport: a pin kind and its value.

``cert``   SHA-256 of the server's whole DER certificate (the self-signed certificate ``mvault-server init``
           makes; the only kind before invite version 2). A renewed certificate breaks it.
``spki``   SHA-256 of the DER SubjectPublicKeyInfo of the certificate the client is shown (the server's own
           certificate, or a reverse proxy's): it survives a renewal that keeps the key.
``webpki`` no value: ordinary certificate validation against the system's certificate authorities, with the
           host name checked. Any public CA can then vouch for the transport; what protects the data is
           the pinned organization root and everything signed under it (SECURITY.md "Transport pins").

Written ``KIND:HEX`` (``webpki`` alone) in flags, JSON output and the ``org.server`` link's text form.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from vault.crypto.primitives import sha256
from vault.errors import ChainError, VaultError

KINDS = ("cert", "spki", "webpki")
DIGEST_BYTES = 32


@dataclass(frozen=True)
class Pin:
    kind: str
    value: bytes = b""  # the 32-byte digest (empty for webpki)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise VaultError(f"unknown pin kind {self.kind!r} (one of {', '.join(KINDS)})")
        want = 0 if self.kind == "webpki" else DIGEST_BYTES
        if len(self.value) != want:
            raise VaultError(f"a {self.kind} pin is {'empty' if not want else f'{want} bytes'}")

    @classmethod
    def parse(cls, text: str) -> Pin:
        """``cert:HEX``, ``spki:HEX`` or ``webpki`` (``VaultError`` with a readable reason otherwise)."""
        kind, _, value = text.strip().partition(":")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise VaultError(f"pin {text!r}: the value after {kind}: is not hexadecimal") from None
        return cls(kind, raw)

    def __str__(self) -> str:
        return self.kind if self.kind == "webpki" else f"{self.kind}:{self.value.hex()}"

    def matches(self, der: bytes) -> bool:
        """Whether the peer certificate ``der`` (DER) is the pinned one (webpki: always; the TLS layer checks)."""
        if self.kind == "webpki":
            return True
        return (cert_pin(der) if self.kind == "cert" else spki_pin(der)).value == self.value


def cert_pin(der: bytes) -> Pin:
    return Pin("cert", sha256(der))


def spki_pin(der: bytes) -> Pin:
    """The ``spki`` pin of a DER certificate (``VaultError`` if it is not one)."""
    # Imported here, not at the top: only an ``spki`` pin parses a certificate, and cryptography.x509 costs
    # every command's start ~40 ms (a ``cert`` pin, the default, is a plain SHA-256 of the DER).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise VaultError(f"not a certificate: {e}") from e
    return Pin("spki", sha256(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo)))


def check_https_url(url: str) -> str:
    """A server's public URL: ``https://host[:port]`` with no path, query or user (``VaultError`` otherwise)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise VaultError(f"not a URL: {url!r} ({e})") from None
    if parts.scheme != "https":
        raise VaultError(f"the server's public URL must be https://, not {url!r}")
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment \
            or parts.path not in ("", "/"):
        raise VaultError(f"a server's public URL is https://HOST[:PORT], with nothing else: {url!r}")
    if len(url) > 512:
        raise VaultError("the server's public URL is longer than 512 characters")
    del port
    return url.rstrip("/")


def named_place(act: str, url: str, kind: str, value: bytes) -> Pin:
    """The pin of a place a chain link names (``org.server``, ``coalition.server``): its URL in canonical form and
    a valid pin, or ``ChainError`` naming the act."""
    try:
        if check_https_url(url) != url:
            raise ChainError(f"{act}: the URL is not in its canonical form (no trailing slash)")
        return Pin(kind, value)
    except VaultError as e:
        raise ChainError(f"{act} names no valid place: {e.message}") from e
