"""Per-member usage (``server/usage.py``'s tables and rules) in PostgreSQL, inside the caller's transaction.

A write checked against a quota first takes the member's advisory lock (``lock_member``): two processes
adding a member's rows at once are serialized, so both cannot pass the check on the same count.
"""

from __future__ import annotations

from server.store.postgres.schema import Conn
from server.usage import DAY, Usage


async def lock_member(conn: Conn, member: str) -> None:
    """Until the transaction ends, no other quota-checked write of ``member`` runs."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('member:' || $1, 0))", member)


async def usage_of(conn: Conn, member: str, kind: str, now: int, per_day: int) -> Usage:
    """What ``member`` stores and added in the last 24 hours (at most ``per_day`` rows of the index)."""
    row = await conn.fetchrow(
        "SELECT (SELECT bytes FROM authored_bytes WHERE member=$1 AND kind=$2), "
        "(SELECT count(*) FROM authored WHERE member=$1 AND kind=$2 AND created > $3)", member, kind, now - DAY)
    stored, today = (int(row[0] or 0), int(row[1])) if row else (0, 0)
    retry = 0
    if today >= per_day:  # one more is allowed when the (today - per_day + 1)th oldest leaves the window
        first = await conn.fetchval(
            "SELECT created FROM authored WHERE member=$1 AND kind=$2 AND created > $3 ORDER BY created "
            "LIMIT 1 OFFSET $4", member, kind, now - DAY, today - per_day)
        retry = max(1, int(first) + DAY - now) if first is not None else 1
    return Usage(stored, today, retry)


async def add_authored(conn: Conn, kind: str, ref: str, member: str, size: int, now: int) -> None:
    await conn.execute("INSERT INTO authored VALUES ($1, $2, $3, $4, $5)", kind, ref, member, size, now)
    await conn.execute("INSERT INTO authored_bytes VALUES ($1, $2, $3) ON CONFLICT (member, kind) DO UPDATE "
                       "SET bytes = authored_bytes.bytes + excluded.bytes", member, kind, size)


async def open_slots_wait(conn: Conn, member: str, now: float, max_open: int) -> int | None:
    """Seconds until the member may open another device-link slot, or None if it may now."""
    row = await conn.fetchrow("SELECT count(*), min(expires) FROM link_slots WHERE member=$1 AND expires > $2",
                              member, now)
    if row is not None and int(row[0]) >= max_open:
        return max(1, int(float(row[1]) - now) + 1)
    return None
