"""A small file's upload reads it whole and one byte more, never a whole frame (issue 16's first sync, session 13:
a 1 MiB read buffer per 4 KiB file cost more than the rest of its read); a file that grew is still refused, and
the envelope is the one a frame-sized read gives."""

from __future__ import annotations

import asyncio
import io

import pytest

from client.upload import encrypting_stream
from tests.helpers.envelope import TEAM_A, TEAM_SEQ, data_of
from vault.envelope import FRAME, DocWriter
from vault.errors import IntegrityError
from vault.keys import DeviceKeys
from vault.localindex import content_hasher
from vault.teamkeys import TeamKey


class _Reads(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        self.asked.append(-1 if n is None else n)
        return super().read(n)


def _upload(data: bytes, size: int) -> tuple[bytes, list[int]]:
    w = DocWriter(key=TeamKey.generate(TEAM_A, 1), team_seq=TEAM_SEQ, device=DeviceKeys.generate(), author="a" * 32,
                  doc="d" * 32, seq=1, parent=None, time=1_700_000_000, name="f.bin", size=size)
    f = _Reads(data)

    async def go() -> bytes:
        return b"".join([bytes(x) async for x in encrypting_stream(w, f, None, content_hasher())])

    return asyncio.run(go()), f.asked


@pytest.mark.parametrize("size", [0, 1, 4096, FRAME - 1])
def test_a_small_file_is_read_with_one_byte_more_than_its_size(size: int) -> None:
    envelope, asked = _upload(data_of(size), size)
    assert asked and max(asked) == size + 1  # before: FRAME
    assert len(envelope) > size


def test_a_small_file_that_grew_is_refused() -> None:
    with pytest.raises(IntegrityError, match="grew"):
        _upload(data_of(4097), 4096)
