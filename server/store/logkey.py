"""The audit log's checkpoint-signing key: a seed in the data directory, whatever the database."""

from __future__ import annotations

import os
from pathlib import Path

from vault.errors import LogCorrupted
from vault.fileio import fsync_dir, write_all
from vault.logsign import new_log_seed


def log_seed(path: Path) -> bytes:
    """The server's checkpoint-signing seed, created once (0600) next to the database; the file and its
    directory entry are fsync'd before any checkpoint is signed with it."""
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        seed = new_log_seed()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, seed)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
    if len(seed) != 32:
        raise LogCorrupted(f"{path} is not a 32-byte key")
    return seed
