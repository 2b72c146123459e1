"""A roster export (issue 18, rule ``no-master-lists``): the organization's member list in one file, readable only by
the members it names (docs/format.md "Roster export").

The exporter's device signs a *record* before anything is written::

    record = encode({"org", "member", "device", "time", "readers": [member ids, sorted, distinct], "sealed": H})
    sig    = Ed25519(device, "mvault/v1/roster-export" || 0x00 || record)

and the server logs it (the audit event ``roster.export``, sealed to the Security Team) before the client writes::

    file   = encode({"v": 1, "record": record, "sig": sig, "boxes": [box_i], "body": body})
    box_i  = SealedBox(PUK box key of readers[i], encode({"org", "reader": readers[i], "key": k}))
    body   = nonce || XChaCha20-Poly1305(k, nonce, "mvault/v1/roster" || 0x00 || encode({"org", "readers"}), roster)
    H      = SHA-256(encode([boxes, body]))

``k`` is a fresh 32-byte key. The record names every reader (the Security Team's members among them) and commits to
the sealed part, so a reader who checks the record's signature knows who else can read the file, and a file whose
boxes or body were changed, or that names other readers than its record, is refused.

Pure: the caller supplies the readers' public keys, the device keys and the check of the signer's device key."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError, IntegrityError
from vault.keys import DeviceKeys, PukKeys

VERSION = 1
MAX_READERS = 64  # far above any protocol's limit: a record naming more is malformed, not merely in violation
RECORD_FIELDS = {"org", "member", "device", "time", "readers", "sealed"}


@dataclass(frozen=True)
class RosterRecord:
    """What the exporter's device signed: who exported, when, and every member the file is sealed to."""

    raw: bytes
    org: str
    member: str
    device: str
    time: int
    readers: tuple[str, ...]
    sealed: bytes  # SHA-256 of the sealed part (boxes and body)

    @classmethod
    def parse(cls, raw: bytes) -> RosterRecord:
        if len(raw) > 8192:
            raise EncodingError("roster export record is too large")
        f = Fields(decode(raw), "roster export record", RECORD_FIELDS)
        readers = f.list_("readers", MAX_READERS)
        if not readers or not all(isinstance(r, str) and 0 < len(r) <= 64 for r in readers):
            raise EncodingError("roster export record: readers must be one to 64 member ids")
        names = tuple(str(r) for r in readers)
        if list(names) != sorted(set(names)):
            raise EncodingError("roster export record: readers must be sorted and distinct")
        return cls(raw, f.str_("org", 64), f.str_("member", 64), f.str_("device", 64), f.int_("time", 0), names,
                   f.bytes_("sealed", 32))


def record_bytes(org: str, member: str, device: str, time: int, readers: Sequence[str], sealed: bytes) -> bytes:
    return encode({"org": org, "member": member, "device": device, "time": time,
                   "readers": sorted(set(readers)), "sealed": sealed})


def sign_record(device: DeviceKeys, raw: bytes) -> bytes:
    return device.sign(labels.SIG_ROSTER, raw)


def verify_record(sign_public: bytes, raw: bytes, sig: bytes) -> None:
    """Raises ``BadSignature`` unless ``sig`` is the device's signature of the roster export record."""
    p.verify(sign_public, labels.SIG_ROSTER, raw, sig)


@dataclass(frozen=True)
class SealedRoster:
    """The sealed part of a roster export, before its record is signed."""

    boxes: tuple[bytes, ...]
    body: bytes

    @property
    def digest(self) -> bytes:
        return p.sha256(encode([list(self.boxes), self.body]))


def _body_ad(org: str, readers: Sequence[str]) -> bytes:
    return labels.AD_ROSTER + b"\x00" + encode({"org": org, "readers": list(readers)})


def seal(org: str, roster: Value, readers: Mapping[str, bytes]) -> SealedRoster:
    """``roster`` sealed to ``readers`` (member id -> the PUK box public key of that member's current generation)."""
    if not readers or len(readers) > MAX_READERS:
        raise EncodingError(f"a roster export names one to {MAX_READERS} readers")
    order = sorted(readers)
    key = p.random_bytes(32)
    boxes = tuple(p.seal(readers[r], encode({"org": org, "reader": r, "key": key})) for r in order)
    return SealedRoster(boxes, p.aead_seal(key, _body_ad(org, order), encode(roster)))


def file_bytes(raw: bytes, sig: bytes, sealed: SealedRoster) -> bytes:
    return encode({"v": VERSION, "record": raw, "sig": sig, "boxes": list(sealed.boxes), "body": sealed.body})


@dataclass(frozen=True)
class RosterFile:
    record: RosterRecord
    sig: bytes
    sealed: SealedRoster


def parse_file(data: bytes) -> RosterFile:
    """The parts of a roster export file, its record parsed and the record's commitment to the sealed part checked
    (``IntegrityError`` for a file whose boxes or body are not those its record names). The signature is the
    caller's to check (``open_roster``)."""
    try:
        f = Fields(decode(data), "roster export file", {"v", "record", "sig", "boxes", "body"})
        if f.int_("v") != VERSION:
            raise EncodingError(f"roster export file version {f.int_('v')} is not {VERSION}")
        record = RosterRecord.parse(f.bytes_("record"))
        boxes = f.list_("boxes", MAX_READERS)
        if not all(isinstance(b, bytes) for b in boxes):
            raise EncodingError("roster export file: boxes must be bytes")
        sealed = SealedRoster(tuple(b for b in boxes if isinstance(b, bytes)), f.bytes_("body"))
        sig = f.bytes_("sig", 64)
    except EncodingError as e:
        raise IntegrityError(f"not a roster export file: {e}") from e
    if len(sealed.boxes) != len(record.readers) or not p.equal(sealed.digest, record.sealed):
        raise IntegrityError("the roster export file's sealed part is not the one its signed record names")
    return RosterFile(record, sig, sealed)


def open_roster(data: bytes, me: str, puks: Sequence[PukKeys],
                check_signer: Callable[[RosterRecord, bytes], None]) -> tuple[RosterRecord, Value]:
    """The record and the roster of a roster export file, for member ``me`` holding ``puks`` (newest first).

    ``check_signer(record, sig)`` raises unless the record was signed by a device its member held and was entitled
    to export with (the client judges it against the chains). ``DecryptionFailed`` when ``me`` is not a reader or
    no key of ``me`` opens its box."""
    found = parse_file(data)
    record = found.record
    check_signer(record, found.sig)
    if me not in record.readers:
        raise DecryptionFailed(f"this roster export is not sealed to you (its readers: {len(record.readers)} members)")
    box = found.sealed.boxes[record.readers.index(me)]
    for puk in puks:
        try:
            f = Fields(decode(puk.open_sealed(box)), "roster export key box", {"org", "reader", "key"})
        except (DecryptionFailed, EncodingError):
            continue
        if f.str_("org", 64) != record.org or f.str_("reader", 64) != me:
            raise IntegrityError("the roster export's key box names another organization or reader")
        key = f.bytes_("key", 32)
        return record, decode(p.aead_open(key, _body_ad(record.org, record.readers), found.sealed.body))
    raise DecryptionFailed("no member key of yours opens this roster export's key box")
