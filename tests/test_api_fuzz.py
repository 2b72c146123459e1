"""An OpenAPI fuzzer against the real server: schemathesis generates requests for every operation of the
document ``server/openapi.py`` serves (built from ``vault/wire``) and checks every answer: no 500, a status the
operation declares, the declared content type, a body that matches the declared schema.

The server is a real one (``ServerThread``, as the ``server`` fixture starts it) with a founded organization:
alice (the founder, admin and NCC) and her team "drafting". Operations that need a session are called with
alice's token. Path parameters are the fuzzer's own (random ids: mostly the 404 and 400 paths) for about half
the cases, and alice's real team, member id and a real thread otherwise, so that the checks behind the lookups
(bodies, links, signatures) are reached too.

Bounded in ``make test`` (15 examples per operation, derandomized: the same cases every run, about a minute);
``MVAULT_LONG=<examples> make test-long`` runs a tenth of that number per operation (500 for the default 5000).
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

LONG = int(os.environ.get("MVAULT_LONG", "0") or 0)
EXAMPLES = max(LONG // 10, 15) if LONG else 15  # per operation: make test-long's 5000 gives 500
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(OPENAPI)


@dataclass
class Target:
    server: ServerThread
    token: str
    ids: dict[str, str]  # path parameter -> a real value (team, member, thread)
    http: requests.Session


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
            yield Target(server, asyncio.run(token()), {"team": team, "member": member_id, "thread": thread}, http)
    finally:
        server.stop()


@pytest.mark.long
@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: schemathesis.Case[Any], target: Target) -> None:
    params = case.path_parameters or {}
    for name, value in params.items():
        # About half the cases keep the fuzzer's random id; the others name something that exists.
        if name in target.ids and isinstance(value, str) and value[:1] in "01234567":
            params[name] = target.ids[name]
    headers = {"Authorization": f"Bearer {target.token}"} if case.operation.definition.raw.get("security") != [] \
        else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        case.call_and_validate(base_url=target.server.url, session=target.http, headers=headers, checks=CHECKS,
                               verify=False, timeout=30)


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
