"""Request budgets and failed logins per source address in PostgreSQL (``GuardStore``), shared by every server
process over the database: a source cannot spend one budget per process, and a source blocked for failed logins
through one process is blocked on all of them.

The rules are those of ``server/guard.py`` (``SourceLimiter``, ``FailureThrottle``), each a statement or a
transaction on the source's row. Addresses are stored only as ``vault.logsign.source_tag``: keyed by the log
seed in the data directory, which the database never holds. Rows idle for a day (budgets: once full again)
are deleted by ``purge``.
"""

from __future__ import annotations

import asyncpg

from server.store.postgres.schema import lost_is_unavailable
from vault.logsign import source_tag

DAY = 86_400.0


@lost_is_unavailable
class PostgresGuard:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], tag_key: bytes, rate: float, burst: int) -> None:
        self._pool, self._key = pool, tag_key
        self.rate, self.burst = rate, float(burst)

    def _tag(self, source: str) -> bytes:
        return source_tag(self._key, source)

    async def take(self, source: str, now: float) -> float:
        """Spend one token of ``source``: 0 if it had one, else the seconds until it will (one statement)."""
        refilled = "least($2::float8, b.tokens + greatest(0, $3::float8 - b.at) * $4::float8)"
        row = await self._pool.fetchrow(
            "INSERT INTO source_budgets AS b (source, tokens, at, spent) "
            "VALUES ($1, CASE WHEN $2::float8 >= 1 THEN $2::float8 - 1 ELSE $2::float8 END, $3::float8, "
            "$2::float8 >= 1) "
            f"ON CONFLICT (source) DO UPDATE SET tokens = {refilled} - CASE WHEN {refilled} >= 1 THEN 1 ELSE 0 END, "
            f"at = greatest(b.at, excluded.at), spent = {refilled} >= 1 "
            "RETURNING tokens, spent", self._tag(source), self.burst, now, self.rate)
        assert row is not None
        if row[1]:
            return 0.0
        return (1.0 - float(row[0])) / self.rate if self.rate > 0 else 3600.0

    async def blocked(self, source: str, now: float) -> float:
        """Seconds ``source`` must still wait (0: not blocked)."""
        until = await self._pool.fetchval("SELECT blocked_until FROM login_failures WHERE source=$1",
                                          self._tag(source))
        return max(0.0, float(until) - now) if until is not None else 0.0

    async def failure(self, source: str, now: float, limit: int, window: float, lock: float) -> bool:
        """Count one failed login of ``source``; True if this one made it blocked (its count starts again)."""
        tag = self._tag(source)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO login_failures VALUES ($1, '{}', 0, $2) ON CONFLICT (source) DO NOTHING",
                               tag, now)
            row = await conn.fetchrow("SELECT times, blocked_until FROM login_failures WHERE source=$1 FOR UPDATE",
                                      tag)
            assert row is not None
            times = [t for t in row[0] if t > now - window] + [now]
            if len(times) > limit:
                await conn.execute("UPDATE login_failures SET times='{}', blocked_until=$2, touched=$3 "
                                   "WHERE source=$1", tag, now + lock, now)
                return True
            await conn.execute("UPDATE login_failures SET times=$2, touched=$3 WHERE source=$1",
                               tag, times[-(limit + 1):], now)
        return False

    async def purge(self, now: float) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM login_failures WHERE touched < $1 AND blocked_until < $2",
                               now - DAY, now)
            full = self.burst / self.rate if self.rate > 0 else DAY
            await conn.execute("DELETE FROM source_budgets WHERE at < $1", now - max(full, 60.0))

    async def clear(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM login_failures")
            await conn.execute("DELETE FROM source_budgets")
