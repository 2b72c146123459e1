"""The Security Team's acceptance of a server restored from an older backup (docs/restore.md).

A client whose pins are ahead of what the server serves (its audit checkpoint, chain heads or document
versions) cannot tell a restore from an older backup from a server that rolls it back to hide something.
A human on the Security Team decides, and signs that decision: an acceptance names the organization,
the restored server's signed audit checkpoint (and the log key that signed it), the organization chain
head it serves, the head (length and hash) of every other chain the signer's client sees (``heads``: a
follower refuses a served chain that does not hold it, so a seized server cannot pair the acceptance with
another history of the same length), the time, the signer and device, and what the signer's own client saw
go back (``lost``, shown to people; a follower lowers no pin below what it names, and refuses a chain that
went back and is not in it: client/restore.py ``check_covered``). Its bytes (docs/format.md "Restore
acceptance")::

    encode({"v": 2, "org": org_id, "checkpoint": checkpoint_raw, "cp_sig": log_sig, "log_key": log_public,
            "org_seq": n, "org_head": head, "heads": {id: [length, hash of its last link]}, "time": t,
            "member": m, "device": d,
            "lost": {"log": [served_size, pinned_size], "chains": {id: [served_seq, pinned_seq]},
                     "docs": {"team/doc": [served_seq, pinned_seq]}, "more": k}})

Version 1 (no ``heads``) is still parsed, to be shown, but neither stored by the server nor followed.

signed by the device under ``SIG_RESTORE``. It is an act ``restore.accept`` judged by the one judge
(``security.authority.POLICY``) at its signed time: only a member holding the org role ``security``
then, with a device active then, may sign one. The server judges it before it stores it; every client
judges it again before it follows it (client/restore.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from security.authority import POLICY
from security.events import Checkpoint
from vault.acts import Act
from vault.chains import MemberState, OrgState
from vault.encoding import Fields, Value, decode, encode
from vault.errors import EncodingError, IntegrityError, PolicyDenied
from vault.keys import DeviceKeys
from vault.logsign import sign_restore, verify_restore

VERSION = 2  # version 1 named no chain heads but the organization's
MAX_STATEMENT = 384 * 1024
MAX_LOST = 256  # entries per kind in the signed list; the rest is counted in "more"
MAX_HEADS = 2048  # member and team chains named in "heads" (an acceptance of a larger organization is refused)
MAX_CHAIN_ID = 64
V1_FIELDS = {"v", "org", "checkpoint", "cp_sig", "log_key", "org_seq", "org_head", "time", "member", "device",
             "lost"}
ACCEPTANCE_FIELDS = V1_FIELDS | {"heads"}


@dataclass
class Lost:
    """What went back, as one client saw it: [served, pinned] per kind (served 0: no longer served)."""

    log: tuple[int, int] = (0, 0)
    chains: dict[str, tuple[int, int]] = field(default_factory=dict)
    docs: dict[str, tuple[int, int]] = field(default_factory=dict)
    more: int = 0

    def empty(self) -> bool:
        return self.log[0] >= self.log[1] and not self.chains and not self.docs and not self.more

    def to_value(self) -> dict[str, Value]:
        chains = dict(sorted(self.chains.items())[:MAX_LOST])
        docs = dict(sorted(self.docs.items())[:MAX_LOST])
        more = self.more + len(self.chains) - len(chains) + len(self.docs) - len(docs)
        return {"log": [self.log[0], self.log[1]], "chains": {k: [a, b] for k, (a, b) in chains.items()},
                "docs": {k: [a, b] for k, (a, b) in docs.items()}, "more": more}

    @classmethod
    def from_fields(cls, f: Fields) -> Lost:
        return cls(_pair(f.list_("log", 2)), _pairs(f.dict_("chains"), MAX_CHAIN_ID), _pairs(f.dict_("docs"), 129),
                   f.int_("more", 0))

    def as_json(self) -> dict[str, object]:
        return {"log": {"served": self.log[0], "pinned": self.log[1]},
                "chains": {k: {"served": a, "pinned": b} for k, (a, b) in sorted(self.chains.items())},
                "docs": {k: {"served": a, "pinned": b} for k, (a, b) in sorted(self.docs.items())},
                "more": self.more}


def _pair(value: list[Value]) -> tuple[int, int]:
    if len(value) != 2 or not all(type(x) is int and x >= 0 for x in value):
        raise EncodingError("a lost entry must be [served, pinned]")
    a, b = value
    assert isinstance(a, int) and isinstance(b, int)
    return a, b


def _pairs(f: Fields, max_key: int) -> dict[str, tuple[int, int]]:
    if len(f.raw) > MAX_LOST:
        raise EncodingError("the lost list is too long")
    out = {}
    for key in f.raw:
        if len(key) > max_key:
            raise EncodingError("a lost entry's id is too long")
        out[key] = _pair(f.list_(key, 2))
    return out


def _heads(f: Fields) -> dict[str, tuple[int, bytes]]:
    if len(f.raw) > MAX_HEADS:
        raise EncodingError("too many chain heads")
    out = {}
    for key in f.raw:
        if not 0 < len(key) <= MAX_CHAIN_ID or key == "org":
            raise EncodingError("a chain head's id is malformed")
        value = f.list_(key, 2)
        seq, head = value
        if type(seq) is not int or seq < 1 or not isinstance(head, bytes) or len(head) != 32:
            raise EncodingError("a chain head must be [length >= 1, 32-byte hash]")
        out[key] = (seq, head)
    return out


@dataclass(frozen=True)
class Acceptance:
    """An acceptance, parsed (not yet judged)."""

    raw: bytes
    org: str
    checkpoint: Checkpoint
    cp_sig: bytes
    log_key: bytes
    org_seq: int
    org_head: bytes
    time: int
    member: str
    device: str
    lost: Lost
    heads: dict[str, tuple[int, bytes]] | None  # None: a version 1 acceptance, which names no other heads

    @classmethod
    def parse(cls, raw: bytes) -> Acceptance:
        """The acceptance in ``raw``; anything malformed raises ``IntegrityError``."""
        try:
            if len(raw) > MAX_STATEMENT:
                raise EncodingError("restore acceptance is too large")
            value = decode(raw)
            v = Fields(value, "restore acceptance").int_("v")
            if v not in (1, VERSION):
                raise EncodingError("unknown restore acceptance version")
            f = Fields(value, "restore acceptance", V1_FIELDS if v == 1 else ACCEPTANCE_FIELDS)
            cp = Checkpoint.parse(f.bytes_("checkpoint", max_size=1024))
            return cls(raw, f.str_("org", 64), cp, f.bytes_("cp_sig", 64), f.bytes_("log_key", 32),
                       f.int_("org_seq", 1), f.bytes_("org_head", 32), f.int_("time", 0), f.str_("member", 64),
                       f.str_("device", 64), Lost.from_fields(f.dict_("lost", {"log", "chains", "docs", "more"})),
                       _heads(f.dict_("heads")) if v == VERSION else None)
        except (EncodingError, IntegrityError) as e:
            raise IntegrityError(f"malformed restore acceptance: {e}") from e


def acceptance_statement(org: str, checkpoint_raw: bytes, cp_sig: bytes, log_key: bytes, org_seq: int,
                         org_head: bytes, time: int, member: str, device: str, lost: Lost, *,
                         heads: Mapping[str, tuple[int, bytes]]) -> bytes:
    """The bytes of an acceptance; ``heads``: every member and team chain the signer sees (not ``"org"``)."""
    if len(heads) > MAX_HEADS:
        raise EncodingError(f"this organization has more than {MAX_HEADS} chains: an acceptance cannot name them")
    return encode({"v": VERSION, "org": org, "checkpoint": checkpoint_raw, "cp_sig": cp_sig, "log_key": log_key,
                   "org_seq": org_seq, "org_head": org_head,
                   "heads": {k: [seq, head] for k, (seq, head) in sorted(heads.items())}, "time": time,
                   "member": member, "device": device, "lost": lost.to_value()})


def sign_acceptance(device: DeviceKeys, statement: bytes) -> bytes:
    return sign_restore(device, statement)


def judge_acceptance(acc: Acceptance, sig: bytes, org: OrgState, members: Mapping[str, MemberState]) -> None:
    """Refuse (``PolicyDenied``, ``ChainError``, ``BadSignature``, ``IntegrityError``) an acceptance its signer
    was not entitled to make at its signed time, one that does not verify, or one whose checkpoint the
    log key it names did not sign for this organization."""
    if acc.org != org.org_id or acc.checkpoint.org != org.org_id:
        raise PolicyDenied("the restore acceptance names another organization")
    acc.checkpoint.verify(acc.log_key, acc.cp_sig)
    POLICY.judge(Act(acc.member, acc.device, acc.time, "restore.accept"), org, members, None)
    verify_restore(members[acc.member].device_at(acc.device, acc.time).sign_public, acc.raw, sig)
