"""The checkpoint-signing seed (server/store/logkey.py) made by two processes at once on a new deployment.

Processes sharing a data directory (PostgreSQL, bench/pg.py's two audit writers, ``--workers``) each open the
audit log, so each may find no ``log.key`` and make one. Session 14's loaded `make test` lost a run of
tests/test_bench_postgres.py to it: the second writer's exclusive create failed (``FileExistsError``) and it
exited. Here the other process's creation is made to happen exactly in that window (its seed is drawn there).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from server.store import logkey
from vault.errors import LogCorrupted
from vault.logsign import new_log_seed


def test_a_seed_made_meanwhile_by_another_process_is_the_one_used(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.key"
    drawn: list[bytes] = []
    theirs: list[bytes] = []
    real = new_log_seed

    def racing() -> bytes:
        seed = real()
        drawn.append(seed)
        if len(drawn) == 1:  # "the other process" finds no file either and makes it, whole, before we write ours
            theirs.append(logkey.log_seed(path))
        return seed

    monkeypatch.setattr("server.store.logkey.new_log_seed", racing)
    ours = logkey.log_seed(path)  # before the fix: FileExistsError
    assert len(drawn) == 2 and theirs == [drawn[1]]  # the other process's seed is on disk...
    assert ours == drawn[1] == path.read_bytes()  # ...and the one this process signs with
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.key"]  # no temporary file left
    monkeypatch.setattr("server.store.logkey.new_log_seed", real)
    assert logkey.log_seed(path) == ours  # read back, never made again


def test_a_seed_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    path.write_bytes(os.urandom(31))
    with pytest.raises(LogCorrupted):
        logkey.log_seed(path)
    assert len(path.read_bytes()) == 31  # not replaced
