"""Walking a synced folder: its regular files as document names, each known unchanged from the index
by (size, mtime_ns, inode) without being read, or hashed.

Only regular files count. Symbolic links and special files (FIFOs, sockets, devices) are reported and
never followed or read. Ignored: names matching ``.mvaultignore`` (gitignore syntax, read with
``pathspec``) at the folder's top, the editor and OS temporaries in ``DEFAULT_IGNORES``, and hidden
names (a part starting with ``.``: also our own download temporaries, ``.NAME.*.mvault-part``), as a
folder ``get`` skips them, unless ``hidden_ok`` (``--hidden``: hidden names go both ways). Whatever
``hidden_ok`` says, the folder's own files are never synced: ``.mvaultignore`` (at any depth), the download
temporaries, and a Member Vault home (a folder holding a ``keystore.bin``: reported and not entered). A path
that is not a valid document name is reported and skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from client.download import hash_file
from client.home import KEYSTORE  # a folder holding one is a Member Vault home
from client.sync.ignore import IGNORE_FILE, Ignores, rules
from vault.localindex import is_sha256
from vault.names import name_problem
from vault.syncindex import SyncEntry, SyncIndex

PARTIAL = ".mvault-part"  # the suffix of client/download.py's temporaries
COOKIE = ".mvault-cookie-"  # the prefix of a watcher's cookie files (client/sync/watch.py: answering "in step?")


@dataclass(frozen=True)
class LocalFile:
    where: str  # the file's path (a ``Path`` made only when asked for: ``path``)
    size: int
    mtime_ns: int
    ino: int
    digest: bytes | None  # the content digest; None: unchanged since the index entry (not read)

    @property
    def path(self) -> Path:
        return Path(self.where)


@dataclass
class Scan:
    files: dict[str, LocalFile] = field(default_factory=dict)  # document name -> the file now
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    present: set[str] = field(default_factory=set)  # indexed names there but not synced now (never a deletion)
    hashed: int = 0  # how many files were read
    partials: list[Path] = field(default_factory=list)  # download temporaries a killed pass left (.NAME.*.mvault-part)

    def skip(self, name: str, why: str) -> None:
        self.skipped.append((name, why))
        self.present.add(name)


def hidden(name: str) -> bool:
    """Whether a part of ``name`` starts with ``.``."""
    return name.startswith(".") or "/." in name


def own_file(base: str) -> bool:
    """A file of the folder's own (its ignore rules, a download temporary, a watcher's cookie): never a document,
    hidden or not, whatever the ignore rules say."""
    return base == IGNORE_FILE or base.endswith(PARTIAL) or base.startswith(COOKIE)


def scan(root: Path, index: SyncIndex | None, hidden_ok: bool = False, only: frozenset[str] | None = None,
         spec: Ignores | None = None) -> Scan:
    """Every regular file under ``root`` (absolute) that is synced, hashed only if the index does not know it
    unchanged; hidden names too with ``hidden_ok``. ``only``: the paths a watcher saw change (relative, ``/``; a
    folder stands for all under it): only those are looked at, every other indexed file is taken as unchanged
    (``--watch``'s hinted pass; a full pass, ``only`` None, looks at everything). ``spec``: the folder's ignore
    rules if the caller read them (``ignore.rules``)."""
    spec = rules(root) if spec is None else spec
    known = index.files if index is not None else {}
    if only is not None:
        found = _narrowed(root, spec, known, hidden_ok, only)
        if found is not None:
            return found
    found = Scan()
    _walk(root, spec, known, hidden_ok, found, [("", None)])
    return found


def _older(known: Mapping[str, SyncEntry]) -> dict[tuple[int, int], bytes]:
    """The SHA-256 digests of entries recorded before session 15, by (inode, size): a new name with one of these is
    hashed with SHA-256, so that a rename of such a file is still recognised (plan ``_renames``)."""
    return {(e.ino, e.size): e.digest for e in known.values() if is_sha256(e.digest)}


def _narrowed(root: Path, spec: Ignores, known: Mapping[str, SyncEntry], hidden_ok: bool,
              only: frozenset[str]) -> Scan | None:
    """The scan of the changed paths only, each looked at in its folder as a full scan would (None: do a full scan:
    the folder itself or its ignore rules changed, or a folder on the way is not a plain folder the full scan would
    enter). Indexed files elsewhere are taken from the index, unchanged (not even a stat): a change the watcher
    missed is found by the next full pass (the backstop), and every action checks the file again before it acts."""
    wanted: dict[str, set[str]] = {}
    for rel in only:
        folder, _, base = rel.rpartition("/")
        if rel in ("", ".") or base == IGNORE_FILE or not _plain_folders(root, spec, folder, hidden_ok):
            return None
        wanted.setdefault(folder, set()).add(base)
    found = Scan()
    _walk(root, spec, known, hidden_ok, found, list(wanted.items()))
    under = tuple(p + "/" for p in only)
    for name, e in known.items():
        if name in found.files or name in found.present or name in only or name.startswith(under):
            continue
        if hidden(name) and not hidden_ok:
            found.present.add(name)
        else:
            found.files[name] = LocalFile(str(root / name), e.size, e.mtime_ns, e.ino, None)
    return found


def _plain_folders(root: Path, spec: Ignores, folder: str, hidden_ok: bool) -> bool:
    """Whether every folder on the way to ``folder`` is one a full scan enters: a directory (not a link), not
    hidden (unless ``hidden_ok``), not ignored, not a Member Vault home."""
    parts = folder.split("/") if folder else []
    for i in range(1, len(parts) + 1):
        rel = "/".join(parts[:i])
        try:
            st = os.lstat(root / rel)
        except OSError:
            return False
        if (not stat.S_ISDIR(st.st_mode) or (hidden(rel) and not hidden_ok) or spec.match(rel + "/")
                or os.path.lexists(root / rel / KEYSTORE)):
            return False
    return True


def _walk(root: Path, spec: Ignores, known: Mapping[str, SyncEntry], hidden_ok: bool, found: Scan,
          stack: list[tuple[str, set[str] | None]]) -> None:
    """Take the synced files of each (folder, names) of ``stack`` into ``found``: only ``names`` in it if given,
    and everything under the folders met (recursively)."""
    older: dict[tuple[int, int], bytes] | None = None  # ``_older(known)``, made when a new name is first hashed
    ignores = spec.test  # truthy for a name the rules leave out (looked up once: it runs for every name)
    files = found.files
    while stack:
        rel, names = stack.pop()
        try:
            entries = sorted(os.scandir(root / rel if rel else root), key=lambda e: e.name)
        except OSError as e:
            found.skipped.append((rel or ".", f"not readable: {e.strerror}"))
            found.present.update(n for n in known if n.startswith(rel + "/") or not rel)
            continue
        prefix = rel + "/" if rel else ""
        rel_hidden = hidden(rel)  # a name below is hidden if its folder is or it starts with "." (``hidden``)
        for entry in entries:
            base = entry.name
            if names is not None and base not in names:
                continue
            name = prefix + base
            if rel_hidden or base.startswith(".") or own_file(base):
                if entry.name.endswith(PARTIAL) and hidden(entry.name) and entry.is_file(follow_symlinks=False):
                    found.partials.append(Path(entry.path))
                if not hidden_ok or own_file(entry.name):
                    if name in known:
                        found.present.add(name)
                    continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since the listing
            if stat.S_ISDIR(st.st_mode):
                if os.path.lexists(os.path.join(entry.path, KEYSTORE)):
                    found.skip(name, "a Member Vault home: never synced")
                    found.present.update(n for n in known if n.startswith(name + "/"))
                elif not ignores(name + "/"):
                    stack.append((name, None))
                else:
                    found.present.update(n for n in known if n.startswith(name + "/"))
                continue
            if ignores(name):
                if name in known:
                    found.present.add(name)
                continue
            if stat.S_ISLNK(st.st_mode):
                found.skip(name, "a symbolic link: not followed")
                continue
            if not stat.S_ISREG(st.st_mode):
                found.skip(name, "not a regular file")
                continue
            old = known.get(name)
            # A name the index holds passed this check when it was recorded (the index is sealed: only ours).
            problem = name_problem(name) if old is None else None
            if problem is not None:
                found.skip(name, f"not a valid document name: {problem}")
                continue
            digest = None
            if old is None or not old.same_stat(st.st_size, st.st_mtime_ns, st.st_ino):
                if old is None and older is None:
                    older = _older(known)
                like = old.digest if old is not None else older.get((st.st_ino, st.st_size)) if older else None
                try:
                    digest = hash_file(Path(entry.path), like)
                except OSError as e:
                    found.skip(name, f"not readable: {e.strerror}")
                    continue
                found.hashed += 1
            files[name] = LocalFile(entry.path, st.st_size, st.st_mtime_ns, st.st_ino, digest)
