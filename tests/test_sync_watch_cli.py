"""`mvault sync TEAM DIR --watch` end to end (real server, real CLI in a subprocess): a save in the watched
folder reaches another member, another member's version arrives in the watched folder, one JSON object per
line with --json, SIGTERM ends it with exit 0 and its files in place; a removal from the team stops it
(exit 1, files kept)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import MVAULT, Member, Org

DEADLINE = 30.0  # generous: the machine is shared; the watch itself reacts within about a second


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str] | None = None) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the watch ended ({proc.returncode}) before {what}: {proc.stderr.read()}")  # type: ignore[union-attr]
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def watching(m: Member, folder: Path, *more: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([MVAULT, "sync", "drafting", str(folder), "--watch", "--json", "--backstop", "5", *more],
                            env=m.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_watch_pushes_saves_pulls_others_versions_and_stops_on_sigterm(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    with watching(alice, a) as proc:
        wait_for("the watched folder", a.is_dir, proc)
        (a / "notes").mkdir()
        (a / "notes" / "plan.md").write_text("saved on alice's side\n")

        def bob_has_it() -> bool:
            bob.ok("sync", "drafting", str(b))
            return (b / "notes" / "plan.md").is_file()

        wait_for("alice's save to reach bob", bob_has_it, proc)
        assert (b / "notes" / "plan.md").read_text() == "saved on alice's side\n"

        (b / "from-bob.txt").write_text("bob's version\n")
        bob.ok("sync", "drafting", str(b))
        wait_for("bob's version in alice's folder",
                 lambda: (a / "from-bob.txt").is_file() and (a / "from-bob.txt").read_text() == "bob's version\n",
                 proc)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        output, errors = proc.communicate()
    assert code == 0, errors
    rows = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert ("push", "notes/plan.md") in {(r["action"], r["name"]) for r in rows}
    assert ("pull", "from-bob.txt") in {(r["action"], r["name"]) for r in rows}
    assert (a / "notes" / "plan.md").read_text() == "saved on alice's side\n"


def test_watch_stops_with_a_reason_when_the_member_is_removed_and_keeps_the_files(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "plan.md").parent.mkdir(parents=True)
    (a / "plan.md").write_text("plan\n")
    alice.ok("sync", "drafting", str(a))
    with watching(bob, b) as proc:
        wait_for("bob's copy", lambda: (b / "plan.md").is_file(), proc)
        (b / "mine.txt").write_text("bob's local work\n")
        alice.ok("team", "remove", "drafting", "bob")
        code = proc.wait(60)
        _, errors = proc.communicate()
    assert code == 1, errors
    error = json.loads(errors.strip().splitlines()[-1])
    # the pass ("no longer in team drafting") or the notices ("... of team drafting stopped: you no longer have
    # access") may see the removal first: either says why, names the team and exits 1
    assert error["exit_code"] == 1 and "no longer" in error["message"] and "drafting" in error["message"]
    assert (b / "plan.md").read_text() == "plan\n" and (b / "mine.txt").read_text() == "bob's local work\n"


def test_watch_refuses_a_dry_run(org: Org, tmp_path: Path) -> None:
    r = org.alice.run("sync", "drafting", str(tmp_path / "a"), "--watch", "--dry-run")
    assert r.code == 2 and "--dry-run" in r.err
    assert not (tmp_path / "a").exists()
