"""The client reads every JSON answer through ``vault/wire`` (``client.api.decode``): an answer of the wrong
shape is a ``TransportError`` naming what is wrong, never a ``KeyError`` or a traceback further on."""

from __future__ import annotations

from typing import Any

import pytest

from client.api import decode
from vault.errors import TransportError
from vault.wire.schemas import CheckpointAnswer, LoginToken, MessagePage, Posted, TeamBoxes

ID = "ab" * 16


def test_a_well_formed_answer_arrives_typed_with_its_bytes_decoded() -> None:
    boxes = decode(b'{"boxes": [{"gen": 2, "box": "AAEC"}]}', TeamBoxes)
    assert isinstance(boxes, TeamBoxes) and boxes.boxes[0].gen == 2 and boxes.boxes[0].box == b"\x00\x01\x02"
    assert decode(b'{"id": "' + ID.encode() + b'", "pos": 3}', Posted) == Posted(ID, 3)


@pytest.mark.parametrize(("raw", "shape", "names"), [
    (b'{"token": 5, "expires": 1.0}', LoginToken, "$.token"),  # a field of the wrong type
    (b'{"expires": 1.0}', LoginToken, "token"),  # a missing field
    (b'{"token": "t", "expires": 1.0, "admin": true}', LoginToken, "admin"),  # a field no Struct declares
    (b'{"boxes": [{"gen": 1, "box": "not base64!"}]}', TeamBoxes, "$.boxes[0].box"),
    (b'{"id": "' + ID.encode() + b'", "pos": true}', Posted, "$.pos"),  # a bool is no position
    (b'{"id": "XYZ", "pos": 1}', Posted, "$.id"),  # not an id
    (b'{"checkpoint": "", "sig": "", "proof": [], "witness": {"checkpoint": ""}, "log_key": ""}', CheckpointAnswer,
     "$.witness"),
    (b'{"thread": {}, "messages": [], "more": false, "mine": null}', MessagePage, "$.thread"),
    (b'[]', Posted, "array"),
])
def test_a_malformed_answer_is_a_transport_error_naming_the_problem(raw: bytes, shape: type[Any], names: str) -> None:
    with pytest.raises(TransportError, match="^server sent a malformed answer: ") as e:
        decode(raw, shape)
    assert names in str(e.value)


@pytest.mark.parametrize("raw", [b"", b"<html>502</html>", b'{"token": "t"', b"\xff\xfe"])
def test_an_answer_that_is_not_json_is_a_transport_error(raw: bytes) -> None:
    with pytest.raises(TransportError, match="^server sent a malformed answer: not JSON$"):
        decode(raw, LoginToken)
    with pytest.raises(TransportError, match="^server sent a malformed answer: not JSON$"):
        decode(raw, None)
