"""What a closing deletes on the server (issue 20, docs/lifecycle.md "Running it"): the statements both backends
run in one transaction (``shred_closed`` of ``server/store/sqlite/vault.py`` and ``server/store/postgres/vault.py``),
in order. Every table of content, keys and use goes; then the team chains; then the unlogged-link marks of links no
longer stored. The organization and member chains stay (a member's client verifies the closing against them), and
so do the audit log's leaf hashes and checkpoints (the audit store prunes every leaf body: ``AuditLog.prune``)."""

from __future__ import annotations

from typing import Final

import aiosqlite

from server.store.space import rollback

EMPTIED: Final = ("team_boxes", "puk_boxes", "versions", "link_slots", "sessions", "threads", "messages",
                  "thread_senders", "authored", "authored_bytes")
SHRED: Final = (*(f"DELETE FROM {t}" for t in EMPTIED),
                "DELETE FROM links WHERE kind='team'",
                "DELETE FROM unlogged_links WHERE chain NOT IN (SELECT chain FROM links)")
# PostgreSQL keeps deleted rows in the tables' files (dead tuples) until they are vacuumed; VACUUM FULL writes each
# table anew without them (review round 11). The write-ahead log's segments still hold them until PostgreSQL
# recycles them, as do WAL archives and base backups: docs/lifecycle.md.
VACUUM_PG: Final = "VACUUM FULL " + ", ".join((*EMPTIED, "links", "unlogged_links"))
VACUUM_AUDIT_PG: Final = "VACUUM FULL events"  # the audit log's pruned bodies at a closing (AuditLog.shred)
EVERY_DAY: Final = 2**40  # prune the audit bodies of every day (hashes stay)


async def shred_sqlite(db: aiosqlite.Connection) -> int:
    """Run ``SHRED`` on the SQLite store in one transaction, overwriting what it deletes, then rebuild the file and
    empty the write-ahead log; how many rows went."""
    gone = 0
    # Deleted rows overwritten, not only marked free (review round 11: every box and record stayed in the file's free
    # pages and in the write-ahead log); VACUUM drops pages freed before, the checkpoint empties the log.
    await db.execute("PRAGMA secure_delete=ON")
    await db.execute("BEGIN IMMEDIATE")
    try:
        for statement in SHRED:
            async with db.execute(statement) as cur:
                gone += max(cur.rowcount, 0)
        await db.execute("COMMIT")
    except BaseException:
        await rollback(db)
        raise
    await compact_sqlite(db)
    return gone


async def compact_sqlite(db: aiosqlite.Connection) -> None:
    """Rebuild the file without its free pages and empty its write-ahead log (after deletions with ``secure_delete``):
    the vault database's shredding and the audit database's pruned bodies at a closing."""
    await db.execute("VACUUM")
    await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
