"""Request bodies read by ``server/http.py`` ``read_body`` into the Structs of ``vault/wire/schemas.py``:
the rules that changed or had to be chosen when the hand checks went (docs/architecture.md, "How the
server and the client adopt the structures", point 4).

Base64 with excess padding (``"Baaa="``: a complete quantum followed by ``=``) is refused: msgspec reads
only canonical padded base64, where Python's ``b64decode(validate=True)`` accepted it. The real client
never sends it; the rule is the strict one, so one value has one spelling on the wire.
"""

from __future__ import annotations

import base64
import os

import pytest

from tests.conftest import ServerThread
from tests.helpers.http import Http, refused

JOIN_HEAD = "/api/v1/join/head"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def join_head_body(server: ServerThread, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {"invite": b64(os.urandom(32)), "time": int(server.clock()),
                               "proof": b64(os.urandom(64))}
    return {**body, **changes}


@pytest.mark.parametrize("excess", ["Baaa=", "BBB+==", "AAAAAAAA="])
async def test_base64_with_excess_padding_is_refused_naming_the_field(server: ServerThread, excess: str) -> None:
    # Python's strict decoder reads these (so the server did, and answered the invite's own refusal) ...
    assert base64.b64decode(excess, validate=True)
    async with Http(server) as h:
        # ... the Struct reader refuses them before anything is looked at.
        await refused(h, "POST", JOIN_HEAD, 400, contains="invite is not valid base64",
                      js=join_head_body(server, invite=excess))


async def test_a_refused_field_is_named(server: ServerThread) -> None:
    async with Http(server) as h:
        for body, words in ((join_head_body(server, time="1"), "'time'"),
                            (join_head_body(server, time=1.0), "'time'"),
                            (join_head_body(server, time=True), "'time'"),
                            (join_head_body(server, time=-1), "'time'"),
                            (join_head_body(server, proof="@@"), "proof is not valid base64"),
                            (join_head_body(server, invite=b64(bytes(49))), "'invite'"),
                            ({k: v for k, v in join_head_body(server).items() if k != "time"},
                             "request: missing field 'time'"),
                            (join_head_body(server, surprise=1), "request: unexpected field(s) ['surprise']")):
            assert (await refused(h, "POST", JOIN_HEAD, 400, contains=words, js=body))["error"] == "bad_encoding"


async def test_a_body_that_is_not_an_object_or_not_json(server: ServerThread) -> None:
    async with Http(server) as h:
        await refused(h, "POST", JOIN_HEAD, 400, contains="must be a JSON object", js=[1])
        await refused(h, "POST", JOIN_HEAD, 400, contains="not valid JSON", data=b"{")
        await refused(h, "POST", JOIN_HEAD, 400, contains="not valid JSON", data=b"\xff\xfe{")
