"""A full disk, wherever a store meets it: one test for "out of space" and one refusal (507).

SQLite reports it as ``SQLITE_FULL`` (and rolls the open transaction back by itself: a ``ROLLBACK``
after it fails, so stores roll back with ``rollback``, which only does so inside a transaction); file
writes as ``ENOSPC``, ``EDQUOT`` or ``EFBIG``. The connection stays usable: once space is freed, the next
write succeeds.
"""

from __future__ import annotations

import errno
import sqlite3

import aiosqlite

from vault.errors import InsufficientStorage

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
SQLITE_FULL = 13


def out_of_space(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) is a write that failed for want of space."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, InsufficientStorage):
            return True
        if isinstance(seen, sqlite3.Error) and getattr(seen, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return True
        seen = seen.__cause__
    return False


def no_space(what: str) -> InsufficientStorage:
    """The refusal of a write the disk had no room for (``what``: "this upload", "the message")."""
    return InsufficientStorage(f"the server has no space left to store {what}; nothing was stored")


async def rollback(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on ``SQLITE_FULL``)."""
    if db.in_transaction:
        await db.execute("ROLLBACK")
