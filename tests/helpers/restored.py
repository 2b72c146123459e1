"""A server restored from an older backup, as tests make one: copy the data directory while the server is
stopped (the backup), go on working, then start a server on a copy of that copy (the restore), on the same
port (members' devices pin the URL and the certificate, which the copy holds)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from client.home import Home, Pins, Secrets
from server.context import AUDIT, DIRECTORY
from tests.conftest import PASSPHRASE, Member, Org, ServerThread


class Servers:
    """The server the test talks to now (``live``), stopped and replaced as backups are taken and restored."""

    def __init__(self, first: ServerThread, root: Path) -> None:
        self.live = first
        self.root = root
        self.started: list[ServerThread] = [first]

    def backup(self, name: str) -> Path:
        """Stop, copy the data directory to ``name``, start again on the same data."""
        self.live.stop()
        copy = self.root / name
        shutil.copytree(self.live.data_dir, copy)
        self.live = self._track(self.live.restart())
        return copy

    def restore(self, backup: Path, name: str) -> ServerThread:
        """Stop, and serve from a fresh copy of ``backup`` on the same port from now on."""
        self.live.stop()
        data = self.root / name
        shutil.copytree(backup, data)
        fresh = ServerThread(data, self.live.port, **self.live.config)
        fresh.offset = self.live.offset
        self.live = self._track(fresh.start())
        return self.live

    def tamper(self, *queries: tuple[str, tuple[Any, ...]]) -> None:
        """Stop the live server, run ``queries`` on its vault.db (a server that lies), start it again."""
        self.live.stop()
        db = self.live.db()
        try:
            for q, args in queries:
                db.execute(q, args)
        finally:
            db.close()
        self.live = self._track(self.live.restart())

    def _track(self, s: ServerThread) -> ServerThread:
        self.started.append(s)
        return s

    def stop_all(self) -> None:
        for s in self.started:
            s.stop()

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the live server's loop (to read or plant what a malicious server would serve)."""
        loop = self.live._loop
        assert loop is not None
        return asyncio.run_coroutine_threadsafe(coro, loop).result(20)

    def plant_acceptance(self, raw: bytes, sig: bytes, size: int, time: int) -> None:
        """Store an acceptance as a malicious server would, without judging it."""
        self.call(self.live.app[AUDIT].add_acceptance(size, time, raw, sig))

    def heads(self) -> dict[str, tuple[int, bytes]]:
        """The head of every member and team chain the live server holds (what an acceptance names)."""
        d = self.live.app[DIRECTORY]
        chains = {**d.member_links, **d.team_links}
        return {c: (len(links), links[-1].hash) for c, links in chains.items() if links}

    def state(self) -> tuple[bytes, bytes, bytes, int, bytes, str]:
        """(checkpoint raw, its signature, log key, org seq, org head, org id) the live server serves now."""
        app = self.live.app
        directory = app[DIRECTORY]
        org = directory.require_org()
        stored = self.call(app[AUDIT].checkpoint(org.org_id, int(self.live.clock())))
        return (stored.checkpoint.raw, stored.sig, app[AUDIT].log_public, len(directory.org_links),
                directory.org_links[-1].hash, org.org_id)


def unlocked(m: Member) -> tuple[Home, Secrets]:
    home = Home(m.home)
    return home, home.unlock(passphrase=PASSPHRASE)


def pins_of(m: Member) -> Pins:
    home, _ = unlocked(m)
    return home.pins()


def pins_file(m: Member) -> bytes:
    return (m.home / "pins.bin").read_bytes()


def restore_dropping_a_deletion(org: Org, carol: Member, servers: Servers, tmp_path: Path, behind: Member) -> None:
    """alice puts names.md and deletes it (a signed deletion, version 2), every device runs a command, a backup is
    taken; ``behind`` then puts agenda.md (lost with the server, so that device is behind after the restore);
    the server is restored from the backup, carol (Security Team, not in drafting) accepts it, and the server
    then serves names.md without its deletion (a seized server)."""
    secret = tmp_path / "names.md"
    secret.write_text("the list of names that must not circulate")
    org.alice.ok("put", "drafting", str(secret))
    org.alice.ok("rm", "drafting", "names.md")
    for m in (org.alice, org.bob, carol):
        m.ok("whoami")
    behind.ok("ls", "drafting")
    backup = servers.backup("backup-1")  # holds the deletion
    agenda = tmp_path / "agenda.md"
    agenda.write_text("an agenda, lost with the server")
    behind.ok("put", "drafting", str(agenda))
    behind.ok("ls", "drafting")
    carol.ok("whoami")
    servers.restore(backup, "restored-1")
    carol.ok("restored", "accept", "--yes")  # accepts a state in which names.md is deleted
    servers.tamper(("DELETE FROM versions WHERE seq=2", ()))  # the only version 2 there: the deletion
