"""A coalition key's seed sealed to each NCC member's PUK (issue 20; docs/lifecycle.md section 2, "Every NCC member
holds the coalition key"), so any NCC member's device signs the organization's approvals, removals and expel
statements, not only the device that made the key.

The sealing is the team keys' (``vault.teamkeys.TeamKey.seal_for``): a sealed box to the member's PUK box key of
one generation, of the canonical encoding of ``{"name", "key", "member", "puk_gen", "seed"}``. The box travels in
an ``org.coalition.share`` link of the organization's own chain (``vault.chains.coalitionshare``); its recipient
checks, on opening, that it is bound to the name, key, member and PUK generation it was filed under and that the
seed's public key is the key the chain records, so a server that swaps, replays or forges a box gets nothing
signed with a key of its choosing.
"""

from __future__ import annotations

from vault.chains.coalition import CoalitionKey
from vault.crypto import primitives as p
from vault.encoding import Fields, decode, encode
from vault.errors import DecryptionFailed, EncodingError, IntegrityError
from vault.keys import PukKeys

_FIELDS = {"name", "key", "member", "puk_gen", "seed"}


def seal_coalition_seed(key: CoalitionKey, name: str, member_id: str, puk_gen: int, puk_box_public: bytes) -> bytes:
    """The box of ``key``'s seed for one NCC member (its PUK of generation ``puk_gen``)."""
    payload = encode({"name": name, "key": key.public, "member": member_id, "puk_gen": puk_gen, "seed": key.seed})
    return p.seal(puk_box_public, payload)


def open_coalition_box(box: bytes, puk: PukKeys, name: str, key: bytes, member_id: str) -> CoalitionKey:
    """The coalition key in ``box``, checked: bound to ``name``, ``key``, ``member_id`` and ``puk``'s generation, and
    its seed's public key is ``key`` (the one the organization's chain records). Anything else: ``IntegrityError``."""
    try:
        f = Fields(decode(puk.open_sealed(box)), "coalition key box", _FIELDS)
        bound = (f.str_("name", 64), f.bytes_("key", 32), f.str_("member", 64), f.int_("puk_gen", 1))
        found = CoalitionKey(f.bytes_("seed", 32))
    except (DecryptionFailed, EncodingError) as e:
        raise IntegrityError(f"coalition key box for {name!r} does not open: {e}") from e
    if bound != (name, key, member_id, puk.generation):
        raise IntegrityError(f"coalition key box for {name!r} is bound to another name, key, member or PUK")
    if not p.equal(found.public, key):
        raise IntegrityError(f"coalition key box for {name!r} holds another key than the one the chain records")
    return found
