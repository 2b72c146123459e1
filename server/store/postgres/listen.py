"""PostgreSQL ``LISTEN/NOTIFY`` between server processes over one database (``server/store/notices.py`` says what
a notice holds; ``server/relay.py`` acts on them).

Sending: ``notify`` inside the transaction that stores what it names (PostgreSQL sends it when the transaction
commits, in commit order, and never for one rolled back; after Parsec's ``send_signal``). Receiving:
``Listener.run`` holds one connection of its own (not from the pool: it must stay open and listening), hands
every notice from another process to its callback, and reconnects when that connection is lost (the database
restarted, the connection was terminated, a ping went unanswered), with ``Resync`` once it listens again:
whatever was committed while it did not listen is read from the database. Each ping also reads how full
PostgreSQL's notification queue is: past ``QUEUE_LIMIT``, the listening connections that hold it back are
dropped (``drop_laggards``), so that one hung process cannot fill it and stop every process's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import asyncpg

from server.store.notices import CHANNEL, Notice, Resync, own, read, seal, sent_by
from server.store.postgres.schema import Conn

log = logging.getLogger("mvault.server")

APPLICATION = "mvault-listen"  # the listening connection's application_name (pg_stat_activity)
PING = 10.0  # seconds between checks that the listening connection still answers (and of the notification queue)
# The share of PostgreSQL's notification queue (8 GB) in use beyond which the listening connections that hold it
# back are dropped: a listener that stops reading (its process hung) keeps every notice sent since in the queue,
# and once the queue is full every transaction that notifies fails: every upload, post and chain change of every
# process. 1 % is ~80 MB of notices, far beyond what a live listener lags.
QUEUE_LIMIT = 0.01
RETRY = (0.1, 5.0)  # the first and the longest wait before connecting again


async def notify(conn: Conn, origin: str, notices: Sequence[Notice], key: bytes = b"") -> None:
    """Announce ``notices`` when the caller's transaction commits (one round trip for all of them)."""
    if notices:
        await conn.execute("SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n", CHANNEL,
                           payloads(origin, notices, key))


def payloads(origin: str, notices: Sequence[Notice], key: bytes = b"") -> list[str]:
    """What ``notify`` sends on ``CHANNEL`` (for a statement that sends them itself); ``key`` tags those with
    records (``server/store/notices.py``; without a key, a notice with records is ``ValueError``)."""
    return [seal(key, origin, n) for n in notices]


class Listener:
    """Notices from the other processes on ``url`` (those whose origin is not ``origin``; those with records
    only when tagged under ``key``)."""

    def __init__(self, url: str, origin: str, key: bytes) -> None:
        self.url = url
        self.origin = origin
        self.key = key
        self.connects = 0  # connections made (the first one included)

    async def run(self, take: Callable[[Notice | Resync], None]) -> None:
        """Until cancelled: ``take`` each notice, in the order sent, and ``Resync`` after each (re)connection."""
        wait = RETRY[0]
        while True:
            try:
                await self._listen(take)
                wait = RETRY[0]
            except Exception as e:  # noqa: BLE001 - whatever broke the connection, listening goes on
                log.warning("live notices: listening connection failed (%s: %s); connecting again in %.1f s",
                            type(e).__name__, e, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY[1])

    async def _listen(self, take: Callable[[Notice | Resync], None]) -> None:
        """One connection's life: returns (or raises) when it is lost."""
        lost = asyncio.Event()

        mine = own(self.origin)

        def heard(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            text = str(payload)
            if sent_by(mine, text):
                return
            try:
                origin, notice = read(self.key, text)
            except ValueError as e:
                log.warning("live notices: unreadable notice (%s); reading the database instead", e)
                take(Resync())
                return
            if origin != self.origin:
                take(notice)

        conn = await asyncpg.connect(self.url, timeout=10, server_settings={"application_name": APPLICATION})
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, heard)
            self.connects += 1
            take(Resync())  # listening from here on: what came before is read from the database
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), PING)
                if not lost.is_set():
                    usage = await conn.fetchval("SELECT pg_notification_queue_usage()", timeout=PING)
                    if usage > QUEUE_LIMIT:
                        await drop_laggards(conn, usage)
        finally:
            conn.terminate()


async def drop_laggards(conn: Conn, usage: float) -> None:
    """Terminate the other listening connections that hold the notification queue back: inside a transaction
    (it takes no notices there), running a query for more than 5 s (a ping is far shorter: another process's
    check must not take one for a laggard), or blocked writing to its client (which does not read: its process
    is hung). Each process connects again when it can, with ``Resync``: nothing is lost but the
    notices, which the database holds anyway. Any other process's check may do it as well; dropping twice
    is harmless."""
    dropped = await conn.fetch(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 "
        "AND datname = current_database() AND pid <> pg_backend_pid() "
        "AND (state LIKE 'idle in transaction%' OR wait_event = 'ClientWrite' "
        "OR (state = 'active' AND now() - query_start > interval '5 seconds'))", APPLICATION)
    log.warning("live notices: PostgreSQL's notification queue is %.1f %% full; dropped %d listening connection(s) "
                "that did not read it (pids %s): their processes read the database once they listen again",
                100 * usage, len(dropped), ", ".join(str(r[0]) for r in dropped) or "none")
