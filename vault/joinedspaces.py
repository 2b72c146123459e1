"""The record of the coalition spaces a member joined as a guest, sealed to the member's own PUK and carried in
the member's own chain (review round 15's open finding; docs/format.md "Joined spaces record", docs/lifecycle.md
section 2 "Every device knows the spaces joined").

A space is joined on one device (``mvault coalition join CODE``); ``mvault device revoke`` from another device of
the member must still carry the revocation to that space's host. So each join and leave appends a
``member.spaces`` link to the member's own chain whose body holds the whole record, sealed (an anonymous sealed
box, ``vault.crypto.primitives.seal``) to the PUK generation current at that link: every current device of the
member opens it, and neither server reads it. The link is signed by the member's device and lies in the chain
every device pins, so the member's server cannot alter the record, hide it behind an older one or serve an older
one to a device that saw the newer (a rollback of the chain is refused by the pins, as for any chain); what it can
still do is serve a device that never saw the link a chain that stops before it (the chain's freshness, as for
every chain: docs/lifecycle.md names the residue).

The sealed payload is the canonical encoding of ``{"v": 1, "member", "puk_gen", "spaces": [{"space", "code"}...],
"pad"}``: each space's team id and the join code it was joined with (``client.guestspace.JoinCode``: the host's
server, its transport pin, the host's root, the space and the prefix of its chain vouched for), ordered by space
id, padded with zero bytes to a multiple of ``PAD`` bytes (the box's size says how many spaces only in steps).
The opener checks it is bound to the member and to the generation the link names.
"""

from __future__ import annotations

import re
from typing import Final

from vault.crypto import primitives as p
from vault.encoding import Fields, Value, decode, encode
from vault.errors import DecryptionFailed, EncodingError, IntegrityError
from vault.keys import PukKeys

LINK_TYPE: Final = "member.spaces"
MAX_SPACES: Final = 64
MAX_CODE: Final = 8192  # one join code's characters (its pins list is bounded: client/guestspace.py MAX_PINS)
MAX_BOX: Final = 128 * 1024
PAD: Final = 1024
_FIELDS: Final = {"v", "member", "puk_gen", "spaces", "pad"}
_SPACE_ID: Final = re.compile(r"[0-9a-f]{32}")  # a team id (review round 18: an id names files beside the home)


def seal_spaces(member_id: str, puk: PukKeys, codes: dict[str, str]) -> bytes:
    """The box of the record ``codes`` (space id -> join code) for ``member_id``, sealed to ``puk``."""
    if len(codes) > MAX_SPACES:
        raise EncodingError(f"at most {MAX_SPACES} joined coalition spaces are recorded")
    if not all(_SPACE_ID.fullmatch(s) for s in codes):
        raise EncodingError("a joined coalition space's id is not a team id (32 hex digits)")
    spaces: list[Value] = [{"space": s, "code": codes[s]} for s in sorted(codes)]
    bare = len(encode({"v": 1, "member": member_id, "puk_gen": puk.generation, "spaces": spaces, "pad": b""}))
    pad = b"\0" * (-bare % PAD)  # lengths are fixed-width (4 bytes): the payload is then a multiple of PAD
    payload = encode({"v": 1, "member": member_id, "puk_gen": puk.generation, "spaces": spaces, "pad": pad})
    box = p.seal(puk.box_public, payload)
    if len(box) > MAX_BOX:
        raise EncodingError("the record of joined coalition spaces is too large")
    return box


def open_spaces(box: bytes, puk: PukKeys, member_id: str) -> dict[str, str]:
    """The record in ``box`` (space id -> join code), checked bound to ``member_id`` and ``puk``'s generation, each
    space id a team id (32 lowercase hex digits); anything else is ``IntegrityError``. (The caller checks that each
    join code names the space it is filed under: client/joinedspaces.py.)"""
    try:
        f = Fields(decode(puk.open_sealed(box)), "joined spaces record", _FIELDS)
        if f.int_("v") != 1:
            raise EncodingError("unknown version of the joined spaces record")
        bound = (f.str_("member", 64), f.int_("puk_gen", 1))
        f.bytes_("pad", max_size=PAD)
        out: dict[str, str] = {}
        for item in f.list_("spaces", MAX_SPACES):
            g = Fields(item, "joined space", {"space", "code"})
            space = g.str_("space", 64)
            if not _SPACE_ID.fullmatch(space):
                raise EncodingError("joined spaces record: a space id that is not a team id (32 hex digits)")
            if space in out or (out and space < max(out)):
                raise EncodingError("joined spaces record: spaces not in strictly increasing order")
            out[space] = g.str_("code", MAX_CODE)
    except (DecryptionFailed, EncodingError) as e:
        raise IntegrityError(f"the record of your joined coalition spaces does not open: {e}") from e
    if bound != (member_id, puk.generation):
        raise IntegrityError("the record of your joined coalition spaces is bound to another member or member key")
    return out


def parse_body(body: Fields) -> tuple[int, bytes]:
    """A ``member.spaces`` link's body: ``{"puk_gen", "box"}``."""
    return body.int_("puk_gen", 1), body.bytes_("box", max_size=MAX_BOX)
