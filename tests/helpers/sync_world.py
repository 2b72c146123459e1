"""Members editing synced folders at random, for the randomized sync tests (tests/test_sync_random.py,
tests/test_sync_model.py): random local changes, a sync pass through the real CLI, a background
``mvault sync --watch --json`` whose rows are collected, the folders' files, and the versions a member
can fetch with ``mvault history`` and ``mvault get --version``."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from client.client import Client
from tests.conftest import MVAULT, Member, Org
from tests.helpers.members import in_session

FOLDERS = ("", "a/", "b/c/")
TEAM = "drafting"
DEADLINE = 45.0  # generous: the machine is shared; a watch reacts within about a second


def write(path: Path, data: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


def visible_files(folder: Path) -> list[Path]:
    """The files sync would sync (hidden names and our own download temporaries left out)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and not p.name.endswith(".mvault-part"))


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): nothing is left out."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


KINDS = ("create", "create", "edit", "edit", "delete", "rename")


def mutate(rnd: random.Random, folder: Path, who: str, step: int, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """One random change in ``folder`` (a kind of ``kinds``; "move": the same file name in another
    subfolder); the relative paths it touched."""
    files = visible_files(folder)
    kind = rnd.choice(kinds if files else ("create",))
    if kind == "create":
        path = write(folder / f"{rnd.choice(FOLDERS)}n{rnd.randint(0, 6)}.md", f"{who} {step} new {rnd.random()}\n")
        return [str(path.relative_to(folder))]
    src = rnd.choice(files)
    if kind == "edit":
        src.write_text(f"{who} {step} edit {rnd.random()}\n")
        return [str(src.relative_to(folder))]
    if kind == "delete":
        src.unlink()
        return [str(src.relative_to(folder))]
    dst = folder / f"{rnd.choice(FOLDERS)}{src.name if kind == 'move' else f'r{rnd.randint(0, 6)}.md'}"
    if dst.exists():
        return []
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst)
    return [str(src.relative_to(folder)), str(dst.relative_to(folder))]


def sync_ok(m: Member, folder: Path) -> None:
    r = m.run("sync", TEAM, str(folder), "--confirm-deletes")
    assert r.code in (0, 1), r.err  # 1: a conflict was reported
    assert "Traceback" not in r.err


def all_contents(org: Org, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every version's content of every document of the team (fetched in one in-process session)."""
    tmp.mkdir()

    async def fetch(c: Client) -> set[str]:
        seen: set[str] = set()
        for i, d in enumerate(await c.docs.ls(TEAM, deleted=None)):  # deleted documents too
            assert d.opened is not None
            for v in await c.docs.history(TEAM, d.opened.name):
                if v.opened is not None and v.opened.size:
                    out = tmp / f"v{i}-{v.record.core.seq}"
                    await c.docs.get(TEAM, d.opened.name, out, v.record.core.seq)
                    seen.add(out.read_text())
        return seen

    return in_session(org.server, org.alice, fetch, monkeypatch)


class Watcher:
    """``mvault sync TEAM DIR --watch --json`` in the background (``command``: the words before DIR, e.g. a
    guest's ``--space NAME sync``); its rows are read as they come."""

    def __init__(self, member: Member, folder: Path, *more: str, command: tuple[str, ...] = ("sync", TEAM)) -> None:
        self.member, self.folder = member, folder
        self.proc = subprocess.Popen([MVAULT, *command, str(folder), "--watch", "--json", *more],
                                     env=member.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.rows: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.strip():
                self.rows.append(json.loads(line))

    def mark(self) -> int:
        return len(self.rows)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            err = self.proc.stderr.read() if self.proc.stderr is not None else ""
            raise AssertionError(f"the watch of {self.member.name} ended ({self.proc.returncode}): {err}")

    def wait_rows(self, since: int, names: Iterable[str], what: str) -> None:
        """Until rows after ``since`` mention every name (as name, source or copy)."""
        want = set(names)
        end = time.monotonic() + DEADLINE
        while True:
            seen = {row.get(k) for row in self.rows[since:] for k in ("name", "source", "copy")}
            if want <= seen:
                return
            self.alive()
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for the watch of {self.member.name} to act on "
                                     f"{sorted(want - seen)} ({what}); its rows since: {self.rows[since:]}")
            time.sleep(0.1)

    def stop(self) -> tuple[int, str]:
        """SIGTERM; the exit code and standard error."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(10)
        err = self.proc.stderr.read() if self.proc.stderr is not None else ""
        return code, err


def wait_until(what: str, check: Callable[[], bool], watcher: Watcher | None = None,
               deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        if watcher is not None:
            watcher.alive()
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Versions:
    """The versions a member can see, fetched through the CLI (``history --json``, ``get --version``) and
    kept: ``find`` looks for one content, first in the history of the names it was saved under."""

    def __init__(self, member: Member, scratch: Path) -> None:
        self.member, self.scratch = member, scratch
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.got: dict[tuple[str, int], bytes] = {}
        self.names: list[str] | None = None

    def history(self, name: str) -> list[dict[str, Any]]:
        if name not in self.histories:
            r = self.member.run("history", TEAM, name, "--json")
            self.histories[name] = r.json() if r.code == 0 else []
        return self.histories[name]

    def all_names(self) -> list[str]:
        if self.names is None:
            live = self.member.json("ls", TEAM)
            deleted = self.member.json("ls", TEAM, "--deleted")
            self.names = sorted({str(d["name"]) for d in live + deleted})
        return self.names

    def content(self, name: str, version: int) -> bytes:
        if (name, version) not in self.got:
            out = self.scratch / f"v{len(self.got)}"
            out.parent.mkdir(parents=True, exist_ok=True)
            self.member.ok("get", TEAM, name, "--version", str(version), "-o", str(out))
            self.got[(name, version)] = out.read_bytes()
        return self.got[(name, version)]

    def find(self, data: bytes, names: Iterable[str]) -> bool:
        if data in self.got.values():
            return True
        for name in [*names, *self.all_names()]:
            for row in self.history(name):
                if row["deleted"] or row["size"] != len(data):
                    continue
                if self.content(row["name"], row["version"]) == data:
                    return True
        return False
