"""Device keys and per-member keys (PUK).

A device has two independent secrets: an Ed25519 signing seed and an X25519 box seed.
Keys are never derived across purposes. A member's PUK generation is one 32-byte seed
from which the member's signing, box and secretbox subkeys are derived (keyed BLAKE2b with
a label); the seed is sealed to each of the member's devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, decode, encode
from vault.errors import EncodingError


def short_id(label: bytes, data: bytes) -> str:
    """A 128-bit identifier as 32 lowercase hex characters."""
    return p.tagged_hash(label, data)[:16].hex()


def device_id_for(sign_public: bytes) -> str:
    return short_id(labels.H_DEVICE_ID, sign_public)


@dataclass(frozen=True)
class DeviceKeys:
    """A device's two seeds. Derived keys are computed once per object (``cached_property``):
    the seeds are in memory anyway, and deriving a key pair for every signature or id doubled
    the cost of signing."""

    sign_seed: bytes
    box_seed: bytes

    @classmethod
    def generate(cls) -> DeviceKeys:
        return cls(p.random_bytes(32), p.random_bytes(32))

    @cached_property
    def _sign_pair(self) -> tuple[bytes, bytes]:
        return p.sign_keypair(self.sign_seed)

    @cached_property
    def _box_pair(self) -> tuple[bytes, bytes]:
        return p.box_keypair(self.box_seed)

    @property
    def sign_public(self) -> bytes:
        return self._sign_pair[0]

    @property
    def box_public(self) -> bytes:
        return self._box_pair[0]

    @cached_property
    def device_id(self) -> str:
        return device_id_for(self.sign_public)

    @classmethod
    def from_paper(cls, secret: bytes) -> DeviceKeys:
        """A paper (recovery) device: both seeds derived from the printed secret."""
        return cls(p.kdf(secret, labels.KDF_PAPER_SIGN), p.kdf(secret, labels.KDF_PAPER_BOX))

    def sign(self, tag: bytes, message: bytes) -> bytes:
        return p.sign(self._sign_pair[1], tag, message)

    def open_sealed(self, box: bytes) -> bytes:
        pk, sk = self._box_pair
        return p.seal_open(pk, sk, box)


def verify(public: bytes, tag: bytes, message: bytes, signature: bytes) -> None:
    """Verify a domain-tagged signature; raises ``BadSignature``."""
    p.verify(public, tag, message, signature)


def seal_to(box_public: bytes, message: bytes) -> bytes:
    return p.seal(box_public, message)


def key_fingerprint(member_id: str, devices: list[tuple[str, bytes]], puk_sign_public: bytes) -> bytes:
    """What a member's identity is today: member id, active device keys, current PUK."""
    return p.tagged_hash(
        labels.H_KEYS,
        encode({"member": member_id, "devices": sorted([d, k] for d, k in devices), "puk": puk_sign_public}),
    )


def safety_number(a: tuple[str, bytes], b: tuple[str, bytes]) -> str:
    """Twelve groups of five digits that two members compare in person (order-independent)."""
    first, second = sorted([a, b])
    digest = p.tagged_hash(labels.H_SAFETY, encode([list(first), list(second)]))
    digits = "".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))
    digest2 = p.tagged_hash(labels.H_SAFETY, digest)
    digits += "".join(f"{int.from_bytes(digest2[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def link_slot(secret: bytes) -> str:
    """The server-side mailbox id of a one-time device-link code."""
    return p.kdf(secret, labels.KDF_LINK_SLOT, 16).hex()


def seal_link_payload(secret: bytes, payload: bytes) -> bytes:
    return p.aead_seal(p.kdf(secret, labels.KDF_LINK_KEY), labels.AD_DEVICE_LINK, payload)


def open_link_payload(secret: bytes, blob: bytes) -> bytes:
    return p.aead_open(p.kdf(secret, labels.KDF_LINK_KEY), labels.AD_DEVICE_LINK, blob)


@dataclass(frozen=True)
class PukKeys:
    """One generation of a per-member key."""

    generation: int
    seed: bytes

    @classmethod
    def generate(cls, generation: int) -> PukKeys:
        return cls(generation, p.random_bytes(32))

    @cached_property
    def sign_public(self) -> bytes:
        return p.sign_keypair(p.kdf(self.seed, labels.KDF_PUK_SIGN))[0]

    @property
    def box_public(self) -> bytes:
        return self.box_keypair[0]

    @cached_property
    def box_keypair(self) -> tuple[bytes, bytes]:
        return p.box_keypair(p.kdf(self.seed, labels.KDF_PUK_BOX))

    def open_sealed(self, box: bytes) -> bytes:
        pk, sk = self.box_keypair
        return p.seal_open(pk, sk, box)

    def seal_for_device(self, member_id: str, device_box_public: bytes) -> bytes:
        """The PUK seed sealed to one device, bound to member and generation."""
        payload = encode({"member": member_id, "gen": self.generation, "seed": self.seed})
        return p.seal(device_box_public, payload)

    def seal_previous(self, previous: PukKeys) -> bytes:
        """The previous generation's seed under this one (so new devices can read history)."""
        ad = labels.AD_PUK_PREV + b"\x00" + encode({"gen": previous.generation})
        return p.aead_seal(p.kdf(self.seed, labels.KDF_PUK_SECRETBOX), ad, previous.seed)

    def open_previous(self, blob: bytes) -> PukKeys:
        gen = self.generation - 1
        ad = labels.AD_PUK_PREV + b"\x00" + encode({"gen": gen})
        return PukKeys(gen, p.aead_open(p.kdf(self.seed, labels.KDF_PUK_SECRETBOX), ad, blob))

    @classmethod
    def open_device_box(cls, device: DeviceKeys, member_id: str, generation: int, box: bytes) -> PukKeys:
        f = Fields(decode(device.open_sealed(box)), "PUK box", {"member", "gen", "seed"})
        if f.str_("member") != member_id or f.int_("gen") != generation:
            raise EncodingError("PUK box is bound to another member or generation")
        return cls(generation, f.bytes_("seed", 32))
