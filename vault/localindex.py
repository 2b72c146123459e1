"""The local copies index: which version each local file of a document came from (pure format, no I/O).

``get`` and ``put`` record, per (team id, document id) and absolute local path, the version the file
holds (its vid and number), the hash of its plaintext (``content_hasher``: BLAKE3 since session 15, SHA-256 in
entries written before, which stay readable and are compared by their own kind) and the file's size, mtime (ns)
and inode as written. ``put`` names that version as the upload's parent (so a file based on an older version is a
conflict, not a silent overwrite of someone's newer one); ``get`` knows a file it wrote and that is
unchanged without reading it. The sync engine (issue 16) reuses the same entries.

One path holds one document: recording a path for a document drops it from any other. The sealed
form (docs/format.md, "Local copies index")::

    index.bin = sealed("index", u32 len || encode({"v": 1, "docs": {...}}) || zeros)

padded to ``max(4096, the next power of two)`` bytes, so its size says little about how many files
it knows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

from vault import indexcodec as codec
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError
from vault.localstate import open_local, seal_local

NAME = "index"  # the sealed file's name (in its AD): $MVAULT_HOME/index.bin
PAD_MIN = 4096
HASH_BYTES = 32
# A content digest in memory: 32 bytes, SHA-256 (an entry written before session 15, key "sha256"), or BLAKE3_TAG
# and 32 bytes, BLAKE3 (key "blake3"). Two digests of different kinds never compare equal.
BLAKE3_TAG = codec.BLAKE3_TAG  # b"\x02"


class Hasher(Protocol):
    def update(self, data: p.Frame, /) -> None: ...

    def digest(self) -> bytes: ...


class _Blake3:
    """BLAKE3 fed in pieces; its digest carries BLAKE3_TAG."""

    def __init__(self) -> None:
        self._h = p.blake3_hasher()

    def update(self, data: p.Frame, /) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return BLAKE3_TAG + self._h.digest()


def content_hasher(like: bytes | None = None) -> Hasher:
    """The hash of a local file's plaintext, fed in pieces: BLAKE3, or SHA-256 when ``like`` (a recorded digest to
    compare with) is of that kind, so that an entry written before session 15 is checked by its own hash."""
    if like is not None and is_sha256(like):
        return p.sha256_hasher()
    return _Blake3()


# ``content_hasher(SHA256_LIKE)`` hashes with SHA-256 (what an export's manifest names, docs/format.md).
SHA256_LIKE = bytes(HASH_BYTES)


def is_sha256(digest: bytes) -> bool:
    """Whether a content digest is of the old kind (SHA-256, untagged)."""
    return len(digest) == HASH_BYTES


def same_kind(a: bytes, b: bytes) -> bool:
    """Whether two content digests are of the same hash (only then can they be compared)."""
    return is_sha256(a) == is_sha256(b)


def digest_value(digest: bytes) -> dict[str, Value]:
    """The digest's key and bytes in an encoded entry: {"sha256": 32 bytes} or {"blake3": 32 bytes}."""
    if is_sha256(digest):
        return {"sha256": digest}
    if len(digest) != HASH_BYTES + 1 or digest[:1] != BLAKE3_TAG:
        raise ValueError("not a content digest")
    return {"blake3": digest[1:]}


def digest_of(f: Fields) -> bytes:
    """The content digest of an encoded entry: exactly one of "sha256" and "blake3", 32 bytes."""
    if f.has("sha256") == f.has("blake3"):
        raise EncodingError(f"{f.what}: exactly one of 'sha256' and 'blake3' is required")
    if f.has("sha256"):
        return f.bytes_("sha256", HASH_BYTES)
    return BLAKE3_TAG + f.bytes_("blake3", HASH_BYTES)


@dataclass(frozen=True)
class LocalCopy:
    """One local file as ``get`` wrote it or ``put`` read it."""

    vid: str  # the version it holds (32 hex)
    seq: int  # that version's number (from 1)
    digest: bytes  # the plaintext's content digest (``content_hasher``: BLAKE3, or SHA-256 when older)
    size: int
    mtime_ns: int
    ino: int

    def to_value(self) -> dict[str, Value]:
        return {"vid": self.vid, "seq": self.seq, **digest_value(self.digest), "size": self.size,
                "mtime_ns": self.mtime_ns, "ino": self.ino}

    @classmethod
    def from_value(cls, v: Value) -> LocalCopy:
        f = Fields(v, "local copy", {"vid", "seq", "sha256", "blake3", "size", "mtime_ns", "ino"})
        return cls(f.str_("vid", 32), f.int_("seq", 1), digest_of(f), f.int_("size", 0),
                   f.int_("mtime_ns"), f.int_("ino", 0))

    def same_file(self, size: int, mtime_ns: int, ino: int) -> bool:
        """Whether a file with this stat is, by all signs short of reading it, the one recorded."""
        return (self.size, self.mtime_ns, self.ino) == (size, mtime_ns, ino)


@dataclass
class LocalIndex:
    # "<team id>/<doc id>" -> absolute local path -> the copy there
    docs: dict[str, dict[str, LocalCopy]] = field(default_factory=dict)
    _owner: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @staticmethod
    def key(team: str, doc: str) -> str:
        return f"{team}/{doc}"

    def copy(self, team: str, doc: str, path: str) -> LocalCopy | None:
        return self.docs.get(self.key(team, doc), {}).get(path)

    def record(self, team: str, doc: str, path: str, copy: LocalCopy) -> None:
        key = self.key(team, doc)
        owners = self._owners()
        other = owners.get(path)
        if other is not None and other != key:
            paths = self.docs.get(other, {})
            if paths.pop(path, None) is not None and not paths:
                del self.docs[other]
        self.docs.setdefault(key, {})[path] = copy
        owners[path] = key

    def forget(self, team: str, doc: str) -> bool:
        """Drop every local copy of a document (deleted or moved away); True if there was one."""
        paths = self.docs.pop(self.key(team, doc), None)
        if paths is not None and self._owner is not None:
            for path in paths:
                self._owner.pop(path, None)
        return paths is not None

    def _owners(self) -> dict[str, str]:
        """Path -> the document holding it, built once (``record`` was a walk over every document per entry:
        a batch of n puts was quadratic, bench/sync.py's first-sync profile)."""
        if self._owner is None:
            self._owner = {path: key for key, paths in self.docs.items() for path in paths}
        return self._owner

    def to_value(self) -> dict[str, Value]:
        docs: dict[str, Value] = {k: {path: copy.to_value() for path, copy in paths.items()}
                                  for k, paths in self.docs.items()}
        return {"v": 1, "docs": docs}

    @classmethod
    def from_value(cls, v: Value) -> LocalIndex:
        f = Fields(v, "local copies index", {"v", "docs"})
        if f.int_("v") != 1:
            raise EncodingError("local copies index: unknown version")
        docs = f.dict_("docs")
        return cls({k: {str(path): LocalCopy.from_value(c) for path, c in Fields(paths, "index entry").raw.items()}
                    for k, paths in docs.raw.items()})


def seal_padded(key: bytes, name: str, value: Value, body: bytes | None = None) -> bytes:
    """``value`` encoded (``body``: its encoding, already made), length-prefixed and zero-padded to
    ``max(4096, the next power of two)`` bytes, sealed under the local key and ``name`` (its AD): the form of this
    index and of the sync folder indexes."""
    if body is None:
        body = encode(value)
    data = struct.pack(">I", len(body)) + body
    size = max(PAD_MIN, 1 << (len(data) - 1).bit_length())
    return seal_local(key, name, data + bytes(size - len(data)))


def open_padded(key: bytes, name: str, blob: bytes, what: str) -> Value:
    """The value ``seal_padded`` sealed in ``blob``; ``DecryptionFailed`` (naming ``what``) when it was altered,
    swapped, is not ours or is malformed (a length past the end, non-zero padding)."""
    try:
        return decode(open_padded_body(key, name, blob, what))
    except EncodingError as e:
        raise DecryptionFailed(f"{what} is malformed") from e


def open_padded_body(key: bytes, name: str, blob: bytes, what: str) -> bytes:
    """The encoded value ``seal_padded`` sealed in ``blob``, not yet decoded (``open_padded``'s checks)."""
    data = open_local(key, name, blob)
    if not isinstance(data, bytes) or len(data) < 4:
        raise DecryptionFailed(f"{what} is malformed")
    (n,) = struct.unpack(">I", data[:4])
    if 4 + n > len(data) or data.count(0, 4 + n) != len(data) - 4 - n:  # the padding is all zeros
        raise DecryptionFailed(f"{what} is malformed")
    return data[4:4 + n]


def seal_index(key: bytes, index: LocalIndex) -> bytes:
    """The sealed, padded file for ``index`` under the local key (``vault.localstate.local_key``)."""
    return seal_padded(key, NAME, None, index_bytes(index))


def index_bytes(index: LocalIndex) -> bytes:
    """``encode(index.to_value())``, each entry written by ``vault.indexcodec`` where it can (the same bytes)."""
    docs = []
    for k, paths in index.docs.items():
        entries = []
        for path, c in paths.items():
            b = codec.entry_bytes(c.vid, c.seq, c.digest, c.size, c.mtime_ns, c.ino)
            entries.append((path, b if b is not None else encode(c.to_value())))
        d = codec.dict_bytes(entries)
        if d is None:
            return encode(index.to_value())
        docs.append((k, d))
    top = codec.dict_bytes(docs)
    if top is None:
        return encode(index.to_value())
    return codec.dict_bytes([("docs", top), ("v", encode(1))]) or encode(index.to_value())


def open_index(key: bytes, blob: bytes) -> LocalIndex:
    """The index sealed in ``blob``; ``DecryptionFailed`` when it was altered, swapped, or is not ours."""
    body = open_padded_body(key, NAME, blob, "local copies index")
    fast = codec.decode_local(body)  # the usual layout read at once; anything else the general way
    if fast is not None:
        return LocalIndex({k: {path: LocalCopy(*e[:6]) for path, e in paths.items()} for k, paths in fast.items()})
    try:
        return LocalIndex.from_value(decode(body))
    except EncodingError as e:
        raise DecryptionFailed("local copies index is malformed") from e
