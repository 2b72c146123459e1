"""Request budgets and failed logins per source address in PostgreSQL (``GuardStore``), shared by every server
process over the database: a source cannot spend one budget per process, and a source blocked for failed logins
through one process is blocked on all of them. Per member as well: the refusals recorded one by one in a minute
(``member_refusals``, one row per member and minute) and the live connections held (``live_leases``: one row per
member and process, its count and an expiry each process renews; a process killed stops renewing, and its
connections, closed with it, stop counting ``LIVE_LEASE`` seconds later at most).

The rules are those of ``server/guard.py`` (``SourceLimiter``, ``FailureThrottle``), each a statement or a
transaction on the source's row. Addresses are stored only as ``vault.logsign.source_tag``: keyed by the log
seed in the data directory, which the database never holds. Rows idle for a day (budgets: once full again)
are deleted by ``purge``.
"""

from __future__ import annotations

import asyncio

import asyncpg

from server.guard import LIVE_LEASE, LoginGate
from server.store.postgres.schema import Conn, lost_is_unavailable
from vault.logsign import source_tag

DAY = 86_400.0
# Spend one token of a source's budget ($1 its tag, $2 burst, $3 now, $4 rate): the row refilled, one token taken
# if there is one (``spent``).
_REFILLED = "least($2::float8, b.tokens + greatest(0, $3::float8 - b.at) * $4::float8)"
_SPEND = ("INSERT INTO source_budgets AS b (source, tokens, at, spent) "
          "VALUES ($1, CASE WHEN $2::float8 >= 1 THEN $2::float8 - 1 ELSE $2::float8 END, $3::float8, $2::float8 >= 1) "
          f"ON CONFLICT (source) DO UPDATE SET tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END, "
          f"at = greatest(b.at, excluded.at), spent = {_REFILLED} >= 1")


@lost_is_unavailable
class PostgresGuard:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], tag_key: bytes, rate: float, burst: int,
                 origin: str) -> None:
        self._pool, self._key = pool, tag_key
        self.rate, self.burst = rate, float(burst)
        self.origin = origin  # this process (its rows of live_leases)
        self._live: dict[str, int] = {}  # member -> live connections held here: the truth this process's rows carry
        self._live_lock = asyncio.Lock()  # one change of this process's rows at a time, in the order of the counts

    def _tag(self, source: str) -> bytes:
        return source_tag(self._key, source)

    async def take(self, source: str, now: float) -> float:
        """Spend one token of ``source``: 0 if it had one, else the seconds until it will (one statement)."""
        row = await self._pool.fetchrow(_SPEND + " RETURNING tokens, spent", self._tag(source), self.burst, now,
                                        self.rate)
        assert row is not None
        return self._wait(float(row[0]), bool(row[1]))

    async def take_for_login(self, source: str, now: float,
                             nonce: tuple[bytes, str, str, float] | None = None) -> LoginGate:
        """``take``, ``blocked`` and the newest link's order number in one statement (one round trip for a
        challenge or a login, its catch-up of other processes' links included: ``server/access.py``); a
        challenge's nonce inserted by the same statement when a token was spent and the source is not blocked
        (``login_nonces`` is UNLOGGED: no WAL flush; issue 19, session 19: it was a statement of its own)."""
        hashed, member, device, expires = nonce if nonce is not None else (None, "", "", 0.0)
        row = await self._pool.fetchrow(
            f"WITH b AS ({_SPEND} RETURNING tokens, spent), "
            "f AS (SELECT (SELECT blocked_until FROM login_failures WHERE source=$1) AS until), "
            "n AS (INSERT INTO login_nonces SELECT $5, $6, $7, $8 FROM b, f WHERE $5::bytea IS NOT NULL AND b.spent "
            "AND (f.until IS NULL OR f.until <= $3::float8) RETURNING 1) "
            "SELECT b.tokens, b.spent, f.until, (SELECT coalesce(max(id), 0) FROM links), EXISTS (SELECT 1 FROM n) "
            "FROM b, f", self._tag(source), self.burst, now, self.rate, hashed, member, device, expires)
        assert row is not None
        return LoginGate(self._wait(float(row[0]), bool(row[1])),
                         max(0.0, float(row[2]) - now) if row[2] is not None else 0.0, int(row[3]), bool(row[4]))

    def _wait(self, tokens: float, spent: bool) -> float:
        if spent:
            return 0.0
        return (1.0 - tokens) / self.rate if self.rate > 0 else 3600.0

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
            await conn.execute("DELETE FROM member_refusals WHERE minute < $1", now - 120)
            full = self.burst / self.rate if self.rate > 0 else DAY
            await conn.execute("DELETE FROM source_budgets WHERE at < $1", now - max(full, 60.0))

    async def clear(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM login_failures")
            await conn.execute("DELETE FROM source_budgets")

    # -- per member ---------------------------------------------------------------------------------------

    async def own_refusal(self, member: str, minute: int, per_minute: int) -> bool:
        n = await self._pool.fetchval(
            "INSERT INTO member_refusals VALUES ($1, $2, 1) ON CONFLICT (member, minute) "
            "DO UPDATE SET n = member_refusals.n + 1 RETURNING n", member, minute)
        return int(n) <= per_minute

    async def hold_live(self, member: str, limit: int, now: float) -> bool:
        """Counted (True) if every process together holds fewer than ``limit`` of ``member``'s live connections:
        under the member's advisory lock, the other processes' unexpired rows and this one's count."""
        async with self._live_lock, self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('live:' || $1, 0))", member)
            others = await conn.fetchval("SELECT coalesce(sum(held), 0) FROM live_leases WHERE member = $1 "
                                         "AND origin <> $2 AND expires > $3", member, self.origin, now)
            held = self._live.get(member, 0)
            if int(others) + held >= limit:
                return False
            await self._store_live(conn, member, held + 1, now)
            self._live[member] = held + 1
        return True

    async def release_live(self, member: str) -> None:
        """One fewer (in this process at once; in the database now, or at the next renewal if it is away)."""
        self._live[member] -= 1
        if not self._live[member]:
            del self._live[member]
        async with self._live_lock:
            # the count as it is now, under the lock: an open that held the lock meanwhile wrote its own (review
            # round 12: the count taken before the wait, written after it, said one fewer than this process holds)
            held = self._live.get(member, 0)
            if held:
                await self._pool.execute("UPDATE live_leases SET held = $3 WHERE member = $1 AND origin = $2",
                                         member, self.origin, held)
            else:
                await self._pool.execute("DELETE FROM live_leases WHERE member = $1 AND origin = $2",
                                         member, self.origin)

    async def renew_live(self, now: float) -> None:
        """This process's rows as its counts are, expiring ``LIVE_LEASE`` from ``now``; other processes' expired
        rows deleted."""
        async with self._live_lock, self._pool.acquire() as conn, conn.transaction():
            members = list(self._live)
            await conn.execute("DELETE FROM live_leases WHERE (origin = $1 AND NOT member = ANY($2::text[])) "
                               "OR expires <= $3", self.origin, members, now)
            await conn.execute(
                "INSERT INTO live_leases SELECT m, $1, h, $4 FROM unnest($2::text[], $3::int[]) AS u(m, h) "
                "ON CONFLICT (member, origin) DO UPDATE SET held = excluded.held, expires = excluded.expires",
                self.origin, members, [self._live[m] for m in members], now + LIVE_LEASE)

    async def _store_live(self, conn: Conn, member: str, held: int, now: float) -> None:
        await conn.execute(
            "INSERT INTO live_leases VALUES ($1, $2, $3, $4) ON CONFLICT (member, origin) DO UPDATE SET "
            "held = excluded.held, expires = excluded.expires", member, self.origin, held, now + LIVE_LEASE)
