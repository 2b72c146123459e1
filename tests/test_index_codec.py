"""vault/indexcodec.py: the local copies index and the sync folder indexes written and read fast, with exactly the
bytes and the values of the general encoding (vault/encoding.py), and never accepting what the general path refuses.

Generated indexes (both hashes, with and without ``raw``, ids of 32 characters and others, non-ASCII names, negative
mtimes, ``copies_seen`` or not) are written byte for byte as ``encode(to_value())`` and read back as the general
decoder reads them; every one-byte change, truncation and insertion of such an encoding is either read by the fast
path exactly as the general path reads it, or left to the general path (which then says what is wrong)."""

from __future__ import annotations

import random

import pytest

from vault import indexcodec as codec
from vault.encoding import decode, encode
from vault.errors import DecryptionFailed, EncodingError
from vault.localindex import LocalCopy, LocalIndex, index_bytes, open_index, seal_index
from vault.syncindex import SyncEntry, SyncIndex, open_sync_index, seal_sync_index, sync_index_bytes

KEY = bytes(range(32))


def _hex(rnd: random.Random, n: int = 32) -> str:
    return "".join(rnd.choice("0123456789abcdef") for _ in range(n))


def _digest(rnd: random.Random, i: int) -> bytes:
    return codec.BLAKE3_TAG + rnd.randbytes(32) if i % 3 else rnd.randbytes(32)


def _sync_index(seed: int, n: int, odd: bool = True) -> SyncIndex:
    rnd = random.Random(seed)
    idx = SyncIndex(_hex(rnd), "/home/m/équipe", "team ü")
    for i in range(n):
        vid = _hex(rnd) if not odd or i % 7 else _hex(rnd, rnd.choice((1, 31, 33 // 2)))
        doc = _hex(rnd) if not odd or i % 11 else _hex(rnd, 64)
        idx.record(f"d{i % 10}/fïle {i}.txt", SyncEntry(vid, rnd.randint(1, 2**40), _digest(rnd, i),
                                                        rnd.randint(0, 2**40), rnd.randint(-(2**63), 2**63 - 1),
                                                        rnd.randint(0, 2**62), doc,
                                                        rnd.randbytes(32) if i % 2 else b""))
    if seed % 2:
        idx.copies_seen = (rnd.randint(0, 99), rnd.randint(-5, 2**60), rnd.randint(0, 99))
    idx.last_sync = rnd.randint(0, 2**40)
    return idx


def _local_index(seed: int, n: int) -> LocalIndex:
    rnd = random.Random(seed)
    li = LocalIndex()
    for i in range(n):
        vid = _hex(rnd) if i % 5 else _hex(rnd, 12)
        li.record(_hex(rnd), _hex(rnd), f"/home/m/ü/{i}", LocalCopy(vid, rnd.randint(1, 9), _digest(rnd, i),
                                                                      rnd.randint(0, 9), rnd.randint(-9, 9**9),
                                                                      rnd.randint(0, 9**9)))
    return li


def _general_sync(body: bytes) -> SyncIndex | None:
    try:
        return SyncIndex.from_value(decode(body))
    except EncodingError:
        return None


def _general_local(body: bytes) -> LocalIndex | None:
    try:
        return LocalIndex.from_value(decode(body))
    except EncodingError:
        return None


@pytest.mark.parametrize("seed", range(6))
def test_written_and_read_as_the_general_encoding(seed: int) -> None:
    idx = _sync_index(seed, 300)
    body = sync_index_bytes(idx)
    assert body == encode(idx.to_value())
    fast = codec.decode_sync(body)
    if seed % 3 == 0:  # no odd ids: every entry of the fast layout, so the whole index is read fast
        idx = _sync_index(seed, 300, odd=False)
        body = sync_index_bytes(idx)
        assert body == encode(idx.to_value())
        fast = codec.decode_sync(body)
        assert fast is not None
    if fast is not None:
        assert SyncIndex.of_fast(fast) == SyncIndex.from_value(decode(body)) == idx
    assert open_sync_index(KEY, "f", seal_sync_index(KEY, "f", idx)) == idx

    li = _local_index(seed, 200)
    lbody = index_bytes(li)
    assert lbody == encode(li.to_value())
    assert open_index(KEY, seal_index(KEY, li)).docs == li.docs


def test_what_this_client_writes_is_read_fast() -> None:
    """Entries as the client records them (32-character ids) take the fast path, for both indexes."""
    idx = _sync_index(0, 50, odd=False)
    assert codec.decode_sync(sync_index_bytes(idx)) is not None
    rnd = random.Random(3)
    li = LocalIndex()
    for i in range(50):
        li.record(_hex(rnd), _hex(rnd), f"/x/{i}", LocalCopy(_hex(rnd), 1, _digest(rnd, i), 1, 2, 3))
    docs = codec.decode_local(index_bytes(li))
    assert docs is not None
    assert {k: {p: LocalCopy(*e[:6]) for p, e in paths.items()} for k, paths in docs.items()} == li.docs


def _mutations(body: bytes, rnd: random.Random, count: int) -> list[bytes]:
    out = [body[:i] for i in range(0, len(body), max(1, len(body) // 40))] + [body + b"\x00", b"", b"d"]
    for _ in range(count):
        i = rnd.randrange(len(body))
        out.append(body[:i] + bytes([rnd.randrange(256)]) + body[i + 1:])
        out.append(body[:i] + bytes([body[i] ^ (1 << rnd.randrange(8))]) + body[i + 1:])
        out.append(body[:i] + bytes([rnd.randrange(256)]) + body[i:])
        out.append(body[:i] + body[i + 1:])
    return out


def test_altered_sync_index_never_read_otherwise_than_the_general_path() -> None:
    rnd = random.Random(7)
    idx = _sync_index(2, 6, odd=False)
    idx.copies_seen = (1, 2, 3)
    body = sync_index_bytes(idx)
    fast_taken = 0
    for m in _mutations(body, rnd, 3000):
        fast = codec.decode_sync(m)
        if fast is not None:
            fast_taken += 1
            assert _general_sync(m) == SyncIndex.of_fast(fast)
    assert fast_taken > 100  # value bytes changed within bounds are read fast, and the same


def test_altered_local_index_never_read_otherwise_than_the_general_path() -> None:
    rnd = random.Random(8)
    li = LocalIndex()
    for i in range(4):
        li.record(_hex(rnd), _hex(rnd), f"/x/{i}", LocalCopy(_hex(rnd), 2, _digest(rnd, i), 1, 2, 3))
    body = index_bytes(li)
    fast_taken = 0
    for m in _mutations(body, rnd, 3000):
        docs = codec.decode_local(m)
        if docs is not None:
            fast_taken += 1
            general = _general_local(m)
            assert general is not None
            assert general.docs == {k: {p: LocalCopy(*e[:6]) for p, e in paths.items()} for k, paths in docs.items()}
    assert fast_taken > 100


@pytest.mark.parametrize("field,value", [("seq", 0), ("size", -1), ("ino", -1)])
def test_out_of_bounds_values_are_refused_as_before(field: str, value: int) -> None:
    """An entry the classes refuse (a version number below 1, a negative size or inode) is not read by the fast path:
    the general path refuses the index (``DecryptionFailed``), as before."""
    idx = _sync_index(0, 3, odd=False)
    value_of = idx.to_value()
    files = value_of["files"]
    assert isinstance(files, dict)
    name = next(iter(files))
    files[name] = {**files[name], field: value}
    body = encode(value_of)
    assert codec.decode_sync(body) is None
    with pytest.raises(EncodingError):
        SyncIndex.from_value(decode(body))
    sealed = seal_sync_index(KEY, "f", idx)
    assert open_sync_index(KEY, "f", sealed) == idx
    from vault.localindex import seal_padded
    with pytest.raises(DecryptionFailed):
        open_sync_index(KEY, "f", seal_padded(KEY, "sync:f", None, body))
