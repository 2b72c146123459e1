"""Valid samples of every decoder's input and the Hypothesis strategies that mutate them, for the
decoder property tests (``tests/test_properties_*.py``).
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from security.events import SLOT_BYTES, Event, seal_event
from vault.crypto import primitives as crypto
from vault.encoding import MAX_DEPTH, encode
from vault.envelope import (
    DocWriter,
    Record,
    pad_metadata,
)
from vault.invite import InviteCode
from vault.keys import DeviceKeys, PukKeys
from vault.keystore import (
    MINIMUM,
    new_salt,
    new_session_secret,
    seal_keystore,
    seal_session,
)
from vault.links import invite_public, make_link
from vault.teamkeys import TeamKey

# No example database: runs leave nothing behind in the working tree.
PROPS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=300, deadline=None, database=None)


# -- valid samples to mutate ------------------------------------------------------------------------

_DEVICE = DeviceKeys.generate()
_PUK = PukKeys.generate(1)
_INVITE = b"\x07" * 32
LINKS = [
    make_link(chain=None, seq=1, prev=None, time=5, signer="m" * 32, device=_DEVICE, type_="member.create",
              body={"name": "alice", "puk": {"gen": 1, "box_pk": _PUK.box_public}}).wire,
    make_link(chain="o" * 32, seq=7, prev=b"\x01" * 32, time=9, signer="m" * 32, device=_DEVICE,
              type_="org.join", body={"invite": invite_public(_INVITE), "member_head": b"\x02" * 32},
              invite_secret=_INVITE).wire,
    make_link(chain="m" * 32, seq=2, prev=b"\x03" * 32, time=11, signer="m" * 32, device=_DEVICE, type_="device.add",
              body={"device": {"id": "d" * 32, "sign_pk": b"\x04" * 32, "box_pk": b"\x05" * 32, "name": "phone",
                               "kind": "device"},
                    "puk_gen": 1, "puk_boxes": [{"device": "d" * 32, "hash": b"\x06" * 32}],
                    "proof": b"\x07" * 64}).wire,
    make_link(chain="t" * 32, seq=5, prev=b"\x08" * 32, time=12, signer="m" * 32, device=_DEVICE, type_="team.rotate",
              body={"org_seq": 3, "key": {"gen": 2, "canary": b"\x09" * 32, "prev": b"\x0a" * 72,
                                          "boxes": [{"member": "m" * 32, "puk_gen": 1, "hash": b"\x0b" * 32}]}}).wire,
]

_KEY = TeamKey.generate("t" * 32, 3)


def _record(size: int) -> Record:
    w = DocWriter(key=_KEY, team_seq=4, device=_DEVICE, author="a" * 32, doc="d" * 32, seq=2, parent="p" * 32,
                  time=1, name="notes.md", size=size)
    w.upload_prefix()
    w.encrypt(b"x" * size)
    w.finish()
    assert w.record is not None
    return w.record


RECORDS = [_record(0).raw, _record(300).raw]
CORES = [Record.parse(r).core.raw for r in RECORDS]
METAS = [pad_metadata({"name": "a", "size": 0}), pad_metadata({"name": "é" * 200, "size": 2**40, "mime": "x/y"})]

INVITES = [
    InviteCode("https://vault.example.org:8443", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32).encode(),
    InviteCode("https://127.0.0.1:1", b"\x04" * 32, None, b"\x05" * 32).encode(),
]

_KS_KEY = b"\x09" * 32
KEYSTORES = [seal_keystore({"device": b"\x00" * 64, "member": "m"}, _KS_KEY, new_salt(), MINIMUM)]
_SESSION_SECRET = new_session_secret()
SESSIONS = [seal_session(_KS_KEY, _SESSION_SECRET, expires=10**10)]

_AUDIT_PK = crypto.box_keypair(b"\x0a" * 32)[0]
_MEMBER_PK = crypto.box_keypair(b"\x0b" * 32)[0]
_SLOTS = [b"\x0c" * SLOT_BYTES] * 3
LEAVES = [
    seal_event(Event(86400 * 3 + 5, "a" * 32, "d" * 32, "doc.read", "ok", {"doc": "x" * 32}, ("need-to-know",)),
               1, _AUDIT_PK, [_MEMBER_PK]),
    seal_event(Event(0, "", "", "auth.fail", "denied"), 0, None, []),
    seal_event(Event(2**40, "b" * 32, "e" * 32, "msg.post", "ok", detail={"text": "y" * 2000}), 7, _AUDIT_PK,
               [_MEMBER_PK, _MEMBER_PK]),
    # Canonical encodings that are not leaves, one check each, for mutations to start from.
    encode({"v": 1, "day": -1, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": -1, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": 2, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": True, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 31, "c": b"", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": "text", "k": _SLOTS}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS[:2]}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": [*_SLOTS[:2], b"\x0c" * 71]}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b"", "k": _SLOTS, "x": None}),
    encode({"v": 1, "day": 0, "ag": 0, "e": b"\x01" * 32, "c": b""}),
]


# -- strategies -------------------------------------------------------------------------------------

_OPS = ("flip", "set", "insert", "delete", "truncate", "append", "splice", "length")


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    """A valid encoding with one to four random edits (guaranteed to differ from it)."""
    base = draw(st.sampled_from(bases))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(_OPS))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "splice":
            other = draw(st.sampled_from(bases))
            i, j = draw(st.integers(0, len(data))), draw(st.integers(0, len(other)))
            data = data[:i] + other[j:]
        elif op == "length" and len(data) >= 5:
            # Overwrite what may be a length or count with a boundary value.
            i = draw(st.integers(0, len(data) - 4))
            n = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, len(data), len(data) + 1]))
            data[i : i + 4] = struct.pack(">I", n)
    assume(bytes(data) != base)
    return bytes(data)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
encoded_values = values.map(lambda v: encode(v) if _depth(v) <= MAX_DEPTH else encode(None))


def _depth(v: Any) -> int:
    if isinstance(v, list | tuple):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


def same(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1 or a tuple with a list."""
    if type(a) is not type(b):
        return isinstance(a, list | tuple) and isinstance(b, list | tuple) and same(list(a), list(b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)
