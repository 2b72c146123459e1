"""Refusals about where a fetched document lands and what it is called: outside the folder, over another file,
the same name twice, a deletion fetched (``client/docs.py`` and the sync engine share them)."""

from __future__ import annotations

import os
import shlex
import stat
import time
from pathlib import Path

from client.sanitize import escape
from client.view import View
from vault.chains import TeamState
from vault.envelope import Record
from vault.errors import BadName, NotFound, VaultError, WouldOverwrite


def inside(root: Path, name: str) -> Path:
    """``root``/``name`` resolved, refused unless it is still inside ``root`` (names are checked, and
    links on the way are followed here: neither may lead out)."""
    target = (root / name).resolve()
    if not target.is_relative_to(root) or target == root:
        raise BadName(f"{name!r} would be written outside {root}; not fetched")
    return target


def plainly_inside(root: Path, root_id: tuple[int, int], name: str) -> bool:
    """Whether ``root``/``name`` is that very path inside ``root`` once links are followed, told cheaply: ``root``
    is still the directory ``root_id`` (device, inode) names, which was ``root`` resolved, ``name`` has no ``..``
    and leads below ``root``, and no name under ``root`` on the way (the file itself included) is a symbolic link:
    one ``lstat`` each, not the whole path resolved again (a pass's pulls ask it several times a file). False
    does not refuse: it means ask ``inside`` (anything unusual: a link, ``..``, another root)."""
    return plain_place(root, root_id, name) is not None


def plain_place(root: Path, root_id: tuple[int, int], name: str) -> bool | None:
    """``plainly_inside``'s check, telling more when it holds: True when the folder ``name`` is in is there already,
    a directory (``root`` itself, or a name under it that is no link), False when it is not (yet); None: not plain,
    ask ``inside``."""
    path = root / name
    if path == root or not path.is_relative_to(root):
        return None
    parts = path.parts[len(root.parts):]
    if ".." in parts:
        return None
    try:
        st = os.stat(root)
    except OSError:
        return None
    if (st.st_dev, st.st_ino) != root_id:
        return None
    at, in_folder, last = str(root), True, len(parts) - 1  # ``root`` is the directory ``root_id`` names
    for i, part in enumerate(parts):
        at = os.path.join(at, part)
        try:
            mode = os.lstat(at).st_mode
        except OSError:  # nothing further is there: resolving would keep the rest of the path as it is
            return in_folder and i == last
        if stat.S_ISLNK(mode):
            return None
        if i < last:
            in_folder = stat.S_ISDIR(mode)
    return in_folder


def checked_local(root: Path, root_id: tuple[int, int], name: str, make_folder: bool = False) -> Path:
    """``root``/``name``, refused (``BadName``) if a link on the way (or the file itself) would lead anywhere else
    (``plain_place``, else ``inside``): a sync pass acts on the very path it scanned, never through a link made
    meanwhile. ``make_folder`` (a pull): the folder the file goes in is made if it is not there, then the path is
    checked again (a folder on the way may be a link by then); when ``plain_place`` found that folder there, a
    directory, nothing is made and nothing happened in between to check again."""
    path = root / name
    if (place := plain_place(root, root_id, name)) is None and inside(root, name) != path:
        raise BadName(f"{escape(name)}: a symbolic link is on its way in the folder; not touched")
    if make_folder and not place:
        path.parent.mkdir(parents=True, exist_ok=True)
        return checked_local(root, root_id, name)
    return path


def root_id(root: Path) -> tuple[int, int] | None:
    """(device, inode) of ``root`` if it is a directory reached by no link (its own path resolved), for
    ``plainly_inside``; None otherwise (every path under it is then checked by resolving it)."""
    try:
        st = os.stat(root)
        if root.resolve(strict=True) != root:
            return None
    except OSError:
        return None
    return st.st_dev, st.st_ino


def outside_home(home: Path, out: Path) -> Path:
    """``out``, refused if it resolves into this client's home (``home``, resolved): a document never becomes one of
    its files (review round 5: a planted ``config.json`` stopped every command)."""
    resolved = out.resolve()
    if resolved == home or home in resolved.parents:
        raise VaultError(f"{out} is inside this client's home ({home}): documents are never written there")
    return out


def would_overwrite(out: Path, name: str, rec: Record) -> WouldOverwrite:
    return WouldOverwrite(f"{out} exists and is not version {rec.core.seq} of {name!r}; nothing written (use "
                          "--force to replace it, or -o to write elsewhere)")


def check_unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise VaultError(f"the document name {name!r} is given twice")
        seen.add(name)


def deleted_error(view: View, team: TeamState, name: str, rec: Record, version: int | None) -> NotFound:
    """The refusal to fetch a deletion: who deleted the document and when, and how to bring it back."""
    author = view.members.get(rec.core.author)
    who = escape(author.name) if author is not None else rec.core.author[:8]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(rec.core.time))
    what = f"version {version} of {escape(name)!r} is its deletion" if version else f"{escape(name)!r} was deleted"
    restore = escape(f"mvault restore {shlex.quote(team.name)} {shlex.quote(name)}")
    return NotFound(f"{what} (by {who}, {when}); bring it back with `{restore}` (its history is kept: "
                    "`--version N` fetches an older version)")
