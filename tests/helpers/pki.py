"""A little certificate authority for the TLS tests: a CA, leaf certificates for names and addresses (renewed
with the same key or a new one), PEM files, and the ``mvault-server`` subprocess serving a data directory
with them."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER = str(Path(sys.executable).parent / "mvault-server")
Key = ec.EllipticCurvePrivateKey


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Ca:
    key: Key
    cert: x509.Certificate

    @classmethod
    def make(cls, name: str = "Test CA") -> Ca:
        key = new_key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def issue(self, key: Key, names: list[str]) -> x509.Certificate:
        """A server certificate for ``names`` (DNS names or IP addresses) with ``key``: a new serial each time."""
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


def write_pair(cert: x509.Certificate, key: Key, chain: list[x509.Certificate], where: Path,
               stem: str) -> tuple[Path, Path]:
    """``stem.crt`` (the leaf, then ``chain``) and ``stem.key`` in ``where``."""
    crt, k = where / f"{stem}.crt", where / f"{stem}.key"
    crt.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain]))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    os.chmod(k, 0o600)
    return crt, k


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``mvault-server run --json`` as a subprocess; ``info`` is the JSON line it prints once listening."""

    def __init__(self, data: Path, port: int, *args: str) -> None:
        self.data, self.port, self.args = data, port, args
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen([SERVER, "run", "--data", str(self.data), "--port", str(self.port), "--json",
                                      *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"mvault-server did not start: {err}")
        self.info = json.loads(line)
        _wait_listening(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        if self.proc is not None:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        self.proc = None


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """The ``mvault-server`` processes a test starts (``ServerProcess.start``), stopped after it."""
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.stop()


def _wait_listening(port: int) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")
