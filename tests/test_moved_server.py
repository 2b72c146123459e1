"""A signed, two-person ``server moved`` act (issue 17): ``org.server`` in the organization chain.

Members move with the organization: a client talking to the old server follows the move once the chain puts
it in force (and says so once); a client whose old server is gone switches with ``mvault server moved URL
--pin PIN`` only when the organization chain at URL names exactly that place. The attacker cases: a move
signed by a non-NCC member served by the server, a move that is not in the chain, and a URL and pin given out
of band that the chain does not name: refused (exit 3), the client's server unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from server.tls import fingerprint, make_certificate
from tests.conftest import Member, Org, ServerThread
from tests.helpers.forgery import Forge, Forgery, served
from tests.helpers.forgery import forge as forge_fixture
from tests.helpers.members import unlock_here
from tests.helpers.pki import ServerProcess, free_port
from tests.helpers.pki import servers as servers_fixture
from vault.links import make_link

forge = forge_fixture  # the fixture (tests/helpers/forgery.py)
copies = servers_fixture  # the copies of a server's data a test serves (tests/helpers/pki.py)

def new_place(root: Path, name: str) -> tuple[Path, int, str, str]:
    """A data directory holding only a new self-signed certificate: (dir, port, url, pin)."""
    data, port = root / name, free_port()
    data.mkdir(mode=0o700)
    make_certificate(data / "server.crt", data / "server.key", "127.0.0.1")
    return data, port, f"https://127.0.0.1:{port}", f"cert:{fingerprint(data / 'server.crt').hex()}"


def copy_and_serve(old: ServerThread, data: Path, port: int, copies: list[ServerProcess]) -> ServerProcess:
    """The stopped old server's data directory copied under ``data`` (keeping its new certificate) and served."""
    old.stop()
    shutil.copytree(old.data_dir, data, dirs_exist_ok=True, ignore=shutil.ignore_patterns("server.crt", "server.key"))
    s = ServerProcess(data, port)
    copies.append(s)
    return s.start()


def place(m: Member) -> Any:
    return m.json("server", "show")


def test_members_follow_a_two_person_move_and_a_gone_server_is_found_out_of_band(
        org: Org, make_member: Any, tmp_path: Path, copies: list[ServerProcess]) -> None:
    alice, bob = org.alice, org.bob
    carol: Member = make_member("carol")
    carol.ok("join", alice.json("invite")["invite"], "--name", "carol")
    unlock_here(alice, bob, carol)
    old = place(alice)
    assert old == {"url": org.server.url, "pin": f"cert:{org.server.fingerprint}"}
    (tmp_path / "plan.txt").write_text("the plan before the move")
    alice.ok("put", "drafting", str(tmp_path / "plan.txt"))
    alice.ok("role", "grant", "bob", "ncc")
    data, port, url, pin = new_place(tmp_path, "new-place")

    proposed = alice.json("server", "announce-move", url, "--pin", pin)
    assert proposed["in_force"] is False and proposed["url"] == url and proposed["pin"] == pin
    assert "moved" not in bob.ok("whoami").err and place(bob) == old  # a proposal moves nobody
    assert bob.json("server", "announce-move", url, "--pin", pin)["in_force"] is True
    r = alice.ok("whoami")
    assert f"server moved to {url} (pin {pin}), announced by bob" in r.err, r.err
    assert place(alice) == {"url": url, "pin": pin}
    assert "moved" not in alice.ok("server", "show").err  # said once
    assert "server moved" in bob.ok("whoami").err and place(bob)["url"] == url

    copy_and_serve(org.server, data, port, copies)
    bob.fails("server", "announce-move", url, "--pin", pin, contains="already says")
    out = tmp_path / "got.txt"
    bob.ok("get", "drafting", "plan.txt", "--output", str(out))
    assert out.read_text() == "the plan before the move"
    assert [d["name"] for d in alice.json("ls", "drafting")] == ["plan.txt"]

    carol.fails("whoami")  # her client still names the old server, which is gone
    assert place(carol) == old
    moved = carol.json("server", "moved", url, "--pin", pin)
    assert moved["url"] == url and moved["pin"] == pin
    assert place(carol) == {"url": url, "pin": pin} and carol.json("whoami")["name"] == "carol"
    carol.fails("server", "moved", url, "--pin", pin, contains="already uses")


def test_refused_moves_leave_the_client_where_it_was(forge: Forge, tmp_path: Path,
                                                     copies: list[ServerProcess]) -> None:
    f = forge
    alice, bob, carol = f.org.alice, f.org.bob, f.carol
    for m in (alice, bob, carol):
        m.ok("whoami")
    old = place(carol)

    # A move signed by a member who is not NCC, served by the server: every client stops; nobody moves.
    org = f.d.require_org()
    by_carol = make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=max(f.now(), org.time),
                         signer=f.ids["carol"], device=f.device("carol"), type_="org.server",
                         body={"url": "https://evil.example.org", "pin_kind": "webpki", "pin": b""})
    with served(f, Forgery("move by a member", "org", by_carol, "may not move the organization's server")):
        for m in (alice, bob, carol):
            r = m.fails("whoami", contains="may not move the organization's server")
            assert place(m) == old
    alice.fails("server", "announce-move", "http://evil.example.org", "--pin", "webpki", contains="https://")
    carol.fails("server", "announce-move", "https://evil.example.org", "--pin", "webpki",
                contains="may not move the organization's server")

    # A copy of the organization's data at a place the chain does not name (no move at all): refused.
    data, port, url, pin = new_place(tmp_path, "unannounced")
    copy_and_serve(f.server, data, port, copies)
    r = carol.fails("server", "moved", url, "--pin", pin, contains="names no server move")
    assert r.code == 3 and place(carol) == old
    r = carol.fails("server", "moved", url, "--pin", f"cert:{'00' * 32}", contains="does not match the pinned")
    assert r.code == 3 and place(carol) == old
    carol.fails("server", "moved", url, "--pin", "spki:12", contains="--pin")
    copies.pop().stop()


def test_a_place_the_chain_does_not_name_is_refused(org: Org, make_member: Any, tmp_path: Path,
                                                    copies: list[ServerProcess]) -> None:
    alice, carol = org.alice, make_member("carol")
    carol.ok("join", alice.json("invite")["invite"], "--name", "carol")
    old = place(carol)
    _, _, url_b, pin_b = new_place(tmp_path, "announced")
    assert alice.json("server", "announce-move", url_b, "--pin", pin_b)["in_force"] is True  # alice: the only NCC
    data, port, url_d, pin_d = new_place(tmp_path, "elsewhere")
    copy_and_serve(org.server, data, port, copies)  # the organization's data, at a place it did not announce
    r = carol.fails("server", "moved", url_d, "--pin", pin_d, contains="names another place in force")
    assert r.code == 3 and place(carol) == old


def test_an_ncc_member_signs_the_move_at_the_new_place_when_the_old_one_is_gone(
        org: Org, make_member: Any, tmp_path: Path, copies: list[ServerProcess]) -> None:
    alice, bob = org.alice, org.bob
    old = place(bob)
    (tmp_path / "plan.txt").write_text("kept through the seizure")
    alice.ok("put", "drafting", str(tmp_path / "plan.txt"))
    data, port, url, pin = new_place(tmp_path, "after-seizure")
    copy_and_serve(org.server, data, port, copies)  # the old server is gone: a copy of its data, no move signed
    bob.fails("server", "moved", url, "--pin", pin, contains="names no server move")
    bob.fails("server", "announce-move", url, "--pin", pin, "--at-new", contains="may not move")  # not NCC
    assert place(bob) == old
    m = alice.json("server", "announce-move", url, "--pin", pin, "--at-new")
    assert m["in_force"] is True and place(alice) == {"url": url, "pin": pin}
    assert bob.json("server", "moved", url, "--pin", pin)["url"] == url
    out = tmp_path / "got.txt"
    bob.ok("get", "drafting", "plan.txt", "--output", str(out))
    assert out.read_text() == "kept through the seizure"
