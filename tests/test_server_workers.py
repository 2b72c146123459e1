"""``mvault-server run --workers N`` (issue 19) through the real executable: N processes on one port over
PostgreSQL, a worker killed with -9 is replaced while the others serve, SIGTERM stops them all; on SQLite more
than one worker is refused with one line."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.helpers.postgres import Cluster

SERVER = str(Path(sys.executable).parent / "mvault-server")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_more_than_one_worker_on_sqlite_is_refused(tmp_path: Path) -> None:
    r = subprocess.run([SERVER, "run", "--data", str(tmp_path / "d"), "--port", str(free_port()), "--workers", "2"],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --workers 2 needs PostgreSQL"), r.stderr
    assert not (tmp_path / "d" / "vault.db").exists()  # refused before anything was created


def test_workers_share_one_port_and_a_killed_one_is_replaced(tmp_path: Path, pg_cluster: Cluster,
                                                             make_member: Any) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    args = ["run", "--data", str(tmp_path / "d"), "--database", pg_cluster.new_database(), "--port", str(port),
            "--json", "--workers", "2", "--rate", "1000", "--burst", "10000"]
    with log.open("wb") as err:
        parent = subprocess.Popen([SERVER, *args], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                  env=_env())
    try:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], 60)
        assert ready, log.read_text()
        invite = json.loads(parent.stdout.readline())["invite"]
        workers = _children(parent.pid)
        assert len(workers) == 2
        alice = make_member("alice")
        alice.ok("join", invite, "--name", "alice")  # challenge and login may reach either worker
        for _ in range(4):
            alice.ok("whoami")
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        alice.ok("whoami")  # the other worker serves meanwhile
        deadline = time.monotonic() + 30
        while (len(_children(parent.pid)) < 2 or victim in _children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        replaced = _children(parent.pid)
        assert len(replaced) == 2 and victim not in replaced, (workers, replaced, log.read_text())
        assert "exited with status -9; starting another" in log.read_text()
        for _ in range(4):
            alice.ok("whoami")
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(60) == 0, log.read_text()
        for pid in replaced:  # every worker stopped with it
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
