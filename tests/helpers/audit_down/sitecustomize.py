"""Loaded by a ``mvault-server`` subprocess a test starts with this directory (and the repository) on PYTHONPATH
and ``AUDIT_DOWN_WHILE`` naming a file: while that file exists, every audit append of the PostgreSQL audit store
fails as when the database went away (``DatabaseUnavailable``) after the act was done, so the act's sealed event
is owed (``server/recorder.py``). Removing the file is the database coming back. Nothing in the server knows of it."""

from __future__ import annotations

import os
from pathlib import Path

from server.store.postgres.audit import PostgresAudit
from server.store.postgres.schema import DatabaseUnavailable

_FLAG = os.environ.get("AUDIT_DOWN_WHILE")

if _FLAG:
    _real = PostgresAudit.append

    async def _unless_down(self: PostgresAudit, leaf: bytes, day: int) -> int:
        if Path(str(_FLAG)).exists():
            raise DatabaseUnavailable("the database went away (tests/helpers/audit_down); try again later")
        return await _real(self, leaf, day)

    setattr(PostgresAudit, "append", _unless_down)  # noqa: B010 - patched as disk_filler patches
