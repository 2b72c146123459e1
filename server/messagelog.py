"""Thread messages in the order the server accepted them, appended with group commit."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from server.store.protocols import ThreadStore
from server.store.records import StoredMessage
from vault.errors import Conflict, ServiceUnavailable
from vault.messages import ThreadRecord

log = logging.getLogger("mvault.server")


@dataclass
class ThreadHead:
    next_pos: int
    ref: str  # the thread record's ref, which every message names
    senders: dict[str, tuple[int, str, int]]  # device -> its last message (seq, id, time)


class MessageLog:
    """Appends with group commit: each post is checked against the thread's head in memory
    (its position and the device's chain), then waits until the batch it joined is durable.
    Concurrent posts share one transaction and one fsync. If a commit fails, every waiting
    post fails and the heads are read again from storage."""

    def __init__(self, storage: ThreadStore) -> None:
        self.storage = storage
        self.heads: dict[tuple[str, str], ThreadHead] = {}
        self.pending: list[tuple[StoredMessage, asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def head(self, team: str, thread: str) -> ThreadHead | None:
        """The thread's head (None: no such thread in the team)."""
        key = (team, thread)
        if key not in self.heads:
            stored = await self.storage.thread_head(team, thread)
            if stored is None:
                return None
            ref = ThreadRecord.parse(stored.record).ref
            # a concurrent load may have won:
            self.heads.setdefault(key, ThreadHead(stored.next_pos, ref, stored.senders))
        return self.heads[key]

    async def append(self, m: StoredMessage, prev: str | None) -> int:
        """Append to a thread whose head the caller found (threads are never deleted)."""
        head = await self.head(m.team, m.thread)
        if head is None:
            raise RuntimeError(f"thread {m.thread} of team {m.team} vanished from storage")
        last = head.senders.get(m.device)
        last_seq, last_id = (last[0], last[1]) if last else (0, None)
        if m.seq != last_seq + 1 or prev != last_id:
            raise Conflict(f"this device's last message in the thread is number {last_seq}; "
                           "read the thread and post again")
        row = replace(m, pos=head.next_pos)
        head.next_pos += 1
        head.senders[m.device] = (m.seq, m.mid, m.time)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((row, done))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        await asyncio.shield(done)  # a client that hangs up does not undo a write in flight
        return row.pos

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await self.storage.add_messages([row for row, _ in batch])
            except Exception:
                log.exception("storing %d thread messages failed", len(batch))
                self.heads.clear()  # later posts were checked against heads that included these
                failed = ServiceUnavailable("the server could not store the message; try again")
                for _, done in batch + self.pending:
                    if not done.done():
                        done.set_exception(failed)
                self.pending = []
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
