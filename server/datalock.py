"""The data directory's lock (``server.lock`` in it): who is using the directory.

Every server process holds a shared ``flock`` on it while it serves (several processes may share one data
directory over PostgreSQL); ``mvault-server migrate`` holds it exclusively while it copies, so neither starts
while the other runs. A starting process collects unreferenced blobs and temporaries only while it can hold the
lock exclusively for the collection (``alone``): never while another process serves, whose upload may have placed a
blob its row does not name yet (review round 10). ``flock`` is released by the kernel when the process ends, even
by ``kill -9``: a crashed server leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vault.errors import VaultError

LOCK_FILE = "server.lock"


class DataDirBusy(VaultError):
    """The data directory is in use by a process that excludes this one."""

    code = "data_dir_busy"
    status = 503


def _open(data_dir: Path) -> int:
    return os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)


def hold_shared(data_dir: Path) -> int:
    """Take the directory's lock shared (a serving server); the descriptor to close when done. Refused
    (``DataDirBusy``) while ``migrate`` holds it."""
    fd = _open(data_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirBusy(f"{data_dir} is being migrated (mvault-server migrate holds {data_dir / LOCK_FILE}): "
                          "start the server when it is done") from None
    return fd


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """The directory's lock, exclusively, for the block; refused (``DataDirBusy``) while a server serves it."""
    fd = _open(data_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(f"a server is running on {data_dir} (it holds {data_dir / LOCK_FILE}): stop it "
                              "first") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def alone(data_dir: Path) -> Iterator[bool]:
    """Whether no other process holds the directory's lock (a serving server, ``migrate``): if so it is held
    exclusively for the block (collect what no committed row names there: nobody is placing anything), else the
    block runs without it (collect nothing)."""
    fd = _open(data_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)
