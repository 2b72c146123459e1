"""An OpenAPI fuzzer against the real server: schemathesis generates requests for every operation of the
document ``server/openapi.py`` serves (built from ``vault/wire``) and checks every answer: no 500, a status the
operation declares, the declared content type, a body that matches the declared schema.

The server is a real one (``ServerThread``, as the ``server`` fixture starts it) with a founded organization:
alice (the founder, admin and NCC) and her team "drafting". Operations that need a session are called with
alice's token. Path parameters are the fuzzer's own (random ids: mostly the 404 and 400 paths) for about half
the cases, and alice's real team, member id and a real thread otherwise, so that the checks behind the lookups
(bodies, links, signatures) are reached too.

Every operation that needs a session is fuzzed a second time without one (no ``Authorization`` header, or a
token the server never issued): every answer is a declared 401. Afterwards every operation has been called, the
server still answers, and the members' data is intact: alice and bob read, through the real CLI, the document
and the thread messages they stored before the fuzzing, and bob's audit checkpoint still verifies.

Bounded in ``make test`` (15 examples per operation with a session, 5 without, derandomized: the same cases every
run, about a minute and a half); ``MVAULT_LONG=<examples> make test-long`` runs a tenth of that number per
operation (500 for the default 5000).
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from urllib3.exceptions import InsecureRequestWarning

from client.home import Home
from server.openapi import OPENAPI
from tests.conftest import PASSPHRASE, Member, ServerThread
from tests.helpers.http import Http, login_as, refused
from vault.wire.operations import OPERATIONS

LONG = int(os.environ.get("MVAULT_LONG", "0") or 0)
EXAMPLES = max(LONG // 10, 15) if LONG else 15  # per operation: make test-long's 5000 gives 500
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(OPENAPI)
# The operations that need a session, fuzzed again without one.
unauthenticated = schema.include(operation_id=sorted(op.name for op in OPERATIONS if op.auth))
UNAUTH_EXAMPLES = max(LONG // 50, 5) if LONG else 5
DOC_TEXT = b"the plan, before the fuzzer\n" * 100
MSG_TEXT = "meeting moved to thursday, before the fuzzer"


@dataclass
class Target:
    server: ServerThread
    token: str
    ids: dict[str, str]  # path parameter -> a real value (team, member, thread)
    http: requests.Session
    members: dict[str, Member]
    root: Path
    called: set[str]  # operation ids the fuzzer called (with a session / without)
    called_unauth: set[str]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("fuzz")
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    server = ServerThread(root / "server-data").start()
    try:
        alice = Member(root / "home-alice", "alice", pf)
        assert server.invite is not None
        alice.ok("join", server.invite, "--name", "alice")
        team = alice.json("team", "create", "drafting", "--kind", "program")["team"]
        thread = alice.json("thread", "create", "drafting", "plans")["thread"]
        # What must survive the fuzzing: a document and messages of two members.
        bob = Member(root / "home-bob", "bob", pf)
        bob.ok("join", alice.json("invite")["invite"], "--name", "bob")
        alice.ok("team", "add", "drafting", "bob", "--role", "writer")
        (root / "plan.txt").write_bytes(DOC_TEXT)
        alice.ok("put", "drafting", str(root / "plan.txt"))
        alice.ok("thread", "post", "drafting", "plans", MSG_TEXT)
        bob.ok("thread", "post", "drafting", "plans", "bob: " + MSG_TEXT)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MVAULT_PASSPHRASE_FILE", str(pf))
            mp.delenv("MVAULT_SESSION", raising=False)
            home = Home(Path(alice.home))
            member_id, device = home.config().member_id, home.unlock().device

        async def token() -> str:
            async with Http(server) as h:
                return await login_as(h, member_id, device)

        with requests.Session() as http:
            http.verify = False  # the server's certificate is self-signed; it is the loopback server just started
            yield Target(server, asyncio.run(token()), {"team": team, "member": member_id, "thread": thread}, http,
                         {"alice": alice, "bob": bob}, root, set(), set())
    finally:
        server.stop()


def _real_ids(case: schemathesis.Case[Any], target: Target) -> None:
    """About half the cases keep the fuzzer's random ids; the others name something that exists."""
    params = case.path_parameters or {}
    for name, value in params.items():
        if name in target.ids and isinstance(value, str) and value[:1] in "01234567":
            params[name] = target.ids[name]


def _call(case: schemathesis.Case[Any], target: Target, headers: dict[str, str]) -> Response:
    """The case sent to the fuzzed server with ``headers``, its answer checked (``CHECKS``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        return case.call_and_validate(base_url=target.server.url, session=target.http, headers=headers, checks=CHECKS,
                                      verify=False, timeout=30)


@pytest.mark.long
@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: schemathesis.Case[Any], target: Target) -> None:
    _real_ids(case, target)
    headers = {"Authorization": f"Bearer {target.token}"} if case.operation.definition.raw.get("security") != [] \
        else {}
    _call(case, target, headers)
    target.called.add(case.operation.definition.raw["operationId"])


@pytest.mark.long
@unauthenticated.parametrize()
@settings(max_examples=UNAUTH_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_without_a_session_every_operation_answers_401(case: schemathesis.Case[Any], target: Target) -> None:
    _real_ids(case, target)
    for headers in ({}, {"Authorization": "Bearer " + "ab" * 32}, {"Authorization": "Basic YWxpY2U6YWxpY2U="}):
        response = _call(case, target, headers)
        assert response.status_code == 401, (case.operation.label, headers, response.status_code, response.text)
    target.called_unauth.add(case.operation.definition.raw["operationId"])


# -- what the fuzzer found: statuses the document did not declare -----------------------------------------------


def documented(method: str, path: str, status: str) -> bool:
    return status in OPENAPI["paths"][path][method]["responses"]


async def test_a_bad_after_on_a_member_or_team_chain(target: Target) -> None:
    """``?after=`` is checked on the member and team chains as on the organization chain: a 400, now declared."""
    async with Http(target.server) as h:
        for path, concrete in (("/api/v1/chains/member/{member}", f"/api/v1/chains/member/{target.ids['member']}"),
                               ("/api/v1/chains/team/{team}", f"/api/v1/chains/team/{target.ids['team']}")):
            for after in ("1000000000000", "-1", "x"):
                await refused(h, "GET", f"{concrete}?after={after}", 400, contains="after must be",
                              token=target.token)
            assert documented("get", path, "400"), path


async def test_live_without_a_websocket_upgrade(target: Target) -> None:
    """A plain GET of the live route (no upgrade) is refused with 400, now declared."""
    async with Http(target.server) as h:
        await refused(h, "GET", f"/api/v1/teams/{target.ids['team']}/live", 400, contains="websocket",
                      token=target.token)
    assert documented("get", "/api/v1/teams/{team}/live", "400")


# -- after the fuzzing (this module's last test): every operation ran, and nothing was harmed ------------------


def test_after_the_fuzzing_every_operation_ran_and_the_members_data_is_intact(target: Target) -> None:
    everything = {op.name for op in OPERATIONS}
    assert target.called == everything, f"never fuzzed with a session: {sorted(everything - target.called)}"
    needing = {op.name for op in OPERATIONS if op.auth}
    assert target.called_unauth == needing, f"never fuzzed without one: {sorted(needing - target.called_unauth)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        alive = target.http.get(target.server.url + "/api/health", verify=False, timeout=30)
    assert alive.status_code == 200, alive.text
    for name, member in target.members.items():
        out = target.root / f"plan-{name}.txt"
        got = member.json("get", "drafting", "plan.txt", "-o", str(out))
        assert [g["version"] for g in got] == [1] and out.read_bytes() == DOC_TEXT, got
        texts = [m["text"] for m in member.json("thread", "read", "drafting", "plans")]
        assert texts == [MSG_TEXT, "bob: " + MSG_TEXT], texts
        assert member.json("status")["warnings"] == [], name
