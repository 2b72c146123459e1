"""Loaded by a ``mvault-server`` subprocess a test starts with this directory (and the repository) on PYTHONPATH
and ``FILL_DISK_AFTER`` naming a method of ``SQLiteStorage``: the first time that method returns, the data
directory's file system is filled to its last byte (``DATA/filler``), so that what the server writes next (the
act's audit event) meets a full disk. Nothing in the server knows of it."""

from __future__ import annotations

import functools
import os
from typing import Any

from server.store.sqlite.vault import SQLiteStorage
from tests.helpers.filler import fill

_METHOD = os.environ.get("FILL_DISK_AFTER")

if _METHOD:
    _real = getattr(SQLiteStorage, _METHOD)
    _done: list[bool] = []

    @functools.wraps(_real)
    async def _then_fill(self: SQLiteStorage, *args: Any, **kwargs: Any) -> Any:
        result = await _real(self, *args, **kwargs)
        if not _done:
            _done.append(True)
            fill(self.data_dir / "filler")
        return result

    setattr(SQLiteStorage, _METHOD, _then_fill)
