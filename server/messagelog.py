"""Thread messages in the order the server accepted them, appended with group commit."""

from __future__ import annotations

from typing import assert_never

from server.store.commit import GroupCommitter, Refused
from server.store.protocols import ThreadStore
from server.store.records import (
    MessageOutcome,
    MessagePlaced,
    MessagePost,
    SenderMoved,
    SignerHeads,
    SignerMoved,
    StoredMessage,
)
from vault.errors import Conflict
from vault.messages import ThreadRecord


class SignerChanged(Conflict):
    """The sender's member chain or the organization chain moved on after the message was judged (``SignerMoved``:
    maybe a revocation dated before it): the route judges it again and posts again (``STORE_TRIES``)."""


class MessageLog:
    """Appends with group commit: concurrent posts share one transaction and one fsync
    (``server.store.commit``), in which the store checks each against its device's last message and gives it
    its thread's next position (``server/store/positions.py``): nothing about a thread's messages is kept in
    this process, so several processes may append to one thread. A post that does not follow its device's
    last message is refused alone (409); a failed commit fails its batch and those queued behind it (503).

    Only each thread's record ref is kept here (``ref``): a thread record never changes and a thread is never
    deleted, so the ref found once is right for every process for good."""

    def __init__(self, storage: ThreadStore) -> None:
        self.storage = storage
        self.refs: dict[tuple[str, str], str] = {}
        self.committer: GroupCommitter[MessagePost, int] = GroupCommitter(self._store, "the message")

    async def ref(self, team: str, thread: str) -> str | None:
        """The ref of the thread's record, which every message names (None: no such thread in the team)."""
        key = (team, thread)
        if key not in self.refs:
            stored = await self.storage.thread_head(team, thread)
            if stored is None:
                return None
            self.refs[key] = ThreadRecord.parse(stored.record).ref
        return self.refs[key]

    async def append(self, m: StoredMessage, prev: str | None, signer: SignerHeads | None = None) -> int:
        """Append to a thread whose record the caller found: the message's position (``m.pos`` is ignored); with
        ``signer``, only while those chains are at those lengths (``SignerChanged`` otherwise)."""
        return await self.committer.submit(MessagePost(m, prev, signer))

    async def close(self) -> None:
        await self.committer.close()

    async def _store(self, posts: list[MessagePost]) -> list[int | Refused]:
        return [_answer(o) for o in await self.storage.add_messages(posts)]


def _answer(outcome: MessageOutcome) -> int | Refused:
    match outcome:
        case MessagePlaced(pos):
            return pos
        case SenderMoved(last_seq):
            return Refused(Conflict(f"this device's last message in the thread is number {last_seq}; "
                                    "read the thread and post again"))
        case SignerMoved():
            return Refused(SignerChanged("your member chain or the organization chain changed while this message was "
                                         "stored; sync and post again"))
        case _:
            assert_never(outcome)
