"""What one server process tells the others it stored, over a database they share (PostgreSQL ``NOTIFY``, sent
inside the transaction that stores it, so it goes out only once and as soon as the transaction commits, in commit
order): ids and positions, and the stored records of new thread messages and threads, and the chain links
appended, when they fit in one notice (``PAYLOAD``), so that a process delivers or replays them without reading
the database. A notice
without records names what to read from the database, which stays the truth; a process that may have missed
notices (its listening connection was lost) is told ``Resync`` and reads what it needs from the database as well
(``server/relay.py``). A record in a notice is exactly the bytes stored in the same transaction: the followers
verify it as they verify one read from storage.

The payload is a short JSON object: the sending storage's ``origin`` (a process skips its own notices: it
delivered them itself), the kind ``k``, the ids, and ``r``: the records (base64). A notice with records is tagged
(``seal``: 32 hex digits of ``vault.logsign.notice_tag`` under a key from the data directory's log seed, then the
object): anyone who may connect to the database may send a notice, and one that names ids only makes a process
read the database, but only the server's processes may hand records to followers. A payload that does not parse,
or carries records without a valid tag, is ``ValueError`` (``read``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.store.records import StoredLink
from vault.logsign import notice_tag

CHANNEL = "mvault_stored"  # the one channel every process listens on
# The longest payload sent: PostgreSQL refuses one of 8000 bytes or more (NOTIFY_PAYLOAD_MAX_LENGTH, for its
# default 8 kB pages); a payload is ASCII (JSON with ASCII ids and base64), one byte a character.
PAYLOAD = 7999
TAG = 32  # hex digits of a tag before a notice with records
BODY = PAYLOAD - TAG  # the longest JSON object of a notice with records


@dataclass(frozen=True)
class MessagesStored:
    """Messages at positions ``first`` to ``last`` of a thread (one transaction's, in one thread), with their
    stored records in position order when the notice carries them (``records`` None: read them)."""

    team: str
    thread: str
    first: int
    last: int
    records: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class ThreadStored:
    """A new thread, with its stored record when the notice carries it (None: read it)."""

    team: str
    thread: str
    record: bytes | None = None


@dataclass(frozen=True)
class VersionStored:
    team: str
    doc: str
    seq: int
    vid: str


@dataclass(frozen=True)
class LinksStored:
    """Chain links (a membership, role, device or key change somewhere): replay them before judging access. When
    the notice carries them: ``links``, one transaction's links with their order numbers (``links.id``, increasing),
    and ``after``, the order number of the newest link stored before them (appends are one at a time in the
    database: no link was stored between ``after`` and the first of ``links``). ``links`` None: read them."""

    after: int = 0
    links: tuple[tuple[int, StoredLink], ...] | None = None


@dataclass(frozen=True)
class AuditMetaStored:
    """A row of the audit log's meta table was stored (``key``: ``"audit_key"``, the Security Team's audit key,
    which every process seals events to: it adopts the new one at once instead of at its next start)."""

    key: str


@dataclass(frozen=True)
class Resync:
    """The listening connection was (re)opened: notices sent while it was down are lost; read the database."""


Notice = MessagesStored | ThreadStored | VersionStored | LinksStored | AuditMetaStored


def _b64(record: bytes) -> str:
    return base64.b64encode(record).decode("ascii")


def encode(origin: str, notice: Notice) -> str:
    body: dict[str, Any]
    match notice:
        case MessagesStored(team, thread, first, last, records):
            body = {"k": "m", "t": team, "h": thread, "p": first, "q": last}
            if records is not None:
                body["r"] = [_b64(r) for r in records]
        case ThreadStored(team, thread, record):
            body = {"k": "t", "t": team, "h": thread}
            if record is not None:
                body["r"] = _b64(record)
        case VersionStored(team, doc, seq, vid):
            body = {"k": "v", "t": team, "d": doc, "s": seq, "v": vid}
        case LinksStored(after, links):
            body = {"k": "c"}
            if links is not None:
                body["a"] = after
                body["l"] = [[order, x.chain, x.seq, x.kind, _b64(x.wire)] for order, x in links]
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


def _record(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("a record in a notice is a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ValueError(f"a record in a notice is not base64 ({e})") from e


def _records(body: dict[str, Any], first: int, last: int) -> tuple[bytes, ...] | None:
    """The records ``r`` of a message notice: one per position from ``first`` to ``last``, or none at all."""
    if "r" not in body:
        return None
    value = body["r"]
    if not isinstance(value, list) or len(value) != last - first + 1:
        raise ValueError("a message notice carries one record per position, or none")
    return tuple(_record(r) for r in value)


KINDS = ("member", "org", "team")  # a chain link's kinds (``StoredLink.kind``)


def _links(body: dict[str, Any]) -> LinksStored:
    """A links notice: bare, or with ``a`` (the order number before) and ``l`` (each link: its order number, greater
    than the one before, chain, position from 1, kind, wire in base64)."""
    if "l" not in body:
        return LinksStored()
    after, value = _int(body, "a"), body["l"]
    if not isinstance(value, list) or not value:
        raise ValueError("a links notice carries a list of links")
    links: list[tuple[int, StoredLink]] = []
    last = after
    for item in value:
        if not isinstance(item, list) or len(item) != 5:
            raise ValueError("a link in a notice is [order, chain, seq, kind, wire]")
        order, chain, seq, kind, wire = item
        entry = {"n": order, "c": chain, "s": seq, "k": kind}
        if _int(entry, "n") <= last or _int(entry, "s") < 1:
            raise ValueError("a link in a notice is out of order")
        if _str(entry, "c") == "" or kind not in KINDS:
            raise ValueError("a link in a notice names no chain, or no kind of chain")
        links.append((order, StoredLink(chain, seq, kind, _record(wire))))
        last = order
    return LinksStored(after, tuple(links))


def decode(payload: str) -> tuple[str, Notice]:
    """(origin, notice) of a payload ``encode`` made; ``ValueError`` for anything else."""
    try:
        body = json.loads(payload)
    except RecursionError as e:  # nested too deeply (anyone who may connect to the database may send one)
        raise ValueError("a notice is nested too deeply") from e
    if not isinstance(body, dict):
        raise ValueError("a notice is a JSON object")
    origin, kind = _str(body, "o"), body.get("k")
    notice: Notice
    if kind == "m":
        first, last = _int(body, "p"), _int(body, "q")
        if last < first:
            raise ValueError("a message notice's last position is before its first")
        notice = MessagesStored(_str(body, "t"), _str(body, "h"), first, last, _records(body, first, last))
    elif kind == "t":
        notice = ThreadStored(_str(body, "t"), _str(body, "h"), _record(body["r"]) if "r" in body else None)
    elif kind == "v":
        notice = VersionStored(_str(body, "t"), _str(body, "d"), _int(body, "s"), _str(body, "v"))
    elif kind == "c":
        notice = _links(body)
    elif kind == "a":
        notice = AuditMetaStored(_str(body, "m"))
    else:
        raise ValueError(f"unknown notice kind {kind!r}")
    return origin, notice


def _carries(notice: Notice) -> bool:
    match notice:
        case MessagesStored(records=records):
            return records is not None
        case ThreadStored(record=record):
            return record is not None
        case LinksStored(links=links):
            return links is not None
    return False


def seal(key: bytes, origin: str, notice: Notice) -> str:
    """The payload sent for ``notice``: its JSON object, tagged under ``key`` when it carries records."""
    body = encode(origin, notice)
    return notice_tag(key, body.encode()).hex() + body if _carries(notice) else body


def own(origin: str) -> str:
    """How the payloads ``origin`` sends begin (after the tag, if any): ``encode`` puts the origin first."""
    return '{"o":' + json.dumps(origin) + ","


def sent_by(prefix: str, payload: str) -> bool:
    """Is ``payload`` one whose JSON begins with ``prefix`` (``own``)? A process skips its own notices without
    parsing them or checking a tag: it delivered what they name itself."""
    return payload.startswith(prefix) or payload.startswith(prefix, TAG)


def read(key: bytes, payload: str) -> tuple[str, Notice]:
    """(origin, notice) of a payload ``seal`` made under ``key``; ``ValueError`` for anything else (records
    without a tag, or with a tag that is not ``key``'s for them)."""
    if payload.startswith("{"):
        origin, notice = decode(payload)
        if _carries(notice):
            raise ValueError("a notice carries records without a tag")
        return origin, notice
    tag, body = payload[:TAG], payload[TAG:]
    if not hmac.compare_digest(tag, notice_tag(key, body.encode()).hex()):
        raise ValueError("a notice's tag is not the server's")
    return decode(body)


def _fits(origin: str, notice: Notice) -> bool:
    return len(encode(origin, notice)) <= BODY


def thread_stored(origin: str, team: str, thread: str, record: bytes) -> ThreadStored:
    """A new thread's notice: with its record when it fits."""
    carried = ThreadStored(team, thread, record)
    return carried if _fits(origin, carried) else ThreadStored(team, thread)


def links_stored(origin: str, after: int, links: Iterable[tuple[int, StoredLink]]) -> LinksStored:
    """One transaction's links' notice (``after``: the order number of the newest link before them): with the
    links when they fit (a team's creation with many members, say, may not: then read)."""
    carried = LinksStored(after, tuple(links))
    return carried if carried.links and _fits(origin, carried) else LinksStored()


def messages_stored(origin: str, team: str, thread: str, placed: Iterable[tuple[int, bytes]]) -> list[MessagesStored]:
    """The notices of one transaction's messages in one thread (``placed``: position and stored record, in
    position order): consecutive positions share a notice with their records as long as it fits (``BODY``
    bytes, and the tag); a message whose record does not fit in a notice of its own is named without it (with
    its neighbours that do not fit either), and read from the database by whoever delivers it."""
    out: list[MessagesStored] = []
    carried: list[tuple[int, bytes]] = []  # the records of the notice being filled
    size = 0  # the length of its payload, as encode makes it
    bare: list[int] = []  # consecutive positions too big to carry, for one notice without records

    def close_carried() -> None:
        if carried:
            out.append(MessagesStored(team, thread, carried[0][0], carried[-1][0], tuple(r for _, r in carried)))
            carried.clear()

    def close_bare() -> None:
        if bare:
            out.append(MessagesStored(team, thread, bare[0], bare[-1]))
            bare.clear()

    for pos, record in placed:
        if carried and pos == carried[-1][0] + 1:
            # one more record: its base64 between quotes and a comma; the last position may take more digits
            grown = size + 4 * ((len(record) + 2) // 3) + 3 + len(str(pos)) - len(str(carried[-1][0]))
            if grown <= BODY:
                carried.append((pos, record))
                size = grown
                continue
        close_carried()
        alone = MessagesStored(team, thread, pos, pos, (record,))
        length = len(encode(origin, alone))
        if length <= BODY:
            close_bare()
            carried.append((pos, record))
            size = length
        else:
            if bare and pos != bare[-1] + 1:
                close_bare()
            bare.append(pos)
            close_carried()
    close_carried()
    close_bare()
    return out
