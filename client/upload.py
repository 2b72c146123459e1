"""An upload's body, streamed: the envelope's prefix, the encrypted frames and the signature
(``vault.envelope.DocWriter``), read and encrypted one frame ahead of the network in a worker thread."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

from client import download
from vault.envelope import FRAME, DocWriter
from vault.fileio import prefetch
from vault.heap import tune_for_streaming
from vault.localindex import Hasher

Progress = Callable[[int], None]


async def _ticks() -> AsyncIterator[None]:
    """An endless stream of turns for ``prefetch`` (the work itself says when the file ends)."""
    while True:
        yield None


async def encrypting_stream(writer: DocWriter, f: BinaryIO, progress: Progress | None,
                             hasher: Hasher) -> AsyncIterator[bytes]:
    """The upload body. A worker thread reads and encrypts the next MiB while the event loop sends
    this one (at most two in memory); small files are done inline (a thread trip costs more)."""
    yield writer.upload_prefix()

    eof = False

    def next_piece(_: None = None) -> tuple[int, bytes]:
        nonlocal eof
        if eof:  # prefetch asks for one piece ahead: nothing is read after the end
            return 0, b""
        chunk = f.read(FRAME)
        eof = not chunk
        hasher.update(chunk)
        return len(chunk), writer.encrypt(chunk) if chunk else b""

    if writer.size < FRAME:
        n, data = next_piece()  # reads more than its size: a file that grew is refused
        if data:
            yield data
        if progress and n:
            progress(n)
    else:
        tune_for_streaming()  # MiB pieces reused, not faulted in again for each (vault/heap.py)
        # Closed before finish() (and on any exit): never a worker reading a closed file or encrypting behind it.
        async with contextlib.aclosing(prefetch(_ticks(), next_piece, download.POOL)) as pieces:
            async for n, data in pieces:
                if not n:
                    break
                yield data
                if progress:
                    progress(n)
    yield writer.finish()
