"""What the stores hold and hand back: plain frozen values, the same for every backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from security.events import Checkpoint
from server.usage import OverQuota


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
class TakenNonce:  # a login's nonce as its login took it (``AuthStore.take_nonce_login``)
    member: str
    device: str
    expires: float
    session_stored: bool  # the session asked for was stored with the take (same transaction)


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


# -- chains, documents and threads: what a store answers where it may refuse -------------------------
# Each store method that can refuse returns one of these (never a refusal as an exception); the routes
# turn each into a reply (``server/replies.py`` holds the texts). The store raises only for real failures.


@dataclass(frozen=True)
class LinksAppended:
    """Every link and key box was stored."""


@dataclass(frozen=True)
class ChainMoved:
    """A link at one of these positions (or one of these boxes) is stored already: nothing was stored."""


@dataclass(frozen=True)
class LinksMoved:
    """A link (of any chain) was stored after the order number the route caught up to (``append_links``'s ``seen``:
    another server process stored it, over one database): nothing was stored; catch up and judge again (review 26,
    finding 2: a team link judged before its device's revocation was stored, stored after it)."""


LinksOutcome: TypeAlias = LinksAppended | ChainMoved | LinksMoved

# ``append_links``'s ``again``: given the links stored after its ``seen`` (each with its order number; read under the
# database's lock of link appends, so complete), the route replays them and judges its links again (raising to refuse
# them), answering the ``SignedCheck`` to apply now; the append then goes on in the same transaction (no retry).
Rejudge: TypeAlias = Callable[[list[tuple[int, StoredLink]]], Awaitable["SignedCheck | None"]]


@dataclass(frozen=True)
class VersionAdded:
    """The version is stored on top of its document's head."""


@dataclass(frozen=True)
class HeadMoved:
    """The version does not sit on the document's head, now version ``head_seq`` (0: no version yet)."""

    head_seq: int


@dataclass(frozen=True)
class TeamMoved:
    """The team chain moved on from the link the version names; it is now at link ``team_seq``."""

    team_seq: int


@dataclass(frozen=True)
class SignerMoved:
    """The signer's member chain or the organization chain is no longer at the length the act was judged on (a
    revocation, cut or removal may be stored since): nothing was stored; judge the act again (``SignerHeads``)."""


VersionOutcome: TypeAlias = VersionAdded | HeadMoved | TeamMoved | SignerMoved | OverQuota

# The chains an act's signer was judged on, each with its length then (the signer's member chain, "org"): the store
# takes the act only while they are still at those lengths, in its transaction (review 24, finding 3: a revocation
# stored between the judge and the insert, dated before the act, broke every replay of it).
SignerHeads: TypeAlias = Mapping[str, int]


def signer_moved(signer: SignerHeads | None, held: Mapping[str, int]) -> SignerMoved | None:
    """``held``: each chain's length as the store's transaction reads it (absent: no link)."""
    return SignerMoved() if signer and any(held.get(c, 0) != n for c, n in signer.items()) else None


# Each named chain's length as stored (absent: no link): how the SQLite audit store reads the vault's chains for
# ``add_cosig`` (its cosignatures are in audit.db, the links in the vault's file).
ChainLengths: TypeAlias = Callable[[Sequence[str]], Awaitable[Mapping[str, int]]]


@dataclass(frozen=True)
class CosigAdded:
    """The Security Team cosignature is stored."""


# A cosignature is stored only while its signer's chains are at the lengths the route judged it on (review 27,
# finding 2: over PostgreSQL a revocation stored by another process between the judge and the insert, dated before it,
# stopped every member): else ``SignerMoved``, nothing stored.
CosigOutcome: TypeAlias = CosigAdded | SignerMoved


@dataclass(frozen=True)
class SignedCheck:
    """Inside a chain append's transaction (``append_links``): ``member``'s versions and threads stored, and messages
    of ``devices`` dated, after ``since``, each (device, time) given to ``judge``, which raises to refuse the append
    (an act stored since the route's own check, dated at or after a revocation, cut or removal)."""

    member: str
    devices: Sequence[str]
    since: int
    judge: Callable[[list[tuple[str, int]]], None]


def moved_head(parent: str | None, seq: int, head_vid: str | None, head_seq: int) -> HeadMoved | None:
    """Whether a version with ``parent`` and number ``seq`` misses the head (``head_vid``, ``head_seq``):
    the one rule for the check before an upload's body and the one in the store's transaction."""
    return None if parent == head_vid and seq == head_seq + 1 else HeadMoved(head_seq)


@dataclass(frozen=True)
class ThreadAdded:
    """The thread record is stored."""


@dataclass(frozen=True)
class ThreadExists:
    """A thread with this id (the keyed hash of its name) is stored in the team already."""


ThreadOutcome: TypeAlias = ThreadAdded | ThreadExists | SignerMoved | OverQuota


@dataclass(frozen=True)
class StoredHead:
    """A thread's next position, its record, and each device's last message (seq, id, time)."""

    next_pos: int
    record: bytes
    senders: dict[str, tuple[int, str, int]]


@dataclass(frozen=True)
class MessagePost:
    """A message to append to its thread: ``message.pos`` is ignored (the store assigns it); ``prev`` is the id
    of the sender device's previous message in the thread, as the message names it (None: its first)."""

    message: StoredMessage
    prev: str | None
    signer: SignerHeads | None = None  # the chains the sender was judged on (``SignerMoved`` if they moved)


@dataclass(frozen=True)
class MessagePlaced:
    """The message is stored at ``pos``, its thread's next position when its transaction committed."""

    pos: int


@dataclass(frozen=True)
class SenderMoved:
    """The device's last stored message in the thread is not the one this message follows (``last_seq``:
    its number; 0: none): nothing of the message is stored."""

    last_seq: int


MessageOutcome: TypeAlias = MessagePlaced | SenderMoved | SignerMoved
