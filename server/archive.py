"""The backup archive: a tar stream of named files, a manifest, and a digest of everything before it.

Layout (docs/format.md, "Backup archive"): regular-file members in this order, each mode 0600 with the
manifest's creation time as mtime: ``audit.db``, ``vault.db``, the data directory's other top-level files,
every referenced blob (``blobs/<2>/<name>``); then ``manifest.json`` (sorted-key JSON: format version,
creation time, every member's path, size and SHA-256, the audit log's size and root and last checkpoint);
then ``manifest.sha256``: the hex SHA-256 of every archive byte before that member's header except the
contents of the members before the manifest (their SHA-256s are in it): all headers, padding and the manifest;
and a newline; then tar's end-of-archive zero blocks and nothing else.

``ArchiveWriter`` writes it to any writable stream (non-seekable is fine: the writer counts what it wrote);
``read_archive`` extracts one into a directory, verifying as it goes, in constant memory (the manifest aside).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vault.errors import IntegrityError

FORMAT = "mvault-backup"
VERSION = 1
MANIFEST, TRAILER = "manifest.json", "manifest.sha256"
CHUNK = 1 << 20
MAX_MANIFEST = 512 << 20
_TOP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_BLOB = re.compile(r"blobs/([0-9a-f]{2})/(\1[0-9a-f]{1,126})")
_RAW_SQLITE = ("-wal", "-shm", "-journal")


class ArchiveRefused(IntegrityError):
    """An archive that is not exactly what ``mvault-server backup`` wrote: nothing of it is used."""


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def member_name_ok(name: str) -> bool:
    """A name a backup may hold: a plain top-level file (no SQLite WAL/SHM/journal) or a blob."""
    if _BLOB.fullmatch(name):
        return True
    return bool(_TOP.fullmatch(name)) and not name.endswith(_RAW_SQLITE) and name not in (MANIFEST, TRAILER)


class ArchiveWriter:
    """Members one by one (``add``), then ``finish`` with the manifest's other fields.

    The tar stream is written here (headers from ``tarfile.TarInfo.tobuf``), so that each member's content is
    hashed once, for the manifest, and everything else (headers, padding, the manifest) into the digest the
    trailer holds."""

    def __init__(self, out: BinaryIO, created: int) -> None:
        self._out = out
        self._digest = hashlib.sha256()
        self.created = created
        self.entries: list[Entry] = []
        self._written = 0

    def _emit(self, data: bytes, digest: bool = True) -> None:
        self._out.write(data)
        self._written += len(data)
        if digest:
            self._digest.update(data)

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.type = size, 0o600, self.created, tarfile.REGTYPE
        self._emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self, size: int) -> None:
        self._emit(b"\0" * (-size % tarfile.BLOCKSIZE))

    def add(self, name: str, path: Path, check: Callable[[str], None] | None = None,
            tap: Callable[[bytes], object] | None = None) -> Entry:
        """Stream file ``path`` in as ``name``; ``tap`` sees every piece of it as it is read (another hash), then
        ``check`` gets its SHA-256 (hex) and may refuse it."""
        if not member_name_ok(name):
            raise ValueError(f"{name!r} is not a backup member name")
        h = hashlib.sha256()
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._header(name, size)
            left = size
            while left:
                data = f.read(min(CHUNK, left))
                if not data:
                    raise OSError(f"{path} shrank while it was copied")
                h.update(data)
                if tap is not None:
                    tap(data)
                self._emit(data, digest=False)
                left -= len(data)
        self._pad(size)
        entry = Entry(name, size, h.hexdigest())
        if check is not None:
            check(entry.sha256)
        self.entries.append(entry)
        return entry

    def _add_bytes(self, name: str, data: bytes) -> None:
        self._header(name, len(data))
        self._emit(data)
        self._pad(len(data))

    def finish(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Write the manifest (``fields`` plus format, version, creation time, files), the trailer and the end."""
        manifest = {**fields, "format": FORMAT, "version": VERSION, "created": self.created,
                    "files": [e.as_json() for e in self.entries]}
        self._add_bytes(MANIFEST, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
        self._add_bytes(TRAILER, (self._digest.hexdigest() + "\n").encode())
        end = 2 * tarfile.BLOCKSIZE
        self._emit(b"\0" * (end + (-(self._written + end) % tarfile.RECORDSIZE)))
        self._out.flush()
        return manifest


class _Tap:
    """A read-only stream that feeds what tarfile reads into the archive digest, except the ranges ``skip``
    names (members' contents, which the manifest's hashes cover), holding back the last ``hold`` bytes so that
    a range tarfile names later (its read-ahead is less than ``hold``) can still be skipped, and the digest of
    everything before an offset can still be taken."""

    def __init__(self, src: BinaryIO, hold: int) -> None:
        self.src, self.hold = src, hold
        self.hash = hashlib.sha256()
        self.hashed = 0
        self.pending: collections.deque[bytes] = collections.deque()
        self.pending_len = 0
        self._skips: collections.deque[tuple[int, int]] = collections.deque()

    def skip(self, start: int, end: int) -> None:
        """Leave bytes ``[start, end)`` out of the digest."""
        if start < self.hashed or (self._skips and start < self._skips[-1][1]):
            raise ArchiveRefused("the archive's members overlap")
        self._skips.append((start, end))

    def _feed(self, h: Any, chunk: bytes, at: int) -> None:
        """``chunk`` (which starts at offset ``at``) into ``h``, without the skipped ranges."""
        end = at + len(chunk)
        for start, stop in self._skips:
            if start >= end:
                break
            if stop <= at:
                continue
            if start > at:
                h.update(chunk[: start - at])
            chunk, at = chunk[max(0, stop - at):], max(at, stop)
            if not chunk:
                return
        h.update(chunk)

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        if data:
            self.pending.append(data)
            self.pending_len += len(data)
            while self.pending_len - len(self.pending[0]) >= self.hold:
                first = self.pending.popleft()
                self.pending_len -= len(first)
                self._feed(self.hash, first, self.hashed)
                self.hashed += len(first)
                while self._skips and self._skips[0][1] <= self.hashed:
                    self._skips.popleft()
        return data

    def digest_before(self, offset: int) -> str:
        if offset < self.hashed or offset > self.hashed + self.pending_len:
            raise ArchiveRefused("the archive's trailer is not where its digest can be checked")
        h, at = self.hash.copy(), self.hashed
        for chunk in self.pending:
            if at >= offset:
                break
            self._feed(h, chunk[: offset - at], at)
            at += len(chunk)
        return h.hexdigest()

    def rest_is_zero(self, offset: int) -> bool:
        """Whether every byte from ``offset`` (within the held-back bytes) to the end of the source is zero."""
        at = self.hashed
        for chunk in self.pending:
            start = max(0, offset - at)
            if chunk[start:].strip(b"\0"):
                return False
            at += len(chunk)
        while data := self.src.read(CHUNK):
            if data.strip(b"\0"):
                return False
        return True


def _copy_member(tar: tarfile.TarFile, info: tarfile.TarInfo, target: Path) -> Entry:
    src = tar.extractfile(info)
    if src is None:
        raise ArchiveRefused(f"archive member {info.name} is not a regular file")
    h = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while data := src.read(CHUNK):
                h.update(data)
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except tarfile.ReadError as e:
        raise ArchiveRefused(f"archive member {info.name} is cut short: {e}") from None
    return Entry(info.name, info.size, h.hexdigest())


def _read_small(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    if info.size > MAX_MANIFEST:
        raise ArchiveRefused(f"archive member {info.name} is too large")
    src = tar.extractfile(info)
    if src is None:
        raise ArchiveRefused(f"archive member {info.name} is not a regular file")
    return src.read()


def read_archive(src: BinaryIO, into: Path) -> dict[str, Any]:
    """Extract the archive ``src`` into the empty directory ``into``, verifying every member against the
    manifest and the whole stream against the trailer; returns the manifest. ``ArchiveRefused`` if anything
    differs (the caller removes ``into``: what was written there is not to be used)."""
    bufsize = CHUNK
    tap = _Tap(src, hold=2 * bufsize + 4096)
    got: dict[str, Entry] = {}
    manifest_raw: bytes | None = None
    try:
        with tarfile.open(fileobj=tap, mode="r|", bufsize=bufsize) as tar:  # type: ignore[call-overload]
            for info in tar:
                if manifest_raw is not None:
                    if info.name != TRAILER or not info.isreg():
                        raise ArchiveRefused(f"archive has {info.name!r} after its manifest")
                    digest = tap.digest_before(info.offset)
                    if _read_small(tar, info) != (digest + "\n").encode():
                        raise ArchiveRefused("the archive's digest does not match its content: it was altered")
                    if not tap.rest_is_zero(info.offset_data + 512 * ((info.size + 511) // 512)):
                        raise ArchiveRefused("the archive has bytes after its end")
                    return _checked_manifest(manifest_raw, got)
                if info.name == MANIFEST and info.isreg():
                    manifest_raw = _read_small(tar, info)
                    continue
                if not info.isreg() or not member_name_ok(info.name) or info.name in got:
                    raise ArchiveRefused(f"archive member {info.name!r} is not one a backup holds")
                tap.skip(info.offset_data, info.offset_data + info.size)
                target = into / info.name
                target.parent.mkdir(parents=True, exist_ok=True)
                got[info.name] = _copy_member(tar, info, target)
    except (tarfile.TarError, EOFError) as e:
        raise ArchiveRefused(f"not a complete backup archive: {e}") from None
    raise ArchiveRefused("the archive ends before its manifest and digest: it is cut short, or a header was altered")


def _checked_manifest(raw: bytes, got: dict[str, Entry]) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
        files = [Entry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in manifest["files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ArchiveRefused(f"the archive's manifest is not readable: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveRefused("not a Member Vault backup archive")
    if manifest.get("version") != VERSION:
        raise ArchiveRefused(f"backup format version {manifest.get('version')} is not one this version reads")
    listed = {f.path: f for f in files}
    if len(listed) != len(files):
        raise ArchiveRefused("the archive's manifest lists a file twice")
    for path in sorted(set(listed) | set(got)):
        if path not in got:
            raise ArchiveRefused(f"{path} is in the manifest but not in the archive")
        if path not in listed:
            raise ArchiveRefused(f"{path} is in the archive but not in the manifest")
        if got[path] != listed[path]:
            raise ArchiveRefused(f"{path} does not match the manifest (size or SHA-256): the archive was altered")
    return dict(manifest)
