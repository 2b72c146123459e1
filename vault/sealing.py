"""Multi-recipient sealing: one body, readable by any of a few X25519 keys (the audit log's events).

A body is sealed under a fresh 32-byte key ``k`` (XChaCha20-Poly1305, the caller's associated data).
Each recipient gets a *slot* that wraps ``k``::

    slot_i = nonce || AEAD(KDF(X25519(eph_sk, pk_i), eph_pk || pk_i), nonce, AD_AUDIT_SLOT, k)

``eph`` is the sealer's ephemeral X25519 key pair: it lives in memory only, and lets the sealer derive
each recipient's slot key once rather than per body (a sealed box per slot would cost two scalar
multiplications per body per recipient). A slot without a recipient, or for a key no one can hold (a
low-order point), is random bytes of the same length, so slots are indistinguishable.

``security/events.py`` lays the leaf out around these parts (docs/format.md, "Audit log").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import encode
from vault.errors import DecryptionFailed

KEY_BYTES = 32
NONCE_BYTES = p.AEAD_NONCE_BYTES
SLOT_BYTES = NONCE_BYTES + KEY_BYTES + p.AEAD_TAG_BYTES  # nonce || a wrapped 32-byte key || tag


@lru_cache(maxsize=256, typed=True)
def event_ad(day: int, audit_gen: int) -> bytes:
    """The associated data of an audit event body (a few days and generations are live at once: cached)."""
    return labels.AD_AUDIT_EVENT + b"\x00" + encode({"day": day, "ag": audit_gen})


def _slot_key(shared: bytes, eph_public: bytes, recipient_public: bytes) -> bytes:
    return p.kdf(shared, labels.KDF_AUDIT_SLOT + b"\x00" + eph_public + recipient_public)


def _aead_seal(key: bytes, nonce: bytes, ad: bytes, plaintext: bytes) -> bytes:
    """``p.aead_seal`` with a nonce the caller drew at random (one draw serves a whole body)."""
    return nonce + p.aead_encrypt(key, nonce, ad, plaintext)


class Sealer:
    """The sealer's ephemeral key for slots, with one derived slot key per recipient."""

    MAX_USES = 100_000

    def __init__(self) -> None:
        self.public, self._secret = p.box_keypair(p.random_bytes(32))
        self._keys: dict[bytes, bytes] = {}
        self._uses = 0

    def slot_key(self, recipient_public: bytes) -> bytes:
        """The key that wraps a body key for ``recipient_public``; ``DecryptionFailed`` for a low-order point."""
        key = self._keys.get(recipient_public)
        if key is None:
            key = _slot_key(p.box_shared(recipient_public, self._secret), self.public, recipient_public)
            self._keys[recipient_public] = key
        return key

    def used(self) -> Sealer:
        """This sealer, or a fresh one once it has sealed ``MAX_USES`` bodies."""
        self._uses += 1
        return self if self._uses <= self.MAX_USES else Sealer()

    def _wrap(self, recipient: bytes | None, key: bytes, fresh: bytes) -> bytes:
        """One slot from ``SLOT_BYTES`` fresh random bytes: the nonce of a slot wrapping ``key`` for
        ``recipient``, or the whole slot for no recipient or a key no one can hold (a low-order point)."""
        if recipient is not None:
            try:
                slot_key = self.slot_key(recipient)
            except DecryptionFailed:
                return fresh
            return _aead_seal(slot_key, fresh[:NONCE_BYTES], labels.AD_AUDIT_SLOT, key)
        return fresh

    def seal(self, ad: bytes, body: bytes, recipients: Sequence[bytes | None]) -> tuple[bytes, list[bytes]]:
        """``(ciphertext, slots)``: ``nonce || AEAD(k, nonce, ad, body)`` under a fresh key ``k``, and one
        slot per entry of ``recipients`` (None: a random slot), in order."""
        # One draw for the body: its key, its nonce, then a slot's worth for each slot.
        fresh = p.random_bytes(KEY_BYTES + NONCE_BYTES + len(recipients) * SLOT_BYTES)
        key = fresh[:KEY_BYTES]
        ciphertext = _aead_seal(key, fresh[KEY_BYTES : KEY_BYTES + NONCE_BYTES], ad, body)
        at = KEY_BYTES + NONCE_BYTES
        slots = [self._wrap(pk, key, fresh[at + i * SLOT_BYTES : at + (i + 1) * SLOT_BYTES])
                 for i, pk in enumerate(recipients)]
        return ciphertext, slots


class Opener:
    """Opens sealed bodies with one X25519 key pair; one scalar multiplication per ephemeral key seen."""

    def __init__(self, box_public: bytes, box_secret: bytes) -> None:
        self.public = box_public
        self._secret = box_secret
        self._keys: dict[bytes, bytes | None] = {}

    def _key(self, eph: bytes) -> bytes | None:
        if eph not in self._keys:
            try:
                self._keys[eph] = _slot_key(p.box_shared(eph, self._secret), eph, self.public)
            except DecryptionFailed:
                self._keys[eph] = None
        return self._keys[eph]

    def open(self, eph: bytes, ad: bytes, ciphertext: bytes, slots: Sequence[bytes], tries: Sequence[int]) -> bytes:
        """The body, through the first slot among ``slots[i] for i in tries`` that is ours.

        ``DecryptionFailed`` if ``eph`` is invalid, if no tried slot opens, or if the body itself does not
        (a slot that opens is the sealer's word for this body: no further slot is tried)."""
        return self.open_with_key(eph, ad, ciphertext, slots, tries)[1]

    def open_with_key(self, eph: bytes, ad: bytes, ciphertext: bytes, slots: Sequence[bytes],
                      tries: Sequence[int]) -> tuple[bytes, bytes]:
        """``(k, body)``: ``open``, with the body's own key (it opens this body only: an evidence bundle
        hands it over so that anyone can check the body against the sealed leaf)."""
        slot_key = self._key(eph)
        if slot_key is None:
            raise DecryptionFailed("the leaf's ephemeral key is invalid")
        for i in tries:
            try:
                key = p.aead_open(slot_key, labels.AD_AUDIT_SLOT, slots[i])
            except DecryptionFailed:
                continue
            if len(key) != KEY_BYTES:
                continue
            return key, p.aead_open(key, ad, ciphertext)
        raise DecryptionFailed("this key opens no slot of the audit event")


def valid_box_public(public: bytes) -> bool:
    """Can anyone hold the secret of this X25519 key (not a low-order point)?"""
    try:
        p.box_shared(public, p.random_bytes(32))
    except DecryptionFailed:
        return False
    return True


def audit_keypair(team_seed: bytes) -> tuple[bytes, bytes]:
    """The Security Team's audit key pair for one generation of its team key."""
    return p.box_keypair(p.kdf(team_seed, labels.KDF_AUDIT_SEAL))
