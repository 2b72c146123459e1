"""An upload's body, streamed: the envelope's prefix, the encrypted frames and the signature
(``vault.envelope.DocWriter``), read and encrypted one frame ahead of the network in a worker thread."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

from client import download
from vault.envelope import FRAME, DocWriter
from vault.fileio import Buffer, Stage, prefetch
from vault.heap import tune_for_streaming
from vault.localindex import Hasher

Progress = Callable[[int], None]


async def _ticks() -> AsyncIterator[None]:
    """An endless stream of turns for ``prefetch`` (the work itself says when the file ends)."""
    while True:
        yield None


async def encrypting_stream(writer: DocWriter, f: BinaryIO, progress: Progress | None,
                             hasher: Hasher) -> AsyncIterator[Buffer]:
    """The upload body. Three stages, one MiB each, in constant memory: a worker thread reads and seals
    the next MiB, another hashes this one (its plaintext for the local copies index, its ciphertext for the
    signature: as long as sealing it) while the event loop sends it; small files are done inline (a thread
    trip costs more)."""
    yield writer.upload_prefix()

    eof = False
    # A small file is read whole and one byte more (a file that grew is refused), not a frame: a 1 MiB read buffer
    # costs ~0.14 ms, more than the rest of a 4 KiB file's read.
    want = FRAME if writer.size >= FRAME else writer.size + 1

    def next_piece(_: None = None) -> tuple[Buffer, Buffer]:
        nonlocal eof
        if eof:  # prefetch asks for one piece ahead: nothing is read after the end
            return b"", b""
        chunk = f.read(want)
        eof = not chunk
        return chunk, writer.seal(chunk) if chunk else b""

    def hash_piece(piece: tuple[Buffer, Buffer]) -> None:
        hasher.update(piece[0])
        writer.absorb(piece[1])

    if writer.size < FRAME:
        piece = next_piece()  # reads more than its size: a file that grew is refused
        hash_piece(piece)
        if piece[1]:
            yield piece[1]
        if progress and piece[0]:
            progress(len(piece[0]))
    else:
        tune_for_streaming()  # MiB pieces reused, not faulted in again for each (vault/heap.py)
        hashing: Stage[tuple[Buffer, Buffer]] = Stage(hash_piece, download.POOL)
        try:
            # Closed before finish() (and on any exit): never a worker reading a closed file or encrypting behind it.
            async with contextlib.aclosing(prefetch(_ticks(), next_piece, download.POOL)) as pieces:
                async for piece in pieces:
                    if not piece[0]:
                        break
                    await hashing.push(piece)  # the pieces are never changed after: hashed while they are sent
                    yield piece[1]
                    if progress:
                        progress(len(piece[0]))
            await hashing.drain()
        finally:
            hashing.settle()
    yield writer.finish()
