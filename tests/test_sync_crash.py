"""Issue 16, crash safety: kill -9 of `mvault sync` at points of a pass of many files, then sync again.

Afterwards every document has exactly one version (nothing stored twice: a version already stored is
recognised by its content), the two folders are identical, and no partial file has a real name.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import MVAULT, Org
from tests.test_sync import sync, tree, write

FILES = 40


def killed(env: dict[str, str], folder: Path, after: float) -> bool:
    """Run a sync and kill -9 it after ``after`` seconds if still running; whether it was killed."""
    p = subprocess.Popen([MVAULT, "sync", "drafting", str(folder)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        p.wait(after)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True


def test_kill_9_during_push_and_pull_then_sync_again(org: Org, tmp_path: Path) -> None:
    rnd = random.Random(16)
    alice, bob = org.alice, org.bob
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(FILES):
        write(a / f"d{i % 4}" / f"f{i}.md", f"file {i}\n" * rnd.randint(1, 2000))
    start = time.monotonic()
    sync(alice, a, "--dry-run")
    unit = max(0.2, time.monotonic() - start)  # about one command's start-up and login on this machine
    kills = [killed(alice.env(), a, unit * rnd.uniform(1.0, 3.0)) for _ in range(3)]
    sync(alice, a)
    listed = alice.json("ls", "drafting")
    assert len(listed) == FILES and {d["version"] for d in listed} == {1}  # no version stored twice
    assert sync(alice, a) == []

    kills += [killed(bob.env(), b, unit * rnd.uniform(1.0, 3.0)) for _ in range(3)]
    sync(bob, b)
    assert tree(b) == tree(a)  # every file whole; temporaries are hidden names, never a document's
    assert not [p for p in b.rglob("*") if p.is_file() and p.name.startswith(".") is False
                and p.relative_to(b).as_posix() not in tree(a)]
    assert {d["version"] for d in alice.json("ls", "drafting")} == {1}
