"""The watcher's side of the fast path: ``mvault sync TEAM DIR --watch`` answers "is DIR in step?" on a Unix
socket of this uid (the asking side, the socket's name and the lines exchanged: client/sync/ask.py).

The answer is the watch loop's (client/sync/watch.py ``_Watch.answer``): it writes a cookie file into DIR and
waits until the file watcher delivers its event, so every save made before the question was seen; then "in
step" only if the last pass succeeded and settled (``settles``), nothing changed or was announced since, and the
team's notices were live throughout. Otherwise it lets the loop run the pass those changes call for, answers
"in step" if that pass settled everything, and else "no": the command then runs its own full pass.

Why this is no weaker than the listing a full pass reads: docs/sync.md, "Answered by the watcher".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from client.localsock import SocketError, bind_private, owned_socket, peer_ok, private_dir
from client.sync import plan
from client.sync.ask import MAX_LINE, reply_line, request
from client.sync.engine import IN_STEP

# The rows after which a pass over the same folder would find nothing to do: an action done, nothing held back,
# skipped, failed or left for the next pass. A pass reporting anything else leaves the watcher unsettled (the
# command then runs its own pass, which reports it again, as it would without a watcher).
SETTLING = frozenset({plan.PUSH, plan.PULL, plan.DELETE_LOCAL, plan.DELETE_REMOTE, plan.MOVE, plan.RENAME_LOCAL,
                      plan.FORGET, plan.REFRESH, IN_STEP})
READ_TIMEOUT = 5.0  # seconds a client has to send its request


def settles(rows: list[dict[str, Any]]) -> bool:
    """Would a pass right after the one that reported ``rows`` (with no change in between) report nothing?"""
    return all(r.get("action") in SETTLING and "next pass" not in str(r.get("detail") or "")
               and "while it was uploaded" not in str(r.get("detail") or "") for r in rows)


@dataclass(frozen=True)
class Served:
    """What a watcher serves: the socket's path, and the folder a request must name to be answered."""

    path: str
    team: str
    root: str
    hidden: bool


Answer = Callable[[], Awaitable[tuple[bool, str]]]


@contextlib.asynccontextmanager
async def serving(served: Served, answer: Answer) -> AsyncIterator[bool]:
    """Answer on ``served.path`` while inside (yields whether it serves: not when another live watcher of this
    folder holds the socket, or the path is not ours to use). The socket is removed on the way out if it is
    still ours; a killed watcher leaves it, and the next watcher (or nobody) replaces it."""
    listener = _listen(served.path)
    if listener is None:
        yield False
        return
    ident = os.stat(served.path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = writer.get_extra_info("socket")
            if raw is None or not peer_ok(raw):
                return
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            try:
                asked = json.loads(line)
            except ValueError:
                asked = None
            if asked != request(served.team, served.root, served.hidden):
                ok, why = False, "not the folder (or the options) this watcher serves"
            else:
                ok, why = await answer()
            writer.write(reply_line(served.team, served.root, ok, why))
            await writer.drain()
        except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, sock=listener, limit=MAX_LINE)
    try:
        yield True
    finally:
        server.close()
        with contextlib.suppress(OSError):
            st = os.stat(served.path)
            if (st.st_dev, st.st_ino) == (ident.st_dev, ident.st_ino):
                os.unlink(served.path)


def _listen(path: str) -> socket.socket | None:
    """A listening socket at ``path``, or None: a live watcher already answers there, or the path is not ours."""
    try:
        private_dir(os.path.dirname(path))
    except (OSError, SocketError):
        return None
    if os.path.lexists(path):
        if not owned_socket(path) or _answers(path):
            return None
        with contextlib.suppress(OSError):
            os.unlink(path)  # a killed watcher's socket
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        bind_private(listener, path)
        listener.listen(16)
        listener.setblocking(False)
    except OSError:
        listener.close()
        return None
    return listener


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
    return True
