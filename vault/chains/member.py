"""The member chain: a member's devices and per-member key (PUK) generations.

Transitions: ``member.create`` (first device, PUK generation 1, self-signed), ``device.add`` (another
device or a paper key, cosigned by the new device's key), ``device.revoke`` (the PUK rolls to a new
generation sealed to the remaining devices), ``member.spaces`` (the record of the coalition spaces the member
joined as a guest, sealed to the current PUK: vault/joinedspaces.py; it changes no device or key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vault.chains.common import check_name, member_id_for
from vault.encoding import Fields, Value
from vault.errors import ChainError, EncodingError
from vault.joinedspaces import LINK_TYPE as SPACES_LINK
from vault.joinedspaces import parse_body as spaces_body
from vault.keys import device_id_for
from vault.links import Link, check_no_cosignature, check_sequence, verify_device_proof, verify_link_signature


@dataclass
class Device:
    device_id: str
    sign_public: bytes
    box_public: bytes
    name: str
    kind: str  # "device" | "paper"
    added: int
    revoked: int | None = None  # time of the revocation link
    revoked_by: str | None = None  # the device that signed it (a cut device revoking itself answers no cut)
    added_by: str | None = None  # the device that signed its device.add (None: member.create)
    added_seq: int = 1  # the member chain seq of that link

    def active_at(self, t: int) -> bool:
        return self.added <= t and (self.revoked is None or t < self.revoked)


@dataclass
class PukGeneration:
    gen: int
    sign_public: bytes
    box_public: bytes
    since: int
    box_hashes: dict[str, bytes]  # device id -> hash of the PUK box sealed to it
    prev: bytes | None  # the previous generation's seed, encrypted under this one


@dataclass
class MemberState:
    member_id: str
    name: str
    devices: dict[str, Device]
    puks: dict[int, PukGeneration]
    root: bytes
    seq: int
    head: bytes
    time: int
    # device -> (seq, hash) of the last link of this chain it signed (what an org.device.cut records)
    last_signed: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    hashes: list[bytes] = field(default_factory=list)  # each link's hash, in chain order (a cut's ``last`` names one)
    spaces: tuple[int, int, bytes] | None = None  # the last member.spaces link: (seq, puk_gen, sealed record)

    @property
    def puk_gen(self) -> int:
        return max(self.puks)

    @property
    def puk_box_public(self) -> bytes:
        return self.puks[self.puk_gen].box_public

    @property
    def puk_sign_public(self) -> bytes:
        return self.puks[self.puk_gen].sign_public

    @property
    def puk_box_hashes(self) -> dict[str, bytes]:
        return self.puks[self.puk_gen].box_hashes

    def puk_gen_at(self, t: int) -> int:
        return max(g for g, pg in self.puks.items() if pg.since <= t or g == 1)

    def puk_gens_at(self, t: int) -> set[int]:
        """PUK generations current at second ``t``: the one before it, and every roll made in that very second.

        Times come from different chains' signers, so a link dated in the same second as a
        PUK roll may have been made with either key; all are accepted for that second (two
        device revocations in one second rolled twice: the rotation after the first, boxed to
        the middle generation, is valid too).
        """
        before = max(g for g, pg in self.puks.items() if pg.since < t or g == 1)
        return {before, self.puk_gen_at(t)} | {g for g, pg in self.puks.items() if pg.since == t}

    def active_devices(self) -> list[Device]:
        return [d for d in self.devices.values() if d.revoked is None]

    def device(self, device_id: str) -> Device:
        """An active device (for new actions: logins, new links)."""
        d = self.devices.get(device_id)
        if d is None or d.revoked is not None:
            raise ChainError(f"device {device_id} is not an active device of member {self.member_id}")
        return d

    def device_at(self, device_id: str, t: int) -> Device:
        """The device as it was at time ``t`` (to verify what it signed back then)."""
        d = self.devices.get(device_id)
        if d is None or not d.active_at(t):
            raise ChainError(f"device {device_id} was not an active device of member {self.member_id} then")
        return d

    @classmethod
    def create(cls, link: Link) -> MemberState:
        if link.type != "member.create" or link.seq != 1 or link.prev is not None or link.chain:
            raise ChainError("a member chain must start with member.create")
        check_no_cosignature(link)
        try:
            b = link.body
            device = _device(b.dict_("device", {"id", "sign_pk", "box_pk", "name", "kind"}), link.time)
            if link.device != device.device_id or device.kind != "device":
                raise ChainError("member.create must be signed by the device it introduces")
            member_id = member_id_for(device.sign_public)
            if link.signer != member_id:
                raise ChainError("member.create signer is not the member its key defines")
            puk = b.dict_("puk", {"gen", "sign_pk", "box_pk"})
            if puk.int_("gen") != 1:
                raise ChainError("first PUK generation must be 1")
            boxes = _hashes(b.list_("puk_boxes", 64), "device")
            if set(boxes) != {device.device_id}:
                raise ChainError("member.create must box the PUK to exactly its device")
            state = cls(
                member_id=member_id,
                name=check_name(b.str_("name"), "member name"),
                devices={device.device_id: device},
                puks={1: PukGeneration(1, puk.bytes_("sign_pk", 32), puk.bytes_("box_pk", 32), link.time, boxes,
                                       None)},
                root=link.hash,
                seq=1,
                head=link.hash,
                time=link.time,
                last_signed={device.device_id: (1, link.hash)},
                hashes=[link.hash],
            )
        except EncodingError as e:
            raise ChainError(f"malformed member.create: {e}") from e
        verify_link_signature(link, device.sign_public)
        return state

    def apply(self, link: Link) -> None:
        check_sequence(link, self.member_id, self.seq, self.head, self.time)
        if link.signer != self.member_id:
            raise ChainError("a member chain link must be signed by the member")
        verify_link_signature(link, self.device(link.device).sign_public)
        try:
            if link.type == "device.add":
                self._device_add(link)
            elif link.type == "device.revoke":
                self._device_revoke(link)
            elif link.type == SPACES_LINK:
                gen, box = spaces_body(link.body)
                if set(link.body.raw) != {"puk_gen", "box"} or gen != self.puk_gen:
                    raise ChainError("member.spaces must seal its record to the current member key, and say only that")
                self.spaces = (link.seq, gen, box)
            else:
                raise ChainError(f"unsupported member link type {link.type!r}")
        except EncodingError as e:
            raise ChainError(f"malformed {link.type}: {e}") from e
        self.seq, self.head, self.time = link.seq, link.hash, link.time
        self.last_signed[link.device] = (link.seq, link.hash)
        self.hashes.append(link.hash)

    def _device_add(self, link: Link) -> None:
        new = _device(link.body.dict_("device", {"id", "sign_pk", "box_pk", "name", "kind"}), link.time)
        if new.device_id in self.devices:
            raise ChainError("device is already known (a revoked device cannot come back)")
        if any(d.name == new.name for d in self.active_devices()):
            raise ChainError(f"a device named {new.name!r} already exists")
        verify_device_proof(self.member_id, new.device_id, new.sign_public, new.box_public,
                            link.body.bytes_("proof", 64))
        boxes = _hashes(link.body.list_("puk_boxes", 1), "device")
        if set(boxes) != {new.device_id} or link.body.int_("puk_gen") != self.puk_gen:
            raise ChainError("device.add must box the current PUK to exactly the new device")
        new.added_by, new.added_seq = link.device, link.seq
        self.devices[new.device_id] = new
        self.puks[self.puk_gen].box_hashes.update(boxes)

    def _device_revoke(self, link: Link) -> None:
        b = link.body
        target = self.device(b.str_("device", 64))
        remaining = {d.device_id for d in self.active_devices()} - {target.device_id}
        if not remaining:
            raise ChainError("cannot revoke the last device (use a recovery key first)")
        puk = b.dict_("puk", {"gen", "sign_pk", "box_pk"})
        gen = puk.int_("gen")
        if gen != self.puk_gen + 1:
            raise ChainError("device.revoke must roll the PUK to the next generation")
        boxes = _hashes(b.list_("puk_boxes", 64), "device")
        if set(boxes) != remaining:
            raise ChainError("the new PUK must be boxed to exactly the remaining devices")
        prev = b.bytes_("prev", 24 + 32 + 16)
        target.revoked, target.revoked_by = link.time, link.device
        self.puks[gen] = PukGeneration(gen, puk.bytes_("sign_pk", 32), puk.bytes_("box_pk", 32), link.time, boxes,
                                       prev)


def _device(d: Fields, t: int) -> Device:
    sign_pk = d.bytes_("sign_pk", 32)
    kind = d.str_("kind", 16)
    if kind not in ("device", "paper"):
        raise ChainError(f"unknown device kind {kind!r}")
    device = Device(device_id_for(sign_pk), sign_pk, d.bytes_("box_pk", 32), check_name(d.str_("name"), "device name"),
                    kind, t)
    if d.str_("id") != device.device_id:
        raise ChainError("a device id does not match its key")
    return device


def _hashes(items: Iterable[Value], key: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in items:
        f = Fields(item, "box commitment", {key, "hash"})
        k = f.str_(key, 64)
        if k in out:
            raise ChainError("duplicate box commitment")
        out[k] = f.bytes_("hash", 32)
    return out


def replay_member(links: list[Link]) -> MemberState:
    if not links:
        raise ChainError("empty member chain")
    state = MemberState.create(links[0])
    for link in links[1:]:
        state.apply(link)
    return state


def verify_signer(link: Link, members: Mapping[str, MemberState]) -> MemberState:
    """Check a link's signature with the signer's device as it was at the link's time."""
    ms = members.get(link.signer)
    if ms is None:
        raise ChainError(f"link signed by unknown member {link.signer}")
    verify_link_signature(link, ms.device_at(link.device, link.time).sign_public)
    return ms
