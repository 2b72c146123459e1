"""The audit log's checkpoint-signing key: a seed in the data directory, whatever the database."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vault.errors import LogCorrupted
from vault.fileio import fsync_dir, write_all
from vault.logsign import new_log_seed


def log_seed(path: Path) -> bytes:
    """The server's checkpoint-signing seed, created once (0600) next to the database; the file and its
    directory entry are fsync'd before any checkpoint is signed with it.

    Processes sharing a data directory (PostgreSQL, ``--workers``) may open it at the same time on a new
    deployment: the seed is written whole to a temporary file, which is then linked to ``path`` only if no
    other process got there first (``link`` fails if the name exists). The loser uses the winner's seed; no
    process ever reads a seed half written."""
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        seed = _created(path)
    if len(seed) != 32:
        raise LogCorrupted(f"{path} is not a 32-byte key")
    return seed


def _created(path: Path) -> bytes:
    seed = new_log_seed()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    tmp = Path(tmp_name)
    try:
        try:
            write_all(fd, seed)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it meanwhile, whole (linked after its fsync)
            return path.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return seed
