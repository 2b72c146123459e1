"""Which version an upload is based on, and when that is a conflict (``mvault put``).

The server accepts a version only on top of the current head. Which head the client names is decided
here, per file, before anything is sent:

* by default, the version the local file came from, as the local copies index knows it (``get`` and
  ``put`` of that path from this home): if a newer version exists, the put is refused as a conflict that
  names both versions; a file this home never fetched nor stored goes on top of the head, as a new
  document or a new version (nothing to compare it with);
* ``--if-version N`` (scripts, and after a merge): only if the newest version is N (0: only if the
  document does not exist yet), whatever the index says;
* ``--force-new-version``: on top of the head, whatever the index says.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from client.sanitize import escape
from client.view import View
from vault.chains import TeamState
from vault.envelope import Record
from vault.errors import Conflict
from vault.localindex import LocalCopy


@dataclass(frozen=True)
class Base:
    if_version: int | None = None
    force_new_version: bool = False

    def check(self, view: View, team: TeamState, name: str, records: list[Record], copy: LocalCopy | None) -> None:
        """Raise ``Conflict`` unless a new version of ``name`` may go on top of ``records``' head."""
        head = records[-1] if records else None
        if self.force_new_version:
            return
        if self.if_version is not None:
            if len(records) == self.if_version:
                return
            if not records:
                raise Conflict(f"{escape(name)}: --if-version {self.if_version}, but the document does not exist "
                               "yet; nothing stored")
            assert head is not None
            got = "it already exists" if self.if_version == 0 else f"it is at version {head.core.seq}"
            raise Conflict(f"{escape(name)}: --if-version {self.if_version}, but {got} ({_by(view, head)}); "
                           "nothing stored")
        if copy is None or (head is not None and copy.vid == head.version_id):
            return
        fetch = f"mvault get {shlex.quote(team.name)} {shlex.quote(name)} -o FILE"
        if head is None:
            raise Conflict(f"{escape(name)}: your file is based on version {copy.seq}, but the server lists no "
                           "version of this document; nothing stored (use --force-new-version to store it anew)")
        raise Conflict(f"{escape(name)}: your file is based on version {copy.seq} but version {head.core.seq} "
                       f"({_by(view, head)}) is the newest; get it with `{escape(fetch)}`, merge, then put again "
                       f"with --if-version {head.core.seq}, or use --force-new-version; nothing stored")


def _by(view: View, rec: Record) -> str:
    author = view.members.get(rec.core.author)
    who = escape(author.name) if author is not None else rec.core.author[:8]
    return f"by {who}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(rec.core.time))}"
