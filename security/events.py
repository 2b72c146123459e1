"""Audit events, the sealed leaves of the log, checkpoints and the statements around them.

An event is what happened (actor, device, action, resource ids, result, time, rules).
A leaf is what the Merkle tree hashes and every member may fetch::

    leaf = encode({"v": 1, "day": unix_day, "ag": audit_gen, "e": eph_pk,
                   "c": AEAD(k, body), "k": [slot0, slot1, slot2]})

``k`` is a fresh 32-byte key per event. ``slot_i = AEAD(KDF(X25519(eph_sk, pk_i), eph_pk
|| pk_i), k)`` wraps it for recipient ``pk_i``: slot 0 for the Security Team's audit key
of generation ``ag`` (``ag == 0``: no audit key yet), slots 1 and 2 for the actor's and
the subject's member keys. A slot without a recipient is random bytes of the same
length, so slots are indistinguishable. ``eph`` is the server's ephemeral X25519 key: it
lives in memory only, changes at every start and every ``Sealer.MAX_USES`` events, and
lets the server derive each recipient's slot key once rather than per event (a sealed
box per slot would cost two scalar multiplications per event per recipient). The body
is padded to at least 768 bytes and to a multiple of 128; the AEAD's associated data binds ``day`` and ``ag``.

A checkpoint ``encode({"org", "size", "root", "time"})`` is signed by the server's log
key; a Security Team member's cosignature signs the same bytes under another tag.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from security.merkle import leaf_hash
from vault import sealing
from vault.encoding import Fields, Value, decode, encode
from vault.errors import EncodingError, IntegrityError
from vault.logsign import sign_checkpoint, verify_checkpoint
from vault.sealing import NONCE_BYTES, SLOT_BYTES, Sealer, audit_keypair, event_ad, valid_box_public

__all__ = [
    "ACTION_RULES", "AUDIT_KEY_FIELDS", "DAY", "MAX_LEAF", "MIN_BODY", "NONCE_BYTES", "PAD", "RESULTS", "SLOT_BYTES",
    "Checkpoint", "Event", "Leaf", "Opener", "Sealer", "Statement", "audit_key_statement", "audit_keypair",
    "cosign_statement", "open_leaf", "rules_for", "seal_event", "valid_box_public",
]

DAY = 86400
PAD = 128
MIN_BODY = 768
MAX_LEAF = 16 * 1024
MAX_CLAIM = 1024  # an audit-key statement carried in an ``audit.key`` leaf (``Leaf.claim``)
RESULTS = ("ok", "denied", "failed")

# Every action the server records, and the security-protocol rules it concerns.
ACTION_RULES: dict[str, tuple[str, ...]] = {
    "auth.login": ("dormant-devices", "failed-logins"),
    "auth.fail": ("failed-logins",),
    "auth.lockout": ("failed-logins",),
    "org.create": ("two-person",),
    "org.invite": ("offboarding",),
    "org.invite.revoke": ("offboarding",),
    "org.join": ("need-to-know",),
    "org.admit": ("need-to-know",),
    "org.role": ("role-terms", "two-person"),
    "org.remove": ("offboarding",),
    "org.protocols.propose": ("two-person",),
    "org.protocols.approve": ("two-person",),
    "org.audit_team": ("two-person", "log-integrity"),
    "restore.accept": ("log-integrity",),
    "org.server": ("two-person",),
    "org.vouch": ("vouching",),
    "org.verify": ("key-verification",),
    "org.approve": ("two-person",),
    "member.create": ("key-verification",),
    "device.add": ("key-verification", "dormant-devices"),
    "device.revoke": ("offboarding", "lost-device", "rotate-on-removal"),
    "member.spaces": ("lost-device",),  # the record of joined coalition spaces a revocation is carried to
    "team.create": ("admin-count",),
    "team.add": ("need-to-know", "admin-count", "pending-shares"),
    "team.share": ("pending-shares",),
    "team.remove": ("offboarding", "rotate-on-removal"),
    "team.leave": ("rotate-on-removal",),
    "team.role": ("admin-count", "role-terms"),
    "team.rotate": ("rotate-on-removal",),
    "team.review": ("membership-review",),
    "export.request": ("exports",),  # export approvals (vault/chains/exports.py)
    "export.approve": ("exports", "two-person"),
    "org.coalition": ("need-to-know",),  # coalition spaces (docs/lifecycle.md section 2)
    "org.coalition.share": ("need-to-know",),
    "coalition.ally": ("need-to-know",),
    "coalition.remove": ("offboarding", "rotate-on-removal"),
    "coalition.rekey": ("need-to-know",),
    "coalition.server": ("need-to-know",),
    "coalition.act": ("need-to-know", "offboarding", "bulk-access"),  # a member's act in a coalition space
    "doc.write": ("rotate-on-removal", "document-review"),
    "doc.delete": ("rotate-on-removal", "need-to-know"),  # a signed deletion (the body of the act is encrypted)
    "doc.move": ("rotate-on-removal", "need-to-know"),
    "doc.restore": ("rotate-on-removal", "need-to-know"),
    "doc.conflict": ("rotate-on-removal",),
    "doc.read": ("need-to-know", "bulk-access"),
    "doc.list": ("need-to-know",),
    "doc.export": ("exports", "no-master-lists"),  # documents of a team about to be exported (docs/lifecycle.md)
    "thread.create": ("retention", "small-threads"),
    "thread.list": ("need-to-know",),
    "thread.follow": ("need-to-know", "bulk-access"),
    "thread.unfollow": ("need-to-know",),
    "msg.post": ("rotate-on-removal", "need-to-know"),
    "msg.read": ("need-to-know", "bulk-access"),
    "msg.expire": ("retention",),
    "keys.team": ("need-to-know",),
    "keys.member": (),
    "audit.read": ("log-integrity",),
    "audit.cosign": ("log-integrity",),
    "audit.key": ("log-integrity",),
    "audit.prune": ("log-integrity",),
    "audit.export": ("exports",),
    "roster.export": ("no-master-lists",),  # a roster export's signed record (vault/roster.py)
    "audit.report": ("log-integrity",),
    "attest.keystore": ("keystore-kdf",),
    "attest.lost": ("lost-device",),
    "request.denied": ("need-to-know", "bulk-access"),
    "request.summary": ("failed-logins",),
    "request.refusals": ("need-to-know", "bulk-access", "failed-logins"),
}


def rules_for(action: str) -> tuple[str, ...]:
    return ACTION_RULES.get(action, ())


@dataclass(frozen=True)
class Event:
    time: int
    actor: str  # member id ("" when unknown)
    device: str
    action: str
    result: str = "ok"
    res: Mapping[str, str] = field(default_factory=dict)  # resource ids: team, doc, vid, link, chain, member...
    rules: tuple[str, ...] = ()
    detail: Mapping[str, int | str] = field(default_factory=dict)

    def to_value(self) -> dict[str, Value]:
        return {"time": self.time, "actor": self.actor, "device": self.device, "action": self.action,
                "result": self.result, "res": dict(self.res), "rules": list(self.rules),
                "detail": dict(self.detail)}

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "actor": self.actor, "device": self.device, "action": self.action,
                "result": self.result, "res": dict(self.res), "rules": list(self.rules), "detail": dict(self.detail)}

    @classmethod
    def from_value(cls, value: Value) -> Event:
        f = Fields(value, "audit event", {"time", "actor", "device", "action", "result", "res", "rules", "detail"})
        res = f.dict_("res")
        detail = f.dict_("detail")
        res_out: dict[str, str] = {}
        for k in res.raw:
            res_out[k] = res.str_(k, 256)
        detail_out: dict[str, int | str] = {}
        for k, v in detail.raw.items():
            if isinstance(v, bool) or not isinstance(v, int | str):
                raise EncodingError("audit event detail holds only integers and strings")
            detail_out[k] = v
        rules = f.list_("rules", 32)
        if not all(isinstance(r, str) for r in rules):
            raise EncodingError("audit event rules must be strings")
        return cls(f.int_("time", 0), f.str_("actor", 64), f.str_("device", 64), f.str_("action", 64),
                   f.str_("result", 32), res_out, tuple(str(r) for r in rules), detail_out)


@dataclass(frozen=True)
class Leaf:
    raw: bytes
    day: int
    audit_gen: int
    eph: bytes
    ciphertext: bytes
    slots: tuple[bytes, ...]
    claim: tuple[bytes, bytes] | None = None  # ``audit.key`` leaves: the signed statement and its signature, in clear

    @property
    def hash(self) -> bytes:
        return leaf_hash(self.raw)

    @classmethod
    def parse(cls, raw: bytes) -> Leaf:
        if len(raw) > MAX_LEAF:
            raise IntegrityError("audit leaf is too large")
        leaf = _parse_exact(raw)
        return leaf if leaf is not None else cls.parse_decoded(raw)

    @classmethod
    def parse_decoded(cls, raw: bytes) -> Leaf:
        """``parse`` through the general decoder and ``Fields`` (what ``_parse_exact`` must agree with)."""
        if len(raw) > MAX_LEAF:
            raise IntegrityError("audit leaf is too large")
        try:
            f = Fields(decode(raw), "audit leaf", {"v", "day", "ag", "e", "c", "k", "p"})
            if f.int_("v") != 1:
                raise EncodingError("unknown audit leaf version")
            slots = f.list_("k", 3)
            if len(slots) != 3 or not all(isinstance(s, bytes) and len(s) == SLOT_BYTES for s in slots):
                raise EncodingError("an audit leaf has three key slots")
            p = f.opt_dict("p", {"statement", "sig"})
            claim = None if p is None else (p.bytes_("statement", max_size=MAX_CLAIM), p.bytes_("sig", 64))
            leaf = cls(raw, f.int_("day", 0), f.int_("ag", 0), f.bytes_("e", 32), f.bytes_("c", max_size=MAX_LEAF),
                       tuple(bytes(s) for s in slots if isinstance(s, bytes)), claim)
        except EncodingError as e:
            raise IntegrityError(f"malformed audit leaf: {e}") from e
        return leaf


# The one canonical form of a valid leaf, byte for byte. Every field is required and no other is
# allowed, so the dictionary has exactly six keys, in byte order "ag" < "c" < "day" < "e" < "k" < "v";
# every length but the ciphertext's is fixed, and "v" is the integer 1:
#
#   d 6 | 2 "ag" i ag(8) | 1 "c" b len(4) c | 3 "day" i day(8) | 1 "e" b 32 e(32)
#       | 1 "k" l 3 (b 72 slot(72)) x3 | 1 "v" i 1(8)
_LEAF_HEAD = b"d\x00\x00\x00\x06" + b"\x00\x00\x00\x02agi"
_LEAF_C = b"\x00\x00\x00\x01cb"
_LEAF_DAY = b"\x00\x00\x00\x03dayi"
_LEAF_E = b"\x00\x00\x00\x01eb" + struct.pack(">I", 32)
_LEAF_K = b"\x00\x00\x00\x01kl" + struct.pack(">I", 3)
_LEAF_SLOT = b"b" + struct.pack(">I", SLOT_BYTES)
_LEAF_TAIL = b"\x00\x00\x00\x01vi" + struct.pack(">q", 1)
# The fixed parts before the ciphertext and after it, each read with one unpack.
_BEFORE_C = struct.Struct(f">{len(_LEAF_HEAD)}sq{len(_LEAF_C)}sI")
_AFTER_C = struct.Struct(f">{len(_LEAF_DAY)}sq{len(_LEAF_E)}s32s{len(_LEAF_K)}s"
                         + f"{len(_LEAF_SLOT)}s{SLOT_BYTES}s" * 3 + f"{len(_LEAF_TAIL)}s")


def _parse_exact(raw: bytes) -> Leaf | None:
    """The leaf, if ``raw`` is byte for byte the canonical form above with ``day, ag >= 0``; else None.

    Exactly the inputs ``Leaf.parse_decoded`` accepts, with the same result, without building the
    decoded dictionary: the general decoder would find the same type bytes, lengths, key order and
    end of input, and ``Fields`` the same keys, types, sizes and bounds. Anything else (including
    every malformed leaf) goes to ``parse_decoded``, which reports what is wrong.
    """
    if type(raw) is not bytes or len(raw) < _BEFORE_C.size + _AFTER_C.size:
        return None
    head, ag, c_key, c_len = _BEFORE_C.unpack_from(raw)
    c_end = _BEFORE_C.size + c_len
    if head != _LEAF_HEAD or c_key != _LEAF_C or c_end + _AFTER_C.size != len(raw):
        return None
    day_key, day, e_key, eph, k_key, b0, s0, b1, s1, b2, s2, tail = _AFTER_C.unpack_from(raw, c_end)
    if (day_key != _LEAF_DAY or e_key != _LEAF_E or k_key != _LEAF_K or b0 != _LEAF_SLOT or b1 != _LEAF_SLOT
            or b2 != _LEAF_SLOT or tail != _LEAF_TAIL or ag < 0 or day < 0):
        return None
    return Leaf(raw, day, ag, eph, raw[_BEFORE_C.size : c_end], (s0, s1, s2))


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_type_len = struct.Struct(">BI").pack  # a type byte and a 4-byte length or count
_type_int = struct.Struct(">Bq").pack
_u32 = struct.Struct(">I").pack
_first = itemgetter(0)


def _key(name: str) -> bytes:
    return struct.pack(">I", len(name)) + name.encode()


# An event body's two dictionaries have fixed keys, so their canonical order is fixed:
#   d 2 | "e" d 8 (action, actor, detail, device, res, result, rules, time) | "pad" b 0
_BODY_HEAD = _type_len(0x64, 2) + _key("e") + _type_len(0x64, 8) + _key("action")
_KEY_ACTOR, _KEY_DETAIL, _KEY_DEVICE, _KEY_RES, _KEY_RESULT, _KEY_RULES, _KEY_TIME = map(
    _key, ("actor", "detail", "device", "res", "result", "rules", "time"))
_BODY_TAIL = _key("pad") + _type_len(0x62, 0)


class _Unusual(Exception):
    """A value outside the shape ``_body_bytes`` writes (the general encoder takes it).

    Internal control flow, not an error: raised and caught inside ``_body_bytes`` only, it never
    leaves this module, so it stays outside the error tree of ``vault/errors.py``."""


def _utf8(value: object) -> bytes:
    if type(value) is not str:
        raise _Unusual
    try:
        return value.encode()
    except UnicodeEncodeError:  # a lone surrogate: the general encoder refuses it
        raise _Unusual from None


def _str(value: object) -> bytes:
    raw = _utf8(value)
    return _type_len(0x73, len(raw)) + raw


def _flat_dict(value: object) -> bytes:
    """A dict of str keys to str or int values, canonically encoded."""
    if type(value) is not dict:
        raise _Unusual
    items = sorted([(_utf8(k), v) for k, v in value.items()], key=_first)  # by the keys' bytes
    parts = [_type_len(0x64, len(items))]
    for k, v in items:
        parts.append(_u32(len(k)))
        parts.append(k)
        if type(v) is int and _INT64_MIN <= v <= _INT64_MAX:
            parts.append(_type_int(0x69, v))
        else:
            parts.append(_str(v))
    return b"".join(parts)


def _body_bytes(event: Event) -> bytes | None:
    """``encode({"e": event.to_value(), "pad": b""})`` for an event whose fields hold exactly their
    declared built-in types (str, int, dict of str, tuple or list of str); None for any other, which
    the general encoder then encodes (or refuses) as always. Same bytes as ``encode``'s."""
    try:
        rules: object = event.rules
        if type(rules) is not tuple and type(rules) is not list:
            raise _Unusual
        time = event.time
        if type(time) is not int or not _INT64_MIN <= time <= _INT64_MAX:
            raise _Unusual
        return b"".join((
            _BODY_HEAD, _str(event.action), _KEY_ACTOR, _str(event.actor), _KEY_DETAIL,
            _flat_dict(event.detail), _KEY_DEVICE, _str(event.device), _KEY_RES, _flat_dict(event.res),
            _KEY_RESULT, _str(event.result), _KEY_RULES, _type_len(0x6C, len(rules)), *map(_str, rules),
            _KEY_TIME, _type_int(0x69, time), _BODY_TAIL))
    except _Unusual:
        return None


def _leaf_bytes(day: int, audit_gen: int, eph: bytes, ciphertext: bytes, slots: Sequence[bytes],
                claim: tuple[bytes, bytes] | None = None) -> bytes:
    """``encode({"v": 1, "day": day, "ag": audit_gen, "e": eph, "c": ciphertext, "k": slots})``, with ``"p":
    {"statement", "sig"}`` added when ``claim`` is given (an ``audit.key`` event's signed statement).

    Written straight into the form ``_parse_exact`` reads when the values fit it (the bytes are the
    same as ``encode``'s); anything else goes through ``encode`` itself.
    """
    if claim is not None:
        return encode({"v": 1, "day": day, "ag": audit_gen, "e": eph, "c": ciphertext, "k": list(slots),
                       "p": {"statement": claim[0], "sig": claim[1]}})
    if (type(day) is int and type(audit_gen) is int and 0 <= day <= _INT64_MAX and 0 <= audit_gen <= _INT64_MAX
            and type(eph) is bytes and len(eph) == 32 and type(ciphertext) is bytes
            and len(ciphertext) <= 0xFFFFFFFF and len(slots) == 3):
        s0, s1, s2 = slots
        if (type(s0) is bytes and type(s1) is bytes and type(s2) is bytes
                and len(s0) == len(s1) == len(s2) == SLOT_BYTES):
            return b"".join((_BEFORE_C.pack(_LEAF_HEAD, audit_gen, _LEAF_C, len(ciphertext)), ciphertext,
                             _AFTER_C.pack(_LEAF_DAY, day, _LEAF_E, eph, _LEAF_K, _LEAF_SLOT, s0, _LEAF_SLOT, s1,
                                           _LEAF_SLOT, s2, _LEAF_TAIL)))
    return encode({"v": 1, "day": day, "ag": audit_gen, "e": eph, "c": ciphertext, "k": list(slots)})


def seal_event(event: Event, audit_gen: int, audit_public: bytes | None,
               member_publics: Sequence[bytes], sealer: Sealer | None = None,
               claim: tuple[bytes, bytes] | None = None) -> bytes:
    """The leaf bytes for ``event``: readable with the audit key and the given member keys; ``claim``: the
    signed audit-key statement and signature an ``audit.key`` event carries in clear (session 23)."""
    if len(member_publics) > 2:
        raise ValueError("at most two member slots")
    if (audit_public is None) != (audit_gen == 0):
        raise ValueError("audit generation 0 means no audit key")
    sealer = sealer if sealer is not None else Sealer()
    day = event.time // DAY
    # encode({"e": event, "pad": zeros}) without encoding twice: the pad is the last field,
    # so the unpadded form ends with its 4-byte length, which we overwrite.
    unpadded = _body_bytes(event)
    if unpadded is None:
        unpadded = encode({"e": event.to_value(), "pad": b""})
    # Every common event fits MIN_BODY, so sizes do not tell logins from reads.
    pad = max(MIN_BODY - len(unpadded), (-len(unpadded)) % PAD)
    body = unpadded[:-4] + struct.pack(">I", pad) + bytes(pad)
    publics: list[bytes | None] = [audit_public, *member_publics]
    publics += [None] * (3 - len(publics))
    ciphertext, slots = sealer.seal(event_ad(day, audit_gen), body, publics)
    return _leaf_bytes(day, audit_gen, sealer.public, ciphertext, slots, claim)


class Opener:
    """Opens leaves with one X25519 key pair; one scalar multiplication per ephemeral key seen."""

    def __init__(self, box_public: bytes, box_secret: bytes) -> None:
        self.public = box_public
        self._opener = sealing.Opener(box_public, box_secret)

    def open(self, leaf: Leaf, slots: Sequence[int]) -> Event:
        """The event, if one of ``slots`` is ours. ``DecryptionFailed`` if none opens."""
        return self.open_with_key(leaf, slots)[0]

    def open_with_key(self, leaf: Leaf, slots: Sequence[int]) -> tuple[Event, bytes]:
        """The event and the key of its body (``vault.sealing.Opener.open_with_key``)."""
        key, plaintext = self._opener.open_with_key(leaf.eph, event_ad(leaf.day, leaf.audit_gen), leaf.ciphertext,
                                                    leaf.slots, slots)
        try:
            body = Fields(decode(plaintext), "audit body", {"e", "pad"})
            event = Event.from_value(body.raw["e"])
        except EncodingError as e:
            raise IntegrityError(f"audit event body is malformed: {e}") from e
        if event.time // DAY != leaf.day:
            raise IntegrityError("audit event time does not match its leaf's day")
        return event, key


def open_leaf(leaf: Leaf, box_public: bytes, box_secret: bytes, slots: Sequence[int]) -> Event:
    """Open ``leaf`` with one X25519 key pair, trying the given slots. ``DecryptionFailed`` if none opens."""
    return Opener(box_public, box_secret).open(leaf, slots)


# -- signed statements -----------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    raw: bytes
    org: str
    size: int
    root: bytes
    time: int

    @classmethod
    def build(cls, org: str, size: int, root: bytes, time: int) -> Checkpoint:
        raw = encode({"org": org, "size": size, "root": root, "time": time})
        return cls(raw, org, size, root, time)

    @classmethod
    def parse(cls, raw: bytes) -> Checkpoint:
        try:
            f = Fields(decode(raw), "checkpoint", {"org", "size", "root", "time"})
            return cls(raw, f.str_("org", 64), f.int_("size", 0), f.bytes_("root", 32), f.int_("time", 0))
        except EncodingError as e:
            raise IntegrityError(f"malformed checkpoint: {e}") from e

    def sign(self, log_secret: bytes) -> bytes:
        return sign_checkpoint(log_secret, self.raw)

    def verify(self, log_public: bytes, sig: bytes) -> None:
        verify_checkpoint(log_public, self.raw, sig)


def cosign_statement(checkpoint_raw: bytes, member: str, device: str, time: int) -> bytes:
    """What a Security Team device signs to cosign a checkpoint: the checkpoint, who, and when."""
    return encode({"checkpoint": checkpoint_raw, "member": member, "device": device, "time": time})


@dataclass(frozen=True)
class Statement:
    """A device-signed statement for the audit log: an audit key or an attestation."""

    raw: bytes
    fields: Fields

    @classmethod
    def parse(cls, raw: bytes, what: str, allowed: set[str]) -> Statement:
        if len(raw) > 8192:
            raise EncodingError(f"{what} is too large")
        return cls(raw, Fields(decode(raw), what, allowed))


AUDIT_KEY_FIELDS = {"org", "team", "gen", "pub", "time", "member", "device"}


def audit_key_statement(org: str, team: str, gen: int, pub: bytes, time: int, member: str, device: str) -> bytes:
    return encode({"org": org, "team": team, "gen": gen, "pub": pub, "time": time, "member": member,
                   "device": device})
