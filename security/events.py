"""Audit events, the sealed leaves of the log, checkpoints and the statements around them.

An event is what happened (actor, device, action, resource ids, result, time, rules).
A leaf is what the Merkle tree hashes and every member may fetch::

    leaf = encode({"v": 1, "day": unix_day, "ag": audit_gen, "c": AEAD(k, body), "k": [slot0, slot1, slot2]})

``k`` is a fresh 32-byte key per event; ``slot0`` seals it to the Security Team's audit
key of generation ``ag`` (random bytes while no audit key exists: ``ag == 0``), ``slot1``
and ``slot2`` to the actor's and the subject's member keys (random bytes when there is
none), so a member reads events about itself and nobody else reads anything. All slots
have the same length and are indistinguishable. The body is padded to a multiple of
128 bytes. The AEAD's associated data binds ``day`` and ``ag``.

A checkpoint ``encode({"org", "size", "root", "time"})`` is signed by the server's log
key; a Security Team member's cosignature signs the same bytes under another tag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from security.merkle import leaf_hash
from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError, IntegrityError

DAY = 86400
SLOT_BYTES = 32 + 48  # a sealed 32-byte key
PAD = 128
MAX_LEAF = 16 * 1024
RESULTS = ("ok", "denied", "failed")

# Every action the server records, and the security-protocol rules it concerns.
ACTION_RULES: dict[str, tuple[str, ...]] = {
    "auth.login": ("dormant-devices", "failed-logins"),
    "auth.fail": ("failed-logins",),
    "auth.lockout": ("failed-logins",),
    "org.create": ("two-person",),
    "org.invite": ("offboarding",),
    "org.join": ("need-to-know",),
    "org.admit": ("need-to-know",),
    "org.role": ("role-terms", "two-person"),
    "org.remove": ("offboarding",),
    "org.protocols.propose": ("two-person",),
    "org.protocols.approve": ("two-person",),
    "member.create": ("key-verification",),
    "device.add": ("key-verification", "dormant-devices"),
    "device.revoke": ("offboarding", "lost-device", "rotate-on-removal"),
    "team.create": ("admin-count",),
    "team.add": ("need-to-know", "admin-count", "pending-shares"),
    "team.share": ("pending-shares",),
    "team.remove": ("offboarding", "rotate-on-removal"),
    "team.leave": ("rotate-on-removal",),
    "team.role": ("admin-count", "role-terms"),
    "team.rotate": ("rotate-on-removal",),
    "doc.write": ("rotate-on-removal",),
    "doc.read": ("need-to-know", "bulk-access"),
    "doc.list": ("need-to-know",),
    "keys.team": ("need-to-know",),
    "keys.member": (),
    "audit.read": ("log-integrity",),
    "audit.cosign": ("log-integrity",),
    "audit.key": ("log-integrity",),
    "audit.prune": ("log-integrity",),
    "audit.export": ("exports",),
    "attest.keystore": ("keystore-kdf",),
    "attest.verify": ("key-verification",),
    "attest.approve": ("two-person",),
    "attest.lost": ("lost-device",),
    "request.denied": ("need-to-know", "bulk-access"),
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
    ciphertext: bytes
    slots: tuple[bytes, ...]

    @property
    def hash(self) -> bytes:
        return leaf_hash(self.raw)

    @classmethod
    def parse(cls, raw: bytes) -> Leaf:
        if len(raw) > MAX_LEAF:
            raise IntegrityError("audit leaf is too large")
        try:
            f = Fields(decode(raw), "audit leaf", {"v", "day", "ag", "c", "k"})
            if f.int_("v") != 1:
                raise EncodingError("unknown audit leaf version")
            slots = f.list_("k", 3)
            if len(slots) != 3 or not all(isinstance(s, bytes) and len(s) == SLOT_BYTES for s in slots):
                raise EncodingError("an audit leaf has three key slots")
            leaf = cls(raw, f.int_("day", 0), f.int_("ag", 0), f.bytes_("c", max_size=MAX_LEAF),
                       tuple(bytes(s) for s in slots if isinstance(s, bytes)))
        except EncodingError as e:
            raise IntegrityError(f"malformed audit leaf: {e}") from e
        return leaf


def _ad(day: int, audit_gen: int) -> bytes:
    return labels.AD_AUDIT_EVENT + b"\x00" + encode({"day": day, "ag": audit_gen})


def seal_event(event: Event, audit_gen: int, audit_public: bytes | None,
               member_publics: Sequence[bytes]) -> bytes:
    """The leaf bytes for ``event``: readable with the audit key and the given member keys."""
    if len(member_publics) > 2:
        raise ValueError("at most two member slots")
    if (audit_public is None) != (audit_gen == 0):
        raise ValueError("audit generation 0 means no audit key")
    day = event.time // DAY
    key = p.random_bytes(32)
    body: dict[str, Value] = {"e": event.to_value(), "pad": b""}
    pad = (-len(encode(body))) % PAD
    body["pad"] = bytes(pad)
    ciphertext = p.aead_seal(key, _ad(day, audit_gen), encode(body))
    publics: list[bytes | None] = [audit_public, *member_publics]
    publics += [None] * (3 - len(publics))
    slots = [p.seal(pk, key) if pk is not None else p.random_bytes(SLOT_BYTES) for pk in publics]
    return encode({"v": 1, "day": day, "ag": audit_gen, "c": ciphertext, "k": slots})


def open_leaf(leaf: Leaf, box_public: bytes, box_secret: bytes, slots: Sequence[int]) -> Event:
    """Open ``leaf`` with one X25519 key pair, trying the given slots. ``DecryptionFailed`` if none opens."""
    for i in slots:
        try:
            key = p.seal_open(box_public, box_secret, leaf.slots[i])
        except DecryptionFailed:
            continue
        if len(key) != 32:
            continue
        try:
            body = Fields(decode(p.aead_open(key, _ad(leaf.day, leaf.audit_gen), leaf.ciphertext)), "audit body",
                          {"e", "pad"})
            event = Event.from_value(body.raw["e"])
        except EncodingError as e:
            raise IntegrityError(f"audit event body is malformed: {e}") from e
        if event.time // DAY != leaf.day:
            raise IntegrityError("audit event time does not match its leaf's day")
        return event
    raise DecryptionFailed("this key opens no slot of the audit event")


def audit_keypair(team_seed: bytes) -> tuple[bytes, bytes]:
    """The Security Team's audit key pair for one generation of its team key."""
    return p.box_keypair(p.kdf(team_seed, labels.KDF_AUDIT_SEAL))


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
        return p.sign(log_secret, labels.SIG_CHECKPOINT, self.raw)

    def verify(self, log_public: bytes, sig: bytes) -> None:
        p.verify(log_public, labels.SIG_CHECKPOINT, self.raw, sig)

    def verify_cosig(self, device_public: bytes, sig: bytes) -> None:
        p.verify(device_public, labels.SIG_COSIGN, self.raw, sig)


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
