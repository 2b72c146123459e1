"""Who set a thread up and how long it keeps messages, shown wherever a member meets a thread.

A thread's id is a keyed hash of its name under the team key, and its signed record carries
the expiry its creator chose: whichever writer creates a name first decides, for everyone,
whether "strategy" keeps its messages for an hour or forever. Nothing stops a writer from
choosing a name first (the server cannot read names, and every writer may create threads);
the defence is visibility. Every member sees the creator and the signed expiry of a thread
(``thread ls``, ``post``, ``read``, ``follow``; in JSON as ``creator``, ``creator_name``,
``creator_role``, ``created`` and ``expire``), ``thread create`` of a taken name names who
took it and with what expiry, and ``thread post --expect-expire`` refuses to post into a
thread whose signed expiry is not the one the poster expects.

Everything here comes from a thread record the caller has already verified
(``client.threads.open_thread_record``: the creator's device signature and right to post).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from client.sanitize import escape
from vault.chains import MemberState, TeamState
from vault.chains.coalition import guest_org
from vault.errors import Conflict, VaultError
from vault.messages import ThreadRecord

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``45s`` or ``0`` (keep) -> seconds."""
    units = dict(_UNITS)
    if text == "0":
        return 0
    if text[-1:] in units and text[:-1].isdigit() and int(text[:-1]) > 0:
        return int(text[:-1]) * units[text[-1]]
    raise VaultError(f"give a duration like 7d, 12h or 30m (or 0 to keep messages), not {text!r}")


def duration_text(seconds: int) -> str:
    """Seconds as ``parse_duration`` reads them, in the largest exact unit: 3600 -> ``1h``, 0 -> ``0``."""
    if seconds <= 0:
        return "0"
    for unit, size in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable")


def kept_text(expire: int) -> str:
    """What an expiry means for messages, in words."""
    return f"messages disappear after {duration_text(expire)}" if expire else "messages are kept (no expiry)"


def for_text(expire: int) -> str:
    """``for 1h`` or ``forever``."""
    return f"for {duration_text(expire)}" if expire else "forever"


def member_label(members: Mapping[str, MemberState], member_id: str, guest_of: str | None = None) -> str:
    """A member's display name, NAME@ORG for a guest (``guest_of``: its organization), with the start of their id
    when another member has the same name (names are chosen by their owners and may collide); an unknown member
    by the id's start."""
    ms = members.get(member_id)
    if ms is None:
        return member_id[:8]
    name = ms.name if guest_of is None else f"{ms.name}@{guest_of}"
    if sum(1 for other in members.values() if other.name == ms.name) > 1:
        return f"{name} ({member_id[:8]})"
    return name


@dataclass(frozen=True)
class ThreadInfo:
    """The signed facts of a thread's record that decide how members' messages are kept."""

    thread: str
    creator: str  # member id
    creator_name: str  # display name; the id's start is added when names collide
    creator_role: str | None  # the creator's role in the team now (None: no longer in it)
    created: int  # the record's signed time
    expire: int  # seconds a message is kept; 0 = kept

    def to_json(self) -> dict[str, Any]:
        return {"creator": self.creator, "creator_name": self.creator_name, "creator_role": self.creator_role,
                "created": self.created, "expire": self.expire}

    @classmethod
    def from_json(cls, thread: str, value: dict[str, Any]) -> ThreadInfo:
        """Back from the keys ``to_json`` wrote into a row."""
        return cls(thread, value["creator"], value["creator_name"], value["creator_role"], value["created"],
                   value["expire"])

    def creator_text(self) -> str:
        """``name (id start)``, escaped for a terminal: the id's start always (it cannot be chosen),
        and whether the creator has left the team."""
        name, start = self.creator_name, self.creator[:8]
        name = name.removesuffix(f" ({start})")  # already disambiguated
        return f"{escape(name)} ({start}{'' if self.creator_role else ', no longer in the team'})"


def thread_info(members: Mapping[str, MemberState], team: TeamState, rec: ThreadRecord, now: int) -> ThreadInfo:
    """The facts of a verified thread record, with the creator named as this member's view names them."""
    label = member_label(members, rec.creator, guest_org(team.allies, team.guests, rec.creator))
    return ThreadInfo(rec.thread, rec.creator, label, team.role_of(rec.creator, now), rec.time, rec.expire)


class ThreadExists(Conflict):
    """``thread create`` of a name that is taken: who took it and with what expiry."""

    def __init__(self, name: str, team_name: str, info: ThreadInfo) -> None:
        super().__init__(f"a thread named {name!r} already exists in team {team_name}: created by "
                         f"{info.creator_text()}; {kept_text(info.expire)}. Choose another name, or post to it "
                         f"with --expect-expire {duration_text(info.expire)}")
        self.info = info


def check_expected_expire(info: ThreadInfo, expected: int, name: str) -> None:
    """Refuse (``Conflict``) when the thread's signed expiry is not ``expected``."""
    if info.expire != expected:
        raise Conflict(f"thread {name!r} keeps messages {for_text(info.expire)}, not {for_text(expected)} as "
                       f"--expect-expire {duration_text(expected)} requires (it was created by "
                       f"{info.creator_text()}); nothing was posted")
