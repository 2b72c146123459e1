"""``/api/metrics`` (server/metrics.py) on the real server: Prometheus text with the documented metric names after
a walk-through (join, team, put, get, thread post), no id or name of the organization in it; readable from
loopback (``metrics_loopback``, the default) or with the operator's token, refused (403) otherwise; limited like
every request without a session (429); live followers counted as they come and go."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MVAULT, Org, ServerThread
from tests.helpers.http import Http
from tests.helpers.org_ids import named_ids, org_ids

TOKEN = "operator-metrics-token-0123456789"


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(dict(s.labels), s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def _value(families: dict[str, list[tuple[dict[str, str], float]]], sample: str, **labels: str) -> float:
    name = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
    total = 0.0
    for family in (name, sample):
        for got, value in families.get(family, []):
            if all(got.get(k) == v for k, v in labels.items()):
                total += value
    return total


async def _scrape(server: ServerThread, token: str | None = None, source: str | None = None) -> tuple[int, object]:
    async with Http(server, source=source) as h:
        status, body = await h.call("GET", "/api/metrics", token=token)
        if status == 200:
            assert h.headers["Content-Type"].startswith("text/plain")
            return status, body.decode()
        return status, body


async def test_metrics_after_a_walkthrough_name_routes_not_ids(org: Org, tmp_path: Path) -> None:
    alice, bob = org.alice, org.bob
    text = tmp_path / "plan.md"
    text.write_bytes(b"the plan\n" * 1000)
    alice.ok("put", "drafting", str(text))
    bob.ok("get", "drafting", "plan.md", "-o", str(tmp_path / "copy.md"))
    alice.ok("thread", "create", "drafting", "weekly")
    bob.ok("thread", "post", "drafting", "weekly", "see the plan")
    status, body = await _scrape(org.server)
    assert status == 200, body
    assert isinstance(body, str)
    families = _families(body)
    for name in ("mvault_http_requests", "mvault_http_request_duration_seconds", "mvault_uploads",
                 "mvault_upload_bytes", "mvault_downloads", "mvault_download_bytes", "mvault_live_followers",
                 "mvault_audit_appends", "mvault_commit_batch_size", "mvault_live_relayed",
                 "mvault_live_relay_reads", "mvault_live_link_notices"):
        assert name in families, f"{name} missing from {sorted(families)}"
    assert _value(families, "mvault_uploads_total") >= 1
    assert _value(families, "mvault_upload_bytes_total") > 9000  # the envelope of 9000 bytes of text
    assert _value(families, "mvault_downloads_total") >= 1
    assert _value(families, "mvault_download_bytes_total") > 9000
    assert _value(families, "mvault_audit_appends_total") >= 5
    assert _value(families, "mvault_commit_batch_size_count", store="audit") >= 1
    assert _value(families, "mvault_commit_batch_size_count", store="messages") >= 1
    assert _value(families, "mvault_commit_batch_size_count", store="vault") >= 1
    assert _value(families, "mvault_live_followers") == 0
    assert _value(families, "mvault_http_requests_total", route="/api/v1/teams/{team}/docs/{doc}", method="POST",
                  status="201") >= 1
    assert _value(families, "mvault_http_requests_total", route="/api/v1/auth/login", status="200") >= 1
    routes = {labels["route"] for labels, _ in families["mvault_http_requests"] if "route" in labels}
    assert all(r.startswith("/api/") or r == "unmatched" for r in routes), routes
    ids = org_ids(org.server.data_dir)
    assert len(ids) >= 8  # members, devices, the team, the document, its version and blob, the thread, ...
    assert named_ids(body, ids) == []
    for name in ("alice", "bob", "drafting", "plan.md", "weekly"):
        assert name not in body


async def test_unknown_paths_and_methods_are_not_labels(server: ServerThread) -> None:
    async with Http(server) as h:
        assert (await h.call("GET", "/api/v1/teams/0123456789abcdef0123456789abcdef/nothing"))[0] in (401, 404)
        assert (await h.call("PROPFIND", "/api/health"))[0] in (401, 405)
    status, body = await _scrape(server)
    assert status == 200 and isinstance(body, str)
    assert "0123456789abcdef" not in body and "PROPFIND" not in body and "nothing" not in body
    families = _families(body)
    assert _value(families, "mvault_http_requests_total", route="unmatched") >= 1
    assert _value(families, "mvault_http_requests_total", method="other") >= 1


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[ServerThread]:
    s = ServerThread(tmp_path / "data", metrics_loopback=False, metrics_token=TOKEN).start()
    yield s
    s.stop()


async def test_only_the_token_opens_the_metrics_when_loopback_is_off(token_server: ServerThread) -> None:
    status, body = await _scrape(token_server)
    assert status == 403 and body["error"] == "forbidden" and "operator" in body["message"]  # type: ignore[index]
    for wrong in ("", "x", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        assert (await _scrape(token_server, token=wrong))[0] == 403
    status, body = await _scrape(token_server, token=TOKEN)
    assert status == 200 and isinstance(body, str) and "mvault_http_requests_total" in body
    # the refusals are counted too, under their route
    assert _value(_families(body), "mvault_http_requests_total", route="/api/metrics", status="403") >= 6


@pytest.fixture
def no_token_server(tmp_path: Path) -> Iterator[ServerThread]:
    s = ServerThread(tmp_path / "data", metrics_loopback=False).start()
    yield s
    s.stop()


async def test_no_token_configured_opens_nothing(no_token_server: ServerThread) -> None:
    s = no_token_server
    assert (await _scrape(s))[0] == 403
    assert (await _scrape(s, token=""))[0] == 403
    async with Http(s) as h:
        assert (await h.call("GET", "/api/metrics", headers={"Authorization": "Bearer"}))[0] == 403
        assert (await h.call("GET", "/api/metrics", headers={"Authorization": "Bearer "}))[0] == 403


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[ServerThread]:
    s = ServerThread(tmp_path / "data", rate_per_second=0.1, rate_burst=2).start()
    yield s
    s.stop()


async def test_metrics_requests_are_limited_like_any_request_without_a_session(limited_server: ServerThread) -> None:
    statuses = [(await _scrape(limited_server))[0] for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]


async def _followers(server: ServerThread) -> float:
    status, body = await _scrape(server)
    assert status == 200 and isinstance(body, str)
    return _value(_families(body), "mvault_live_followers")


async def _until_followers(server: ServerThread, some: bool) -> None:
    """Poll until the gauge shows some live connection (or none); the test fails if it never does (no timing is
    asserted)."""
    for _ in range(300):
        if (await _followers(server) > 0) == some:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"mvault_live_followers never {'rose above' if some else 'fell to'} 0")


async def test_live_followers_are_a_gauge(org: Org) -> None:
    org.alice.ok("thread", "create", "drafting", "weekly")
    follower = subprocess.Popen([MVAULT, "thread", "follow", "drafting", "weekly"], env=org.bob.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=org.bob.home.parent)
    try:
        await _until_followers(org.server, True)
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(60)
    await _until_followers(org.server, False)
