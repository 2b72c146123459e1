"""A small deployment for the backup, restore and check tests (built once per module): founder alice,
team "drafting" with one document and a thread with one message, served by the real server; and
``mvault-server`` driven as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import PASSPHRASE, Member, ServerThread
from tests.helpers.members import unlock_here

SERVER = str(Path(sys.executable).parent / "mvault-server")


def server_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=300)


def refused(p: subprocess.CompletedProcess[str], contains: str = "") -> None:
    """Exit 1 with one ``error: `` line on stderr (containing ``contains``), no traceback."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert contains.lower() in p.stderr.lower(), p.stderr


@dataclass
class World:
    server: ServerThread
    alice: Member
    archive: Path  # a plain backup of the deployment


def build_world(root: Path, more: Callable[[ServerThread, Member, Path], None] | None = None) -> World:
    """The deployment; ``more(server, alice, passphrase_file)`` adds to it before the backup is taken."""
    server = ServerThread(root / "server-data").start()
    passphrase = root / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    alice = Member(root / "home-alice", "alice", passphrase)
    assert server.invite is not None
    alice.ok("join", server.invite, "--name", "alice")
    unlock_here(alice)  # her commands after the join skip Argon2id (an agent, stopped after the first test)
    alice.ok("team", "create", "drafting", "--kind", "program")
    notes = root / "notes.md"
    notes.write_bytes(b"minutes\n" * 5000)
    alice.ok("put", "drafting", str(notes))
    alice.ok("thread", "create", "drafting", "t")
    alice.ok("thread", "post", "drafting", "t", "hello")
    if more is not None:
        more(server, alice, passphrase)
    archive = root / "backup.tar"
    p = server_cli("backup", "--data", str(server.data_dir), "--to", str(archive))
    assert p.returncode == 0, p.stderr
    return World(server, alice, archive)


def restored(archive: Path, target: Path) -> Path:
    """A stopped copy of a deployment: ``archive`` restored into ``target``."""
    p = server_cli("restore", "--from", str(archive), "--data", str(target))
    assert p.returncode == 0, p.stderr
    return target
