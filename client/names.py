"""Names for people: the member, team and device ids in a message shown by the name the chains give them.

The server, the chains and ``security/`` (audit findings, refusal reasons) speak in ids (32 hex
characters); people read names. ``Names`` is built from the verified view of one command and labels an id
with its name, escaped for a terminal (``client.sanitize.escape``), adding the start of the id only where
two members share a name (or one member has two devices of that name). ``Names.text`` puts the labels
into a composed message in place of every id it knows; unknown ids (and link hashes, digests: longer or
shorter hex) stay as they are. ``--json`` output keeps the ids and carries the names beside them.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from typing import Final

from client.sanitize import escape
from client.view import View
from vault.errors import VaultError

ID_RE: Final = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
SHORT: Final = 8  # characters of an id shown beside a name shared by two


class Names:
    """Labels of the members, teams and devices of one verified view."""

    def __init__(self, view: View, me: str | None = None) -> None:
        member_names = Counter(m.name for m in view.members.values())
        team_names = Counter(t.name for t in view.teams.values())
        # a guest (an ally's member in a coalition space) as NAME@ORG: its name may mimic a member's (View.name_of)
        self.members = {mid: _label(view.name_of(mid), mid, member_names[m.name] > 1)
                        for mid, m in view.members.items()}
        self.teams = {tid: _label(t.name, tid, team_names[t.name] > 1) for tid, t in view.teams.items()}
        self.devices: dict[str, str] = {}
        # id -> the name as its owner chose it (for --json, beside the id)
        self.raw = {mid: m.name for mid, m in view.members.items()} | {tid: t.name for tid, t in view.teams.items()}
        self.raw.update({did: d.name for m in view.members.values() for did, d in m.devices.items()})
        # id -> the command argument naming it: its name where that alone names it. Device names are unique only
        # within their member, and `mvault device revoke NAME` looks NAME up among the devices of whoever runs it:
        # only the reader's own devices (``me``) are named; another member's device keeps its id (review round 5:
        # "paper-1" is in every home, and the auditor pasting the command revoked their own paper key).
        self._arguments = {mid: m.name for mid, m in view.members.items() if member_names[m.name] == 1}
        self._arguments.update({tid: t.name for tid, t in view.teams.items() if team_names[t.name] == 1})
        for m in view.members.values():
            device_names = Counter(d.name for d in m.devices.values())
            for did, d in m.devices.items():
                self.devices[did] = _label(d.name, did, device_names[d.name] > 1)
                if device_names[d.name] == 1 and m.member_id == me:
                    self._arguments[did] = d.name

    def member(self, member_id: str) -> str:
        """The member's name (escaped), or the id itself when the view does not know it."""
        return self.members.get(member_id, member_id)

    def team(self, team_id: str) -> str:
        return self.teams.get(team_id, team_id)

    def device(self, device_id: str) -> str:
        return self.devices.get(device_id, device_id)

    def name_of(self, any_id: str) -> str | None:
        """The label of a member, team or device id; None for an id the view does not know."""
        return self.members.get(any_id) or self.teams.get(any_id) or self.devices.get(any_id)

    def text(self, message: str) -> str:
        """``message`` with every known id replaced by its label."""
        return ID_RE.sub(lambda m: self.name_of(m.group()) or m.group(), message)

    def command(self, command: str) -> str:
        """A command line with each id replaced by the name, where the name alone names it and needs no escape
        for a terminal (else the id stays: every command that takes a name also takes the id)."""
        return ID_RE.sub(lambda m: self._argument(m.group()), command)

    def _argument(self, any_id: str) -> str:
        name = self._arguments.get(any_id)
        if name is None or escape(name) != name or name.startswith("-"):
            return any_id
        return shlex.quote(name)

    def error(self, e: VaultError) -> VaultError:
        """The same error, its message naming whom it names (the error object is kept: its class and code)."""
        named = self.text(e.message)
        if named != e.message:
            e.message = named
            e.args = (named, *e.args[1:])
        return e


def _label(name: str, any_id: str, ambiguous: bool) -> str:
    return f"{escape(name)} ({any_id[:SHORT]})" if ambiguous else escape(name)
