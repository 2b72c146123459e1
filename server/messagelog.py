"""Thread messages in the order the server accepted them, appended with group commit."""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.store.commit import GroupCommitter
from server.store.protocols import ThreadStore
from server.store.records import StoredMessage
from vault.errors import Conflict
from vault.messages import ThreadRecord


@dataclass
class ThreadHead:
    next_pos: int
    ref: str  # the thread record's ref, which every message names
    senders: dict[str, tuple[int, str, int]]  # device -> its last message (seq, id, time)


class MessageLog:
    """Appends with group commit: each post is checked against the thread's head in memory
    (its position and the device's chain), then waits until the batch it joined is durable.
    Concurrent posts share one transaction and one fsync (``server.store.commit``). If a commit
    fails, the posts of the batch and those queued behind it fail (503) and the heads, which
    counted them, are read again from storage."""

    def __init__(self, storage: ThreadStore) -> None:
        self.storage = storage
        self.heads: dict[tuple[str, str], ThreadHead] = {}
        self.committer: GroupCommitter[StoredMessage, None] = GroupCommitter(
            self._store, "the message", on_failure=self._forget_heads)

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
        await self.committer.submit(row)
        return row.pos

    async def close(self) -> None:
        await self.committer.close()

    async def _store(self, rows: list[StoredMessage]) -> list[None]:
        await self.storage.add_messages(rows)
        return [None] * len(rows)

    def _forget_heads(self, rows: list[StoredMessage]) -> None:
        self.heads.clear()  # they counted the failed rows; read again from storage when next needed
