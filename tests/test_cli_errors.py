"""Bad input and faults through the real CLI: one line, non-zero exit, nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Member, Org, ServerThread

SERVER = str(Path(sys.executable).parent / "mvault-server")


def _rows(server: ServerThread) -> tuple[int, int, int]:
    db = server.db()
    try:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("links", "versions", "team_boxes"))
    finally:
        db.close()


def test_unknown_team_document_member_and_version(org: Org, tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("hello")
    org.alice.ok("put", "drafting", str(doc))
    before = _rows(org.server)
    org.alice.fails("ls", "nosuchteam", contains="no team named")
    org.alice.fails("put", "nosuchteam", str(doc), contains="no team named")
    org.alice.fails("get", "drafting", "missing.txt", "-o", str(tmp_path / "x"), contains="no document named")
    org.alice.fails("history", "drafting", "missing.txt", contains="no document named")
    org.alice.fails("get", "drafting", "a.txt", "-o", str(tmp_path / "x"), "--version", "5", contains="versions 1..1")
    org.alice.fails("team", "add", "drafting", "nobody", contains="no member named")
    org.alice.fails("team", "add", "drafting", "bob", contains="already in team")
    org.alice.fails("team", "create", "drafting", contains="already exists")
    org.alice.fails("team", "create", "bad name!", contains="not valid")
    assert not (tmp_path / "x").exists()
    assert _rows(org.server) == before


def test_member_not_in_team_and_plain_member_limits(org: Org, make_member: Any, tmp_path: Path) -> None:
    carol = make_member("carol")
    carol.ok("join", org.alice.json("invite")["invite"], "--name", "carol")
    doc = tmp_path / "plan.md"
    doc.write_text("the plan")
    org.alice.ok("put", "drafting", str(doc))
    before = _rows(org.server)
    carol.fails("ls", "drafting", contains="no team named")
    carol.fails("put", "drafting", str(doc), contains="no team named")
    carol.fails("get", "drafting", "plan.md", "-o", str(tmp_path / "out"), contains="no team named")
    # Plain members may not create circles, nor add people to teams they do not administer.
    carol.fails("team", "create", "circle-9", "--kind", "circle", contains="may not create")
    org.bob.fails("team", "add", "drafting", "carol", contains="may not")
    assert _rows(org.server) == before
    assert not (tmp_path / "out").exists()


def test_reader_cannot_write(org: Org, make_member: Any, tmp_path: Path) -> None:
    dana = make_member("dana")
    dana.ok("join", org.alice.json("invite")["invite"], "--name", "dana")
    org.alice.ok("team", "add", "drafting", "dana", "--role", "reader")
    doc = tmp_path / "notes.md"
    doc.write_text("notes")
    org.alice.ok("put", "drafting", str(doc))
    dana.ok("get", "drafting", "notes.md", "-o", str(tmp_path / "n.md"))
    before = _rows(org.server)
    dana.fails("put", "drafting", str(doc), contains="may not write")
    assert _rows(org.server) == before


def test_invites_are_single_use_and_damage_is_explained(org: Org, make_member: Any) -> None:
    code = org.alice.json("invite")["invite"]
    make_member("erin").ok("join", code, "--name", "erin")
    before = _rows(org.server)
    make_member("frank").fails("join", code, "--name", "frank", contains="already been used")
    make_member("gail").fails("join", code[:-6], "--name", "gail", contains="damaged")
    make_member("hank").fails("join", "hello", "--name", "hank", contains="not a member vault invite")
    assert org.server.invite is not None
    make_member("ivan").fails("join", org.server.invite, "--name", "ivan", contains="already founded")
    assert _rows(org.server) == before


def test_expired_invite(org: Org, make_member: Any) -> None:
    code = org.alice.json("invite", "--days", "1")["invite"]
    org.server.advance(2 * 86400)
    before = _rows(org.server)
    # The joiner's clock is behind the server's by two days here; the server judges by its own clock.
    m = make_member("late")
    r = m.run("join", code, "--name", "late")
    assert r.code != 0 and r.err.startswith("error: ")
    assert "time" in r.err or "expired" in r.err
    assert _rows(org.server) == before


def test_wrong_passphrase_changes_nothing(org: Org, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    bob = Member(org.bob.home, "bob", wrong)
    bob.fails("whoami", contains="wrong passphrase")
    bob.fails("ls", "drafting", contains="wrong passphrase")


def test_short_passphrase_refused(server: ServerThread, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    assert server.invite is not None
    m = Member(tmp_path / "home-x", "x", short)
    m.fails("join", server.invite, "--name", "x", contains="too short")
    assert not (tmp_path / "home-x" / "config.json").exists() and not (tmp_path / "home-x" / "config.bin").exists()


def test_server_with_another_certificate_is_refused(org: Org, tmp_path: Path) -> None:
    port = org.server.port
    org.server.stop()
    impostor = ServerThread(tmp_path / "impostor-data", port).start()
    try:
        org.alice.fails("whoami", contains="certificate does not match")
        org.bob.fails("ls", "drafting", contains="certificate does not match")
    finally:
        impostor.stop()


def test_state_survives_server_restart(org: Org, tmp_path: Path) -> None:
    doc = tmp_path / "keep.md"
    doc.write_text("kept across restarts")
    org.bob.ok("put", "drafting", str(doc))
    restarted = org.server.restart()
    try:
        out = tmp_path / "keep.out"
        org.alice.ok("get", "drafting", "keep.md", "-o", str(out))
        assert out.read_text() == "kept across restarts"
        assert [t["name"] for t in org.bob.json("team", "ls")] == ["drafting"]
    finally:
        restarted.stop()


def test_json_flag_both_positions_and_exit_codes(org: Org) -> None:
    a = org.alice.ok("--json", "whoami").json()
    b = org.alice.json("whoami")
    assert a == b
    r = org.alice.run("no-such-command")
    assert r.code != 0 and "Traceback" not in r.err
    org.alice.fails("get", "drafting", "none.md", contains="no document")


def test_server_init_json_and_run_prints_connection(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    r = subprocess.run([SERVER, "init", "--data", str(data), "--port", "9555", "--json"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert set(info) == {"url", "fingerprint", "invite", "pin"}
    assert info["url"] == "https://127.0.0.1:9555" and len(info["fingerprint"]) == 64
    assert info["invite"].startswith("mv1-")
    # init again: same certificate and the same (still unused) founder invite
    again = json.loads(subprocess.run([SERVER, "init", "--data", str(data), "--port", "9555", "--json"],
                                      capture_output=True, text=True, timeout=60).stdout)
    assert again == info
    assert (data / "vault.db").exists() and (data / "server.key").stat().st_mode & 0o077 == 0
