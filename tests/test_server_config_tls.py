"""The TLS and reverse-proxy options as configuration keys (issue 17), through the real ``mvault-server``:
``tls_cert``, ``tls_key``, ``behind_proxy``, ``pin``, ``public_url``, ``trusted_proxies`` and ``proxy_header`` come
from the TOML file, ``MVAULT_*`` or a flag (in that order of strength), each checked with a message naming the key
and its source; ``init`` reads the same configuration as ``run``; ``run`` serves the configured certificate."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers.pki import SERVER, Ca, ServerProcess, free_port, new_key, write_pair
from tests.helpers.pki import servers as servers_fixture
from vault.invite import InviteCode
from vault.pin import Pin, spki_pin

servers = servers_fixture
PROXY_PIN = "spki:" + "ab" * 32


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}, **extra}


def _server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=60,
                          env=env if env is not None else _env())


def _json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = _server(*args, "--json", env=env)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _refused(*args: str, env: dict[str, str] | None = None) -> str:
    r = _server(*args, env=env)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def _pair(where: Path) -> tuple[Path, Path, bytes]:
    ca, key = Ca.make(), new_key()
    leaf = ca.issue(key, ["vault.example.org"])
    crt, k = write_pair(leaf, key, [ca.cert], where, "server")
    return crt, k, leaf.public_bytes(serialization.Encoding.DER)


def test_tls_and_proxy_keys_from_the_file_the_environment_and_flags(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    crt, k, _ = _pair(data)
    (data / "config.toml").write_text(
        f'tls_cert = "{crt.name}"\ntls_key = "{k}"\npin = "cert"\npublic_url = "https://vault.example.org"\n'
        'behind_proxy = true\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]\nproxy_header = "forwarded"\n')
    opts = _json("config", "--data", str(data))["options"]
    conf = str(data / "config.toml")
    assert opts["tls_cert"] == {"value": str(crt), "source": conf, "env": "MVAULT_TLS_CERT", "flag": "--tls-cert"}
    assert opts["tls_key"]["value"] == str(k) and opts["behind_proxy"]["value"] is True
    assert opts["trusted_proxies"] == {"value": ["127.0.0.1", "10.0.0.0/8"], "source": conf,
                                       "env": "MVAULT_TRUSTED_PROXIES", "flag": "--trusted-proxy"}
    assert (opts["pin"]["value"], opts["proxy_header"]["value"]) == ("cert", "forwarded")
    env = _env(MVAULT_PIN="webpki", MVAULT_TRUSTED_PROXIES="::1, 192.168.1.0/24", MVAULT_BEHIND_PROXY="false",
               MVAULT_TLS_KEY=str(k))
    opts = _json("config", "--data", str(data), env={**env, "MVAULT_TRUSTED_PROXIES": ""})["options"]
    assert opts["trusted_proxies"]["value"] == [] and opts["behind_proxy"]["value"] is False
    opts = _json("config", "--data", str(data), "--pin", PROXY_PIN, "--behind-proxy", env=env)["options"]
    assert (opts["pin"]["value"], opts["pin"]["source"]) == (PROXY_PIN, "--pin")
    assert (opts["behind_proxy"]["value"], opts["behind_proxy"]["source"]) == (True, "--behind-proxy")
    assert opts["trusted_proxies"] == {"value": ["::1", "192.168.1.0/24"], "source": "MVAULT_TRUSTED_PROXIES",
                                       "env": "MVAULT_TRUSTED_PROXIES", "flag": "--trusted-proxy"}
    opts = _json("config", "--data", str(data), "--behind-proxy", "--trusted-proxy", "10.1.2.3",
                 "--trusted-proxy", "fd00::/8", "--proxy-header", "x-forwarded-for", env=env)["options"]
    assert opts["trusted_proxies"]["value"] == ["10.1.2.3", "fd00::/8"]  # the flags replace the variable's list
    assert opts["trusted_proxies"]["source"] == "--trusted-proxy"
    assert (opts["proxy_header"]["value"], opts["proxy_header"]["source"]) == ("x-forwarded-for", "--proxy-header")
    bad = _server("config", "--data", str(data), "--behind-proxy", "--trusted-proxy", "proxy.lan", env=env)
    assert bad.returncode == 1 and "--trusted-proxy" in bad.stderr and "not an IP" in bad.stderr
    assert opts["tls_key"]["source"] == "MVAULT_TLS_KEY" and opts["tls_cert"]["source"] == conf
    text = _server("config", "--data", str(data)).stdout  # the table for people says the same
    assert any(line.startswith("trusted_proxies") and conf in line for line in text.splitlines())


@pytest.mark.parametrize(("text", "words"), [
    ('pin = "sha1"\n', ["'pin'", "not a pin"]),
    ('pin = "spki:zz"\n', ["'pin'", "hexadecimal"]),
    ('tls_cert = "missing.pem"\n', ["'tls_cert'", "no such file", "missing.pem"]),
    ('public_url = "http://vault.example.org"\n', ["'public_url'", "https://"]),
    ('behind_proxy = true\ntrusted_proxies = ["proxy.lan"]\n', ["'trusted_proxies'", "proxy.lan", "not an IP"]),
    ('behind_proxy = "yes"\n', ["'behind_proxy'", "expected `bool`"]),
    ('proxy_header = "x-real-ip"\n', ["'proxy_header'", "x-real-ip"]),
    ('trusted_proxies = ["127.0.0.1"]\n', ["trusted_proxies", "behind_proxy"]),
])
def test_each_bad_tls_key_is_refused_by_name(tmp_path: Path, text: str, words: list[str]) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    for command in ("config", "init"):
        data = ("--data", str(tmp_path / "d")) if command == "init" else ()
        line = _refused(command, *data, "--config", str(conf))
        assert str(conf) in line, line
        for word in words:
            assert word in line, line
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_bad_tls_environment_variables_and_flags_are_refused_by_name(tmp_path: Path) -> None:
    line = _refused("config", env=_env(MVAULT_BEHIND_PROXY="perhaps"))
    assert "environment variable MVAULT_BEHIND_PROXY" in line and "expected `bool`" in line
    line = _refused("config", env=_env(MVAULT_BEHIND_PROXY="1", MVAULT_TRUSTED_PROXIES="127.0.0.1,nope"))
    assert "MVAULT_TRUSTED_PROXIES" in line and "'nope'" in line
    line = _refused("config", "--tls-cert", str(tmp_path / "none.pem"))
    assert "flag --tls-cert" in line and "no such file" in line


def test_init_reads_the_configuration_file_like_run(tmp_path: Path) -> None:
    """The invite ``init`` prints names what the configuration says (before: ``init`` read only its flags and
    printed https://127.0.0.1:8443 and the self-signed certificate's pin)."""
    data = tmp_path / "d"
    data.mkdir()
    crt, k, der = _pair(tmp_path)
    (data / "config.toml").write_text(f'host = "0.0.0.0"\nport = 9444\npublic_url = "https://vault.example.org"\n'
                                      f'tls_cert = "{crt}"\ntls_key = "{k}"\n')
    r = _server("init", "--data", str(data), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["url"] == "https://vault.example.org" and info["pin"] == str(spki_pin(der))
    assert "warning" not in r.stderr  # the public URL is configured: nothing to warn about
    invite = InviteCode.parse(info["invite"])
    assert (invite.url, invite.pin) == ("https://vault.example.org", spki_pin(der))
    assert not (data / "server.crt").exists()  # the configured certificate, no self-signed one
    # The environment and flags over the file, as for run: behind a proxy with the proxy's pin.
    proxied = tmp_path / "p"
    proxied.mkdir()
    (proxied / "config.toml").write_text('public_url = "https://vault.example.org"\nbehind_proxy = true\n')
    info = _json("init", "--data", str(proxied), env=_env(MVAULT_PIN=PROXY_PIN))
    assert InviteCode.parse(info["invite"]).pin == Pin.parse(PROXY_PIN) and info["fingerprint"] == ""
    assert _json("init", "--data", str(proxied), "--pin", "webpki", env=_env(MVAULT_PIN=PROXY_PIN))["pin"] == "webpki"


def test_run_serves_the_certificate_the_file_names(tmp_path: Path, servers: list[ServerProcess]) -> None:
    data = tmp_path / "d"
    data.mkdir()
    crt, k, der = _pair(data)
    (data / "config.toml").write_text(f'tls_cert = "{crt.name}"\ntls_key = "{k.name}"\n')  # relative to the file
    port = free_port()
    s = ServerProcess(data, port)
    servers.append(s)
    s.start()
    assert s.info["pin"] == str(spki_pin(der))
    served = x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())
    assert served.public_bytes(serialization.Encoding.DER) == der
