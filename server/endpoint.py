"""Where members reach the server and what their clients pin: the public URL and the TLS mode.

Three TLS modes (docs/tls-and-moves.md, SECURITY.md "Transport pins"):

``self-signed``  the certificate ``mvault-server init`` made in DIR (``server.crt``/``server.key``); the pin is
                 ``cert:`` its SHA-256 (or ``spki:`` its key, with ``--pin spki``).
``own``          the operator's certificate chain and key (``--tls-cert``/``--tls-key``, e.g. from a public CA);
                 the pin is ``spki:`` the leaf's key (survives renewals with the same key), ``cert:`` the leaf,
                 or ``webpki`` (the system's CAs and the host name) with ``--pin``.
``proxy``        ``--behind-proxy``: a reverse proxy terminates TLS; this server speaks plain HTTP on a loopback
                 address only. The server never sees the proxy's certificate, so ``--pin`` says what members
                 will see: ``webpki``, or ``spki:HEX``/``cert:HEX`` of the proxy's certificate
                 (``mvault-server pin --cert FILE`` prints it).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from server.tls import make_certificate, server_context
from vault.errors import VaultError
from vault.pin import Pin, cert_pin, check_https_url, spki_pin

WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Tls:
    """The TLS options as given (all empty: the self-signed certificate in DIR)."""

    cert: Path | None = None
    key: Path | None = None
    behind_proxy: bool = False
    pin: str | None = None  # --pin: a kind (cert, spki, webpki) or KIND:HEX


SELF_SIGNED: Final = Tls()


@dataclass(frozen=True)
class Endpoint:
    url: str
    pin: Pin
    mode: str  # self-signed | own | proxy
    fingerprint: str = ""  # hex SHA-256 of the certificate served here ("" behind a proxy)
    warning: str = ""  # what the operator must know (a wildcard bind without --public-url)

    def ssl_context(self, data: Path, tls: Tls) -> ssl.SSLContext | None:
        if self.mode == "proxy":
            return None
        if self.mode == "own":
            assert tls.cert is not None and tls.key is not None
            return server_context(tls.cert, tls.key)
        return server_context(data / "server.crt", data / "server.key")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in WILDCARDS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"https://{shown}:{port}"


def leaf_der(cert: Path) -> bytes:
    """The first certificate of a PEM chain file, as DER (``VaultError`` if there is none)."""
    try:
        pem = cert.read_bytes()
        return x509.load_pem_x509_certificates(pem)[0].public_bytes(serialization.Encoding.DER)
    except (ValueError, IndexError) as e:
        raise VaultError(f"{cert}: not a PEM certificate ({e})") from e


def _pin_of(der: bytes, wanted: str | None, default: str, allowed: tuple[str, ...]) -> Pin:
    kind = (wanted or default).partition(":")[0]
    if kind not in allowed:
        raise VaultError(f"--pin {wanted}: with this certificate the pin is one of {', '.join(allowed)}")
    if wanted is not None and ":" in wanted:
        raise VaultError(f"--pin {wanted}: give the kind only; the value comes from the certificate")
    return Pin("webpki") if kind == "webpki" else cert_pin(der) if kind == "cert" else spki_pin(der)


def resolve(data: Path, host: str, port: int, public_url: str, tls: Tls) -> Endpoint:
    """Check the options together and make the self-signed certificate if it is the one served and missing."""
    url = check_https_url(public_url) if public_url else local_url(host, port)
    warning = ""
    if host in WILDCARDS and not public_url:
        warning = (f"listening on every address ({host or '*'}) but invites, device links and recovery keys name "
                   f"{url}, which works only on this machine: give --public-url https://HOST[:PORT] "
                   "(the address members use)")
    if tls.behind_proxy:
        if tls.cert is not None or tls.key is not None:
            raise VaultError("--behind-proxy: the proxy terminates TLS; --tls-cert/--tls-key are for serving TLS here")
        if not is_loopback(host):
            raise VaultError(f"--behind-proxy serves plain HTTP: it listens on a loopback address only, not {host!r} "
                             "(the proxy connects to 127.0.0.1)")
        if not public_url:
            raise VaultError("--behind-proxy needs --public-url: the https:// address the proxy serves")
        if tls.pin is None:
            raise VaultError("--behind-proxy needs --pin: webpki (a certificate from a public CA), or spki:HEX of "
                             "the proxy's certificate (`mvault-server pin --cert FILE` prints it)")
        try:
            pin = Pin.parse(tls.pin)
        except VaultError as e:
            raise VaultError(f"--pin: {e.message}") from e
        return Endpoint(url, pin, "proxy", "", warning)
    if (tls.cert is None) != (tls.key is None):
        raise VaultError("--tls-cert and --tls-key go together")
    if tls.cert is not None:
        der = leaf_der(tls.cert)
        return Endpoint(url, _pin_of(der, tls.pin, "spki", ("spki", "cert", "webpki")), "own",
                        cert_pin(der).value.hex(), warning)
    cert, key = data / "server.crt", data / "server.key"
    if not cert.exists() or not key.exists():
        make_certificate(cert, key, host)
    der = leaf_der(cert)
    return Endpoint(url, _pin_of(der, tls.pin, "cert", ("cert", "spki")), "self-signed", cert_pin(der).value.hex(),
                    warning)


@click.command("pin")
@click.option("--cert", "cert", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True,
              help="a PEM certificate (chain): the first one is the server's (or the proxy's)")
def pin_command(cert: Path) -> None:
    """Print the spki and cert pins of a certificate (for --pin behind a proxy)."""
    try:
        der = leaf_der(cert)
        click.echo(str(spki_pin(der)))
        click.echo(str(cert_pin(der)))
    except (VaultError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(1) from e
