"""The per-folder sync index: the last state a synced folder and its team agreed on (pure format, no I/O).

``mvault sync TEAM DIR`` keeps one index per folder. It records the team, the folder (absolute path),
the time of the last completed pass, and:

* ``files``: per document name (a relative path with ``/``), the document id, the version the local
  file holds (vid and number), the SHA-256 of its plaintext, and the file's size, mtime (ns) and inode
  as last seen (so an unchanged file is known without reading it, as ``git status`` does);
* ``docs``: per document id, the highest version number this folder has seen, deleted documents
  included: a known document missing from the server's listing, or listed at a lower number, is the
  server withholding or rolling it back, never a deletion.

The sealed form (docs/format.md, "Sync folder index")::

    <file>.bin = sealed(NAME || ":" || folder id, u32 len || encode({"v": 1, ...}) || zeros)

padded to ``max(4096, the next power of two)`` bytes, like the local copies index.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vault.encoding import Fields, Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError
from vault.localindex import HASH_BYTES
from vault.localstate import open_local, seal_local

NAME = "sync"  # the sealed file's name prefix (in its AD), followed by ":" and the folder's id
PAD_MIN = 4096


@dataclass(frozen=True)
class SyncEntry:
    """One file of the folder as last synced."""

    doc: str  # document id (32 hex)
    vid: str  # the version the file holds (32 hex)
    seq: int  # that version's number (from 1)
    sha256: bytes  # SHA-256 of the plaintext
    size: int
    mtime_ns: int
    ino: int

    def to_value(self) -> dict[str, Value]:
        return {"doc": self.doc, "vid": self.vid, "seq": self.seq, "sha256": self.sha256, "size": self.size,
                "mtime_ns": self.mtime_ns, "ino": self.ino}

    @classmethod
    def from_value(cls, v: Value) -> SyncEntry:
        f = Fields(v, "sync index entry", {"doc", "vid", "seq", "sha256", "size", "mtime_ns", "ino"})
        return cls(f.str_("doc", 64), f.str_("vid", 64), f.int_("seq", 1), f.bytes_("sha256", HASH_BYTES),
                   f.int_("size", 0), f.int_("mtime_ns"), f.int_("ino", 0))

    def same_stat(self, size: int, mtime_ns: int, ino: int) -> bool:
        """Whether a file with this stat is, by all signs short of reading it, the one recorded."""
        return (self.size, self.mtime_ns, self.ino) == (size, mtime_ns, ino)


@dataclass
class SyncIndex:
    team: str  # team id
    root: str  # the folder, absolute
    team_name: str = ""  # the team's name at the last pass (shown by `sync status` without a network round)
    files: dict[str, SyncEntry] = field(default_factory=dict)  # document name -> entry
    docs: dict[str, int] = field(default_factory=dict)  # document id -> highest version number seen
    last_sync: int = 0  # time of the last completed pass (0: never)

    def record(self, name: str, entry: SyncEntry) -> None:
        self.files[name] = entry
        self.saw(entry.doc, entry.seq)

    def saw(self, doc: str, seq: int) -> None:
        if self.docs.get(doc, 0) < seq:
            self.docs[doc] = seq

    def forget(self, name: str) -> None:
        self.files.pop(name, None)

    def to_value(self) -> dict[str, Value]:
        files: dict[str, Value] = {name: e.to_value() for name, e in self.files.items()}
        docs: dict[str, Value] = dict(self.docs)
        return {"v": 1, "team": self.team, "team_name": self.team_name, "root": self.root, "files": files,
                "docs": docs, "last_sync": self.last_sync}

    @classmethod
    def from_value(cls, v: Value) -> SyncIndex:
        f = Fields(v, "sync index", {"v", "team", "team_name", "root", "files", "docs", "last_sync"})
        if f.int_("v") != 1:
            raise EncodingError("sync index: unknown version")
        files = {str(name): SyncEntry.from_value(e) for name, e in f.dict_("files").raw.items()}
        docs: dict[str, int] = {}
        for doc, seq in f.dict_("docs").raw.items():
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise EncodingError("sync index: a version number is not a positive integer")
            docs[str(doc)] = seq
        return cls(f.str_("team", 64), f.str_("root", 4096), f.str_("team_name", 1024), files, docs,
                   f.int_("last_sync", 0))


def _ad_name(folder_id: str) -> str:
    return f"{NAME}:{folder_id}"


def seal_sync_index(key: bytes, folder_id: str, index: SyncIndex) -> bytes:
    """The sealed, padded file for ``index`` under the local key, bound to ``folder_id`` (its file's name)."""
    body = encode(index.to_value())
    data = struct.pack(">I", len(body)) + body
    size = max(PAD_MIN, 1 << (len(data) - 1).bit_length())
    return seal_local(key, _ad_name(folder_id), data + bytes(size - len(data)))


def open_sync_index(key: bytes, folder_id: str, blob: bytes) -> SyncIndex:
    """The index sealed in ``blob``; ``DecryptionFailed`` when it was altered, swapped, or is not ours."""
    data = open_local(key, _ad_name(folder_id), blob)
    if not isinstance(data, bytes) or len(data) < 4:
        raise DecryptionFailed("sync index is malformed")
    (n,) = struct.unpack(">I", data[:4])
    if 4 + n > len(data) or any(data[4 + n:]):
        raise DecryptionFailed("sync index is malformed")
    try:
        return SyncIndex.from_value(decode(data[4:4 + n]))
    except EncodingError as e:
        raise DecryptionFailed("sync index is malformed") from e
