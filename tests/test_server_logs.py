"""The server's log (server/logs.py) from the real ``mvault-server run``: with ``--log-format json`` every line is one
JSON object (time, level, logger, message, fields); at info level the start (version, address, data directory,
backend) and the stop are there, and after a walk-through (join, invite, team, put, get, thread) no id of a
member, device, team, document, version or thread, no name and no peer address; at debug each request is
logged with its route template and peer."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.logs import HidePeers
from tests.conftest import Member
from tests.helpers.org_ids import named_ids, org_ids
from tests.helpers.server_process import ServerProcess, start_server

KEYS = {"time", "level", "logger", "message", "fields"}


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict) and set(record) >= KEYS, line
        assert isinstance(record["fields"], dict), line
        out.append(record)
    return out


def _walkthrough(server: ServerProcess, make_member: Any, tmp_path: Path) -> None:
    alice, bob = make_member("alice"), make_member("bob")
    alice.ok("join", server.invite, "--name", "alice")
    bob.ok("join", alice.json("invite")["invite"], "--name", "bob")
    alice.ok("team", "create", "drafting", "--kind", "program")
    alice.ok("team", "add", "drafting", "bob", "--role", "writer")
    plan = tmp_path / "plan.md"
    plan.write_text("the plan\n")
    alice.ok("put", "drafting", str(plan))
    bob.ok("get", "drafting", "plan.md", "-o", str(tmp_path / "copy.md"))
    alice.ok("thread", "create", "drafting", "weekly")
    bob.ok("thread", "post", "drafting", "weekly", "see the plan")
    bob.fails("get", "drafting", "no-such.md", "-o", str(tmp_path / "none.md"))
    assert isinstance(alice, Member)


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    s = start_server(tmp_path / "data", "--log-format", "json", *request.param)
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("served", [("--log-level", "info")], indirect=True)
def test_info_log_is_json_and_names_nobody(served: ServerProcess, make_member: Any, tmp_path: Path) -> None:
    _walkthrough(served, make_member, tmp_path)
    assert served.stop() == 0
    text = served.log_text()
    records = _lines(text)
    assert {r["level"] for r in records} <= {"info", "warning", "error"}
    started = [r for r in records if r["message"] == "started"]
    assert len(started) == 1, text
    assert set(started[0]["fields"]) == {"version", "listen", "data_dir", "backend"}
    assert started[0]["fields"]["listen"] == f"127.0.0.1:{served.port}"
    assert started[0]["fields"]["data_dir"] == str(served.data) and started[0]["fields"]["backend"] == "sqlite"
    assert records[-1]["message"] == "stopped", text
    ids = org_ids(served.data)
    assert len(ids) >= 8
    assert named_ids(text, ids) == [], text
    for name in ("alice", "bob", "drafting", "plan.md", "weekly"):
        assert name not in text
    rest = "\n".join(json.dumps(r) for r in records if r["message"] != "started")
    assert "127.0.0.1" not in rest  # no peer address at info


@pytest.mark.parametrize("served", [("--log-level", "debug")], indirect=True)
def test_debug_log_has_each_request_with_its_route(served: ServerProcess, make_member: Any) -> None:
    alice = make_member("alice")
    alice.ok("join", served.invite, "--name", "alice")
    assert served.stop() == 0
    requests = [r for r in _lines(served.log_text()) if r["message"] == "request"]
    routes = {r["fields"]["route"] for r in requests}
    assert {"/api/v1/found", "/api/v1/info"} <= routes, routes
    assert all(r["level"] == "debug" and r["logger"] == "mvault.access" for r in requests)
    assert all({"method", "route", "path", "status", "seconds", "peer"} <= set(r["fields"]) for r in requests)
    assert {r["fields"]["peer"] for r in requests} == {"127.0.0.1"}


def test_the_text_format_and_a_clean_stop(tmp_path: Path) -> None:
    s = start_server(tmp_path / "data")
    assert s.stop() == 0
    lines = s.log_text().splitlines()
    assert any(" INFO mvault.server: started version=" in line and " backend=sqlite" in line for line in lines)
    assert lines[-1].endswith("INFO mvault.server: stopped"), lines


def test_aiohttp_error_records_leave_the_peer_out() -> None:
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
                               ("203.0.113.7",), None)
    assert HidePeers().filter(record)
    assert "203.0.113.7" not in record.getMessage() and "a peer" in record.getMessage()
    other = logging.LogRecord("aiohttp.web", logging.ERROR, __file__, 1, "%s failed from %s: %s",
                              ("x", "10.0.0.1", "y"), None)
    assert HidePeers().filter(other)
    assert other.getMessage() == "x failed from a peer (its address: at debug level): y"
