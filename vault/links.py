"""Signed, hash-linked chain links: the common envelope of member, org and team chains.

A link is the canonical encoding of::

    {"v": 1, "chain": str | None, "seq": int >= 1, "prev": bytes32 | None, "time": int,
     "signer": str, "device": str, "type": str, "body": dict}

signed by the signer's device key under the chain's domain tag. ``chain`` is None on the
first link (the chain's id is derived from it). Some links carry a second signature
``xsig`` by a one-time invite key (``SIG_INVITE``) over the same bytes. On the wire and
at rest a link is ``encode({"link": raw, "sig": sig, "xsig": sig | None})``; its hash is
``H(H_LINK || wire)``. We verify the exact stored bytes and never re-serialize.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.crypto import labels
from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import ChainError, EncodingError
from vault.keys import DeviceKeys

CHAIN_TAGS = {
    "member": labels.SIG_MEMBER_LINK,
    "org": labels.SIG_ORG_LINK,
    "team": labels.SIG_TEAM_LINK,
}
# Link type prefix -> the kind of chain it belongs to.
CHAIN_OF_TYPE = {"member": "member", "device": "member", "org": "org", "team": "team",
                 "export": "team",  # export approvals are team links (vault/chains/exports.py)
                 "coalition": "team"}
MAX_LINK_BYTES = 256 * 1024
_LINK_FIELDS = {"v", "chain", "seq", "prev", "time", "signer", "device", "type", "body"}


@dataclass(frozen=True)
class Link:
    """A parsed link. ``wire`` is the exact stored bytes; ``raw`` the signed bytes."""

    wire: bytes
    raw: bytes
    sig: bytes
    xsig: bytes | None
    chain: str | None
    seq: int
    prev: bytes | None
    time: int
    signer: str
    device: str
    type: str
    body: Fields

    @property
    def hash(self) -> bytes:
        return link_hash(self.wire)

    @property
    def kind(self) -> str:
        """The kind of chain this link belongs to: member, org or team."""
        return CHAIN_OF_TYPE[self.type.split(".", 1)[0]]


def link_hash(wire: bytes) -> bytes:
    """A link's hash (what the next link's ``prev`` and its audit event name), from its wire form."""
    return p.tagged_hash(labels.H_LINK, wire)


def parse_link(wire: bytes) -> Link:
    """Parse the wire form; raises ``EncodingError`` for anything malformed."""
    if not isinstance(wire, bytes) or len(wire) > MAX_LINK_BYTES:
        raise EncodingError("chain link is too large or not bytes")
    outer = Fields(decode(wire), "link", {"link", "sig", "xsig"})
    raw = outer.bytes_("link")
    sig = outer.bytes_("sig", p.SIG_BYTES)
    xsig = outer.opt_bytes("xsig", p.SIG_BYTES)
    f = Fields(decode(raw), "link body", _LINK_FIELDS)
    if f.int_("v") != 1:
        raise EncodingError("unsupported link version")
    type_ = f.str_("type", 64)
    if type_.split(".", 1)[0] not in CHAIN_OF_TYPE:
        raise EncodingError(f"unknown link type {type_!r}")
    return Link(
        wire=wire,
        raw=raw,
        sig=sig,
        xsig=xsig,
        chain=f.opt_str("chain", 64),
        seq=f.int_("seq", 1),
        prev=f.opt_bytes("prev", 32),
        time=f.int_("time", 0),
        signer=f.str_("signer", 64),
        device=f.str_("device", 64),
        type=type_,
        body=f.dict_("body"),
    )


def make_link(
    *,
    chain: str | None,
    seq: int,
    prev: bytes | None,
    time: int,
    signer: str,
    device: DeviceKeys,
    type_: str,
    body: dict[str, Any],
    invite_secret: bytes | None = None,
) -> Link:
    """Build and sign a link with ``device``; optionally cosign with an invite key."""
    raw = encode(
        {
            "v": 1,
            "chain": chain,
            "seq": seq,
            "prev": prev,
            "time": time,
            "signer": signer,
            "device": device.device_id,
            "type": type_,
            "body": body,
        }
    )
    tag = CHAIN_TAGS[CHAIN_OF_TYPE[type_.split(".", 1)[0]]]
    sig = device.sign(tag, raw)
    xsig = None
    if invite_secret is not None:
        seed = p.kdf(invite_secret, labels.KDF_INVITE_SIGN)
        xsig = p.sign(p.sign_keypair(seed)[1], labels.SIG_INVITE, raw)
    wire_value: dict[str, Value] = {"link": raw, "sig": sig, "xsig": xsig}
    return parse_link(encode(wire_value))


def verify_link_signature(link: Link, sign_public: bytes) -> None:
    p.verify(sign_public, CHAIN_TAGS[link.kind], link.raw, link.sig)


def verify_invite_signature(link: Link, invite_public: bytes) -> None:
    if link.xsig is None:
        raise ChainError(f"{link.type} link lacks the invite proof")
    p.verify(invite_public, labels.SIG_INVITE, link.raw, link.xsig)


def device_proof_statement(member_id: str, device_id: str, sign_public: bytes, box_public: bytes) -> bytes:
    return encode({"member": member_id, "device": device_id, "sign_pk": sign_public, "box_pk": box_public})


def sign_device_proof(device: DeviceKeys, member_id: str) -> bytes:
    """A new device's proof that it holds the keys a device.add link introduces."""
    statement = device_proof_statement(member_id, device.device_id, device.sign_public, device.box_public)
    return device.sign(labels.SIG_DEVICE_PROOF, statement)


def verify_device_proof(member_id: str, device_id: str, sign_public: bytes, box_public: bytes, sig: bytes) -> None:
    statement = device_proof_statement(member_id, device_id, sign_public, box_public)
    p.verify(sign_public, labels.SIG_DEVICE_PROOF, statement, sig)


def invite_holder_statement(org_root: bytes, time: int) -> bytes:
    return encode({"org_root": org_root, "time": time})


def sign_invite_holder(invite_secret: bytes, org_root: bytes, time: int) -> bytes:
    """Proof that the caller holds an invite: what a joiner shows to learn the organization chain's
    head (its length and hash are no stranger's business)."""
    seed = p.kdf(invite_secret, labels.KDF_INVITE_SIGN)
    return p.sign(p.sign_keypair(seed)[1], labels.SIG_INVITE_HOLDER, invite_holder_statement(org_root, time))


def verify_invite_holder(invite_public: bytes, org_root: bytes, time: int, sig: bytes) -> None:
    p.verify(invite_public, labels.SIG_INVITE_HOLDER, invite_holder_statement(org_root, time), sig)


def invite_public(invite_secret: bytes) -> bytes:
    """The public key of a one-time invite secret (what the org chain records)."""
    return p.sign_keypair(p.kdf(invite_secret, labels.KDF_INVITE_SIGN))[0]


def check_sequence(link: Link, chain_id: str | None, head_seq: int, head_hash: bytes | None,
                   head_time: int) -> None:
    """The structural rules every appended link obeys."""
    if link.seq != head_seq + 1:
        raise ChainError(f"link has sequence {link.seq}, expected {head_seq + 1}")
    if link.prev != head_hash:
        raise ChainError("link does not point at the current head (forked or reordered chain)")
    if link.chain != chain_id:
        raise ChainError("link belongs to another chain")
    if link.time < head_time:
        raise ChainError("link is dated before the previous link")
    check_no_cosignature(link)


INVITE_COSIGNED = ("org.create", "org.join")


def check_no_cosignature(link: Link) -> None:
    """Only invite-cosigned link types carry ``xsig``: anywhere else the slot would let whoever stores
    the link change its bytes (and hash) without breaking its signature."""
    if link.xsig is not None and link.type not in INVITE_COSIGNED:
        raise ChainError(f"a {link.type} link carries no invite signature")
