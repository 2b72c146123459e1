"""The real server on a small file system: its data directory a tmpfs of a fixed size (mounting needs root,
which this machine and CI have; elsewhere the test is skipped with the reason)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ServerThread


def _mount(path: Path, size: int) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """``path``, a fresh tmpfs of ``size`` bytes, unmounted afterwards (the test is skipped without root)."""
    if not _mount(path, size):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextmanager
def server_on_tmpfs(tmp_path: Path, size: int) -> Iterator[ServerThread]:
    """A started server whose data directory is a fresh tmpfs of ``size`` bytes, unmounted afterwards."""
    with tmpfs(tmp_path / "server-data", size) as data:
        s = ServerThread(data)
        try:
            yield s.start()
        finally:
            s.stop()  # harmless if it never started
