"""``client.download.receive_beside`` fed by a stand-in for ``Api``: the body in odd pieces, as a network would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from client import download
from vault.envelope import Record, open_record
from vault.teamkeys import TeamKey


class PiecesServer:
    """The part of ``Api`` that ``download.receive`` uses: the body in odd pieces, as a network would."""

    def __init__(self, body: bytes, piece: int = 65_537) -> None:
        self.body, self.piece = body, piece

    async def download(self, path: str) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), self.piece):
            yield self.body[i:i + self.piece]
            await asyncio.sleep(0)


def receive(body: bytes, record: Record, key: TeamKey, out: Path) -> tuple[Path, bytes]:
    """Receive ``body`` for ``record`` beside ``out``: the temporary file and the plaintext's digest."""
    opened = open_record(record, key)
    return asyncio.run(download.receive_beside(PiecesServer(body), record, opened, out, None))  # type: ignore[arg-type]
