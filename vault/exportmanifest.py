"""An export's manifest (docs/format.md, "Export manifest"): its bytes, and safe file paths from document names.

Pure: no I/O. The manifest is canonical JSON (keys sorted, no spaces, ASCII only) and a newline; it is signed as
written (``vault/sshsig.py``) and verified as read, never re-serialized to verify, but a manifest that is not
exactly the canonical form of what it parses is refused (so no byte can change outside what is checked).

Document names are chosen by any writer of the team: hostile input. ``safe_paths`` maps them to relative paths
under ``files/`` that cannot leave the export, be hidden, or collide (even on a case-insensitive file system), and
``Manifest.parse`` refuses any path not of that form, so a forged manifest cannot point outside the export either.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from vault.errors import EncodingError

FORMAT: Final = "mvault-export/v1"
NAMESPACE: Final = "mvault-export"  # of the manifest's SSH signature
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.json.sig"
ALLOWED_SIGNERS: Final = "allowed_signers"
FILES: Final = "files"
MAX_MANIFEST: Final = 64 * 1024 * 1024
MAX_PART: Final = 200  # bytes of one encoded path part (file systems allow 255)
_SAFE_PUNCT = frozenset("-_.,+=@ ")
_HEX = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[0-9a-f]{1,64}")
_PART = re.compile(r"(?:[^\W_]|[-_.,+=@ ]|%[0-9A-F]{2}|~)+")


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _encode_part(part: str) -> str:
    out = []
    for i, ch in enumerate(part):
        if (ch.isalnum() or ch in _SAFE_PUNCT) and ch.isprintable() and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
    text = "".join(out)
    if len(text.encode()) > MAX_PART:  # cut on a character boundary, made unique by a hash of the whole part
        cut = text.encode()[: MAX_PART - 10].decode("utf-8", "ignore")
        text = cut + "~" + hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return text


def safe_paths(names: Iterable[str]) -> dict[str, str]:
    """Document name -> its file's path in the export (``files/...``), for every name given.

    Empty parts are dropped, unsafe characters written ``%XX``, a leading ``.`` too; a path that would coincide
    (ignoring case) with another file or with a folder on another's way gets ``~2``, ``~3``... at its end; a name
    with a file on its way (``a`` and ``a/b``) becomes one part (``a%2Fb``).
    """
    taken: set[str] = set()  # casefolded file paths
    folders: set[str] = set()  # casefolded folder paths
    out: dict[str, str] = {}
    for name in sorted(set(names)):
        parts = [_encode_part(p) for p in name.split("/") if p] or ["%00"]
        if any("/".join([FILES, *parts[:i]]).casefold() in taken for i in range(1, len(parts))):
            parts = [_encode_part(name.replace("/", "\x00")).replace("%00", "%2F")]  # a file is on its way: one part
        for n in range(1, 1_000_000):
            last = parts[-1] if n == 1 else f"{parts[-1]}~{n}"
            path = "/".join([FILES, *parts[:-1], last])
            key = path.casefold()
            ancestors = ["/".join([FILES, *parts[:i]]).casefold() for i in range(1, len(parts))]
            if key not in taken and key not in folders:
                break
        taken.add(key)
        folders.update(ancestors)
        out[name] = path
    return out


def check_path(path: str) -> str:
    """``path`` if it is a path ``safe_paths`` can write (``EncodingError`` otherwise)."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0] != FILES or not all(_PART.fullmatch(p) and not p.startswith(".") for p in parts[1:]):
        raise EncodingError(f"the manifest names an unsafe path: {path!r}")
    return path


@dataclass(frozen=True)
class Entry:
    path: str
    name: str  # the document's name (as its author wrote it: print it escaped)
    doc: str
    version: int
    vid: str
    author: str
    author_name: str
    author_device: str
    time: int
    size: int
    sha256: str  # hex, of the plaintext

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "doc": self.doc, "version": self.version, "vid": self.vid,
                "author": self.author, "author_name": self.author_name, "author_device": self.author_device,
                "time": self.time, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Exporter:
    member: str
    name: str
    device: str
    principal: str  # in allowed_signers

    def to_json(self) -> dict[str, Any]:
        return {"member": self.member, "name": self.name, "device": self.device, "principal": self.principal}


@dataclass(frozen=True)
class Manifest:
    org: str
    team: str
    team_name: str
    exporter: Exporter
    time: int
    files: tuple[Entry, ...]
    request: str | None = None  # the export request's link hash (hex) a sensitive team's export was made under

    def to_bytes(self) -> bytes:
        optional = {} if self.request is None else {"request": self.request}
        return canonical_json({"format": FORMAT, "org": self.org, "team": self.team, "team_name": self.team_name,
                               "exporter": self.exporter.to_json(), "time": self.time,
                               "files": [f.to_json() for f in self.files], **optional}) + b"\n"

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        if len(raw) > MAX_MANIFEST:
            raise EncodingError("the manifest is too large")
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise EncodingError(f"the manifest is not JSON: {e}") from None
        keys = {"format", "org", "team", "team_name", "exporter", "time", "files"}
        if isinstance(value, dict) and "request" in value:  # an export under an approved request
            keys.add("request")
        top = _fields(value, "manifest", keys)
        if top["format"] != FORMAT:
            raise EncodingError(f"not an export manifest of format {FORMAT}")
        ex = _fields(top["exporter"], "exporter", {"member", "name", "device", "principal"})
        files = top["files"]
        if not isinstance(files, list):
            raise EncodingError("the manifest's files are a list")
        entries = tuple(_entry(f) for f in files)
        paths = [e.path.casefold() for e in entries]
        if len(set(paths)) != len(paths):
            raise EncodingError("the manifest names a path twice")
        folders = {"/".join(p.split("/")[:i]) for p in paths for i in range(2, p.count("/") + 1)}
        if folders & set(paths):
            raise EncodingError("the manifest names a file where another's folder is")
        m = cls(_str(top, "org", _ID), _str(top, "team", _ID), _str(top, "team_name"),
                Exporter(_str(ex, "member", _ID), _str(ex, "name"), _str(ex, "device", _ID), _str(ex, "principal")),
                _int(top, "time"), entries, _str(top, "request", _HASH) if "request" in top else None)
        if m.to_bytes() != raw:
            raise EncodingError("the manifest is not in its canonical form")
        return m


_HASH = re.compile("[0-9a-f]{64}")


def _fields(value: object, what: str, keys: set[str]) -> Mapping[str, object]:
    if not isinstance(value, dict) or set(value) != keys:
        raise EncodingError(f"the {what} has exactly the keys {sorted(keys)}")
    return value


def _str(f: Mapping[str, object], key: str, pattern: re.Pattern[str] | None = None) -> str:
    v = f[key]
    if not isinstance(v, str) or len(v) > 4096 or (pattern is not None and not pattern.fullmatch(v)):
        raise EncodingError(f"manifest field {key!r} is malformed")
    return v


def _int(f: Mapping[str, object], key: str) -> int:
    v = f[key]
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**63:
        raise EncodingError(f"manifest field {key!r} is not a non-negative integer")
    return v


def _entry(value: object) -> Entry:
    f = _fields(value, "file entry", {"path", "name", "doc", "version", "vid", "author", "author_name",
                                       "author_device", "time", "size", "sha256"})
    return Entry(check_path(_str(f, "path")), _str(f, "name"), _str(f, "doc", _ID), _int(f, "version"),
                 _str(f, "vid", _ID), _str(f, "author", _ID), _str(f, "author_name"), _str(f, "author_device", _ID),
                 _int(f, "time"), _int(f, "size"), _str(f, "sha256", _HEX))
