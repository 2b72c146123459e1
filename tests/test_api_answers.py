"""Answers written from the Structs of ``vault/wire/schemas.py`` (``server/http.py`` ``answer``) are byte for
byte the JSON the server wrote from dictionaries before: one answer of each shape (flat, bytes, a float, null,
an unset field left out, nested objects, a map, a list of objects, a tagged object, an error), each beside
the dictionary the handler built before, both through ``web.json_response``."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest
from aiohttp import web

from server.http import answer, error_response
from vault.wire import schemas as s

ID, ID2, HASH = "a" * 32, "b" * 32, "c" * 64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


CASES: list[tuple[str, msgspec.Struct, dict[str, Any]]] = [
    ("flat", s.Health(status="ok", version="1.2"), {"status": "ok", "version": "1.2"}),
    ("null", s.Info(version="1", org_root=None, time=17), {"version": "1", "org_root": None, "time": 17}),
    ("bytes and a float", s.Challenge(nonce=bytes(range(32)), expires=1700000060.25),
     {"nonce": b64(bytes(range(32))), "expires": 1700000060.25}),
    ("bytes or null", s.SlotPayload(payload=None), {"payload": None}),
    ("a list of bytes", s.Links(links=[b"\x00\xff", b"x" * 100]), {"links": [b64(b"\x00\xff"), b64(b"x" * 100)]}),
    ("nested, a map, an unset field left out",
     s.DirectoryView(org=s.OrgHead(seq=3, head=HASH, root=HASH),
                     members={ID: s.MemberHead(seq=2, head=HASH, name="alice")},
                     teams={ID: s.TeamHead(name="t", seq=4, head=HASH, removed_at=None),
                            ID2: s.TeamHead(name="u", seq=2, removed_at=2)}),
     {"org": {"seq": 3, "head": HASH, "root": HASH},
      "members": {ID: {"seq": 2, "head": HASH, "name": "alice"}},
      "teams": {ID: {"name": "t", "seq": 4, "head": HASH, "removed_at": None},
                ID2: {"name": "u", "seq": 2, "removed_at": 2}}}),
    ("a list of objects",
     s.Leaves(leaves=[s.Leaf(index=0, hash=b"h", leaf=b"l"), s.Leaf(index=1, hash=b"i", leaf=None)]),
     {"leaves": [{"index": 0, "hash": b64(b"h"), "leaf": b64(b"l")}, {"index": 1, "hash": b64(b"i"), "leaf": None}]}),
    ("tagged objects in a page",
     s.MessagePage(thread=s.Thread(thread=ID, record=b"r", next_pos=2, last_time=5, count=1),
                   messages=[s.MessageItem(thread=ID, pos=1, record=b"m")], more=False,
                   mine=s.LastSent(seq=1, id=ID2, time=5)),
     {"thread": {"thread": ID, "record": b64(b"r"), "next_pos": 2, "last_time": 5, "count": 1},
      "messages": [{"type": "msg", "thread": ID, "pos": 1, "record": b64(b"m")}], "more": False,
      "mine": {"seq": 1, "id": ID2, "time": 5}}),
    ("nested or null", s.CheckpointAnswer(checkpoint=b"c", sig=b"s", proof=[], witness=s.Witnessed(
        checkpoint=b"w", sig=b"t", proof=[b"p"], cosigs=[s.Cosignature(member=ID, device=ID2, sig=b"q", time=9)]),
        log_key=b"k"),
     {"checkpoint": b64(b"c"), "sig": b64(b"s"), "proof": [], "witness": {
         "checkpoint": b64(b"w"), "sig": b64(b"t"), "proof": [b64(b"p")],
         "cosigs": [{"member": ID, "device": ID2, "sig": b64(b"q"), "time": 9}]}, "log_key": b64(b"k"),
      "witness_note": None, "witness_note_proof": []}),
    ("a boolean", s.Ok(ok=True), {"ok": True}),
]


@pytest.mark.parametrize(("label", "value", "before"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("status", [200, 201])
def test_an_answer_from_its_struct_is_the_same_bytes(label: str, value: msgspec.Struct, before: dict[str, Any],
                                                     status: int) -> None:
    new, old = answer(value, status), web.json_response(before, status=status)
    assert new.body == old.body, label
    assert (new.status, new.content_type, new.charset) == (old.status, old.content_type, old.charset)


def test_an_error_is_the_same_bytes() -> None:
    new = error_response(404, "not_found", "no such thread in this team")
    old = web.json_response({"error": "not_found", "message": "no such thread in this team"}, status=404)
    assert (new.status, new.body) == (old.status, old.body)
