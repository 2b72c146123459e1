"""Expiry of thread messages: a thread's record names how long its messages are kept; expired messages
are no longer served (the store's queries skip them) and are deleted here, with one ``msg.expire`` audit
event per thread and purge, at most a second after they expire whenever the server is asked for messages
(``server/routes/threads.py``), and every ``Config.purge_interval`` seconds in the background.

The events are recorded directly (``server/recorder.py`` ``record_outside_a_request``: a failure to record
stops the server serving, as for a request): a purge has no request whose end the
audit middleware could record a note at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.context import CONFIG, HUB, THREADS, running
from server.notes import Note
from server.recorder import record_outside_a_request
from vault.errors import StorageUnavailable

log = logging.getLogger("mvault.server")


async def purge_due(app: web.Application, force: bool = False) -> None:
    """Delete expired messages (at most once a second unless forced) and audit each deletion."""
    hub, now = app[HUB], app[CONFIG].clock()
    if not force and now - hub.last_purge < 1.0:
        return
    hub.last_purge = now
    for team, thread, count in await app[THREADS].purge_messages(int(now)):
        expired = Note("msg.expire", {"team": team, "thread": thread}, detail={"count": count}, actor="", device="")
        await record_outside_a_request(app, expired, "ok", None)


async def _purge_loop(app: web.Application) -> None:
    interval = app[CONFIG].purge_interval
    while True:
        await asyncio.sleep(interval)
        try:
            await purge_due(app, force=True)
        except StorageUnavailable as e:  # the database is away: the next round tries again, once it is back
            log.warning("purging expired messages failed: %s", e)
        except Exception:  # logged; the next round tries again
            log.exception("purging expired messages failed")


async def purging(app: web.Application) -> AsyncIterator[None]:
    """The background purge, for the app's lifetime (a ``cleanup_ctx``)."""
    async with running(_purge_loop(app)):
        yield
