"""What one server process tells the others it stored, over a database they share (PostgreSQL ``NOTIFY``, sent
inside the transaction that stores it, so it goes out only once and as soon as the transaction commits, in commit
order): ids and positions, never content. A process that hears a notice reads what it names from the database,
which stays the truth; one that may have missed notices (its listening connection was lost) is told ``Resync``
and reads what it needs from the database as well (``server/relay.py``).

The payload is a short JSON object: the sending storage's ``origin`` (a process skips its own notices: it
delivered them itself), the kind ``k`` and the ids. A payload that does not parse is ``ValueError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CHANNEL = "mvault_stored"  # the one channel every process listens on


@dataclass(frozen=True)
class MessagesStored:
    """Messages at positions ``first`` to ``last`` of a thread (one transaction's, in one thread)."""

    team: str
    thread: str
    first: int
    last: int


@dataclass(frozen=True)
class ThreadStored:
    team: str
    thread: str


@dataclass(frozen=True)
class VersionStored:
    team: str
    doc: str
    seq: int
    vid: str


@dataclass(frozen=True)
class LinksStored:
    """Chain links (a membership, role, device or key change somewhere): replay them before judging access."""


@dataclass(frozen=True)
class AuditMetaStored:
    """A row of the audit log's meta table was stored (``key``: ``"audit_key"``, the Security Team's audit key,
    which every process seals events to: it adopts the new one at once instead of at its next start)."""

    key: str


@dataclass(frozen=True)
class Resync:
    """The listening connection was (re)opened: notices sent while it was down are lost; read the database."""


Notice = MessagesStored | ThreadStored | VersionStored | LinksStored | AuditMetaStored


def encode(origin: str, notice: Notice) -> str:
    body: dict[str, Any]
    match notice:
        case MessagesStored(team, thread, first, last):
            body = {"k": "m", "t": team, "h": thread, "p": first, "q": last}
        case ThreadStored(team, thread):
            body = {"k": "t", "t": team, "h": thread}
        case VersionStored(team, doc, seq, vid):
            body = {"k": "v", "t": team, "d": doc, "s": seq, "v": vid}
        case LinksStored():
            body = {"k": "c"}
        case AuditMetaStored(key):
            body = {"k": "a", "m": key}
    return json.dumps({"o": origin, **body}, separators=(",", ":"))


def _str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise ValueError(f"notice field {key!r} is not a string")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"notice field {key!r} is not a position")
    return value


def decode(payload: str) -> tuple[str, Notice]:
    """(origin, notice) of a payload ``encode`` made; ``ValueError`` for anything else."""
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError("a notice is a JSON object")
    origin, kind = _str(body, "o"), body.get("k")
    notice: Notice
    if kind == "m":
        notice = MessagesStored(_str(body, "t"), _str(body, "h"), _int(body, "p"), _int(body, "q"))
    elif kind == "t":
        notice = ThreadStored(_str(body, "t"), _str(body, "h"))
    elif kind == "v":
        notice = VersionStored(_str(body, "t"), _str(body, "d"), _int(body, "s"), _str(body, "v"))
    elif kind == "c":
        notice = LinksStored()
    elif kind == "a":
        notice = AuditMetaStored(_str(body, "m"))
    else:
        raise ValueError(f"unknown notice kind {kind!r}")
    return origin, notice
