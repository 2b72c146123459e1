"""``sync --watch`` and a server move that comes in force while it runs (review round 25's second finding; the
test that it sends nothing more to the old server is tests/test_review25_exploits.py's last one).

A watcher's pass re-verifies the organization chain first; when that chain puts another place in force than the
one its session talks to, the pass follows it (``moves.follow``, as a command's start does: the device's config
now names the new place), sends nothing to the old place, prints a ``moved`` line, and the watcher starts a new
session at the new place, with the checks every command makes there (login, the audit log, the chains against
the device's pins). The real server (the old place) and a real second server serving a copy of its data (the new
place, with its own certificate), the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Org, open_db
from tests.helpers.pki import ServerProcess
from tests.helpers.pki import servers as servers_fixture
from tests.test_moved_server import new_place
from tests.test_sync_watch_cli import DEADLINE, wait_for, watching

copies = servers_fixture  # the servers a test starts (tests/helpers/pki.py)


def _versions(data: Path) -> int:
    db = open_db(data, "")
    try:
        return int(db.execute("SELECT count(*) FROM versions").fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize("another_command_first", [False, True])
def test_a_watcher_follows_a_move_in_force_and_pushes_to_the_new_place(
        org: Org, tmp_path: Path, copies: list[ServerProcess], another_command_first: bool) -> None:
    """As docs/tls-and-moves.md has it: the move is announced while the old server runs and the new place does not
    serve yet. bob's watcher sees the move at its next pass, pushes nothing more to the old server, says so, and
    tries the new place again until it answers; then it pushes there, and keeps watching. The same when another
    command of bob's followed the move first (the device's place is then already the new one: the watcher compares
    it with its own session's, not only whether it switched it itself)."""
    alice, bob = org.alice, org.bob
    b = tmp_path / "b"
    data, port, url, pin = new_place(tmp_path, "new-place")
    with watching(bob, b, "--backstop", "3600") as proc:  # passes on saves only: whoami comes first
        wait_for("the watched folder", b.is_dir, proc)
        before = _versions(org.server.data_dir)
        (b / "before.txt").write_text("before the move\n")
        wait_for("before.txt on the old server", lambda: _versions(org.server.data_dir) > before, proc)
        moved = alice.json("server", "announce-move", url, "--pin", pin)
        assert moved["in_force"] is True
        at_move = _versions(org.server.data_dir)
        if another_command_first:
            assert "server moved" in bob.ok("whoami").err and bob.json("server", "show")["url"] == url
        (b / "after.txt").write_text("after the move\n")
        wait_for("bob's device to follow the move", lambda: bob.json("server", "show") == {"url": url, "pin": pin},
                 proc)
        # the new place: a copy of the old one's data (nothing writes to it meanwhile), with its own certificate
        shutil.copytree(org.server.data_dir, data, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("server.crt", "server.key"))
        copies.append(ServerProcess(data, port))
        copies[-1].start()
        at_new = _versions(data)
        wait_for("after.txt on the new server", lambda: _versions(data) > at_new, proc)
        (b / "later.txt").write_text("still watching\n")
        wait_for("later.txt on the new server", lambda: _versions(data) > at_new + 1, proc)
        assert _versions(org.server.data_dir) == at_move  # nothing more to the old place, which still runs
        assert proc.poll() is None  # still watching, at the new place
        proc.terminate()
        out, _ = proc.communicate(timeout=DEADLINE)
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    moves = [r for r in rows if r.get("action") == "moved"]
    assert len(moves) == 1 and moves[0]["name"] == url, rows
    assert "following it" in moves[0]["detail"] and "announced by alice" in moves[0]["detail"], moves
    after = rows[rows.index(moves[0]):]
    assert [r for r in after if r.get("action") == "retry"], rows  # the new place was not serving at first
