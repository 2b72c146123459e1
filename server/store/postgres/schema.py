"""The PostgreSQL schema, as numbered migrations applied at start (``schema_version`` holds the last one).

Each entry of ``MIGRATIONS`` is applied once, in order, in its own transaction together with the new
version number; a process that starts while another applies them waits for it (an advisory lock), so
several processes may start at once. A database whose schema is newer than this code knows (written by a
later release) is refused: this code could misread what it cannot know.

The tables are those of the SQLite backend (``server/store/sqlite/``, ``server/usage.py``) with
PostgreSQL's types: ``bytea`` for bytes, ``bigint`` for integers and times, ``double precision`` for the
expiry times SQLite keeps as REAL. ``links.id`` and ``restore_acceptances.id`` keep the order rows were
stored in (SQLite's rowid). The audit log's tables share the database (its meta table is ``audit_meta``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from vault.errors import StorageUnavailable, VaultError

# A connection, of its own or lent by a pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

MIGRATIONS: tuple[str, ...] = (
    # 1: everything the SQLite backend holds
    """
    CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL);
    CREATE TABLE links (
        id bigint GENERATED ALWAYS AS IDENTITY UNIQUE, chain text NOT NULL, seq bigint NOT NULL,
        kind text NOT NULL, wire bytea NOT NULL, time bigint NOT NULL, PRIMARY KEY (chain, seq));
    CREATE TABLE puk_boxes (
        member text NOT NULL, puk_gen bigint NOT NULL, device text NOT NULL, box bytea NOT NULL,
        PRIMARY KEY (member, puk_gen, device));
    CREATE TABLE team_boxes (
        team text NOT NULL, gen bigint NOT NULL, member text NOT NULL, box bytea NOT NULL,
        PRIMARY KEY (team, gen, member));
    CREATE TABLE versions (
        vid text PRIMARY KEY, team text NOT NULL, doc text NOT NULL, seq bigint NOT NULL, record bytea NOT NULL,
        blob text NOT NULL, body_len bigint NOT NULL, created bigint NOT NULL, UNIQUE (team, doc, seq));
    CREATE TABLE link_slots (
        slot text PRIMARY KEY, member text NOT NULL, expires double precision NOT NULL, payload bytea);
    CREATE INDEX link_slots_expires ON link_slots (expires);
    CREATE INDEX link_slots_member ON link_slots (member, expires);
    CREATE TABLE sessions (
        token bytea PRIMARY KEY, member text NOT NULL, device text NOT NULL, expires double precision NOT NULL);
    CREATE INDEX sessions_expires ON sessions (expires);
    CREATE TABLE threads (
        team text NOT NULL, thread text NOT NULL, record bytea NOT NULL, expire bigint NOT NULL,
        created bigint NOT NULL, next_pos bigint NOT NULL, last_time bigint NOT NULL, PRIMARY KEY (team, thread));
    CREATE TABLE messages (
        team text NOT NULL, thread text NOT NULL, pos bigint NOT NULL, mid text NOT NULL, device text NOT NULL,
        seq bigint NOT NULL, time bigint NOT NULL, record bytea NOT NULL,
        PRIMARY KEY (team, thread, pos), UNIQUE (team, thread, device, seq));
    CREATE TABLE unlogged_links (hash bytea PRIMARY KEY, chain text NOT NULL, seq bigint NOT NULL);
    CREATE TABLE thread_senders (
        team text NOT NULL, thread text NOT NULL, device text NOT NULL, seq bigint NOT NULL, mid text NOT NULL,
        time bigint NOT NULL, PRIMARY KEY (team, thread, device));
    CREATE TABLE authored (
        kind text NOT NULL, ref text NOT NULL, member text NOT NULL, bytes bigint NOT NULL, created bigint NOT NULL,
        PRIMARY KEY (kind, ref));
    CREATE INDEX authored_member ON authored (member, kind, created);
    CREATE TABLE authored_bytes (
        member text NOT NULL, kind text NOT NULL, bytes bigint NOT NULL, PRIMARY KEY (member, kind));
    CREATE TABLE events (idx bigint PRIMARY KEY, day bigint NOT NULL, hash bytea NOT NULL, leaf bytea);
    CREATE TABLE checkpoints (size bigint PRIMARY KEY, raw bytea NOT NULL, sig bytea NOT NULL);
    CREATE TABLE cosigs (
        size bigint NOT NULL, member text NOT NULL, device text NOT NULL, sig bytea NOT NULL, time bigint NOT NULL,
        PRIMARY KEY (size, device));
    CREATE TABLE witness_cosigs (
        size bigint NOT NULL, name text NOT NULL, key_id bytea NOT NULL, sig bytea NOT NULL, time bigint NOT NULL,
        PRIMARY KEY (size, name, key_id));
    CREATE TABLE audit_meta (key text PRIMARY KEY, value bytea NOT NULL);
    CREATE TABLE restore_acceptances (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, size bigint NOT NULL, time bigint NOT NULL,
        raw bytea NOT NULL, sig bytea NOT NULL);
    """,
    # 2: what SQLite keeps in its one process's memory, here shared by every process (server/store/postgres/guard.py)
    """
    CREATE TABLE login_nonces (
        nonce bytea PRIMARY KEY, member text NOT NULL, device text NOT NULL, expires double precision NOT NULL);
    CREATE INDEX login_nonces_expires ON login_nonces (expires);
    CREATE TABLE source_budgets (
        source bytea PRIMARY KEY, tokens double precision NOT NULL, at double precision NOT NULL,
        spent boolean NOT NULL);
    CREATE INDEX source_budgets_at ON source_budgets (at);
    CREATE TABLE login_failures (
        source bytea PRIMARY KEY, times double precision[] NOT NULL, blocked_until double precision NOT NULL,
        touched double precision NOT NULL);
    CREATE INDEX login_failures_touched ON login_failures (touched);
    """,
    # 3: per-member limits every process counts together (server/store/postgres/guard.py); the limits' tables
    # UNLOGGED: no WAL and no flush to disk for each request's budget (a crash of the database empties them, as a
    # restart empties an SQLite server's memory of them; nothing in them was ever acknowledged to anyone)
    """
    ALTER TABLE source_budgets SET UNLOGGED;
    ALTER TABLE login_failures SET UNLOGGED;
    CREATE UNLOGGED TABLE member_refusals (
        member text NOT NULL, minute bigint NOT NULL, n integer NOT NULL, PRIMARY KEY (member, minute));
    CREATE UNLOGGED TABLE live_leases (
        member text NOT NULL, origin text NOT NULL, held integer NOT NULL, expires double precision NOT NULL,
        PRIMARY KEY (member, origin));
    CREATE INDEX live_leases_origin ON live_leases (origin);
    """,
    # 4: (a) login nonces UNLOGGED: a nonce is a challenge not yet answered, which SQLite keeps in memory; a crash
    # of the database empties the table (a challenge issued before it cannot be answered: log in again; none can
    # be used twice), and issuing one is no durable commit. (b) An audit batch in one statement
    # (server/store/postgres/audit.py): under the log's advisory lock (1836449794 = AUDIT_LOCK), the leaves from
    # ``start`` on that another process appended (a page), else the batch inserted at ``start``; the statement's
    # own transaction commits it. A volatile function's every statement reads with a new snapshot: the read
    # after the lock sees every batch committed before it.
    """
    ALTER TABLE login_nonces SET UNLOGGED;
    CREATE FUNCTION mvault_audit_append(start bigint, days bigint[], hashes bytea[], leaves bytea[], page integer)
        RETURNS TABLE (found_idx bigint, found_hash bytea, found_leaf bytea) LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(1836449794);
        RETURN QUERY SELECT e.idx, e.hash, e.leaf FROM events e WHERE e.idx >= start ORDER BY e.idx LIMIT page;
        IF NOT FOUND THEN
            INSERT INTO events SELECT start + x.o - 1, x.d, x.h, x.l
                FROM unnest(days, hashes, leaves) WITH ORDINALITY AS x(d, h, l, o);
        END IF;
    END $$;
    """,
)
VERSION = len(MIGRATIONS)

# Advisory lock keys (one bigint namespace per database): the migrations, the audit log's appends, chain appends.
MIGRATION_LOCK = 0x6D76_0001
AUDIT_LOCK = 0x6D76_0002  # also in migration 4's mvault_audit_append, as a number
LINKS_LOCK = 0x6D76_0003  # chain appends, one at a time (server/store/postgres/vault.py append_links)


class SchemaTooNew(VaultError):
    """The database was written by a newer release (its schema version is beyond this code's)."""

    code = "schema_too_new"
    status = 500


class DatabaseUnavailable(StorageUnavailable):
    """The database cannot be reached, refused the connection or went away: at start the server does not start;
    while serving, the request is answered 503 and the server goes on (the pool connects again when asked)."""


# What asyncpg raises when the database went away under an open connection (a fast or immediate shutdown, a
# crash, a reset connection): the request failed for want of a database, not for what it asked.
_LOST = (DatabaseUnavailable, asyncpg.PostgresConnectionError, asyncpg.exceptions.AdminShutdownError,
         asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.CannotConnectNowError)


def database_lost(e: BaseException) -> bool:
    """Did ``e`` come from a database that went away (rather than from what was asked of it)?"""
    return isinstance(e, _LOST) or (isinstance(e, asyncpg.InterfaceError) and "connection is closed" in str(e))


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection[asyncpg.Record]:
    """A new connection for the pool; ``DatabaseUnavailable`` if the database cannot be reached (a refused or
    missing socket is an ``OSError`` that says nothing of a database on its own)."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except (OSError, TimeoutError) as e:
        raise DatabaseUnavailable(f"the database cannot be reached ({e}); try again shortly") from e


async def migrate(conn: Conn) -> int:
    """Bring the schema to ``VERSION``; the version found before. Raises ``SchemaTooNew`` on a newer one."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        found = await conn.fetchval("SELECT max(version) FROM schema_version")
        before = int(found or 0)
        if before > VERSION:
            raise SchemaTooNew(f"the database's schema is version {before}, newer than this server knows "
                               f"({VERSION}): run the release that wrote it, or a later one")
        for number in range(before + 1, VERSION + 1):
            await conn.execute(MIGRATIONS[number - 1])
            await conn.execute("INSERT INTO schema_version VALUES ($1)", number)
    return before


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """A connection back in the pool is not reset (asyncpg's default sends ``RESET ALL``, ``UNLISTEN *``, ``CLOSE
    ALL`` and ``pg_advisory_unlock_all()``: one more round trip for every statement outside a transaction, ten per
    login). Nothing here leaves session state behind: advisory locks are transaction-level, cursors live in
    transactions, nothing is SET or LISTENed on a pool connection (the listener has a connection of its own), and
    asyncpg still rolls back a transaction left open before calling this."""


async def connect(url: str) -> asyncpg.Pool[asyncpg.Record]:
    """A pool on ``url`` with the schema brought up to date; ``DatabaseUnavailable`` if it cannot be reached."""
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=10, timeout=10, connect=_connect,
                                         reset=_keep_session)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, ValueError,
            DatabaseUnavailable) as e:
        raise DatabaseUnavailable(f"cannot connect to the database at {redacted(url)}: {e}") from e
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
    except BaseException:
        await pool.close()
        raise
    return pool


def redacted(url: str) -> str:
    """``url`` without its password (it is printed in errors)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in userinfo else ''}@{host}"


C = TypeVar("C", bound=type)


def lost_is_unavailable(cls: C) -> C:
    """Every coroutine method of ``cls`` (its own and inherited) raises ``DatabaseUnavailable`` where asyncpg
    says the database went away, so that the routes answer 503 and the recorder keeps the event owed
    (``server/recorder.py``) instead of a 500 or a server that refuses everything until restarted."""
    for name in dir(cls):
        fn = getattr(cls, name)
        if isinstance(inspect.getattr_static(cls, name), classmethod | staticmethod):
            continue  # opening: DatabaseUnavailable from ``connect`` already
        if name.startswith("__") or not inspect.iscoroutinefunction(fn) or getattr(fn, "_lost_is_unavailable", False):
            continue
        setattr(cls, name, _translated(fn))
    return cls


def _translated(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except Exception as e:
            if database_lost(e) and not isinstance(e, DatabaseUnavailable):
                raise DatabaseUnavailable(f"the database went away ({type(e).__name__}); try again shortly") from e
            raise

    wrapper._lost_is_unavailable = True  # type: ignore[attr-defined]
    return wrapper


async def chain_heads(conn: Conn, chains: Iterable[str]) -> dict[str, int]:
    """Each chain's length as stored (absent: no link); the caller holds their locks, shared (``SignerHeads``)."""
    chains = sorted(set(chains))
    return {str(r[0]): int(r[1]) for r in await conn.fetch(
        "SELECT chain, max(seq) FROM links WHERE chain = ANY($1::text[]) GROUP BY chain", chains)} if chains else {}


async def lock_chain(conn: Conn, chain: str, shared: bool = False) -> None:
    """Until the transaction ends: no append to ``chain`` (``shared``), or nothing else under its lock."""
    await conn.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}"
                       "(hashtextextended('chain:' || $1, 0))", chain)
