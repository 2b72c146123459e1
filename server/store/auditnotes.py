"""What both audit log backends (``sqlite/audit.py``, ``postgres/audit.py``) do the same way above their
tables: appends through the group committer, and the checkpoint notes signed with the log key."""

from __future__ import annotations

from security.events import Checkpoint
from server.store.commit import GroupCommitter
from server.store.records import StoredCheckpoint
from vault.signednote import CheckpointText, Note, SignatureLine, log_key, origin_of, sign_checkpoint_note


class AuditNotes:
    """A base of the audit stores: they set the attributes below and implement ``witness_cosigned``."""

    log_secret: bytes
    log_public: bytes
    _leaves: GroupCommitter[tuple[bytes, int], int]
    _witness_note: str | None

    @property
    def committer(self) -> GroupCommitter[tuple[bytes, int], int]:
        return self._leaves

    async def append(self, leaf: bytes, day: int) -> int:
        """Append one sealed leaf; returns its index once it is durable."""
        return await self._leaves.submit((leaf, day))

    async def witness_cosigned(self) -> tuple[StoredCheckpoint, list[tuple[str, bytes, bytes]]] | None:
        raise NotImplementedError

    def note_of(self, checkpoint: Checkpoint) -> Note:
        """``checkpoint`` as a C2SP checkpoint note signed by the log key (docs/format.md, "Checkpoint notes")."""
        return sign_checkpoint_note(self.log_secret, log_key(checkpoint.org, self.log_public),
                                    CheckpointText(origin_of(checkpoint.org), checkpoint.size, checkpoint.root))

    async def witness_note(self) -> str | None:
        """The newest checkpoint outside witnesses cosigned, as its note with the log's signature and their
        cosignature lines (None while none did). Kept until this process stores the next cosignature: every
        login asks for it."""
        if self._witness_note is None:
            found = await self.witness_cosigned()
            if found is None:
                return None
            stored, lines = found
            signed = self.note_of(stored.checkpoint)
            self._witness_note = Note(signed.text, (*signed.signatures, *(SignatureLine(*x) for x in lines))).serialized
        return self._witness_note
