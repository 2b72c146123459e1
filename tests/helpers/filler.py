"""Fill a file system to its last byte (tests of a full disk): no import beyond the standard library, so that a
server subprocess can load it too (``tests/helpers/disk_filler/sitecustomize.py``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fill(filler: Path) -> None:
    """Write ``filler`` until no byte is left. (A test's databases are young: their write-ahead logs grow with every
    commit, so the next one needs new blocks.)"""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
