"""The per-folder sync index: the last state a synced folder and its team agreed on (pure format, no I/O).

``mvault sync TEAM DIR`` keeps one index per folder. It records the team, the folder (absolute path),
the time of the last completed pass, and:

* ``files``: per document name (a relative path with ``/``), the document id, the version the local
  file holds (vid and number), the hash of its plaintext (BLAKE3, or SHA-256
  when recorded before session 15: ``vault.localindex.content_hasher``), and the file's size, mtime (ns) and inode
  as last seen (so an unchanged file is known without reading it, as ``git status`` does);
* ``docs``: per document id, the highest version number this folder has seen, deleted documents
  included: a known document missing from the server's listing, or listed at a lower number, is the
  server withholding or rolling it back, never a deletion. A number enters only once its chain was checked;
* ``copies_seen``: the stat of the local copies index when the folder last caught up with it.

An entry's version id is also the cache of verified heads: a listed head with that id is not verified again; its
``raw`` (the SHA-256 of the head's record exactly as listed, once a pass saw it) lets a pass skip even parsing a
head listed byte for byte the same. ``last_sync`` of a pass that changed nothing else is sealed on its own, in a
small file beside the index (``seal_last_sync``), so that a no-op pass does not seal the whole index again.

The sealed form (docs/format.md, "Sync folder index")::

    <file>.bin = sealed(NAME || ":" || folder id, u32 len || encode({"v": 1, ...}) || zeros)

padded to ``max(4096, the next power of two)`` bytes, like the local copies index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vault import indexcodec as codec
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError
from vault.localindex import BLAKE3_TAG, HASH_BYTES, LocalCopy, open_padded, open_padded_body, seal_padded
from vault.localstate import open_local, seal_local

NAME = "sync"  # the sealed file's name prefix (in its AD), followed by ":" and the folder's id
LAST = "sync-last"  # the same for the file holding only the time of the last pass
ROOT = "sync-root"  # the same for the file holding only the folder's path (``seal_folder_root``)


def head_digest(raw: bytes) -> bytes:
    """The SHA-256 of a listed head's record as the server sent it (an entry's ``raw``)."""
    return p.sha256(raw)


@dataclass(frozen=True)
class SyncEntry(LocalCopy):
    """One file of the folder as last synced: a local copy (version, plaintext hash, stat) and its document."""

    doc: str = ""  # document id (32 hex)
    # ``head_digest`` of the record of version ``vid`` as a pass was listed it (b"": not seen listed yet)
    raw: bytes = b""

    def to_value(self) -> dict[str, Value]:
        return {**super().to_value(), "doc": self.doc, **({"raw": self.raw} if self.raw else {})}

    @classmethod
    def from_value(cls, v: Value) -> SyncEntry:
        quick = _quick_entry(v)  # the common, valid entry, checked field by field without ``Fields``
        if quick is not None:
            return quick
        f = Fields(v, "sync index entry")
        copy = LocalCopy.from_value({k: x for k, x in f.raw.items() if k not in ("doc", "raw")})
        raw = f.bytes_("raw", HASH_BYTES) if f.has("raw") else b""
        return cls(copy.vid, copy.seq, copy.digest, copy.size, copy.mtime_ns, copy.ino, f.str_("doc", 64), raw)

    @classmethod
    def of(cls, doc: str, copy: LocalCopy) -> SyncEntry:
        return cls(copy.vid, copy.seq, copy.digest, copy.size, copy.mtime_ns, copy.ino, doc)

    def same_stat(self, size: int, mtime_ns: int, ino: int) -> bool:
        return self.same_file(size, mtime_ns, ino)


_KEYS = frozenset(("vid", "seq", "sha256", "size", "mtime_ns", "ino", "doc"))
_KEYS_RAW = _KEYS | {"raw"}
_KEYS_B3 = frozenset(("vid", "seq", "blake3", "size", "mtime_ns", "ino", "doc"))
_KEYS_B3_RAW = _KEYS_B3 | {"raw"}


def _quick_entry(v: Value) -> SyncEntry | None:
    """The entry ``v`` holds if it is well formed by the same rules as ``LocalCopy.from_value`` and ``Fields``
    (a string of at most 32 or 64 characters, an int that is no bool, within its bounds, 32 bytes); else None
    (then ``SyncEntry.from_value`` takes the general path, which says what is wrong). 10,000 entries in a
    no-op pass: the general path was a third of opening the index."""
    if not isinstance(v, dict):
        return None
    keys = v.keys()
    if keys in (_KEYS_B3, _KEYS_B3_RAW):
        sha = v["blake3"]
        tag = BLAKE3_TAG
    elif keys in (_KEYS, _KEYS_RAW):
        sha = v["sha256"]
        tag = b""
    else:
        return None
    vid, seq, size, mtime, ino, doc = v["vid"], v["seq"], v["size"], v["mtime_ns"], v["ino"], v["doc"]
    raw = v.get("raw", b"")
    if (type(vid) is str and len(vid) <= 32 and type(seq) is int and seq >= 1 and type(sha) is bytes
            and len(sha) == HASH_BYTES and type(size) is int and size >= 0 and type(mtime) is int
            and type(ino) is int and ino >= 0 and type(doc) is str and len(doc) <= 64 and type(raw) is bytes
            and len(raw) == (HASH_BYTES if "raw" in v else 0)):
        return SyncEntry(vid, seq, tag + sha if tag else sha, size, mtime, ino, doc, raw)
    return None


@dataclass(frozen=True)
class Seen:
    """A head a synced folder's sealed index recorded (by ``head_digest`` of its record): listed byte for byte the
    same, it is not even parsed (client/docs.py ``Documents.heads``); never a deletion (an entry's is a file's)."""

    doc: str
    seq: int
    vid: str


@dataclass
class SyncIndex:
    team: str  # team id
    root: str  # the folder, absolute
    team_name: str = ""  # the team's name at the last pass (shown by `sync status` without a network round)
    files: dict[str, SyncEntry] = field(default_factory=dict)  # document name -> entry
    docs: dict[str, int] = field(default_factory=dict)  # document id -> highest version number seen
    last_sync: int = 0  # time of the last completed pass (0: never)
    # The local copies index file (size, mtime_ns, inode) as it was when this index last caught up with it
    # (engine ``_catch_up``); None: never. The same file again: nothing to catch up, it is not even read.
    copies_seen: tuple[int, int, int] | None = None

    def record(self, name: str, entry: SyncEntry) -> None:
        self.files[name] = entry
        self.saw(entry.doc, entry.seq)

    def saw(self, doc: str, seq: int) -> None:
        if self.docs.get(doc, 0) < seq:
            self.docs[doc] = seq

    def seen(self) -> dict[bytes, Seen]:
        """The heads of the entries whose record a pass saw listed, by ``head_digest`` of that record."""
        return {e.raw: Seen(e.doc, e.seq, e.vid) for e in self.files.values() if e.raw}

    def forget(self, name: str) -> None:
        self.files.pop(name, None)

    def to_value(self) -> dict[str, Value]:
        files: dict[str, Value] = {name: e.to_value() for name, e in self.files.items()}
        docs: dict[str, Value] = dict(self.docs)
        return {**self.to_value_head(), "files": files, "docs": docs}

    def to_value_head(self) -> dict[str, Value]:
        """``to_value`` but for ``files`` and ``docs``."""
        out: dict[str, Value] = {"v": 1, "team": self.team, "team_name": self.team_name, "root": self.root,
                                 "last_sync": self.last_sync}
        if self.copies_seen is not None:
            out["copies_seen"] = list(self.copies_seen)
        return out

    @classmethod
    def of_fast(cls, f: dict[str, Any]) -> SyncIndex:
        """The index from ``vault.indexcodec.decode_sync``'s fields (checked there as ``from_value`` checks them)."""
        files = {name: SyncEntry(*e) for name, e in f["files"].items()}
        return cls(f["team"], f["root"], f["team_name"], files, f["docs"], f["last_sync"], f.get("copies_seen"))

    @classmethod
    def from_value(cls, v: Value) -> SyncIndex:
        f = Fields(v, "sync index", {"v", "team", "team_name", "root", "files", "docs", "last_sync", "copies_seen"})
        if f.int_("v") != 1:
            raise EncodingError("sync index: unknown version")
        files = {str(name): SyncEntry.from_value(e) for name, e in f.dict_("files").raw.items()}
        docs: dict[str, int] = {}
        for doc, seq in f.dict_("docs").raw.items():
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise EncodingError("sync index: a version number is not a positive integer")
            docs[str(doc)] = seq
        seen = None
        if f.has("copies_seen"):
            stat = [x for x in f.list_("copies_seen", 3) if isinstance(x, int) and not isinstance(x, bool)]
            if len(stat) != 3:
                raise EncodingError("sync index: copies_seen is not three integers")
            seen = (stat[0], stat[1], stat[2])
        return cls(f.str_("team", 64), f.str_("root", 4096), f.str_("team_name", 1024), files, docs,
                   f.int_("last_sync", 0), seen)


def _ad_name(folder_id: str) -> str:
    return f"{NAME}:{folder_id}"


def seal_sync_index(key: bytes, folder_id: str, index: SyncIndex) -> bytes:
    """The sealed, padded file for ``index`` under the local key, bound to ``folder_id`` (its file's name)."""
    return seal_padded(key, _ad_name(folder_id), None, sync_index_bytes(index))


def sync_index_bytes(index: SyncIndex) -> bytes:
    """``encode(index.to_value())``, its entries and ``docs`` written by ``vault.indexcodec`` (the same bytes)."""
    entries = []
    for name, e in index.files.items():
        b = codec.entry_bytes(e.vid, e.seq, e.digest, e.size, e.mtime_ns, e.ino, e.doc, e.raw)
        entries.append((name, b if b is not None else encode(e.to_value())))
    files, docs = codec.dict_bytes(entries), codec.ints_bytes(index.docs.items())
    if files is None or docs is None:
        return encode(index.to_value())
    fields = [(k, encode(v)) for k, v in index.to_value_head().items()] + [("files", files), ("docs", docs)]
    return codec.dict_bytes(fields) or encode(index.to_value())


def open_sync_index(key: bytes, folder_id: str, blob: bytes) -> SyncIndex:
    """The index sealed in ``blob``; ``DecryptionFailed`` when it was altered, swapped, or is not ours."""
    body = open_padded_body(key, _ad_name(folder_id), blob, "sync index")
    fast = codec.decode_sync(body)  # the usual layout read at once; anything else the general way
    if fast is not None:
        return SyncIndex.of_fast(fast)
    try:
        return SyncIndex.from_value(decode(body))
    except EncodingError as e:
        raise DecryptionFailed("sync index is malformed") from e


def _last_ad(folder_id: str) -> str:
    return f"{LAST}:{folder_id}"


def seal_last_sync(key: bytes, folder_id: str, last_sync: int) -> bytes:
    """The sealed file holding only the time of the folder's last pass (a pass that changed nothing else)."""
    return seal_local(key, _last_ad(folder_id), {"v": 1, "last_sync": last_sync})


def open_last_sync(key: bytes, folder_id: str, blob: bytes) -> int:
    """The time ``seal_last_sync`` sealed; ``DecryptionFailed`` when altered, swapped, malformed or not ours."""
    try:
        f = Fields(open_local(key, _last_ad(folder_id), blob), "last sync", {"v", "last_sync"})
        if f.int_("v") != 1:
            raise EncodingError("last sync: unknown version")
        return f.int_("last_sync", 0)
    except EncodingError as e:
        raise DecryptionFailed("last sync file is malformed") from e


def seal_folder_root(key: bytes, folder_id: str, root: str) -> bytes:
    """The sealed file holding only the folder's absolute path: what another folder's pass checks for overlap, read
    without opening this folder's whole index. Padded as the index is (its size says nothing of the path)."""
    return seal_padded(key, f"{ROOT}:{folder_id}", {"v": 1, "root": root})


def open_folder_root(key: bytes, folder_id: str, blob: bytes) -> str:
    """The path ``seal_folder_root`` sealed; ``DecryptionFailed`` when altered, swapped, malformed or not ours."""
    try:
        f = Fields(open_padded(key, f"{ROOT}:{folder_id}", blob, "folder root"), "folder root", {"v", "root"})
        if f.int_("v") != 1:
            raise EncodingError("folder root: unknown version")
        return f.str_("root", 4096)
    except EncodingError as e:
        raise DecryptionFailed("folder root file is malformed") from e
