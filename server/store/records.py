"""What the stores hold and hand back: plain frozen values, the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from security.events import Checkpoint


@dataclass(frozen=True)
class StoredLink:
    chain: str
    seq: int
    kind: str
    wire: bytes


@dataclass(frozen=True)
class StoredThread:
    team: str
    thread: str
    record: bytes
    expire: int
    next_pos: int
    last_time: int
    count: int = 0


@dataclass(frozen=True)
class StoredMessage:
    team: str
    thread: str
    pos: int
    mid: str
    device: str
    seq: int
    time: int
    record: bytes


@dataclass(frozen=True)
class StoredVersion:
    vid: str
    team: str
    doc: str
    seq: int
    record: bytes
    blob: str
    body_len: int


@dataclass(frozen=True)
class AuthSession:  # a logged-in device's session (not the client's Session: a member's view and actions)
    member: str
    device: str
    expires: float


@dataclass(frozen=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    sig: bytes


@dataclass(frozen=True)
class Cosig:
    member: str
    device: str
    sig: bytes
    time: int


# -- device-link slots: what the slot store answers (the routes turn each into a reply) --------------


class SlotOpen(Enum):
    OPENED = "opened"
    IN_USE = "in_use"  # another member's or an earlier code: the slot exists


@dataclass(frozen=True)
class SlotsFull:
    """The member holds as many open slots as allowed; the oldest expires in ``retry_after`` seconds."""

    max_open: int
    retry_after: int


class SlotFill(Enum):
    FILLED = "filled"
    UNAVAILABLE = "unavailable"  # unknown, expired or already filled


@dataclass(frozen=True)
class SlotRead:
    payload: bytes | None  # None: not filled yet


class SlotMissing(Enum):
    UNKNOWN = "unknown"  # unknown, expired, or another member's
