"""The local copies index and the sync folder indexes in their canonical encoding, written and read fast.

The bytes are exactly ``vault.encoding``'s (``encode`` of the index's ``to_value()``): no format change. An index
holds one small dictionary per file (a local copy: version, number, content hash, size, mtime, inode; a sync entry
adds the document id and the listed record's digest), ten thousand of them in a large folder, and the general
encoder and decoder walk each of their 6-8 fields one by one (a no-op sync of 10,000 files spent ~0.1 s decoding
its folder's index; a first sync re-sealed the local copies index of a large home several times). Here an entry
with the usual values (a version id and a document id of 32 characters, which every entry this client writes has)
is written and read by one ``struct`` call over its exact canonical layout.

Reading is a fast path only: ``decode_local_docs`` and ``decode_sync`` return None for anything they do not
recognise exactly (another layout or length, a value out of the bounds the classes check, invalid UTF-8, keys out
of order, trailing bytes), and the caller then takes the general decoder, which gives the same value or says what
is wrong. Writing falls back to the general encoder the same way. tests/test_index_codec.py checks both paths give
the same bytes and the same entries, on generated and on altered indexes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from operator import itemgetter

HASH = 32
ID = 32  # characters (and bytes: hex) of a version id or a document id in the fast layout
BLAKE3_TAG = b"\x02"  # a content digest of the BLAKE3 kind in memory is this tag and 32 bytes (vault.localindex)
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

_u32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_head = struct.Struct(">BI").pack
_ONE = _head(0x64, 1)
_BYTES = {"blake3", "sha256", "raw", "doc", "vid"}  # 32 bytes each ("doc", "vid": a string); the others int64


def _key(name: str) -> bytes:
    raw = name.encode()
    return _u32.pack(len(raw)) + raw


_WRITE_ORDER = ("digest", "doc", "ino", "mtime_ns", "raw", "seq", "size", "vid")


class Shape:
    """One layout of an entry: "d", the field count, then per field (in the byte order of the keys) its key, its
    type byte, and its value (32 bytes with their length for the hash, "raw", "doc" and "vid"; 8 for an int)."""

    def __init__(self, b3: bool, doc: bool, raw: bool) -> None:
        keys = ["blake3" if b3 else "sha256", "ino", "mtime_ns", "seq", "size", "vid"] + ["doc"] * doc + ["raw"] * raw
        self.fields = sorted(keys, key=str.encode)
        self.b3, self.doc, self.raw = b3, doc, raw
        fmt, consts = ">5s", [_head(0x64, len(self.fields))]
        for f in self.fields:
            if f in _BYTES:
                kind = b"s" if f in ("doc", "vid") else b"b"
                consts.append(_key(f) + kind + _u32.pack(HASH))
                fmt += f"{len(consts[-1])}s{HASH}s"
            else:
                consts.append(_key(f) + b"i")
                fmt += f"{len(consts[-1])}sq"
        self.struct = struct.Struct(fmt)
        self.consts = tuple(consts)
        self.size = self.struct.size
        at = {f: 2 + 2 * i for i, f in enumerate(self.fields)}  # a field's place in the unpacked tuple
        # vid, seq, hash, size, mtime_ns, ino[, doc[, raw]]: the entry's values in ``Entry``'s order
        self.pick = itemgetter(*(at[f] for f in ["vid", "seq", self.fields_hash(), "size", "mtime_ns", "ino"]
                                 + ["doc"] * doc + ["raw"] * raw))
        self.consts_at = itemgetter(0, *range(1, 2 * len(self.fields), 2))
        # writing: the values (digest, doc, ino, mtime_ns, raw, seq, size, vid) in field order, between the constants
        self.values_of = itemgetter(*(_WRITE_ORDER.index("digest" if f in ("blake3", "sha256") else f)
                                      for f in self.fields))
        self.template: list[bytes | int] = [self.consts[0]]
        for c in self.consts[1:]:
            self.template += [c, 0]

    def fields_hash(self) -> str:
        return "blake3" if self.b3 else "sha256"


SHAPES = {(b3, doc, raw): Shape(b3, doc, raw) for b3 in (True, False) for doc in (True, False)
          for raw in (True, False) if doc or not raw}
_BY_HEAD: dict[bytes, list[Shape]] = {}  # by "d" and the field count: at most two shapes each (the two hashes)
for _s in SHAPES.values():
    _BY_HEAD.setdefault(_s.consts[0], []).append(_s)

# -- writing ------------------------------------------------------------------------------------------------------


def entry_bytes(vid: str, seq: int, digest: bytes, size: int, mtime_ns: int, ino: int, doc: str | None = None,
                raw: bytes = b"") -> bytes | None:
    """``encode`` of the entry's ``to_value()`` (a local copy, or with ``doc`` a sync entry), or None when it is not
    of the fast layout (the caller encodes it the general way, which also raises where a value is wrong)."""
    if not (type(vid) is str and type(seq) is int and type(size) is int and type(mtime_ns) is int
            and type(ino) is int and type(digest) is bytes and type(raw) is bytes and (doc is None or type(doc) is str)
            and _INT_MIN <= seq <= _INT_MAX and _INT_MIN <= size <= _INT_MAX and _INT_MIN <= mtime_ns <= _INT_MAX
            and _INT_MIN <= ino <= _INT_MAX and len(raw) in ((0, HASH) if doc is not None else (0,))):
        return None
    if len(digest) == HASH + 1 and digest[:1] == BLAKE3_TAG:
        b3, digest = True, digest[1:]
    elif len(digest) == HASH:
        b3 = False
    else:
        return None
    try:
        vb, db = vid.encode(), doc.encode() if doc is not None else b""
    except UnicodeEncodeError:
        return None
    if len(vb) != ID or (doc is not None and len(db) != ID):
        return None
    shape = SHAPES[(b3, doc is not None, bool(raw))]
    args = shape.template.copy()
    args[2::2] = shape.values_of((digest, db, ino, mtime_ns, raw, seq, size, vb))
    return shape.struct.pack(*args)


def dict_bytes(items: Iterable[tuple[str, bytes]]) -> bytes | None:
    """A dictionary of already-encoded values (key, value bytes), in canonical order; None if a key has no UTF-8
    form (the general encoder says so)."""
    try:
        pairs = sorted([(k.encode(), v) for k, v in items])
    except UnicodeEncodeError:
        return None
    if len(pairs) == 1:
        kb, v = pairs[0]
        return b"".join((_ONE, _u32.pack(len(kb)), kb, v))
    out = [_head(0x64, len(pairs))]
    for kb, v in pairs:
        out.append(_u32.pack(len(kb)))
        out.append(kb)
        out.append(v)
    return b"".join(out)


def ints_bytes(items: Iterable[tuple[str, int]]) -> bytes | None:
    """A dictionary of int64 values (the sync index's ``docs``) in canonical order; None if one is not plain."""
    encoded = []
    for k, v in items:
        if type(v) is not int or not _INT_MIN <= v <= _INT_MAX:
            return None
        encoded.append((k, b"i" + _I64.pack(v)))
    return dict_bytes(encoded)


# -- reading ------------------------------------------------------------------------------------------------------

Entry = tuple[str, int, bytes, int, int, int, str, bytes]  # vid, seq, digest (tagged), size, mtime_ns, ino, doc, raw


def entry_at(buf: bytes, pos: int, doc: bool) -> tuple[Entry, int] | None:
    """The entry (a sync entry with ``doc``, else a local copy) whose encoding starts at ``pos`` and the position after
    it, if it is exactly of a fast layout and its values are within the bounds ``LocalCopy``/``SyncEntry`` check
    (seq >= 1, size and ino >= 0; ids of 32 characters are within theirs); None otherwise."""
    for shape in _BY_HEAD.get(buf[pos:pos + 5], ()):
        if shape.doc != doc or pos + shape.size > len(buf):
            continue
        t = shape.struct.unpack_from(buf, pos)
        if shape.consts_at(t) != shape.consts:
            continue
        v = shape.pick(t)
        if v[1] < 1 or v[3] < 0 or v[5] < 0:  # seq, size, ino
            return None
        try:
            vid = v[0].decode()
            docid = v[6].decode() if doc else ""
        except UnicodeDecodeError:
            return None
        digest = BLAKE3_TAG + v[2] if shape.b3 else v[2]
        return (vid, v[1], digest, v[3], v[4], v[5], docid, v[7] if shape.raw else b""), pos + shape.size
    return None


class _NotThis(Exception):
    """Not the exact layout the fast path reads: the general decoder is used."""


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def _u32(self) -> int:
        if self.pos + 4 > len(self.buf):
            raise _NotThis
        n: int = _u32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return n

    def _kind(self, kind: int) -> None:
        if self.pos >= len(self.buf) or self.buf[self.pos] != kind:
            raise _NotThis
        self.pos += 1

    def dict_head(self) -> int:
        self._kind(0x64)
        n = self._u32()
        if n > len(self.buf) - self.pos:
            raise _NotThis
        return n

    def key(self) -> bytes:
        n = self._u32()
        if self.pos + n > len(self.buf):
            raise _NotThis
        self.pos += n
        return self.buf[self.pos - n:self.pos]

    def str_(self) -> str:
        self._kind(0x73)
        return self.key().decode()

    def int_(self) -> int:
        self._kind(0x69)
        if self.pos + 8 > len(self.buf):
            raise _NotThis
        self.pos += 8
        v: int = _I64.unpack_from(self.buf, self.pos - 8)[0]
        return v

    def entries(self, doc: bool) -> dict[str, Entry]:
        """A dictionary of entries (keys strictly increasing), each of a fast layout."""
        out: dict[str, Entry] = {}
        last = b""
        for i in range(self.dict_head()):
            k = self.key()
            if i and k <= last:
                raise _NotThis
            last = k
            found = entry_at(self.buf, self.pos, doc)
            if found is None:
                raise _NotThis
            out[k.decode()], self.pos = found
        return out

    def ints(self) -> dict[str, int]:
        """A dictionary of int64 values of at least 1 (keys strictly increasing)."""
        out: dict[str, int] = {}
        buf, size, last = self.buf, len(self.buf), b""
        for i in range(self.dict_head()):
            k = self.key()
            end = self.pos
            if end + 9 > size or buf[end] != 0x69:
                raise _NotThis
            if i and k <= last:
                raise _NotThis
            last = k
            seq: int = _I64.unpack_from(buf, end + 1)[0]
            if seq < 1:
                raise _NotThis
            out[k.decode()], self.pos = seq, end + 9
        return out


def decode_local(buf: bytes) -> dict[str, dict[str, Entry]] | None:
    """The entries (team/doc -> path -> entry) of the local copies index ``{"docs": {...}, "v": 1}`` encoded in
    ``buf``, if it is exactly of the fast layout; None for anything else (decode it the general way)."""
    r = _Reader(buf)
    try:
        if r.dict_head() != 2 or r.key() != b"docs":
            return None
        docs: dict[str, dict[str, Entry]] = {}
        last = None
        for _ in range(r.dict_head()):
            k = r.key()
            if last is not None and k <= last:
                return None
            last = k
            docs[k.decode()] = r.entries(False)
        if r.key() != b"v" or r.int_() != 1 or r.pos != len(buf):
            return None
        return docs
    except (_NotThis, UnicodeDecodeError):
        return None


SYNC_KEYS = (b"copies_seen", b"docs", b"files", b"last_sync", b"root", b"team", b"team_name", b"v")


def decode_sync(buf: bytes) -> dict[str, object] | None:
    """The fields of a sync folder index encoded in ``buf`` (``files``: name -> entry; ``docs``: id -> number;
    ``copies_seen``: three ints or absent; the strings and ints as they are) if it is exactly of the fast layout
    and within the bounds ``SyncIndex.from_value`` checks; None for anything else (decode it the general way)."""
    r = _Reader(buf)
    out: dict[str, object] = {}
    try:
        n = r.dict_head()
        keys = SYNC_KEYS if n == 8 else SYNC_KEYS[1:] if n == 7 else None
        if keys is None:
            return None
        for want in keys:
            if r.key() != want:
                return None
            if want == b"copies_seen":
                r._kind(0x6C)
                if r._u32() != 3:
                    return None
                out["copies_seen"] = (r.int_(), r.int_(), r.int_())
            elif want == b"files":
                out["files"] = r.entries(True)
            elif want == b"docs":
                out["docs"] = r.ints()
            elif want in (b"last_sync", b"v"):
                out[want.decode()] = r.int_()
            else:
                out[want.decode()] = r.str_()
        if r.pos != len(buf):
            return None
    except (_NotThis, UnicodeDecodeError):
        return None
    team, root, name = out["team"], out["root"], out["team_name"]
    assert isinstance(team, str) and isinstance(root, str) and isinstance(name, str)
    if out["v"] != 1 or len(team) > 64 or len(root) > 4096 or len(name) > 1024 or out["last_sync"] < 0:  # type: ignore[operator]
        return None
    return out
