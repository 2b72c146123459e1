"""The three-way reconcile of one sync pass: the folder now x the index (the last agreed state) x the
team's document heads -> the actions to take. Pure: values in, a list of ``Action`` out (docs/sync.md).

Per name, with L the local file (``digest`` None: unchanged since the index entry, by its stat), I the
index entry and R the remote head (possibly a signed deletion):

* local changed = L exists and (no I, or its content differs from I's); remote changed = R exists and
  (no I, or R is not I's version);
* only local changed: push on top of I's version (a new document if none); only remote changed: pull;
  both: a conflict (the remote version under the name, the local file kept beside it and uploaded as a
  conflict copy); a file new on both sides is pulled into place only if its content is the same (the
  engine compares while pulling), otherwise the same conflict;
* R a deletion: the local file is removed only if unchanged (else the edit is pushed back on top);
* L gone while I knows it (Syncthing's rule): a deletion is pushed if R is still I's version; if R moved
  on, it is pulled back. A new file with I's inode, size and hash is a rename: a move is pushed.
* a remote rename (a ``move`` head at a new name naming I's version of an old name, whose head is a deletion
  naming the new name) of a file unchanged here by its stat: the file is renamed here (``rename-local``), no
  download; anything else about it falls back to a deletion of the old name and a pull of the new one.

Before any of that, the listing is checked against the index: a document the index knows that is not
listed, an empty listing while the index knows documents, or a head whose version number is lower than
the index's is the server withholding or rolling back: ``IntegrityError``/``RollbackDetected``, nothing
done. Deletions pushed from this folder are refused (``refused``) when the folder vanished or is empty
while the index knows files, or when they exceed ``max_delete_share`` of the files the index knows,
unless ``confirm_deletes``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from client.sync.scan import LocalFile
from vault.errors import IntegrityError, RollbackDetected
from vault.syncindex import SyncEntry, SyncIndex

MAX_DELETE_SHARE = 0.5  # the default of the protocols' [sync] max_delete_percent (the engine passes the one in force)

# Action kinds
PULL = "pull"  # fetch R into the name (a new file, or over an unchanged one)
PUSH = "push"  # upload L on top of ``base`` (0: a new document)
DELETE_LOCAL = "delete-local"  # R is a signed deletion and L is unchanged: remove L
DELETE_REMOTE = "delete-remote"  # L is gone: push a signed deletion on top of ``base``
MOVE = "move"  # L (``name``) is I of ``source`` renamed: push a move and the old name's deletion
CONFLICT = "conflict"  # both changed: L kept as a conflict copy (uploaded), R pulled into the name
FORGET = "forget"  # gone on both sides (or deleted both ways): drop the index entry
REFRESH = "refresh"  # L's stat changed, not its content: update the index entry, no transfer
NOT_PUSHED = "not-pushed"  # a local change this member may not write: kept, not uploaded
REFUSED = "refused"  # a local deletion held back by the mass-deletion rule
SKIPPED = "skipped"  # a remote or local name that is not used (reason in ``detail``)
RENAME_LOCAL = "rename-local"  # R of ``name`` is a move of ``source``'s I, unchanged here: rename L, no download


@dataclass(frozen=True)
class Remote:
    """A listed document head, opened: ``name`` None when it cannot be used as a name here (``detail`` says why)."""

    doc: str
    seq: int
    vid: str
    name: str | None
    deleted: bool = False
    detail: str = ""
    size: int = 0
    label: str = ""  # what to call a document whose name is not used (its name as stored, or a note)
    moved_from: tuple[str, str, str] | None = None  # a move head: the (name, doc, vid) it names as its source
    moved_to: str | None = None  # a deletion head that is the old half of a rename: the new name


@dataclass(frozen=True)
class Action:
    kind: str
    name: str
    doc: str | None = None  # the document acted on
    seq: int | None = None  # the remote head's version number (pull, conflict, delete-local)
    base: int | None = None  # push / delete-remote / move: the version number it goes on top of (0: none)
    source: str | None = None  # move: the old name
    over: int = 0  # move: the version number of a deletion at the new name it goes on top of (0: none);
    # rename-local: that of the old name's deletion
    detail: str = ""


def check_listing(index: SyncIndex, remote: list[Remote]) -> None:
    """Raise unless every document the index knows is listed at its known version number or later."""
    if not index.docs:
        return
    if not remote:
        raise IntegrityError(f"the server listed no document in the team, but this folder synced {len(index.docs)}; "
                             "the server is withholding them (nothing was changed here)")
    listed = {r.doc: r.seq for r in remote}
    missing = [doc for doc in index.docs if doc not in listed]
    if missing:
        raise IntegrityError(f"the server's listing leaves out {len(missing)} document(s) this folder synced (a "
                             "deletion is a signed version, never a missing document): it is withholding them; "
                             "nothing was changed here")
    back = [doc for doc, seq in index.docs.items() if listed[doc] < seq]
    if back:
        raise RollbackDetected(f"the server lists {len(back)} document(s) at an older version than this folder "
                               "already synced: a rollback; nothing was changed here")


def _changed(local: LocalFile, entry: SyncEntry | None) -> bool:
    if entry is None:
        return True
    return local.digest is not None and local.digest != entry.digest


def reconcile(local: Mapping[str, LocalFile], present: set[str], index: SyncIndex, remote: list[Remote], *,
              may_write: bool, confirm_deletes: bool = False, vanished: bool = False,
              max_delete_share: float = MAX_DELETE_SHARE) -> list[Action]:
    """The actions of one pass (see the module's docstring); ``present``: indexed names still there but not
    scanned (ignored, unreadable, now a link): never deletions. Raises on a server lie before anything."""
    check_listing(index, remote)
    heads: dict[str, Remote] = {}
    actions: list[Action] = []
    for listed in remote:
        if listed.name is None:
            if not listed.deleted:
                actions.append(Action(SKIPPED, listed.label or listed.doc, listed.doc, listed.seq,
                                      detail=listed.detail))
            continue
        heads[listed.name] = listed
    deletes: list[Action] = []
    new_local: dict[str, LocalFile] = {}
    for name in sorted(set(local) | set(index.files) | set(heads)):
        lf, entry, r = local.get(name), index.files.get(name), heads.get(name)
        if lf is not None and entry is None and (r is None or r.deleted):
            new_local[name] = lf  # a rename target, or a new document (decided below)
            continue
        if lf is not None and lf.digest is None and entry is not None and r is not None and r.vid == entry.vid:
            continue  # unchanged by its stat, its version the head: ``_decide``'s None, without the call
        act = _decide(name, lf, entry, r, present)
        if act is None:
            continue
        if act.kind == DELETE_REMOTE:
            deletes.append(act)
        else:
            actions.append(act)
    moves = _renames(new_local, deletes, index, heads)
    moved_from = {m.source for m in moves}
    moved_to = {m.name for m in moves}
    for name in new_local:
        if name not in moved_to:
            dead = heads.get(name)
            actions.append(Action(PUSH, name, dead.doc if dead else None, base=dead.seq if dead else 0,
                                  detail="a new document" if dead is None else "over a deletion"))
    actions.extend(moves)
    actions = _remote_renames(actions, local, index, heads)
    deletes = [d for d in deletes if d.name not in moved_from]
    known = len(index.files)
    too_many = known and (vanished or len(deletes) > max_delete_share * known)
    if deletes and too_many and not confirm_deletes:
        actions.extend(Action(REFUSED, d.name, d.doc, detail="a local deletion held back: "
                              + ("the folder is gone or empty" if vanished else
                                 f"{len(deletes)} of {known} files would be deleted")) for d in deletes)
    else:
        actions.extend(deletes)
    if not may_write:
        actions = [_read_only(a) for a in actions]
    return actions


def _decide(name: str, lf: LocalFile | None, entry: SyncEntry | None, r: Remote | None,
            present: set[str]) -> Action | None:
    if lf is None:
        if entry is None:  # only remote
            return Action(PULL, name, r.doc, r.seq) if r is not None and not r.deleted else None
        if name in present:
            return None  # still there, just not synced now (ignored, unreadable): not a deletion
        if r is None or r.deleted:
            return Action(FORGET, name, entry.doc)  # gone on both sides
        if r.vid == entry.vid:
            return Action(DELETE_REMOTE, name, r.doc, base=r.seq)
        return Action(PULL, name, r.doc, r.seq, detail="changed remotely after you deleted it: fetched again")
    if entry is None:  # new here and in the team (new_local took the rest): the engine compares while pulling
        assert r is not None and not r.deleted
        return Action(PULL, name, r.doc, r.seq, detail="new here and in the team: kept if the same, else a conflict")
    local_changed = _changed(lf, entry)
    if r is None:  # the listing was checked: an indexed document is listed, so only an unused name gets here
        return Action(SKIPPED, name, entry.doc, detail="its document is not listed under this name")
    if r.vid == entry.vid:
        if local_changed:
            return Action(PUSH, name, r.doc, base=r.seq)
        if lf.digest is not None:
            return Action(REFRESH, name, r.doc, r.seq)
        return None
    if r.deleted:
        if local_changed:
            return Action(PUSH, name, r.doc, base=r.seq, detail="edited here, deleted in the team: your version "
                          "is stored again")
        return Action(DELETE_LOCAL, name, r.doc, r.seq)
    if local_changed:
        return Action(CONFLICT, name, r.doc, r.seq)
    return Action(PULL, name, r.doc, r.seq)


def _renames(new_local: dict[str, LocalFile], deletes: list[Action], index: SyncIndex,
             heads: Mapping[str, Remote]) -> list[Action]:
    """A new file that is a vanished indexed file (same inode, size and content) renamed: a move (on top of
    the new name's deletion, if its document was deleted, as ``mvault mv`` does)."""
    by_ino: dict[tuple[int, int, bytes], Action] = {}
    for gone in deletes:
        e = index.files[gone.name]
        by_ino[(e.ino, e.size, e.digest)] = gone
    moves = []
    for name, lf in new_local.items():
        d = by_ino.pop((lf.ino, lf.size, lf.digest), None) if lf.digest is not None else None
        if d is not None:
            dead = heads.get(name)
            moves.append(Action(MOVE, name, d.doc, base=d.base, source=d.name, over=dead.seq if dead else 0))
    return moves


def _remote_renames(actions: list[Action], local: Mapping[str, LocalFile], index: SyncIndex,
                    heads: Mapping[str, Remote]) -> list[Action]:
    """A pull of a move head and the deletion of the file it names (its indexed version, unchanged here by its
    stat: not even hashed) become one ``rename-local`` (the engine checks both chains and the content again)."""
    gone = {a.name: a for a in actions if a.kind == DELETE_LOCAL}
    pairs: dict[str, Action] = {}
    for a in actions:
        r = heads.get(a.name)
        if a.kind != PULL or a.name in index.files or a.name in local or r is None or r.moved_from is None:
            continue
        source, doc, vid = r.moved_from
        d, entry, lf, old = gone.get(source), index.files.get(source), local.get(source), heads.get(source)
        if (d is None or entry is None or lf is None or old is None or source in pairs or lf.digest is not None
                or (entry.doc, entry.vid, entry.size) != (doc, vid, r.size) or old.moved_to != a.name):
            continue
        pairs[source] = Action(RENAME_LOCAL, a.name, a.doc, a.seq, source=source, over=d.seq or 0,
                               detail=f"renamed in the team from {source}")
    if not pairs:
        return actions
    renamed = {p.name for p in pairs.values()}
    kept = [a for a in actions if not ((a.kind == DELETE_LOCAL and a.name in pairs) or
                                       (a.kind == PULL and a.name in renamed))]
    return kept + list(pairs.values())


def _read_only(a: Action) -> Action:
    if a.kind in (PUSH, DELETE_REMOTE, MOVE):
        what = {PUSH: "changed here", DELETE_REMOTE: "deleted here", MOVE: f"renamed here from {a.source}"}[a.kind]
        return Action(NOT_PUSHED, a.name, a.doc, a.seq, detail=f"{what}; you may only read this team: not stored, "
                      "your file is kept")
    if a.kind == REFUSED:
        return Action(NOT_PUSHED, a.name, a.doc, a.seq, detail="deleted here; you may only read this team")
    return a


def conflict_name(name: str, member: str, now: int) -> str:
    """``NAME (conflict MEMBER YYYY-MM-DD HHMM).EXT`` (UTC), beside ``name``."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    if not stem:  # no extension (or a name like ".x")
        stem, dot, ext = base, "", ""
    stamp = time.strftime("%Y-%m-%d %H%M", time.gmtime(now))
    who = "".join(c for c in member if c.isalnum() or c in "-_ ") or "member"
    new = f"{stem} (conflict {who} {stamp}){dot}{ext}"
    return f"{folder}/{new}" if folder else new
