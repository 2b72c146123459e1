"""The listed heads of a sync pass as the reconcile takes them (``remote_heads``): each name used only if it passes
every check (a valid name, its own document id, not hidden unless allowed, not ignored, not the folder's own
``.mvaultignore``, inside the folder), else reported with why. Split from client/sync/engine.py (its size).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any

from client.docplaces import inside as _inside
from client.docplaces import plainly_inside, root_id
from client.sync import plan
from client.sync.ignore import IGNORE_FILE, Ignores
from client.sync.scan import hidden
from vault.envelope import DELETE
from vault.errors import BadName, IntegrityError
from vault.names import name_problem
from vault.syncindex import Seen, SyncEntry


def remote_heads(root: Path, spec: Ignores, listing: list[Any], same: list[Seen], doc_id: Callable[[str], str],
                  hidden_ok: bool, held: Mapping[str, tuple[str, SyncEntry]], scanned: Container[str]
                  ) -> list[plan.Remote]:
    """The listed heads as the reconcile takes them. A head ``ls`` did not verify again (``known``: its version id
    is that of an index entry, ``held``) or did not even parse (``same``: listed byte for byte as an entry recorded
    it) takes the entry's name and size: that version was verified and opened when the entry was recorded. A name the
    scan found (``scanned``: a regular file via folders, no link, not ignored or the folder's own, hidden if allowed)
    is inside and not ignored without resolving or matching it again (``SyncRun._local`` checks the path again when
    it acts): one the index holds passes every check of ``_remote`` (taken without the call). ``spec``: the rules."""
    rid = root_id(root)  # a new name is checked by an lstat per part below the folder, resolved only if unusual
    out = [plan.Remote(s.doc, s.seq, s.vid, name, size=e.size) if name in scanned else
           _remote(root, spec, name, s.doc, s.seq, s.vid, False, e.size, True, scanned, hidden_ok, doc_id)
           for s in same for name, e in (held[s.vid],)]
    for d in listing:
        core = d.record.core
        if d.known:
            name, entry = held[d.vid]
            if (entry.doc, entry.seq) != (core.doc, core.seq):  # the version id binds both: never happens
                raise IntegrityError("a listed head is not the version this folder's index recorded under its id")
            size = entry.size
        elif d.opened is None:
            out.append(plan.Remote(core.doc, core.seq, d.vid, None, core.op == DELETE,
                                   label=f"(no key for generation {core.gen})",
                                   detail="a version under a key generation you never held"))
            continue
        else:
            name, size = d.opened.name, d.opened.size
        opened = None if d.known else d.opened
        out.append(_remote(root, spec, name, core.doc, core.seq, d.vid, core.op == DELETE, size, d.known, scanned,
                           hidden_ok, doc_id, opened.moved_from if opened else None,
                           opened.moved_to if opened else None, rid))
    return out


def _remote(root: Path, spec: Ignores, name: str, doc: str, seq: int, vid: str, deleted: bool,
            size: int, known: bool, scanned: Container[str], hidden_ok: bool,
            doc_id: Callable[[str], str], moved_from: tuple[str, str, str] | None = None,
            moved_to: str | None = None, rid: tuple[int, int] | None = None) -> plan.Remote:
    """One listed head, its name used only if it passes every check (else reported with why); ``moved_from`` /
    ``moved_to``: what its signed metadata says of a move (a remote rename is applied as a local one)."""
    why = name_problem(name) if name not in scanned else None  # the scan checked the names it found
    # An index entry's document is its name's id (every entry is recorded under the id its name gives).
    if why is None and not known and doc_id(name) != doc:
        why = "listed under a name that is not its own"
    if why is None and hidden(name) and not hidden_ok:
        why = "a hidden name (a part starts with '.'): not synced"
    if why is None and name.rsplit("/", 1)[-1] == IGNORE_FILE:
        why = f"{IGNORE_FILE} is this folder's own: never fetched (review round 6)"
    if why is None and name not in scanned and spec.ignored(name):
        why = "ignored here (.mvaultignore or an editor/OS temporary): not synced either way"
    if why is None and name not in scanned and not (rid is not None and plainly_inside(root, rid, name)):
        try:
            _inside(root, name)
        except BadName:
            why = "would be written outside the folder"
    return plan.Remote(doc, seq, vid, None if why else name, deleted, why or "", size, name if why else "",
                       moved_from, moved_to)
