"""A ``coalition.act`` record (issue 20; docs/lifecycle.md section 2 "Audit"; bytes in docs/format.md "Coalition act
record"): a member of an allied organization tells its **own** organization's audit log what it did in a coalition
space on the host's server, so that its own Security Team sees it (``mvault audit``) and its rules count it.

The member's device signs the record; its own server logs it (the audit event ``coalition.act``, sealed to its own
Security Team) after judging it (``security/coalitionact.py``)::

    record = encode({"v": 1, "type": "coalition.act", "org", "member", "device", "time", "coalition", "space",
                     "act", "count", "subject", "ref"})
    sig    = Ed25519(device, "mvault/v1/coalition-act" || 0x00 || record)

``coalition`` is the name under which the member's organization recorded its coalition key (``org.coalition`` in its
own chain): the id its own Security Team resolves, never the host's name for the space. ``space`` is the host's team
id (what the approval named). ``subject`` names the member an NCC member approved or removed (``approve``,
``remove``); the member's own acts have none. ``ref`` (optional, 32 bytes) is the hash of what the host's server
accepted (a version id, a message id, a team link), so a record can be matched against the host's log.

Pure: the caller supplies the device keys and the check of the signer's device key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, decode, encode
from vault.errors import EncodingError
from vault.keys import DeviceKeys

# The member's own acts in the space, then the NCC's acts about a member (with ``subject``).
OWN_ACTS: Final = ("join", "leave", "put", "read", "post")
NCC_ACTS: Final = ("approve", "remove")
ACTS: Final = OWN_ACTS + NCC_ACTS
MAX_COUNT: Final = 100_000  # acts of one kind one record may stand for (a batch of reads)
MAX_AGE: Final = 30 * 86400  # a record is logged at most this long after its act (the member's next contact)
_FIELDS: Final = {"v", "type", "org", "member", "device", "time", "coalition", "space", "act", "count", "subject",
                  "ref"}


@dataclass(frozen=True)
class CoalitionAct:
    """What the member's device signed: who did what, when, in which coalition space."""

    raw: bytes
    org: str
    member: str
    device: str
    time: int
    coalition: str
    space: str
    act: str
    count: int
    subject: str | None
    ref: bytes | None

    @classmethod
    def parse(cls, raw: bytes) -> CoalitionAct:
        if len(raw) > 2048:
            raise EncodingError("coalition act record is too large")
        f = Fields(decode(raw), "coalition act record", _FIELDS)
        if f.int_("v") != 1 or f.str_("type", 32) != "coalition.act":
            raise EncodingError("not a coalition act record")
        act = f.str_("act", 16)
        if act not in ACTS:
            raise EncodingError(f"coalition act record: unknown act {act!r} (one of {', '.join(ACTS)})")
        count, subject = f.int_("count", 1), f.opt_str("subject", 64)
        if count > MAX_COUNT:
            raise EncodingError(f"coalition act record: count above {MAX_COUNT}")
        if (subject is not None) != (act in NCC_ACTS):
            raise EncodingError(f"coalition act record: {act} {'needs' if act in NCC_ACTS else 'takes no'} subject")
        return cls(raw, f.str_("org", 64), f.str_("member", 64), f.str_("device", 64), f.int_("time", 0),
                   f.str_("coalition", 64), f.str_("space", 64), act, count, subject, f.opt_bytes("ref", 32))


def act_record(org: str, member: str, device: str, time: int, coalition: str, space: str, act: str, *,
               count: int = 1, subject: str | None = None, ref: bytes | None = None) -> bytes:
    return encode({"v": 1, "type": "coalition.act", "org": org, "member": member, "device": device, "time": time,
                   "coalition": coalition, "space": space, "act": act, "count": count, "subject": subject,
                   "ref": ref})


def sign_act(device: DeviceKeys, raw: bytes) -> bytes:
    return device.sign(labels.SIG_COALITION_ACT, raw)


def verify_act(sign_public: bytes, raw: bytes, sig: bytes) -> None:
    """Raises ``BadSignature`` unless ``sig`` is the device's signature of the coalition act record."""
    p.verify(sign_public, labels.SIG_COALITION_ACT, raw, sig)
