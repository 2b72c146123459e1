"""The TLS modes end to end (issue 17), each with the real ``mvault-server run`` and the real CLI:

- the operator's own certificate (from a little CA made here) pinned by ``spki``: a renewed certificate with
  the same key keeps working, a certificate with another key is refused as an impostor (exit 3);
- ``webpki``: the client validates against the CAs it trusts (the test CA, through ``SSL_CERT_FILE``) and the
  host name: a certificate not valid for the URL's host is refused (exit 3) before the join sends anything;
- behind a TLS-terminating reverse proxy (a TCP proxy written here): join, invite, put and get work.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.conftest import Member
from tests.helpers.pki import Ca, ServerProcess, free_port, new_key, write_pair
from tests.helpers.pki import servers as servers_fixture
from vault.invite import InviteCode
from vault.pin import spki_pin

servers = servers_fixture  # the fixture (tests/helpers/pki.py)


def _start(servers: list[ServerProcess], s: ServerProcess) -> ServerProcess:
    servers.append(s)
    return s.start()


def _founder(make_member: Any, invite: str, ca_file: Path | None = None) -> Member:
    m: Member = make_member("alice")
    if ca_file is not None:
        m.env_extra["SSL_CERT_FILE"] = str(ca_file)
    return m


def test_own_certificate_spki_pin_survives_renewal_and_refuses_another_key(
        tmp_path: Path, make_member: Any, servers: list[ServerProcess]) -> None:
    ca, key = Ca.make(), new_key()
    port, data = free_port(), tmp_path / "data"
    crt, k = write_pair(ca.issue(key, ["127.0.0.1"]), key, [ca.cert], tmp_path, "first")
    s = _start(servers, ServerProcess(data, port, "--tls-cert", str(crt), "--tls-key", str(k)))
    assert s.info["pin"].startswith("spki:")
    invite = InviteCode.parse(s.info["invite"])
    assert invite.pin_kind == "spki"
    alice = _founder(make_member, s.info["invite"])
    alice.ok("join", s.info["invite"], "--name", "alice")
    assert alice.json("server", "show") == {"url": s.info["url"], "pin": s.info["pin"]}
    member_invite = InviteCode.parse(alice.json("invite")["invite"])  # invites she makes pin what she pins
    assert (member_invite.url, str(member_invite.pin)) == (s.info["url"], s.info["pin"])
    alice.ok("team", "create", "drafting", "--kind", "program")
    (tmp_path / "plan.txt").write_text("the plan")
    alice.ok("put", "drafting", str(tmp_path / "plan.txt"))
    s.stop()

    renewed = ca.issue(key, ["127.0.0.1", "localhost"])  # a renewal: new serial and dates, the same key
    crt2, k2 = write_pair(renewed, key, [ca.cert], tmp_path, "renewed")
    s2 = _start(servers, ServerProcess(data, port, "--tls-cert", str(crt2), "--tls-key", str(k2)))
    assert s2.info["fingerprint"] != s.info["fingerprint"] and s2.info["pin"] == s.info["pin"]
    assert "plan.txt" in alice.ok("ls", "drafting").out
    s2.stop()

    other = new_key()
    crt3, k3 = write_pair(ca.issue(other, ["127.0.0.1"]), other, [ca.cert], tmp_path, "other")
    _start(servers, ServerProcess(data, port, "--tls-cert", str(crt3), "--tls-key", str(k3)))
    r = alice.fails("ls", "drafting", contains="does not match the pinned spki")
    assert r.code == 3


def test_webpki_checks_the_host_name_and_the_trusted_cas(tmp_path: Path, make_member: Any,
                                                         servers: list[ServerProcess]) -> None:
    ca, key = Ca.make(), new_key()
    ca_file = ca.write(tmp_path / "ca.pem")
    port = free_port()
    crt, k = write_pair(ca.issue(key, ["localhost"]), key, [ca.cert], tmp_path, "server")  # not for 127.0.0.1
    wrong = _start(servers, ServerProcess(tmp_path / "wrong", port, "--tls-cert", str(crt), "--tls-key", str(k),
                                          "--pin", "webpki"))
    assert wrong.info["url"] == f"https://127.0.0.1:{port}" and wrong.info["pin"] == "webpki"
    alice = _founder(make_member, wrong.info["invite"], ca_file)
    r = alice.fails("join", wrong.info["invite"], "--name", "alice", contains="not valid for")
    assert r.code == 3 and not (alice.home / "config.bin").exists()
    wrong.stop()

    right = _start(servers, ServerProcess(tmp_path / "right", port, "--tls-cert", str(crt), "--tls-key", str(k),
                                          "--pin", "webpki", "--public-url", f"https://localhost:{port}"))
    stranger: Member = make_member("stranger")  # does not trust the test CA
    r = stranger.fails("join", right.info["invite"], "--name", "stranger", contains="not valid for")
    assert r.code == 3
    alice.ok("join", right.info["invite"], "--name", "alice")
    assert alice.json("whoami")["name"] == "alice"


class TlsProxy:
    """A reverse proxy terminating TLS on ``port`` and forwarding the bytes to a plain HTTP backend (in a thread)."""

    def __init__(self, port: int, backend: int, crt: Path, key: Path) -> None:
        self.port, self.backend = port, backend
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(crt, key)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.connections = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                                   ssl=self.ctx))
        self.ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend)
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await r.read(1 << 16):
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(OSError, RuntimeError):
                w.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def __enter__(self) -> TlsProxy:
        self.thread.start()
        assert self.ready.wait(20)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)


def test_behind_a_tls_terminating_proxy(tmp_path: Path, make_member: Any, servers: list[ServerProcess]) -> None:
    ca, key = Ca.make(), new_key()
    leaf = ca.issue(key, ["127.0.0.1"])
    crt, k = write_pair(leaf, key, [ca.cert], tmp_path, "proxy")
    pin = str(spki_pin(leaf.public_bytes(serialization.Encoding.DER)))
    backend, front = free_port(), free_port()
    s = _start(servers, ServerProcess(tmp_path / "data", backend, "--behind-proxy", "--public-url",
                                      f"https://127.0.0.1:{front}", "--pin", pin))
    assert s.info["url"] == f"https://127.0.0.1:{front}" and s.info["pin"] == pin
    with TlsProxy(front, backend, crt, k) as proxy:
        alice = _founder(make_member, s.info["invite"])
        alice.ok("join", s.info["invite"], "--name", "alice")
        bob: Member = make_member("bob")
        bob.ok("join", alice.json("invite")["invite"], "--name", "bob")
        alice.ok("team", "create", "drafting", "--kind", "program")
        alice.ok("team", "add", "drafting", "bob", "--role", "writer")
        (tmp_path / "plan.txt").write_text("the plan, through the proxy")
        alice.ok("put", "drafting", str(tmp_path / "plan.txt"))
        out = tmp_path / "got"
        out.mkdir()
        bob.ok("get", "drafting", "plan.txt", "--output", str(out / "plan.txt"))
        assert (out / "plan.txt").read_text() == "the plan, through the proxy"
        assert proxy.connections > 0
