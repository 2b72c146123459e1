"""``mvault-server init/run --public-url`` and the TLS options checked together (issue 17): the URL members
use is what invites name; a wildcard bind without it is said in the banner; bad combinations are refused
with one ``error:`` line and nothing served."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.helpers.pki import SERVER, Ca, new_key, write_pair
from vault.invite import InviteCode
from vault.pin import Pin, spki_pin


def _init(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SERVER, "init", "--data", str(data), "--port", "9555", *args], capture_output=True,
                          text=True, timeout=60)


def _refused(r: subprocess.CompletedProcess[str], contains: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert contains in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_public_url_is_what_the_founder_invite_names(tmp_path: Path) -> None:
    r = _init(tmp_path / "d", "--host", "0.0.0.0", "--public-url", "https://vault.example.org:9443/", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["url"] == "https://vault.example.org:9443"
    invite = InviteCode.parse(info["invite"])
    assert invite.url == "https://vault.example.org:9443"
    assert invite.pin_kind == "cert" and invite.cert_fingerprint.hex() == info["fingerprint"]
    assert info["pin"] == f"cert:{info['fingerprint']}"
    assert "warning" not in r.stderr  # the URL is given: nothing to warn about
    assert info["invite"] == InviteCode(invite.url, invite.cert_fingerprint, None, invite.secret).encode()  # still v1


def test_wildcard_bind_without_public_url_is_said_in_the_banner(tmp_path: Path) -> None:
    r = _init(tmp_path / "d", "--host", "0.0.0.0")
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stdout and "--public-url" in r.stdout and "https://127.0.0.1:9555" in r.stdout
    assert r.stderr.startswith("warning: ") and "--public-url" in r.stderr
    as_json = _init(tmp_path / "d", "--host", "0.0.0.0", "--json")
    assert json.loads(as_json.stdout)["url"] == "https://127.0.0.1:9555"  # stdout stays one JSON object
    assert "--public-url" in as_json.stderr


def test_bad_public_urls_and_tls_combinations_are_refused(tmp_path: Path) -> None:
    _refused(_init(tmp_path / "a", "--public-url", "http://vault.example.org"), "must be https://")
    _refused(_init(tmp_path / "b", "--public-url", "https://vault.example.org/vault?x=1"), "nothing else")
    _refused(_init(tmp_path / "c", "--behind-proxy", "--host", "0.0.0.0", "--public-url", "https://v.example.org",
                   "--pin", "webpki"), "loopback")
    _refused(_init(tmp_path / "d", "--behind-proxy", "--pin", "webpki"), "needs --public-url")
    _refused(_init(tmp_path / "e", "--behind-proxy", "--public-url", "https://v.example.org"), "needs --pin")
    _refused(_init(tmp_path / "f", "--behind-proxy", "--public-url", "https://v.example.org", "--pin", "spki:zz"),
             "not hexadecimal")
    _refused(_init(tmp_path / "g", "--pin", "webpki"), "one of cert, spki")  # a self-signed certificate
    for d in "abcdefg":
        assert not (tmp_path / d / "vault.db").exists() or d == "g"


def test_own_certificate_pins_its_key_and_behind_proxy_the_given_pin(tmp_path: Path) -> None:
    ca, key = Ca.make(), new_key()
    leaf = ca.issue(key, ["vault.example.org"])
    crt, k = write_pair(leaf, key, [ca.cert], tmp_path, "server")
    r = _init(tmp_path / "d", "--tls-cert", str(crt), "--tls-key", str(k), "--public-url",
              "https://vault.example.org", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert info["pin"] == str(spki_pin(der))
    invite = InviteCode.parse(info["invite"])
    assert invite.pin == spki_pin(der) and invite.url == "https://vault.example.org"
    assert not (tmp_path / "d" / "server.crt").exists()  # no self-signed certificate made
    pins = subprocess.run([SERVER, "pin", "--cert", str(crt)], capture_output=True, text=True, timeout=60)
    assert pins.stdout.splitlines()[0] == info["pin"]
    proxied = _init(tmp_path / "p", "--behind-proxy", "--public-url", "https://vault.example.org", "--pin",
                    info["pin"], "--json")
    assert proxied.returncode == 0, proxied.stderr
    p = json.loads(proxied.stdout)
    assert p["pin"] == info["pin"] and p["fingerprint"] == ""
    assert InviteCode.parse(p["invite"]).pin == Pin.parse(info["pin"])
    webpki = _init(tmp_path / "w", "--tls-cert", str(crt), "--tls-key", str(k), "--pin", "webpki", "--public-url",
                   "https://vault.example.org", "--json")
    assert InviteCode.parse(json.loads(webpki.stdout)["invite"]).pin == Pin("webpki")
