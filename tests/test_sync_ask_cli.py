"""`mvault sync TEAM DIR` answered by the folder's running `--watch` (client/cli/fast.py, client/sync/serve.py),
end to end: real server, real CLI in subprocesses. The answer prints and exits as a no-op pass does (piped text,
a terminal's table, --json) without importing click or aiohttp; a save just before the command is pushed before
it answers; a killed watcher's socket is not believed (the full pass runs); a server withholding a notice is no
worse than one withholding the document from a listing (the same answer either way: freshness is not
provable)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from client.sync.ask import in_step
from server.events import InProcessBus
from tests.conftest import MVAULT, Member, Org, Result
from tests.helpers.db import rows_deleted, sql
from tests.helpers.sync_world import TEAM, Watcher, wait_until, write

HEAVY = ("aiohttp", "click", "cryptography", "nacl")
# what the fast path no longer loads (built-in _json, _sha256 and _socket instead: ~20 ms of a start under load;
# the editable install's finder, if any, loads re and pathlib itself: not checked here)
STARTUP = ("json", "hashlib", "socket", "typing")


def sync(m: Member, folder: Path, *more: str, ask: bool = True, tty: bool = False) -> tuple[Result, set[str]]:
    """One `mvault sync TEAM DIR` (its output as on a terminal with ``tty``); the result and the top-level
    packages it imported."""
    env = {**m.env(), "PYTHONPROFILEIMPORTTIME": "1", "MVAULT_FORCE_TTY": "1" if tty else "0"}
    if not ask:
        env["MVAULT_SYNC_ASK"] = "0"
    p = subprocess.run([MVAULT, *more, "sync", TEAM, str(folder)], env=env, capture_output=True, text=True,
                       timeout=600, cwd=m.home.parent)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    err = "\n".join(line for line in p.stderr.splitlines() if not line.startswith("import time:"))
    return Result(p.returncode, p.stdout, err), imported


def settled(m: Member, folder: Path, watcher: Watcher) -> None:
    root = os.path.realpath(folder)
    wait_until("the watcher to answer in step", lambda: in_step(str(m.home), TEAM, root), watcher)


def test_the_watcher_answers_as_a_no_op_pass_and_without_the_heavy_imports(org: Org, tmp_path: Path) -> None:
    alice, a = org.alice, tmp_path / "a"
    for i in range(3):
        write(a / "notes" / f"n{i}.md", f"note {i}\n")
    alice.ok("sync", TEAM, str(a))
    slow_json, heavy = sync(alice, a, "--json", ask=False)
    slow_text, _ = sync(alice, a, ask=False)
    slow_table, _ = sync(alice, a, ask=False, tty=True)
    assert (slow_json.code, slow_json.out, slow_text.code, slow_text.out) == (0, "[]\n", 0, "")
    assert slow_table.code == 0 and "action" in slow_table.out, "an empty table on a terminal"
    assert {"aiohttp", "click"} <= heavy, "the full pass imports them"
    watcher = Watcher(alice, a)
    try:
        settled(alice, a, watcher)
        for more in (("--json",), ()):
            r, imported = sync(alice, a, *more)
            assert (r.code, r.out, r.err) == (0, "[]\n" if more else "", ""), "as a no-op pass prints"
            assert not imported & set(HEAVY), f"the fast path imported {sorted(imported & set(HEAVY))}"
            assert not imported & set(STARTUP), f"the fast path imported {sorted(imported & set(STARTUP))}"
        r, imported = sync(alice, a, tty=True)
        assert (r.code, r.out, r.err) == (0, slow_table.out, "") and not imported & set(HEAVY)
        # a save just before the command: seen (the cookie), pushed by the watcher, then answered
        # (asked in-process, as the command asks, so that no process start-up gives the watcher time to see it)
        stored = sql(org, "SELECT COUNT(*) FROM versions")[0][0]
        write(a / "notes" / "late.md", "saved just before\n")
        assert in_step(str(alice.home), TEAM, os.path.realpath(a))
        assert sql(org, "SELECT COUNT(*) FROM versions")[0][0] == stored + 1, "answered before the push"
        wait_until("the watcher's push row", lambda: ("push", "notes/late.md") in
                   {(row["action"], row["name"]) for row in watcher.rows}, watcher, deadline=10)
        write(a / "notes" / "later.md", "saved just before the command\n")
        r, imported = sync(alice, a, "--json")
        assert (r.code, r.out) == (0, "[]\n") and not imported & set(HEAVY)
        assert {"notes/late.md", "notes/later.md"} <= {d["name"] for d in alice.json("ls", TEAM)}
    finally:
        watcher.stop()


def test_a_killed_watchers_socket_is_not_believed(org: Org, tmp_path: Path) -> None:
    alice, a = org.alice, tmp_path / "a"
    write(a / "plan.md", "plan\n")
    alice.ok("sync", TEAM, str(a))
    watcher = Watcher(alice, a)
    try:
        settled(alice, a, watcher)
    finally:
        watcher.proc.kill()
        watcher.stop()
    write(a / "plan.md", "edited after the watcher died\n")
    r, imported = sync(alice, a, "--json")
    assert r.code == 0 and "aiohttp" in imported, "the full pass ran"
    assert [(row["action"], row["name"]) for row in r.json()] == [("push", "plan.md")]
    watcher = Watcher(alice, a)  # the next watcher replaces the stale socket
    try:
        settled(alice, a, watcher)
    finally:
        watcher.stop()


def test_a_withheld_notice_is_no_worse_than_a_withheld_listing(org: Org, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The server can make a one-pass sync miss a new version either way: by withholding the document from the
    listing (the full pass) or the notice (the watcher's answer). Both say "in step" (exit 0, nothing fetched);
    the next honest listing (the watcher's backstop, or any pass) brings it."""
    alice, bob, a, b = org.alice, org.bob, tmp_path / "a", tmp_path / "b"
    write(a / "plan.md", "plan\n")
    alice.ok("sync", TEAM, str(a))
    publish = InProcessBus.publish
    monkeypatch.setattr(InProcessBus, "publish", lambda self, team, item: None if item.get("type") == "doc"
                        else publish(self, team, item))
    watcher = Watcher(alice, a)
    try:
        settled(alice, a, watcher)
        write(b / "from-bob.md", "bob's\n")
        bob.ok("sync", TEAM, str(b))
        vid = next(d["vid"] for d in bob.json("ls", TEAM) if d["name"] == "from-bob.md")
        fast, imported = sync(alice, a, "--json")
        assert (fast.code, fast.out) == (0, "[]\n") and "aiohttp" not in imported
        with rows_deleted(org, vid):
            slow, _ = sync(alice, a, "--json", ask=False)
        assert (slow.code, slow.out) == (fast.code, fast.out), "the listing's lie gives the same answer"
        assert not (a / "from-bob.md").exists()
    finally:
        watcher.stop()
    honest, _ = sync(alice, a, "--json", ask=False)
    assert [(row["action"], row["name"]) for row in honest.json()] == [("pull", "from-bob.md")]
