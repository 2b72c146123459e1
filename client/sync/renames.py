"""A remote rename applied here as a local rename (``plan.RENAME_LOCAL``): no download.

Another member renamed a file this folder holds unchanged: the team's head at the new name is a ``move`` naming
the old name's indexed version, and the old name's head is a deletion naming the new name. Before the file is
renamed, both chains are checked as ``history`` checks them (signed, judged, chained, pinned), the move must name
exactly the indexed version (name, document, version id) with its size, the old chain must end with that deletion
and hold that version, and the file must still be the indexed one: the same stat and, read again, the same
SHA-256 as the version the move names (recorded when it was downloaded or uploaded and verified then). The
file is given the new name with a hard link (never over a file that has it) and the old name removed, so its
inode and mtime stay and the next pass finds it unchanged. Whatever does not hold falls back to what the pass
did before: the old file's deletion and a download of the new name (``SyncRun.apply_one``, which also reports
the rename and removes the folder the file left if it is empty now).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from client import download
from client.docs import Documents
from client.sync import plan
from vault.chains import TeamState
from vault.envelope import DELETE, MOVE
from vault.fileio import fsync_dir
from vault.syncindex import SyncEntry, SyncIndex
from vault.teamkeys import TeamKey


async def rename_here(docs: Documents, team: TeamState, keys: list[TeamKey], index: SyncIndex,
                      path_of: Callable[[str], Path], a: plan.Action) -> Path | None:
    """Rename ``a.source`` to ``a.name`` in the folder as the team did and record it in ``index`` (see the module's
    docstring; ``path_of``: a name's path in the folder, checked as every change of a pass is); the folder the
    file left, or None when it may not be done that way (nothing changed here then). A lying server raises."""
    assert a.source is not None and a.doc is not None and a.seq is not None
    entry = index.files.get(a.source)
    if entry is None or keys[0].doc_id(a.name) != a.doc:
        return None
    new = await docs.versions(team, a.doc)
    if not new or new[-1].core.seq != a.seq or new[-1].core.op != MOVE:
        return None
    moved = docs.open_version(new[-1], keys)
    if moved.name != a.name or moved.moved_from != (a.source, entry.doc, entry.vid) or moved.size != entry.size:
        return None
    old = await docs.versions(team, entry.doc)
    if (not old or old[-1].core.op != DELETE or old[-1].core.seq != a.over
            or docs.open_version(old[-1], keys).moved_to != a.name
            or not any(r.version_id == entry.vid and r.core.op != DELETE for r in old)):
        return None
    src = path_of(a.source)
    st = src.lstat()
    if not stat.S_ISREG(st.st_mode) or not entry.same_stat(st.st_size, st.st_mtime_ns, st.st_ino):
        return None
    if download.hash_file(src, like=entry.digest) != entry.digest:
        return None
    path_of(a.name).parent.mkdir(parents=True, exist_ok=True)
    dst = path_of(a.name)  # again: a folder on the way may be a link made meanwhile
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:  # a file has the name now, or no hard links here: the download path decides
        return None
    src.unlink()
    fsync_dir(dst.parent)
    index.forget(a.source)
    index.saw(entry.doc, a.over)
    head = new[-1]
    index.record(a.name, SyncEntry(head.version_id, head.core.seq, entry.digest, entry.size, st.st_mtime_ns,
                                   st.st_ino, a.doc))
    return src.parent
