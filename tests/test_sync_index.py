"""Issue 16: the sealed per-folder sync index (vault/syncindex.py): round trip, padding, bound to its folder."""

from __future__ import annotations

import pytest

from vault.errors import DecryptionFailed
from vault.syncindex import SyncEntry, SyncIndex, open_sync_index, seal_sync_index

KEY = bytes(range(32))


def sample(files: int = 3) -> SyncIndex:
    index = SyncIndex("t" * 32, "/home/m/drafts", "drafting", last_sync=1_800_000_000)
    for i in range(files):
        index.record(f"notes/{i}.md", SyncEntry(f"{i:032x}", 1 + i, bytes([i]) * 32, 10 * i, 1_000 + i, 77 + i,
                                                f"{i + 100:032x}"))
    index.saw("f" * 32, 4)  # a deleted document: no file, its number remembered
    return index


def test_round_trip_and_padding() -> None:
    index = sample()
    blob = seal_sync_index(KEY, "ab" * 16, index)
    back = open_sync_index(KEY, "ab" * 16, blob)
    assert back == index and back.docs["f" * 32] == 4 and back.files["notes/2.md"].same_stat(20, 1002, 79)
    assert len(seal_sync_index(KEY, "ab" * 16, sample(0))) == len(blob)  # a few files or none: the same size


def test_another_folder_a_flipped_bit_or_another_key_is_refused() -> None:
    blob = seal_sync_index(KEY, "ab" * 16, sample())
    with pytest.raises(DecryptionFailed):
        open_sync_index(KEY, "cd" * 16, blob)  # swapped with another folder's index
    with pytest.raises(DecryptionFailed):
        open_sync_index(KEY, "ab" * 16, blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(DecryptionFailed):
        open_sync_index(bytes(32), "ab" * 16, blob)


@pytest.mark.parametrize("where", ["first", "last"])
def test_sealed_with_a_non_zero_padding_byte_is_refused(where: str) -> None:
    """A file sealed under the right key whose padding is not all zeros is malformed (the padding is checked whole,
    its first byte after the body and its very last)."""
    import struct

    from vault.encoding import encode
    from vault.localstate import seal_local

    body = encode(sample().to_value())
    data = bytearray(struct.pack(">I", len(body)) + body + bytes(4096))
    data[4 + len(body) if where == "first" else -1] = 1
    blob = seal_local(KEY, "sync:" + "ab" * 16, bytes(data))
    with pytest.raises(DecryptionFailed, match="malformed"):
        open_sync_index(KEY, "ab" * 16, blob)
    data[4 + len(body) if where == "first" else -1] = 0
    assert open_sync_index(KEY, "ab" * 16, seal_local(KEY, "sync:" + "ab" * 16, bytes(data))) == sample()
