"""The HTTP API, operation by operation and error by error, against the real server.

``COVERAGE`` maps every (method, path, status) that ``server/openapi.py`` documents to the
test that exercises it; ``test_every_documented_status_is_covered`` keeps the two in step.
Every refused request must answer ``{"error": str, "message": str}`` with a 4xx status
(never a 500) and leave the stored state exactly as it was: the rows of ``links``,
``team_boxes``, ``puk_boxes`` and ``versions`` and the files under ``blobs/`` and ``tmp/``.

Most tests share one organization per module (``world``): alice founded it (NCC), bob is a
writer in team "drafting", carol a reader of team "side" whose role ends half an hour after it
was given (``World.carol_until``, on the server's clock: far past the module's run even on a loaded
machine); the tests that need it ended move the server clock to a minute past it (``past_carol``).
Building it costs several Argon2 unlocks and CLI runs, so it is built once; every test leaves it
usable for the next. Tests that need a server without an organization use the ``server`` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client import admin, maintenance
from client.client import Client
from client.home import Home
from client.threads.team import Threads
from client.view import View
from server.context import CONFIG, DIRECTORY, Config
from server.openapi import OPENAPI
from server.routes.devices import LINK_SLOT_TTL
from tests.conftest import PASSPHRASE, Member, ServerThread
from tests.helpers.api_world import (
    Actor,
    Newcomer,
    World,
    device_body,
    docs_path,
    found_body,
    info_of,
    join_body,
    make_upload,
    member_json,
    new_doc,
    new_invite,
    newcomer,
    now,
    org_create,
    org_join,
    session,
    team_create_link,
    team_json,
    team_key,
    team_seq_of,
)
from tests.helpers.db import snapshot
from tests.helpers.http import NOTHING, Http, b64, login, login_as, raw_exchange, refuse_bad_json, refused, request_head
from vault.auth import sign_login
from vault.chains import team_id_for
from vault.encoding import Fields, decode, encode
from vault.envelope import MAGIC, MAX_PRELUDE, body_length
from vault.invite import InviteCode
from vault.keys import DeviceKeys, PukKeys, link_slot, open_link_payload, seal_link_payload
from vault.links import Link, invite_public, make_link, parse_link, sign_device_proof
from vault.messages import MAX_RECORD, Message, ThreadRecord, make_message, make_thread
from vault.messages import Body as MsgBody
from vault.teamkeys import TeamKey, box_hash

# (method, path, status) -> the test that exercises it (any module under tests/).
COVERAGE: dict[tuple[str, str, str], str] = {
    ("get", "/api/health", "200"): "test_public_endpoints",
    ("get", "/api/health", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("get", "/api/openapi.json", "200"): "test_public_endpoints",
    ("get", "/api/openapi.json", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("get", "/api/v1/info", "200"): "test_public_endpoints",
    ("get", "/api/v1/info", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("post", "/api/v1/found", "201"): "test_found_on_a_fresh_server",
    ("post", "/api/v1/found", "400"): "test_found_rejects_malformed_requests",
    ("post", "/api/v1/found", "403"): "test_found_needs_the_founder_invite_once",
    ("post", "/api/v1/found", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("post", "/api/v1/join/head", "200"): "test_the_chain_head_only_for_the_holder_of_an_open_invite",
    ("post", "/api/v1/join/head", "400"): "test_the_chain_head_only_for_the_holder_of_an_open_invite",
    ("post", "/api/v1/join/head", "403"): "test_the_chain_head_only_for_the_holder_of_an_open_invite",
    ("post", "/api/v1/join/head", "404"): "test_join_before_the_organization_exists",
    ("post", "/api/v1/join/head", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("post", "/api/v1/join", "201"): "test_join_with_an_invite",
    ("post", "/api/v1/join", "400"): "test_join_rejects_malformed_requests",
    ("post", "/api/v1/join", "403"): "test_join_refuses_unknown_expired_and_reused_invites",
    ("post", "/api/v1/join", "404"): "test_join_before_the_organization_exists",
    ("post", "/api/v1/join", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("post", "/api/v1/auth/challenge", "200"): "test_login_gives_a_working_token",
    ("post", "/api/v1/auth/challenge", "400"): "test_challenge_rejects_malformed_requests",
    ("post", "/api/v1/auth/challenge", "429"): "test_failed_logins_throttle_the_source_not_the_device",
    ("post", "/api/v1/auth/login", "200"): "test_login_gives_a_working_token",
    ("post", "/api/v1/auth/login", "400"): "test_login_rejects_malformed_requests",
    ("post", "/api/v1/auth/login", "401"): "test_replayed_nonce_is_refused",
    ("post", "/api/v1/auth/login", "429"): "test_a_throttled_address_cannot_log_in_with_an_earlier_challenge",
    ("get", "/api/v1/directory", "200"): "test_directory_lists_what_each_member_may_see",
    ("get", "/api/v1/directory", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/chains/org", "200"): "test_org_chain",
    ("get", "/api/v1/chains/org", "400"): "test_org_chain",
    ("get", "/api/v1/chains/org", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/org/links", "201"): "test_org_links",
    ("post", "/api/v1/org/links", "400"): "test_org_links",
    ("post", "/api/v1/org/links", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/org/links", "403"): "test_org_links",
    ("post", "/api/v1/org/links", "409"): "test_org_links",
    ("post", "/api/v1/members/{member}/links", "201"): "test_member_links_add_and_revoke_a_device",
    ("post", "/api/v1/members/{member}/links", "400"): "test_member_links_add_and_revoke_a_device",
    ("post", "/api/v1/members/{member}/links", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/members/{member}/links", "403"): "test_member_links_add_and_revoke_a_device",
    ("post", "/api/v1/members/{member}/links", "404"): "test_member_links_add_and_revoke_a_device",
    ("post", "/api/v1/members/{member}/links", "409"): "test_member_links_add_and_revoke_a_device",
    ("post", "/api/v1/device-links/{slot}", "201"): "test_device_link_mailbox",
    ("post", "/api/v1/device-links/{slot}", "400"): "test_device_link_mailbox",
    ("post", "/api/v1/device-links/{slot}", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/device-links/{slot}", "409"): "test_device_link_mailbox",
    ("post", "/api/v1/device-links/{slot}", "429"): "test_link_slots",
    ("get", "/api/v1/device-links/{slot}", "200"): "test_device_link_mailbox",
    ("get", "/api/v1/device-links/{slot}", "400"): "test_device_link_mailbox",
    ("get", "/api/v1/device-links/{slot}", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/device-links/{slot}", "404"): "test_device_link_mailbox",
    ("post", "/api/v1/device-links/{slot}/offer", "201"): "test_device_link_mailbox",
    ("post", "/api/v1/device-links/{slot}/offer", "400"): "test_device_link_mailbox",
    ("post", "/api/v1/device-links/{slot}/offer", "404"): "test_device_link_mailbox",
    ("post", "/api/v1/device-links/{slot}/offer", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("get", "/api/v1/chains/member/{member}", "200"): "test_member_chain",
    ("get", "/api/v1/chains/member/{member}", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/chains/member/{member}", "404"): "test_member_chain",
    ("get", "/api/v1/chains/team/{team}", "200"): "test_team_chain_and_boxes",
    ("get", "/api/v1/chains/team/{team}", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/chains/team/{team}", "404"): "test_team_chain_and_boxes",
    ("post", "/api/v1/teams", "201"): "test_create_team_and_add_a_member",
    ("post", "/api/v1/teams", "400"): "test_create_team_rejects_bad_requests",
    ("post", "/api/v1/teams", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams", "403"): "test_create_team_rejects_bad_requests",
    ("post", "/api/v1/teams", "409"): "test_create_team_rejects_bad_requests",
    ("post", "/api/v1/teams/{team}/links", "201"): "test_create_team_and_add_a_member",
    ("post", "/api/v1/teams/{team}/links", "400"): "test_team_links_reject_bad_requests",
    ("post", "/api/v1/teams/{team}/links", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams/{team}/links", "403"): "test_team_links_reject_bad_requests",
    ("post", "/api/v1/teams/{team}/links", "404"): "test_team_links_reject_bad_requests",
    ("post", "/api/v1/teams/{team}/links", "409"): "test_team_links_reject_bad_requests",
    ("get", "/api/v1/teams/{team}/boxes", "200"): "test_team_chain_and_boxes",
    ("get", "/api/v1/teams/{team}/boxes", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/boxes", "404"): "test_team_chain_and_boxes",
    ("get", "/api/v1/puk-boxes", "200"): "test_puk_boxes",
    ("get", "/api/v1/puk-boxes", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/docs", "200"): "test_put_and_read_versions",
    ("get", "/api/v1/teams/{team}/docs", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/docs", "403"): "test_doc_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/docs", "404"): "test_doc_reads_of_unknown_or_invisible_things",
    ("get", "/api/v1/teams/{team}/docs/{doc}", "200"): "test_put_and_read_versions",
    ("get", "/api/v1/teams/{team}/docs/{doc}", "400"): "test_doc_reads_of_unknown_or_invisible_things",
    ("get", "/api/v1/teams/{team}/docs/{doc}", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/docs/{doc}", "403"): "test_doc_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/docs/{doc}", "404"): "test_doc_reads_of_unknown_or_invisible_things",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "201"): "test_put_and_read_versions",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "400"): "test_put_rejects_malformed_uploads",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "403"): "test_put_refuses_other_authors_and_non_writers",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "404"): "test_put_refuses_other_authors_and_non_writers",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "409"): "test_put_conflicts",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "413"): "test_put_too_large",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "429"): "test_versions_per_day_refused_with_429_until_the_window_moves",
    ("post", "/api/v1/teams/{team}/docs/{doc}", "507"): "test_an_upload_onto_a_full_disk_is_refused_cleanly",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "200"): "test_put_and_read_versions",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "403"): "test_doc_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "404"): "test_doc_reads_of_unknown_or_invisible_things",
    # the audit log (tests/test_audit_api.py)
    ("get", "/api/v1/audit/checkpoint", "200"): "test_checkpoint_is_signed_and_extends_earlier_ones",
    ("get", "/api/v1/audit/checkpoint", "400"): "test_checkpoint_is_signed_and_extends_earlier_ones",
    ("get", "/api/v1/audit/checkpoint", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/audit/leaves", "200"): "test_leaves_page_through_the_signed_tree",
    ("get", "/api/v1/audit/leaves", "400"): "test_leaves_page_through_the_signed_tree",
    ("get", "/api/v1/audit/leaves", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/audit/leaves", "403"): "test_leaves_page_through_the_signed_tree",
    ("post", "/api/v1/audit/cosign", "201"): "test_cosign_a_checkpoint",
    ("post", "/api/v1/audit/cosign", "400"): "test_cosign_a_checkpoint",
    ("post", "/api/v1/audit/cosign", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/audit/cosign", "403"): "test_cosign_a_checkpoint",
    ("post", "/api/v1/audit/cosign", "404"): "test_cosign_a_checkpoint",
    ("get", "/api/v1/audit/key", "200"): "test_audit_key_is_published_by_the_security_team",
    ("get", "/api/v1/audit/key", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/audit/key", "201"): "test_audit_key_is_published_by_the_security_team",
    ("post", "/api/v1/audit/key", "400"): "test_audit_key_is_published_by_the_security_team",
    ("post", "/api/v1/audit/key", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/audit/key", "403"): "test_audit_key_is_published_by_the_security_team",
    ("post", "/api/v1/audit/key", "404"): "test_audit_key_is_published_by_the_security_team",
    ("post", "/api/v1/audit/attest", "201"): "test_attestations",
    ("post", "/api/v1/audit/attest", "400"): "test_attestations",
    ("post", "/api/v1/audit/attest", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/audit/attest", "403"): "test_attestations",
    ("post", "/api/v1/audit/attest", "404"): "test_attestations",
    ("get", "/api/v1/audit/teams/{team}/versions", "200"): "test_team_versions_for_the_security_team",
    ("get", "/api/v1/audit/teams/{team}/versions", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/audit/teams/{team}/versions", "403"): "test_team_versions_for_the_security_team",
    ("get", "/api/v1/audit/teams/{team}/versions", "404"): "test_team_versions_for_the_security_team",
    # team threads (this file, the end)
    ("get", "/api/v1/teams/{team}/threads", "200"): "test_threads_create_list_post_read_follow",
    ("get", "/api/v1/teams/{team}/threads", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/threads", "403"): "test_thread_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/threads", "404"): "test_threads_of_invisible_teams_and_unknown_threads",
    ("post", "/api/v1/teams/{team}/threads", "201"): "test_threads_create_list_post_read_follow",
    ("post", "/api/v1/teams/{team}/threads", "400"): "test_thread_create_refusals",
    ("post", "/api/v1/teams/{team}/threads", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams/{team}/threads", "403"): "test_thread_create_refusals",
    ("post", "/api/v1/teams/{team}/threads", "404"): "test_threads_of_invisible_teams_and_unknown_threads",
    ("post", "/api/v1/teams/{team}/threads", "409"): "test_thread_create_refusals",
    ("post", "/api/v1/teams/{team}/threads", "429"): "test_threads_per_day",
    ("get", "/api/v1/teams/{team}/threads/{thread}/messages", "200"): "test_threads_create_list_post_read_follow",
    ("get", "/api/v1/teams/{team}/threads/{thread}/messages", "400"): "test_thread_reads_refuse_bad_parameters",
    ("get", "/api/v1/teams/{team}/threads/{thread}/messages", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/threads/{thread}/messages", "403"): "test_thread_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/threads/{thread}/messages", "404"):
        "test_threads_of_invisible_teams_and_unknown_threads",
    ("post", "/api/v1/teams/{team}/threads/{thread}/messages", "201"): "test_threads_create_list_post_read_follow",
    ("post", "/api/v1/teams/{team}/threads/{thread}/messages", "400"): "test_post_refusals",
    ("post", "/api/v1/teams/{team}/threads/{thread}/messages", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams/{team}/threads/{thread}/messages", "403"): "test_post_refusals",
    ("post", "/api/v1/teams/{team}/threads/{thread}/messages", "404"):
        "test_threads_of_invisible_teams_and_unknown_threads",
    ("post", "/api/v1/teams/{team}/threads/{thread}/messages", "409"): "test_post_refusals",
    ("post", "/api/v1/teams/{team}/threads/{thread}/messages", "413"): "test_post_refusals",
    ("get", "/api/v1/teams/{team}/live", "101"): "test_threads_create_list_post_read_follow",
    ("get", "/api/v1/teams/{team}/live", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/live", "403"): "test_thread_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/live", "404"): "test_threads_of_invisible_teams_and_unknown_threads",
    ("get", "/api/v1/teams/{team}/live", "429"): "test_live_followers",
}

CAROL_TERM = 1800  # carol's role in "side" ends this many seconds (server clock) after it is given


def past_carol(w: World) -> None:
    """Move the server clock to a minute past the end of carol's role, however long the module took to get
    here. The jump stays shorter than a session's life (sessions opened before it still work)."""
    w.server.advance(w.carol_until + 60 - w.server.clock())


# -- the shared organization ---------------------------------------------------------------------


async def _side_team(w: World) -> tuple[str, str]:
    async with session(w, w.alice) as s:
        side = await admin.create_team(s, "side", "program")
        w.carol_until = int(w.server.clock()) + CAROL_TERM
        await admin.add_member(s, "side", "carol", "reader", w.carol_until)
        view = await s.view(refresh=True)
        return view.team_by_name("drafting").team_id, side.team_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("api")
    pf = root / "passphrase"
    pf.write_text(PASSPHRASE + "\n")
    server = ServerThread(root / "server-data").start()
    w: World | None = None
    try:
        members = {n: Member(root / f"home-{n}", n, pf) for n in ("alice", "bob", "carol")}
        alice = members["alice"]
        assert server.invite is not None
        alice.ok("join", server.invite, "--name", "alice")
        for name in ("bob", "carol"):
            members[name].ok("join", alice.json("invite")["invite"], "--name", name)
        alice.ok("team", "create", "drafting", "--kind", "program")
        alice.ok("team", "add", "drafting", "bob", "--role", "writer")
        actors = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MVAULT_PASSPHRASE_FILE", str(pf))
            mp.delenv("MVAULT_SESSION", raising=False)
            for name, m in members.items():
                home = Home(m.home)
                actors[name] = Actor(m, home, home.unlock(), home.config().member_id)
        w = World(server, actors["alice"], actors["bob"], actors["carol"])
        w.drafting, w.side = asyncio.run(_side_team(w))
        yield w
    finally:
        (w.server if w is not None else server).stop()


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The shared organization; clock offset and upload limit are put back afterwards."""
    offset = world.server.offset
    yield world
    world.server.offset = offset
    world.server.app[CONFIG].max_upload = Config.max_upload


def bad_sig(link: Link) -> bytes:
    """The same link with one bit of its signature flipped."""
    sig = bytes([link.sig[0] ^ 1]) + link.sig[1:]
    return encode({"link": link.raw, "sig": sig, "xsig": link.xsig})


# == the contract ====================================================================================


def test_every_documented_status_is_covered() -> None:
    documented = {(method, path, status)
                  for path, ops in OPENAPI["paths"].items()
                  for method, op in ops.items()
                  for status in op["responses"]}
    missing = sorted(documented - set(COVERAGE))
    assert not missing, f"documented in server/openapi.py but not in COVERAGE: {missing}"
    stale = sorted(set(COVERAGE) - documented)
    assert not stale, f"COVERAGE names operations or statuses the API does not document: {stale}"
    source = "\n".join(p.read_text() for p in sorted(Path(__file__).parent.rglob("*.py")))
    defined = set(re.findall(r"^\s*(?:async\s+)?def\s+(\w+)\s*\(", source, re.M))
    unknown = sorted({name for name in COVERAGE.values() if name not in defined})
    assert not unknown, f"COVERAGE points to tests that do not exist: {unknown}"
    assert all(name.startswith("test_") for name in COVERAGE.values())


# == public ==========================================================================================


async def test_public_endpoints(w: World) -> None:
    async with Http(w.server) as h:
        status, health = await h.call("GET", "/api/health")
        assert status == 200 and health["status"] == "ok"
        status, doc = await h.call("GET", "/api/openapi.json")
        assert status == 200 and doc == json.loads(json.dumps(OPENAPI))
        status, info = await h.call("GET", "/api/v1/info")
        assert status == 200
        assert len(bytes.fromhex(info["org_root"])) == 32 and "org_seq" not in info and "org_head" not in info
        assert abs(info["time"] - w.server.clock()) < 5


async def test_unknown_routes_and_methods_answer_json_errors(w: World) -> None:
    async with Http(w.server) as h:
        token = await login(h, w.alice)
        await refused(h, "GET", "/api/v1/nothing-here", 401)
        await refused(h, "GET", "/api/v1/nothing-here", 404, token=token)
        await refused(h, "GET", "/nothing-here", 404)
        await refused(h, "PUT", "/api/v1/directory", 405, token=token)
        await refused(h, "DELETE", f"/api/v1/teams/{w.drafting}/docs/{'0' * 32}", 405, token=token)


async def test_json_body_arriving_in_pieces_is_read_whole(w: World) -> None:
    body = json.dumps({"member": w.alice.member_id, "device": w.alice.device.device_id}).encode()
    head = request_head(w.server, "POST", "/api/v1/auth/challenge", len(body))
    answer = await raw_exchange(w.server, head, [body[:10], body[10:]])
    assert answer is not None
    status, raw = answer
    assert status == 200, raw
    assert len(base64.b64decode(json.loads(raw)["nonce"])) == 32


# == founding and joining ============================================================================


async def test_join_before_the_organization_exists(server: ServerThread) -> None:
    async with Http(server) as h:
        info = await info_of(h)
        assert info["org_root"] is None and info["org_seq"] == 0
        n = newcomer("early", int(server.clock()))
        link = org_join(n, os.urandom(32), info, int(server.clock()))
        await refused(h, "POST", "/api/v1/join", 404, js=join_body(n, link), contains="no organization")
        secret = os.urandom(32)
        await refused(h, "POST", "/api/v1/join/head", 404, contains="no organization",
                      js={"invite": b64(invite_public(secret)), "time": int(server.clock()), "proof": b64(bytes(64))})


async def test_found_rejects_malformed_requests(server: ServerThread) -> None:
    assert server.invite is not None
    secret = InviteCode.parse(server.invite).secret
    t = int(server.clock())
    founder = newcomer("founder", t)
    valid = found_body(founder, org_create(founder, secret, t))
    async with Http(server) as h:
        await refuse_bad_json(h, "/api/v1/found", valid, valid.keys())
        other = newcomer("other", t)
        cases: list[tuple[str, dict[str, str]]] = [
            ("org link in the member slot", {**valid, "member_link": valid["org_link"]}),
            ("member link in the org slot", {**valid, "org_link": valid["member_link"]}),
            ("PUK box not committed", {**valid, "puk_box": b64(other.puk_box)}),
            ("org.create signed by a stranger", {**valid, "org_link": b64(org_create(other, secret, t).wire)}),
            ("member link badly signed", {**valid, "member_link": b64(bad_sig(founder.link))}),
            ("org link badly signed", {**valid, "org_link": b64(bad_sig(org_create(founder, secret, t)))}),
        ]
        stale = newcomer("stale", t - 3600)
        cases.append(("member link an hour old", found_body(stale, org_create(stale, secret, t))))
        cases.append(("org link an hour ahead", found_body(founder, org_create(founder, secret, t + 3600))))
        for label, body in cases:
            await refused(h, "POST", "/api/v1/found", 400, js=body, what=label)
        assert (await info_of(h))["org_root"] is None
        # Nothing was consumed: the valid request still founds the organization.
        status, res = await h.call("POST", "/api/v1/found", js=valid)
        assert status == 201, res


async def test_found_on_a_fresh_server(server: ServerThread) -> None:
    assert server.invite is not None
    secret = InviteCode.parse(server.invite).secret
    t = int(server.clock())
    founder = newcomer("founder", t)
    org_link = org_create(founder, secret, t)
    async with Http(server) as h:
        status, res = await h.call("POST", "/api/v1/found", js=found_body(founder, org_link))
        assert status == 201, res
        assert res == {"org_root": org_link.hash.hex(), "member": founder.member_id}
        info = await info_of(h)
        assert info["org_root"] == org_link.hash.hex() and info["org_seq"] == 1
        token = await login_as(h, founder.member_id, founder.device)
        status, directory = await h.call("GET", "/api/v1/directory", token=token)
        assert status == 200 and list(directory["members"]) == [founder.member_id]
    assert snapshot(server)["links"] == 2 and snapshot(server)["puk_boxes"] == 1


async def test_found_needs_the_founder_invite_once(server: ServerThread) -> None:
    assert server.invite is not None
    secret = InviteCode.parse(server.invite).secret
    t = int(server.clock())
    founder = newcomer("founder", t)
    async with Http(server) as h:
        await refused(h, "POST", "/api/v1/found", 403, js=found_body(founder, org_create(founder, os.urandom(32), t)),
                      contains="founder invite", what="another invite secret")
        status, res = await h.call("POST", "/api/v1/found", js=found_body(founder, org_create(founder, secret, t)))
        assert status == 201, res
        second = newcomer("second", t)
        await refused(h, "POST", "/api/v1/found", 403, js=found_body(second, org_create(second, secret, t)),
                      contains="already founded", what="second founding")


async def test_join_with_an_invite(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        secret = await new_invite(s, w)
        n = newcomer("dave", now(w))
        status, res = await h.call("POST", "/api/v1/join",
                                   js=join_body(n, org_join(n, secret, await info_of(h), now(w))))
        assert status == 201, res
        assert res == {"member": n.member_id, "status": "admitted"}
        status, chain = await h.call("GET", f"/api/v1/chains/member/{n.member_id}", token=s.api.token)
        assert status == 200 and [parse_link(base64.b64decode(x)).hash for x in chain["links"]] == [n.link.hash]


async def test_the_chain_head_only_for_the_holder_of_an_open_invite(w: World) -> None:
    """/api/v1/join/head tells the organization chain's length and head only to whoever proves an open
    invite (review round 3); what is wrong with an invite only to whoever proves it holds its secret."""
    from vault.links import sign_invite_holder  # the recipe the client uses

    async with session(w, w.alice) as s, Http(w.server) as h:
        secret = await new_invite(s, w)
        root, t = bytes.fromhex((await info_of(h))["org_root"]), now(w)

        def body(sec: bytes, when: int, proof_of: bytes | None = None) -> dict[str, Any]:
            return {"invite": b64(invite_public(sec)), "time": when,
                    "proof": b64(sign_invite_holder(proof_of or sec, root, when))}

        status, head = await h.call("POST", "/api/v1/join/head", js=body(secret, t))
        org = w.server.app[DIRECTORY].org
        assert status == 200 and head == {"org_seq": org.seq, "org_head": b64(org.head)}
        stranger = os.urandom(32)
        await refused(h, "POST", "/api/v1/join/head", 403, js=body(stranger, t), contains="unknown invite",
                      what="no invite")
        await refused(h, "POST", "/api/v1/join/head", 403, js=body(secret, t, stranger), contains="does not verify",
                      what="another key's proof")
        await refused(h, "POST", "/api/v1/join/head", 400, js=body(secret, t - 3600), what="stale proof")
        n = newcomer("hana", t)
        status, res = await h.call("POST", "/api/v1/join", js=join_body(n, org_join(n, secret, await info_of(h), t)))
        assert status == 201, res
        await refused(h, "POST", "/api/v1/join/head", 403, js=body(secret, now(w)), contains="already been used",
                      what="used invite")


async def test_join_rejects_malformed_requests(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        secret = await new_invite(s, w)
        info, t = await info_of(h), now(w)
        n = newcomer("erin", t)
        join_link = org_join(n, secret, info, t)
        valid = join_body(n, join_link)
        await refuse_bad_json(h, "/api/v1/join", valid, valid.keys())
        other = newcomer("other", t)
        stale = newcomer("erin", t - 3600)
        status, bob_chain = await h.call("GET", f"/api/v1/chains/member/{w.bob.member_id}",
                                         token=s.api.token)
        assert status == 200
        cases = [
            ("member link in the join slot", {**valid, "join_link": valid["member_link"]}),
            ("PUK box not committed", {**valid, "puk_box": b64(other.puk_box)}),
            ("join link a sequence ahead", join_body(n, org_join(n, secret, info, t, seq_delta=2))),
            ("join link replaces the head", join_body(n, org_join(n, secret, info, t, seq_delta=0))),
            ("join link badly signed", {**valid, "join_link": b64(bad_sig(join_link))}),
            ("join link signed by someone else", {**valid, "join_link": b64(org_join(other, secret, info, t).wire)}),
            ("member link an hour old", join_body(stale, org_join(stale, secret, info, t))),
            ("join link an hour ahead", join_body(n, org_join(n, secret, info, t + 3600))),
            ("existing member joins again", {**valid, "member_link": bob_chain["links"][0]}),
        ]
        for label, body in cases:
            await refused(h, "POST", "/api/v1/join", 400, js=body, what=label)
        # Nothing was consumed: the invite still works.
        status, res = await h.call("POST", "/api/v1/join", js=valid)
        assert status == 201, res


async def test_join_refuses_unknown_expired_and_reused_invites(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        n = newcomer("frank", now(w))
        await refused(h, "POST", "/api/v1/join", 403, contains="unknown invite", what="unknown invite",
                      js=join_body(n, org_join(n, os.urandom(32), await info_of(h), now(w))))

        short = await new_invite(s, w, expires_in=5)
        late = now(w) + 30  # within the clock skew the server allows, after the invite's expiry
        n = newcomer("frank", late)
        await refused(h, "POST", "/api/v1/join", 403, contains="expired", what="expired invite",
                      js=join_body(n, org_join(n, short, await info_of(h), late)))

        secret = await new_invite(s, w)
        n = newcomer("frank", now(w))
        status, res = await h.call("POST", "/api/v1/join",
                                   js=join_body(n, org_join(n, secret, await info_of(h), now(w))))
        assert status == 201, res
        again = newcomer("gina", now(w))
        await refused(h, "POST", "/api/v1/join", 403, contains="already been used", what="reused invite",
                      js=join_body(again, org_join(again, secret, await info_of(h), now(w))))


async def test_join_refuses_an_invite_expired_by_the_server_clock(w: World) -> None:
    """An ordinary 7-day invite, claimed 8 days later by the server's clock."""
    async with session(w, w.alice) as s, Http(w.server) as h:
        secret = await new_invite(s, w, expires_in=7 * 86400)
        w.server.advance(8 * 86400)
        n = newcomer("hugo", now(w))
        await refused(h, "POST", "/api/v1/join", 403, contains="expired",
                      js=join_body(n, org_join(n, secret, await info_of(h), now(w))))


# == sessions and chains =============================================================================


async def test_private_operations_need_a_session(w: World) -> None:
    params = {"{team}": w.drafting, "{doc}": "0" * 32, "{member}": w.alice.member_id, "{vid}": "0" * 32,
              "{slot}": "0" * 32, "{thread}": "0" * 32}
    async with Http(w.server) as h:
        token = await login(h, w.alice)
        checked = 0
        for template, ops in OPENAPI["paths"].items():
            path = template
            for name, value in params.items():
                path = path.replace(name, value)
            for method, op in ops.items():
                if op.get("security") == []:
                    continue
                for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "},
                                {"Authorization": "Bearer not-a-token"},
                                {"Authorization": f"Bearer {token[:-2]}xx"},
                                {"Authorization": f"Basic {b64(b'alice:' + PASSPHRASE.encode())}"},
                                {"Authorization": token}):
                    await refused(h, method.upper(), path, 401, headers=headers, data=b"{}",
                                  what=f"Authorization {headers.get('Authorization', '(none)')[:12]!r}")
                checked += 1
        assert checked >= 16
        status, _ = await h.call("GET", "/api/v1/directory", token=token)
        assert status == 200


async def test_directory_lists_what_each_member_may_see(w: World) -> None:
    async with Http(w.server) as h:
        seen = {}
        for actor in (w.alice, w.bob, w.carol):
            status, directory = await h.call("GET", "/api/v1/directory", token=await login(h, actor))
            assert status == 200
            names = {m["name"] for m in directory["members"].values()}
            assert {"alice", "bob", "carol"} <= names
            assert directory["org"]["seq"] >= 3
            seen[actor.member.name] = set(directory["teams"])
        assert {w.drafting, w.side} <= seen["alice"]
        assert w.drafting in seen["bob"] and w.side not in seen["bob"]
        assert w.side in seen["carol"] and w.drafting not in seen["carol"]


async def test_org_chain(w: World) -> None:
    async with Http(w.server) as h:
        token = await login(h, w.bob)
        status, chain = await h.call("GET", "/api/v1/chains/org", token=token)
        assert status == 200
        links = [parse_link(base64.b64decode(x)) for x in chain["links"]]
        assert links[0].type == "org.create" and len(links) >= 3
        status, tail = await h.call("GET", "/api/v1/chains/org?after=1", token=token)
        assert status == 200 and tail["links"] == chain["links"][1:]
        for after in ("-1", "abc", "1.5", "", "1e3", "9" * 13):
            await refused(h, "GET", f"/api/v1/chains/org?after={after}", 400, token=token, what=after)


async def test_member_chain(w: World) -> None:
    async with Http(w.server) as h:
        token = await login(h, w.bob)
        status, chain = await h.call("GET", f"/api/v1/chains/member/{w.alice.member_id}", token=token)
        assert status == 200
        first = parse_link(base64.b64decode(chain["links"][0]))
        assert first.type == "member.create" and first.signer == w.alice.member_id
        for unknown in ("nobody", "0" * 32, w.alice.device.device_id):
            await refused(h, "GET", f"/api/v1/chains/member/{unknown}", 404, token=token, what=unknown)


async def test_team_chain_and_boxes(w: World) -> None:
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        status, chain = await h.call("GET", f"/api/v1/chains/team/{w.drafting}", token=bob)
        assert status == 200
        assert [parse_link(base64.b64decode(x)).type for x in chain["links"]] == ["team.create", "team.add"]
        status, boxes = await h.call("GET", f"/api/v1/teams/{w.drafting}/boxes", token=bob)
        assert status == 200 and [b["gen"] for b in boxes["boxes"]] == [1]
        assert base64.b64decode(boxes["boxes"][0]["box"])
        carol = await login(h, w.carol)
        for token, team in ((bob, w.side), (carol, w.drafting), (bob, "f" * 32), (bob, "nope")):
            await refused(h, "GET", f"/api/v1/chains/team/{team}", 404, token=token, what=team)
            await refused(h, "GET", f"/api/v1/teams/{team}/boxes", 404, token=token, what=team)


async def test_puk_boxes(w: World) -> None:
    async with Http(w.server) as h:
        for actor in (w.alice, w.bob):
            status, res = await h.call("GET", "/api/v1/puk-boxes", token=await login(h, actor))
            assert status == 200 and [b["puk_gen"] for b in res["boxes"]] == [1]
            puk = PukKeys.open_device_box(actor.device, actor.member_id, 1,
                                          base64.b64decode(res["boxes"][0]["box"]))
            assert puk.seed == actor.secrets.puks[1].seed


async def test_org_links(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.view(refresh=True)
        org, t = view.org, max(now(w), view.org.time)

        def link(seq: int | None = None, prev: bytes | None = None, when: int | None = None,
                 type_: str = "org.invite", role: str = "member") -> Link:
            return make_link(chain=org.org_id, seq=org.seq + 1 if seq is None else seq,
                             prev=org.head if prev is None else prev, time=t if when is None else when,
                             signer=s.me, device=s.device, type_=type_,
                             body={"invite": invite_public(os.urandom(32)), "role": role, "note": "",
                                   "expires": t + 86400})

        good = link()
        path = "/api/v1/org/links"
        await refuse_bad_json(h, path, {"link": b64(good.wire)}, ["link"], token=s.api.token)
        for label, wire, contains in (
            ("a sequence ahead", link(seq=org.seq + 2).wire, "sequence"),
            ("wrong previous link", link(prev=b"\x01" * 32).wire, "head"),
            ("bad signature", bad_sig(good), "signature"),
            ("an hour old", link(when=t - 3600).wire, "clock"),
            ("dated before the head", link(when=org.time - 1).wire, ""),
            ("a join", link(type_="org.join").wire, "join"),
            ("role that invites cannot grant", link(role="ncc").wire, "invite"),
            ("a team link", make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head, time=t,
                                      signer=s.me, device=s.device, type_="team.add", body={}).wire, ""),
        ):
            await refused(h, "POST", path, 400, token=s.api.token, js={"link": b64(wire)}, what=label,
                          contains=contains)
        bob = await login(h, w.bob)
        await refused(h, "POST", path, 403, token=bob, js={"link": b64(good.wire)},
                      contains="logged-in device", what="alice's link from bob's session")

        status, res = await h.call("POST", path, token=s.api.token, js={"link": b64(good.wire)})
        assert status == 201 and res == {"seq": org.seq + 1}, res
        await refused(h, "POST", path, 409, token=s.api.token, js={"link": b64(good.wire)}, what="replay")
        await refused(h, "POST", path, 409, token=s.api.token, js={"link": b64(link().wire)},
                      what="same sequence as the accepted link")


async def org_link_of(s: Client, w: World, type_: str, body: dict[str, Any], *, signer: Actor | None = None,
                      when: int | None = None) -> Link:
    """An organization link on top of the current head, signed by ``signer`` (default: the session's member)."""
    org = (await s.view(refresh=True)).org
    member_id, device = (s.me, s.device) if signer is None else (signer.member_id, signer.device)
    return make_link(chain=org.org_id, seq=org.seq + 1, prev=org.head,
                     time=max(now(w), org.time) if when is None else when, signer=member_id, device=device,
                     type_=type_, body=body)


async def test_org_admission_roles_and_invite_limits(w: World) -> None:
    path = "/api/v1/org/links"
    async with session(w, w.alice) as s, Http(w.server) as h:
        bob = await login(h, w.bob)
        t = now(w)

        # A plain member's invitee joins as pending; only NCC admits.
        secret = os.urandom(32)
        invite = await org_link_of(s, w, "org.invite", {"invite": invite_public(secret), "role": "member",
                                                        "note": "", "expires": t + 86400}, signer=w.bob)
        status, res = await h.call("POST", path, token=bob, js={"link": b64(invite.wire)})
        assert status == 201, res
        jt = max(now(w), invite.time)
        n = newcomer(f"pending-{os.urandom(3).hex()}", jt)
        status, res = await h.call("POST", "/api/v1/join", js=join_body(n, org_join(n, secret, await info_of(h), jt)))
        assert status == 201 and res == {"member": n.member_id, "status": "pending"}, res
        admit = {"member": n.member_id}
        await refused(h, "POST", path, 403, token=bob, contains="may not admit", what="a plain member admits",
                      js={"link": b64((await org_link_of(s, w, "org.admit", admit, signer=w.bob)).wire)})
        status, res = await h.call("POST", path, token=s.api.token,
                                   js={"link": b64((await org_link_of(s, w, "org.admit", admit)).wire)})
        assert status == 201, res
        assert (await s.view(refresh=True)).org.roles_of(n.member_id) == {"member"}
        await refused(h, "POST", path, 400, token=s.api.token, contains="already admitted", what="admitted twice",
                      js={"link": b64((await org_link_of(s, w, "org.admit", admit)).wire)})

        # Roles: only NCC grants; the last NCC stays; no end date in the past.
        def role(member: str, name: str, grant: bool = True, until: int | None = None) -> dict[str, Any]:
            return {"member": member, "role": name, "grant": grant, "until": until}

        for label, token, link, status_, contains in (
            ("a plain member grants itself NCC", bob,
             await org_link_of(s, w, "org.role", role(w.bob.member_id, "ncc"), signer=w.bob), 403, "may not grant"),
            ("the last NCC revoked", s.api.token,
             await org_link_of(s, w, "org.role", role(s.me, "ncc", grant=False)), 400, "last ncc"),
            ("an end date in the past", s.api.token,
             await org_link_of(s, w, "org.role", role(w.carol.member_id, "security", until=t - 1)), 400, "past"),
            ("a role that cannot be granted", s.api.token,
             await org_link_of(s, w, "org.role", role(w.carol.member_id, "admin")), 400, "role must be one of"),
            ("a role for a pending or unknown member", s.api.token,
             await org_link_of(s, w, "org.role", role("0" * 32, "staff")), 400, "not an admitted member"),
        ):
            await refused(h, "POST", path, status_, token=token, js={"link": b64(link.wire)}, what=label,
                          contains=contains)
        for grant in (role(w.carol.member_id, "security", until=t + 3600), role(n.member_id, "compa")):
            link = await org_link_of(s, w, "org.role", grant)
            status, res = await h.call("POST", path, token=s.api.token, js={"link": b64(link.wire)})
            assert status == 201, res
        org = (await s.view(refresh=True)).org
        assert org.roles_of(w.carol.member_id) == {"member", "security"}
        assert org.roles_of(n.member_id) == {"compa"}  # compa replaces the base role
        link = await org_link_of(s, w, "org.role", role(w.carol.member_id, "security", grant=False))
        status, res = await h.call("POST", path, token=s.api.token, js={"link": b64(link.wire)})
        assert status == 201, res
        assert (await s.view(refresh=True)).org.roles_of(w.carol.member_id) == {"member"}

        # Invites: valid for at most 30 days, at most 20 open per member.
        def invite_body(days: float) -> dict[str, Any]:
            return {"invite": invite_public(os.urandom(32)), "role": "member", "note": "",
                    "expires": now(w) + int(days * 86400)}

        await refused(h, "POST", path, 400, token=s.api.token, contains="30 days", what="a 31-day invite",
                      js={"link": b64((await org_link_of(s, w, "org.invite", invite_body(31))).wire)})
        org = (await s.view(refresh=True)).org
        open_now = [i for i in org.invites.values() if i.by == w.bob.member_id and i.used_by is None
                    and i.expires > now(w)]
        for _ in range(20 - len(open_now)):
            link = await org_link_of(s, w, "org.invite", invite_body(1), signer=w.bob)
            status, res = await h.call("POST", path, token=bob, js={"link": b64(link.wire)})
            assert status == 201, res
        await refused(h, "POST", path, 403, token=bob, contains="20 unused invites", what="a 21st open invite",
                      js={"link": b64((await org_link_of(s, w, "org.invite", invite_body(1), signer=w.bob)).wire)})


# == member chains and device links ==================================================================


async def joined_newcomer(s: Client, w: World, h: Http, name: str) -> Newcomer:
    """A new member (own member chain) admitted through alice's invite."""
    secret = await new_invite(s, w)
    n = newcomer(name, now(w))
    status, res = await h.call("POST", "/api/v1/join",
                               js=join_body(n, org_join(n, secret, await info_of(h), now(w))))
    assert status == 201 and res["status"] == "admitted", res
    return n


def member_link(n: Newcomer, type_: str, body: dict[str, Any], *, seq: int, prev: bytes, when: int,
                chain: str | None = None, device: DeviceKeys | None = None) -> Link:
    return make_link(chain=n.member_id if chain is None else chain, seq=seq, prev=prev, time=when,
                     signer=n.member_id, device=device or n.device, type_=type_, body=body)


async def test_member_links_add_and_revoke_a_device(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        n = await joined_newcomer(s, w, h, f"devices-{os.urandom(3).hex()}")
        mid = n.member_id
        token = await login_as(h, mid, n.device)
        path = f"/api/v1/members/{mid}/links"
        phone, other = DeviceKeys.generate(), DeviceKeys.generate()
        t = max(now(w), n.link.time)
        box = n.puk.seal_for_device(mid, phone.box_public)

        def add(**over: Any) -> tuple[Link, dict[str, bytes]]:
            """device.add of ``phone`` (seq 2 on the newcomer's chain); ``over`` replaces body fields."""
            body: dict[str, Any] = {"device": device_body(phone), "puk_gen": 1,
                                    "puk_boxes": [{"device": phone.device_id, "hash": box_hash(box)}],
                                    "proof": sign_device_proof(phone, mid)}
            link_kw = {k: over.pop(k) for k in ("seq", "prev", "when", "chain") if k in over}
            body.update(over)
            body = {k: v for k, v in body.items() if v is not NOTHING}
            link = member_link(n, "device.add", body, seq=link_kw.get("seq", 2), prev=link_kw.get("prev", n.link.hash),
                               when=link_kw.get("when", t), chain=link_kw.get("chain"))
            return link, {phone.device_id: box}

        good, good_boxes = add()
        valid = member_json(good, good_boxes)
        await refuse_bad_json(h, path, valid, ["link"], token=token)
        alice_view = await s.view(refresh=True)
        alice_chain = alice_view.members[s.me]
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("proof signed by another key (substituted device key)",
             member_json(*add(proof=sign_device_proof(other, mid))), "signature"),
            ("proof made for another member", member_json(*add(proof=sign_device_proof(phone, s.me))), "signature"),
            ("no proof", member_json(*add(proof=NOTHING)), "proof"),
            ("device id that is not its key", member_json(*add(device={**device_body(phone), "id": other.device_id})),
             "does not match its key"),
            ("name of an existing device", member_json(*add(device=device_body(phone, name="device-1"))),
             "already exists"),
            ("unknown device kind", member_json(*add(device=device_body(phone, kind="server"))), "kind"),
            ("PUK box committed for another device",
             member_json(*add(puk_boxes=[{"device": n.device.device_id, "hash": box_hash(box)}])), "exactly the new"),
            ("PUK generation that is not current", member_json(*add(puk_gen=2)), "exactly the new"),
            ("uploaded PUK box not matching its commitment",
             {**valid, "puk_boxes": {phone.device_id: b64(n.puk.seal_for_device(mid, other.box_public))}},
             "commitments"),
            ("no uploaded PUK box", {**valid, "puk_boxes": {}}, "commitments"),
            ("PUK box uploaded for another device", {**valid, "puk_boxes": {other.device_id: b64(box)}},
             "commitments"),
            ("a sequence ahead", member_json(*add(seq=3)), "sequence"),
            ("wrong previous link", member_json(*add(prev=b"\x01" * 32)), "head"),
            ("bad signature", member_json(bad_sig(good), good_boxes), "signature"),
            ("an hour old", member_json(*add(when=t - 3600)), "clock"),
            ("dated before the head", member_json(*add(when=n.link.time - 1)), "dated before"),
            ("a link naming another chain", member_json(*add(chain=s.me)), "another chain"),
            ("an organization link", member_json(member_link(n, "org.invite", {}, seq=2, prev=n.link.hash, when=t),
                                                 {}), "unsupported member link type"),
            ("the only device revoked",
             member_json(member_link(n, "device.revoke", {
                 "device": n.device.device_id, "puk": {"gen": 2, "sign_pk": bytes(32), "box_pk": bytes(32)},
                 "puk_boxes": [], "prev": bytes(72)}, seq=2, prev=n.link.hash, when=t), {}), "last device"),
        ]
        for label, body, contains in cases:
            await refused(h, "POST", path, 400, token=token, js=body, what=label, contains=contains)
        # A link on alice's chain, signed by the newcomer, posted to alice's chain.
        on_alice = member_link(n, "device.add", {}, seq=alice_chain.seq + 1, prev=alice_chain.head, when=t,
                               chain=s.me)
        await refused(h, "POST", f"/api/v1/members/{s.me}/links", 400, token=token, js=member_json(on_alice, {}),
                      contains="signed by the member", what="a link on another member's chain")
        await refused(h, "POST", path, 403, token=s.api.token, js=valid, contains="logged-in device",
                      what="the newcomer's link from alice's session")
        ghost = "0" * 32
        await refused(h, "POST", f"/api/v1/members/{ghost}/links", 404, token=token,
                      js=member_json(*add(chain=ghost)), contains="unknown member", what="unknown member chain")

        before = snapshot(w.server)
        status, res = await h.call("POST", path, token=token, js=valid)
        assert status == 201 and res == {"seq": 2}, res
        after = snapshot(w.server)
        assert (after["links"], after["puk_boxes"]) == (before["links"] + 1, before["puk_boxes"] + 1)
        await refused(h, "POST", path, 409, token=token, js=valid, contains="moved on", what="replay")
        # The new device logs in and opens its PUK box.
        phone_token = await login_as(h, mid, phone)
        status, res = await h.call("GET", "/api/v1/puk-boxes", token=phone_token)
        assert status == 200 and [b["puk_gen"] for b in res["boxes"]] == [1]
        opened = PukKeys.open_device_box(phone, mid, 1, base64.b64decode(res["boxes"][0]["box"]))
        assert opened.seed == n.puk.seed

        # Revoke the phone: the PUK rolls to generation 2, sealed to the remaining device only.
        new_puk = PukKeys.generate(2)
        new_box = new_puk.seal_for_device(mid, n.device.box_public)
        phone_box2 = new_puk.seal_for_device(mid, phone.box_public)
        t = max(now(w), good.time)

        def revoke(**over: Any) -> tuple[Link, dict[str, bytes]]:
            body: dict[str, Any] = {
                "device": phone.device_id,
                "puk": {"gen": 2, "sign_pk": new_puk.sign_public, "box_pk": new_puk.box_public},
                "puk_boxes": [{"device": n.device.device_id, "hash": box_hash(new_box)}],
                "prev": new_puk.seal_previous(n.puk),
            }
            body.update(over)
            body = {k: v for k, v in body.items() if v is not NOTHING}
            return member_link(n, "device.revoke", body, seq=3, prev=good.hash, when=t), {n.device.device_id: new_box}

        good_revoke, revoke_boxes = revoke()
        for label, body, contains in (
            ("PUK not rolled", member_json(*revoke(puk={"gen": 1, "sign_pk": n.puk.sign_public,
                                                         "box_pk": n.puk.box_public})), "next generation"),
            ("PUK skips a generation", member_json(*revoke(puk={"gen": 3, "sign_pk": new_puk.sign_public,
                                                                 "box_pk": new_puk.box_public})), "next generation"),
            ("new PUK boxed to the revoked device too",
             member_json(revoke(puk_boxes=[{"device": n.device.device_id, "hash": box_hash(new_box)},
                                           {"device": phone.device_id, "hash": box_hash(phone_box2)}])[0],
                         {n.device.device_id: new_box, phone.device_id: phone_box2}), "remaining devices"),
            ("new PUK boxed to nobody", member_json(revoke(puk_boxes=[])[0], {}), "remaining devices"),
            ("no previous PUK for history", member_json(*revoke(prev=NOTHING)), "prev"),
            ("unknown device", member_json(*revoke(device=other.device_id)), "not an active device"),
            ("uploaded box not matching its commitment",
             member_json(good_revoke, {n.device.device_id: new_puk.seal_for_device(mid, n.device.box_public)}),
             "commitments"),
        ):
            await refused(h, "POST", path, 400, token=token, js=body, what=label, contains=contains)
        status, res = await h.call("POST", path, token=token, js=member_json(good_revoke, revoke_boxes))
        assert status == 201 and res == {"seq": 3}, res

        # The revoked device is out: its session, a login (a challenge answers as for any ids), and a re-add
        # are refused.
        await refused(h, "GET", "/api/v1/directory", 401, token=phone_token, contains="no longer active",
                      what="the revoked device's session")
        status, ch = await h.call("POST", "/api/v1/auth/challenge", js={"member": mid, "device": phone.device_id})
        assert status == 200, ch
        statement, sig = sign_login(phone, origin=h.server.url, nonce=base64.b64decode(ch["nonce"]), member=mid,
                                    time=int(h.server.clock()))
        await refused(h, "POST", "/api/v1/auth/login", 401, js={"statement": b64(statement), "sig": b64(sig)},
                      contains="no longer active", what="a login of the revoked device")
        readd = add(seq=4, prev=good_revoke.hash, when=t)
        await refused(h, "POST", path, 400, token=token, js=member_json(*readd), contains="cannot come back",
                      what="the revoked device added again")
        status, res = await h.call("GET", "/api/v1/puk-boxes", token=token)
        assert status == 200 and [b["puk_gen"] for b in res["boxes"]] == [1, 2]
        gen2 = next(base64.b64decode(b["box"]) for b in res["boxes"] if b["puk_gen"] == 2)
        assert PukKeys.open_device_box(n.device, mid, 2, gen2).seed == new_puk.seed
        assert new_puk.open_previous(good_revoke.body.bytes_("prev")).seed == n.puk.seed
        # Every client replays the same member chain.
        ms = (await s.view(refresh=True)).members[mid]
        assert ms.puk_gen == 2 and ms.puk_sign_public == new_puk.sign_public
        assert [d.device_id for d in ms.active_devices()] == [n.device.device_id]
        assert ms.devices[phone.device_id].revoked == t


async def test_device_link_mailbox(w: World) -> None:
    async with Http(w.server) as h:
        alice, bob = await login(h, w.alice), await login(h, w.bob)
        secret = os.urandom(32)
        slot = link_slot(secret)
        status, res = await h.call("POST", f"/api/v1/device-links/{slot}", token=alice, js={})
        assert status == 201 and res["slot"] == slot, res
        assert abs(res["expires"] - (w.server.clock() + LINK_SLOT_TTL)) < 5
        await refused(h, "POST", f"/api/v1/device-links/{slot}", 409, token=bob, js={}, contains="already in use",
                      what="the same code opened twice")
        for bad in ("NOTHEX", "A" * 32, "0" * 31, "0" * 33, "g" * 32):
            await refused(h, "POST", f"/api/v1/device-links/{bad}", 400, token=alice, js={}, what=f"open {bad}")
            await refused(h, "GET", f"/api/v1/device-links/{bad}", 400, token=alice, what=f"read {bad}")
            await refused(h, "POST", f"/api/v1/device-links/{bad}/offer", 400, js={"payload": b64(b"x" * 64)},
                          what=f"offer {bad}")
        status, res = await h.call("GET", f"/api/v1/device-links/{slot}", token=alice)
        assert status == 200 and res == {"payload": None}, res
        await refused(h, "GET", f"/api/v1/device-links/{slot}", 404, token=bob, what="another member's code")
        await refused(h, "GET", f"/api/v1/device-links/{'e' * 32}", 404, token=alice, what="unknown code")
        await refused(h, "POST", f"/api/v1/device-links/{'e' * 32}/offer", 404, js={"payload": b64(b"x" * 64)},
                      what="offer for an unknown code")

        phone = DeviceKeys.generate()
        offer = encode({"name": "phone", "sign_pk": phone.sign_public, "box_pk": phone.box_public,
                        "proof": sign_device_proof(phone, w.alice.member_id)})
        sealed = seal_link_payload(secret, offer)
        offer_path = f"/api/v1/device-links/{slot}/offer"
        await refuse_bad_json(h, offer_path, {"payload": b64(sealed)}, ["payload"], encoded_fields=[])
        await refused(h, "POST", offer_path, 400, js={"payload": b64(os.urandom(4000))}, what="oversized payload")
        status, res = await h.call("POST", offer_path, js={"payload": b64(sealed)})  # public: no session
        assert status == 201 and res == {"ok": True}, res
        await refused(h, "POST", offer_path, 404, js={"payload": b64(seal_link_payload(secret, b"swap"))},
                      contains="already used", what="a second offer")
        status, res = await h.call("GET", f"/api/v1/device-links/{slot}", token=alice)
        assert status == 200 and open_link_payload(secret, base64.b64decode(res["payload"])) == offer
        await refused(h, "GET", f"/api/v1/device-links/{slot}", 404, token=alice, what="read after delivery")

        # A code nobody used in time is gone.
        late = link_slot(os.urandom(32))
        status, _ = await h.call("POST", f"/api/v1/device-links/{late}", token=alice, js={})
        assert status == 201
        w.server.advance(LINK_SLOT_TTL + 60)
        alice = await login(h, w.alice)
        await refused(h, "POST", f"/api/v1/device-links/{late}/offer", 404, js={"payload": b64(sealed)},
                      what="offer after expiry")
        await refused(h, "GET", f"/api/v1/device-links/{late}", 404, token=alice, what="read after expiry")


# == teams ===========================================================================================


def team_add_link(s: Client, view: View, team_id: str, key: TeamKey, member: str, *,
                  role: str = "reader", seq_delta: int = 1, prev: bytes | None = None,
                  when: int | None = None, chain: str | None = None,
                  org_seq: int | None = None) -> tuple[Link, dict[str, bytes]]:
    team, m = view.teams[team_id], view.members[member]
    box = key.seal_for(member, m.puk_gen, m.puk_box_public)
    link = make_link(
        chain=chain or team_id, seq=team.seq + seq_delta, prev=team.head if prev is None else prev,
        time=max(int(time.time()), team.time) if when is None else when, signer=s.me, device=s.device,
        type_="team.add",
        body={"member": member, "role": role, "until": None,
              "org_seq": view.org.seq if org_seq is None else org_seq,
              "key": {"gen": key.gen, "boxes": [{"member": member, "puk_gen": m.puk_gen,
                                                  "hash": box_hash(box)}]}},
    )
    return link, {member: box}


async def test_create_team_and_add_a_member(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.view(refresh=True)
        link, boxes = team_create_link(s, view, f"scratch-{os.urandom(3).hex()}")
        status, res = await h.call("POST", "/api/v1/teams", token=s.api.token, js=team_json(link, boxes))
        team_id = team_id_for(view.org.org_id, link.body.bytes_("nonce", 16))
        assert status == 201 and res == {"team": team_id, "seq": 1}, res

        view = await s.view(refresh=True)
        key = await s.team_key(view.teams[team_id], 1)
        add, add_boxes = team_add_link(s, view, team_id, key, w.bob.member_id)
        status, res = await h.call("POST", f"/api/v1/teams/{team_id}/links", token=s.api.token,
                                   js=team_json(add, add_boxes))
        assert status == 201 and res == {"team": team_id, "seq": 2}, res

    async with session(w, w.bob) as bs:
        view = await bs.view(refresh=True)
        assert view.teams[team_id].role_of(bs.me, now(w)) == "reader"
        assert (await team_key(bs, team_id)).seed == key.seed
        assert (await bs.api.get(f"/api/v1/teams/{team_id}/docs")) == {"docs": []}


async def test_create_team_rejects_bad_requests(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.view(refresh=True)
        name = f"never-{os.urandom(3).hex()}"
        link, boxes = team_create_link(s, view, name)
        valid = team_json(link, boxes)
        await refuse_bad_json(h, "/api/v1/teams", valid, ["link"], token=s.api.token)
        other_box = team_create_link(s, view, name)[1][s.me]
        cases = [
            ("no key boxes", {**valid, "boxes": {}}),
            ("box that is not base64", {**valid, "boxes": {s.me: "@@"}}),
            ("box for someone else", {**valid, "boxes": {w.bob.member_id: valid["boxes"][s.me]}}),
            ("extra box", {**valid, "boxes": {**valid["boxes"], w.bob.member_id: valid["boxes"][s.me]}}),
            ("box not matching its commitment", {**valid, "boxes": {s.me: b64(other_box)}}),
            ("boxes as a list", {**valid, "boxes": [valid["boxes"][s.me]]}),
            ("name already taken", team_json(*team_create_link(s, view, "drafting"))),
            ("unknown kind", team_json(*team_create_link(s, view, name, kind="bogus"))),
            ("an hour old", team_json(*team_create_link(s, view, name, when=now(w) - 3600))),
            ("bad signature", team_json(bad_sig(link), boxes)),
            ("not a team.create", team_json(team_add_link(s, view, w.drafting, TeamKey(w.drafting, 1, b"k" * 32),
                                                          w.carol.member_id)[0], boxes)),
        ]
        for label, body in cases:
            await refused(h, "POST", "/api/v1/teams", 400, token=s.api.token, js=body, what=label)

        ahead = team_create_link(s, view, name, org_seq=view.org.seq + 1)
        await refused(h, "POST", "/api/v1/teams", 400, token=s.api.token, js=team_json(*ahead),
                      contains="organization state", what="made against an org state that does not exist")
        older = team_create_link(s, view, name, org_seq=view.org.seq - 1)
        await refused(h, "POST", "/api/v1/teams", 409, token=s.api.token, js=team_json(*older),
                      contains="organization chain moved on", what="made against an older org state")

        bob_token = await login(h, w.bob)
        await refused(h, "POST", "/api/v1/teams", 403, token=bob_token, js=valid,
                      contains="logged-in device", what="alice's link from bob's session")
    async with session(w, w.bob) as bs:
        link, boxes = team_create_link(bs, await bs.view(refresh=True), name)
        async with Http(w.server) as h:
            await refused(h, "POST", "/api/v1/teams", 403, token=bs.api.token, js=team_json(link, boxes),
                          contains="may not create", what="a plain member creates a program team")


async def test_team_links_reject_bad_requests(w: World) -> None:
    async with session(w, w.alice) as s, Http(w.server) as h:
        view = await s.view(refresh=True)
        key = await team_key(s, w.drafting)
        team = view.teams[w.drafting]
        carol = w.carol.member_id
        link, boxes = team_add_link(s, view, w.drafting, key, carol)
        valid = team_json(link, boxes)
        path = f"/api/v1/teams/{w.drafting}/links"
        await refuse_bad_json(h, path, valid, ["link"], token=s.api.token)
        side_link = team_add_link(s, view, w.side, await team_key(s, w.side), w.bob.member_id)
        cases = [
            ("a sequence ahead", team_json(*team_add_link(s, view, w.drafting, key, carol, seq_delta=2))),
            ("wrong previous link", team_json(*team_add_link(s, view, w.drafting, key, carol, prev=b"\x02" * 32))),
            ("a link of another team", team_json(*side_link)),
            ("bad signature", team_json(bad_sig(link), boxes)),
            ("an hour old", team_json(*team_add_link(s, view, w.drafting, key, carol, when=now(w) - 3600))),
            ("dated before the head", team_json(*team_add_link(s, view, w.drafting, key, carol,
                                                               when=team.time - 1))),
            ("no key box", {**valid, "boxes": {}}),
            ("box not matching its commitment",
             {**valid, "boxes": {carol: b64(key.seal_for(carol, 1, view.members[carol].puk_box_public))}}),
            ("box for someone else", {**valid, "boxes": {w.bob.member_id: valid["boxes"][carol]}}),
            ("adds a member already in the team",
             team_json(*team_add_link(s, view, w.drafting, key, w.bob.member_id))),
            ("unknown role", team_json(*team_add_link(s, view, w.drafting, key, carol, role="owner"))),
            ("key generation that does not exist",
             team_json(*team_add_link(s, view, w.drafting, TeamKey(w.drafting, 2, b"k" * 32), carol))),
        ]
        for label, body in cases:
            await refused(h, "POST", path, 400, token=s.api.token, js=body, what=label)

        await refused(h, "POST", f"/api/v1/teams/{'e' * 32}/links", 404, token=s.api.token, js=valid,
                      what="unknown team")
        status, chain = await h.call("GET", f"/api/v1/chains/team/{w.drafting}", token=s.api.token)
        assert status == 200
        for i, wire in enumerate(chain["links"][1:], start=2):
            await refused(h, "POST", path, 409, token=s.api.token, js={"link": wire, "boxes": {}},
                          what=f"replay of link {i}")
        await refused(h, "POST", path, 400, token=s.api.token, js={"link": chain["links"][0], "boxes": {}},
                      contains="another chain", what="the team.create link sent as an append")
        stale = team_add_link(s, view, w.drafting, key, carol, seq_delta=0, prev=b"\x00" * 32)
        await refused(h, "POST", path, 409, token=s.api.token, js=team_json(*stale), what="current sequence")
        older = team_add_link(s, view, w.drafting, key, carol, org_seq=view.org.seq - 1)
        await refused(h, "POST", path, 409, token=s.api.token, js=team_json(*older),
                      contains="organization chain moved on", what="made against an older org state")
        ahead = team_add_link(s, view, w.drafting, key, carol, org_seq=view.org.seq + 1)
        await refused(h, "POST", path, 400, token=s.api.token, js=team_json(*ahead),
                      contains="organization state", what="made against an org state that does not exist")

        bob_token = await login(h, w.bob)
        await refused(h, "POST", path, 403, token=bob_token, js=valid, contains="logged-in device",
                      what="alice's link from bob's session")
    async with session(w, w.bob) as bs, Http(w.server) as h:
        bview = await bs.view(refresh=True)
        bkey = await team_key(bs, w.drafting)
        by_bob = team_json(*team_add_link(bs, bview, w.drafting, bkey, carol))
        await refused(h, "POST", path, 403, token=bs.api.token, js=by_bob, contains="may not",
                      what="a writer adds a member")
        side_by_bob = make_link(chain=w.side, seq=3, prev=b"\x00" * 32, time=now(w), signer=bs.me,
                                device=bs.device, type_="team.add", body={})
        await refused(h, "POST", f"/api/v1/teams/{w.side}/links", 404, token=bs.api.token,
                      js=team_json(side_by_bob, {}), what="a team bob is not in")
    async with session(w, w.alice) as s:
        assert (await s.view(refresh=True)).teams[w.drafting].seq == team.seq


# == documents =======================================================================================


async def test_put_and_read_versions(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        v1 = make_upload(w, s, key, doc, size=2000)
        status, res = await h.call("POST", docs_path(w.drafting, doc), token=s.api.token, data=v1.data)
        assert status == 201 and res == {"vid": v1.vid, "seq": 1}, res
        v2 = make_upload(w, s, key, doc, seq=2, parent=v1.vid, size=0)
        status, res = await h.call("POST", docs_path(w.drafting, doc), token=s.api.token, data=v2.data)
        assert status == 201 and res == {"vid": v2.vid, "seq": 2}, res

        alice = await login(h, w.alice)
        for token in (s.api.token, alice):
            status, listing = await h.call("GET", f"/api/v1/teams/{w.drafting}/docs", token=token)
            assert status == 200
            heads = {d["doc"]: d for d in listing["docs"]}
            assert heads[doc]["vid"] == v2.vid and heads[doc]["seq"] == 2
            status, versions = await h.call("GET", docs_path(w.drafting, doc), token=token)
            assert status == 200
            assert [(v["vid"], v["seq"], v["body_len"]) for v in versions["versions"]] == [
                (v1.vid, 1, body_length(2000)), (v2.vid, 2, body_length(0))]
            for v in (v1, v2):
                status, body = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{v.vid}/body",
                                            token=token)
                assert status == 200 and body == v.body
    assert snapshot(w.server)["tmp"] == []
    assert (w.server.data_dir / "blobs" / v1.vid[:2] / v1.vid).read_bytes() == v1.body


async def test_put_rejects_malformed_uploads(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        up = make_upload(w, s, key, doc, size=3000)
        head, body = up.data[:up.head_len], up.body
        flipped_sig = up.data[:-1] + bytes([up.data[-1] ^ 1])
        mid = up.head_len + len(body) // 2
        flipped_body = up.data[:mid] + bytes([up.data[mid] ^ 1]) + up.data[mid + 1:]
        cases = [
            ("empty upload", b"", "ended inside"),
            ("wrong magic", b"MVDOC9\n" + up.data[len(MAGIC):], "magic"),
            ("not a document at all", b"%PDF-1.7\n" + os.urandom(200), "magic"),
            ("ends inside the length", MAGIC + b"\x00\x01", "ended inside"),
            ("ends inside the prelude", head[:-10], "ended inside"),
            ("prelude too large", MAGIC + struct.pack(">I", MAX_PRELUDE + 1) + b"\x00" * 64, "too large"),
            ("prelude is not canonical bytes", MAGIC + struct.pack(">I", 5) + b"hello" + body, ""),
            ("prelude without a core", MAGIC + _prelude({"wrapped": b"w" * 48, "meta": b"m"}) + body, ""),
            ("document of another doc id", make_upload(w, s, key, new_doc()).data, "another team or document"),
            ("document of another team", make_upload(w, s, TeamKey(w.side, 1, b"s" * 32), doc).data,
             "another team or document"),
            ("dated an hour ago", make_upload(w, s, key, doc, when=now(w) - 3600).data, "time"),
            ("dated an hour ahead", make_upload(w, s, key, doc, when=now(w) + 3600).data, "time"),
            ("body shorter than declared", up.data[:mid], "ended"),
            ("no signature", head + body, "ended inside the signature"),
            ("half a signature", up.data[:-32], "ended inside the signature"),
            ("bytes after the signature", up.data + b"\x00", "after the signature"),
            ("a second document appended", up.data + up.data, "after the signature"),
            ("signature altered", flipped_sig, "signature"),
            ("body altered", flipped_body, "signature"),
        ]
        for label, data, contains in cases:
            await refused(h, "POST", path, 400, token=s.api.token, data=data, contains=contains, what=label)
        for bad_doc in ("NOTHEX", "A" * 32, "0" * 31, "0" * 33, "g" * 32):
            await refused(h, "POST", docs_path(w.drafting, bad_doc), 400, token=s.api.token, data=up.data,
                          what=f"doc id {bad_doc}")
        # Nothing was half-stored: the same upload is still accepted as version 1.
        status, res = await h.call("POST", path, token=s.api.token, data=up.data)
        assert status == 201 and res["seq"] == 1, res


def _prelude(value: dict[str, Any]) -> bytes:
    raw = encode(value)
    return struct.pack(">I", len(raw)) + raw


async def test_put_refuses_other_authors_and_non_writers(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        as_alice = make_upload(w, s, key, doc, device=w.alice.device, author=w.alice.member_id)
        await refused(h, "POST", path, 403, token=s.api.token, data=as_alice.data,
                      contains="uploading device", what="authored and signed by alice")
        alice_device = make_upload(w, s, key, doc, device=w.alice.device)
        await refused(h, "POST", path, 403, token=s.api.token, data=alice_device.data,
                      contains="uploading device", what="signed by alice's device")
        mine = make_upload(w, s, key, doc)
        alice_token = await login(h, w.alice)
        await refused(h, "POST", path, 403, token=alice_token, data=mine.data,
                      contains="uploading device", what="bob's document from alice's session")
        await refused(h, "POST", docs_path(w.side, doc), 404, token=s.api.token, data=mine.data,
                      what="a team bob is not in")
    async with session(w, w.carol) as cs, Http(w.server) as h:
        side_key = await team_key(cs, w.side)
        doc = new_doc()
        up = make_upload(w, cs, side_key, doc)
        await refused(h, "POST", docs_path(w.side, doc), 403, token=cs.api.token, data=up.data,
                      contains="may not write", what="a reader writes")


async def test_put_conflicts(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        v1 = make_upload(w, s, key, doc)
        status, res = await h.call("POST", path, token=s.api.token, data=v1.data)
        assert status == 201, res
        team_seq = team_seq_of(w, w.drafting)
        for label, data, contains in (
            ("the same upload again", v1.data, "document changed"),
            ("another first version", make_upload(w, s, key, doc).data, "document changed"),
            ("parent that is not the head", make_upload(w, s, key, doc, seq=2, parent="ab" * 16).data,
             "document changed"),
            ("sequence that skips one", make_upload(w, s, key, doc, seq=3, parent=v1.vid).data, "document changed"),
            ("old team key generation", make_upload(w, s, TeamKey(w.drafting, 2, b"n" * 32), doc, seq=2,
                                                    parent=v1.vid).data, "generation"),
            # The header names the team state the writer saw: it must be the current one.
            ("an older team state", make_upload(w, s, key, doc, seq=2, parent=v1.vid,
                                                team_seq=team_seq - 1).data, "team changed"),
            ("a team state that does not exist yet", make_upload(w, s, key, doc, seq=2, parent=v1.vid,
                                                                 team_seq=team_seq + 1).data, "team changed"),
        ):
            await refused(h, "POST", path, 409, token=s.api.token, data=data, what=label, contains=contains)
        v2 = make_upload(w, s, key, doc, seq=2, parent=v1.vid)
        status, res = await h.call("POST", path, token=s.api.token, data=v2.data)
        assert status == 201 and res["seq"] == 2, res
        # alice edited from v1 at the same time: stale parent.
        async with session(w, w.alice) as a:
            stale = make_upload(w, a, key, doc, seq=2, parent=v1.vid)
            await refused(h, "POST", path, 409, token=a.api.token, data=stale.data,
                          contains="changed on the server", what="stale parent")


async def test_put_too_large(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc, size=5000)
        w.server.app[CONFIG].max_upload = body_length(5000) - 1
        await refused(h, "POST", docs_path(w.drafting, doc), 413, token=s.api.token, data=up.data)
        w.server.app[CONFIG].max_upload = body_length(5000)
        status, res = await h.call("POST", docs_path(w.drafting, doc), token=s.api.token, data=up.data)
        assert status == 201, res


async def test_doc_reads_need_a_current_role(w: World) -> None:
    async with session(w, w.carol) as cs, Http(w.server) as h:
        past_carol(w)  # carol's reader role in "side" has ended
        token = await login(h, w.carol)
        for label, path in (
            ("list", f"/api/v1/teams/{w.side}/docs"),
            ("versions", docs_path(w.side, new_doc())),
            ("body", f"/api/v1/teams/{w.side}/versions/{'0' * 32}/body"),
        ):
            await refused(h, "GET", path, 403, token=token, contains="may not read", what=label)
        # Still a member of the team's chain, so the team itself is visible to her.
        status, _ = await h.call("GET", f"/api/v1/chains/team/{w.side}", token=cs.api.token)
        assert status == 200


async def test_doc_reads_of_unknown_or_invisible_things(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        up = make_upload(w, s, key, doc)
        status, _ = await h.call("POST", docs_path(w.drafting, doc), token=s.api.token, data=up.data)
        assert status == 201
        carol = await login(h, w.carol)
        for label, token, team in (("team bob is not in", s.api.token, w.side),
                                   ("team carol is not in", carol, w.drafting),
                                   ("unknown team", s.api.token, "c" * 32)):
            for path in (f"/api/v1/teams/{team}/docs", docs_path(team, doc),
                         f"/api/v1/teams/{team}/versions/{up.vid}/body"):
                await refused(h, "GET", path, 404, token=token, what=f"{label}: {path}")
        await refused(h, "GET", docs_path(w.drafting, new_doc()), 404, token=s.api.token,
                      contains="no such document", what="unknown document")
        await refused(h, "GET", f"/api/v1/teams/{w.drafting}/versions/{'d' * 32}/body", 404,
                      token=s.api.token, what="unknown version")
        for bad_doc in ("NOTHEX", "A" * 32, "0" * 31, "0" * 33):
            await refused(h, "GET", docs_path(w.drafting, bad_doc), 400, token=s.api.token, what=bad_doc)


# == interrupted uploads and restarts ================================================================


async def _wait_for_empty_tmp(server: ServerThread) -> None:
    tmp = server.data_dir / "tmp"
    for _ in range(100):
        if not any(tmp.iterdir()):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let the handler finish noticing the disconnect
    assert not any(tmp.iterdir()), "an interrupted upload left a temporary file"


async def test_interrupted_upload_leaves_nothing_and_restart_works(w: World) -> None:
    async with session(w, w.bob) as s, Http(w.server) as h:
        key = await team_key(s, w.drafting)
        doc = new_doc()
        path = docs_path(w.drafting, doc)
        up = make_upload(w, s, key, doc, size=3 * 1024 * 1024 + 17)
        before = snapshot(w.server)
        for label, cut in (("inside the header", 20),
                           ("half way through the body", up.head_len + len(up.body) // 2),
                           ("just before the signature", len(up.data) - 64),
                           ("one byte short", len(up.data) - 1)):
            head = request_head(w.server, "POST", path, len(up.data), s.api.token, "application/octet-stream")
            await raw_exchange(w.server, head, [up.data[:cut]], close=True)
            await _wait_for_empty_tmp(w.server)
            assert snapshot(w.server) == before, f"upload cut off {label} changed the stored state"
            await refused(h, "GET", path, 404, token=s.api.token, what=f"after a cut {label}")
            status, listing = await h.call("GET", f"/api/v1/teams/{w.drafting}/docs", token=s.api.token)
            assert status == 200 and doc not in {d["doc"] for d in listing["docs"]}

    # A crash could leave a temporary file and an unreferenced blob; start-up removes both.
    (w.server.data_dir / "tmp" / "upload-crashed").write_bytes(b"partial")
    (w.server.data_dir / "blobs" / "zz").mkdir(exist_ok=True)
    (w.server.data_dir / "blobs" / "zz" / ("zz" + "0" * 30)).write_bytes(b"orphan")
    w.server = await asyncio.to_thread(w.server.restart)
    assert snapshot(w.server) == before

    async with session(w, w.bob) as s, Http(w.server) as h:
        status, res = await h.call("POST", path, token=s.api.token, data=up.data)
        assert status == 201 and res == {"vid": up.vid, "seq": 1}, res
        status, body = await h.call("GET", f"/api/v1/teams/{w.drafting}/versions/{up.vid}/body",
                                    token=s.api.token)
        assert status == 200 and body == up.body
    assert "drafting" in w.bob.member.json("whoami")["teams"]


# == team threads ===================================================================================


async def thread_in(w: World, actor: Actor, team_name: str, name: str, expire: int = 0) -> tuple[str, str]:
    """(team id, thread id) of ``name``, created by ``actor`` if it does not exist yet."""
    async with session(w, actor) as s:
        threads = await Threads.open(s, team_name)
        tid = await threads.thread_of(name)
        if any(t["thread"] == tid for t in (await s.api.get(threads.base))["threads"]):
            return threads.team.team_id, tid
        await threads.create(name, expire)
        return threads.team.team_id, tid


async def next_message(w: World, actor: Actor, team_name: str, name: str, text: str = "hello", *,
                       gen: int | None = None, **override: Any) -> Message:
    """A correctly chained message of ``actor`` (fields can be overridden), not posted."""
    async with session(w, actor) as s:
        threads = await Threads.open(s, team_name)
        ct = await threads.resolve(name)
        team = threads.team
        key = await s.team_key(team, gen or team.generation)
        last = ct.checker.senders.get(s.device.device_id)
        fields: dict[str, Any] = {
            "thread": ct.checker.thread, "rec": ct.checker.rec, "team_seq": team.seq, "sender": s.me,
            "device": s.device,
            "seq": last.seq + 1 if last else 1, "prev": last.id if last else None,
            "prev_time": last.time if last else 0, "seen": [], "time": now(w)}
        fields.update(override)
        return make_message(key, MsgBody(text), **fields)


def msgs_path(team: str, thread: str) -> str:
    return f"/api/v1/teams/{team}/threads/{thread}/messages"


async def test_threads_create_list_post_read_follow(w: World) -> None:
    team, thread = await thread_in(w, w.alice, "drafting", "api-walk")
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        status, listing = await h.call("GET", f"/api/v1/teams/{team}/threads", token=bob)
        assert status == 200 and thread in [t["thread"] for t in listing["threads"]]
        fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs, cs.ws_connect(
                f"{w.server.url}/api/v1/teams/{team}/live", headers={"Authorization": f"Bearer {bob}"}) as ws:
            await ws.send_json({"after": {thread: 0}})
            assert (await ws.receive_json(timeout=10)) == {"type": "live"}
            m = await next_message(w, w.bob, "drafting", "api-walk", "over the API")
            status, res = await h.call("POST", msgs_path(team, thread), token=bob, js={"message": b64(m.raw)})
            assert status == 201 and res == {"id": m.id, "pos": 1}
            frame = await ws.receive_json(timeout=10)
            assert frame["type"] == "msg" and frame["pos"] == 1 and base64.b64decode(frame["record"]) == m.raw
        status, page = await h.call("GET", msgs_path(team, thread) + "?after=0", token=bob)
        assert status == 200 and [x["pos"] for x in page["messages"]] == [1]
        assert page["mine"] == {"seq": 1, "id": m.id, "time": m.header.time} and page["more"] is False
        status, page = await h.call("GET", msgs_path(team, thread) + "?after=1", token=bob)
        assert status == 200 and page["messages"] == []


async def test_thread_create_refusals(w: World) -> None:
    async with session(w, w.alice) as s:
        threads = await Threads.open(s, "drafting")
        key = await s.team_key(threads.team, threads.team.generation)
        team = threads.team
    side_team, _ = await thread_in(w, w.alice, "side", "side-talk")

    def record(name: str, **kw: Any) -> str:
        f: dict[str, Any] = {"team_seq": team.seq, "expire": 0, "creator": w.alice.member_id,
                             "device": w.alice.device, "time": now(w)}
        f.update(kw)
        return b64(make_thread(kw.pop("key", key), name, **{k: v for k, v in f.items() if k != "key"}).raw)

    path = f"/api/v1/teams/{team.team_id}/threads"
    async with Http(w.server) as h:
        alice, bob, carol = await login(h, w.alice), await login(h, w.bob), await login(h, w.carol)
        await refuse_bad_json(h, path, {"record": record("bad-json")}, b64_fields=["record"], token=alice)
        await refused(h, "POST", path, 400, token=alice, what="another team's record",
                      js={"record": record("x", key=TeamKey(side_team, 1, os.urandom(32)))})
        await refused(h, "POST", path, 400, token=alice, contains="too far", what="old time",
                      js={"record": record("old", time=now(w) - 3600)})
        forged = ThreadRecord.parse(base64.b64decode(record("forged")))
        tampered = encode({"core": forged.core_raw, "sig": bytes(64)})
        await refused(h, "POST", path, 400, token=alice, what="bad signature", js={"record": b64(tampered)})
        await refused(h, "POST", path, 403, token=bob, contains="signed by the creating device",
                      what="alice's record from bob", js={"record": record("not-bobs")})
        async with session(w, w.carol) as s:
            side = (await s.view()).team_by_name("side")
            ckey = await s.team_key(side, side.generation)
        carol_rec = make_thread(ckey, "readers-thread", team_seq=side.seq, expire=0, creator=w.carol.member_id,
                                device=w.carol.device, time=now(w))
        await refused(h, "POST", f"/api/v1/teams/{side.team_id}/threads", 403, token=carol,
                      what="a reader creates", js={"record": b64(carol_rec.raw)})
        await refused(h, "POST", path, 409, token=alice, contains="team changed", what="stale team state",
                      js={"record": record("stale", team_seq=team.seq - 1)})
        status, _ = await h.call("POST", path, token=alice, js={"record": record("twice")})
        assert status == 201
        await refused(h, "POST", path, 409, token=alice, contains="already exists", js={"record": record("twice")})


async def test_thread_reads_refuse_bad_parameters(w: World) -> None:
    team, thread = await thread_in(w, w.alice, "drafting", "params")
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        for query in ("?after=-1", "?after=abc", "?after=" + "9" * 13, "?limit=x"):
            await refused(h, "GET", msgs_path(team, thread) + query, 400, token=bob, what=query)
        await refused(h, "GET", msgs_path(team, "not-a-thread-id"), 400, token=bob)


async def test_threads_of_invisible_teams_and_unknown_threads(w: World) -> None:
    side, side_thread = await thread_in(w, w.alice, "side", "hidden-from-bob")
    team, _ = await thread_in(w, w.alice, "drafting", "known")
    unknown = "0" * 32
    m = await next_message(w, w.alice, "drafting", "known")
    async with Http(w.server) as h:
        bob = await login(h, w.bob)
        await refused(h, "GET", f"/api/v1/teams/{side}/threads", 404, token=bob)
        await refused(h, "POST", f"/api/v1/teams/{side}/threads", 404, token=bob, js={"record": "x"})
        await refused(h, "GET", msgs_path(side, side_thread), 404, token=bob)
        await refused(h, "POST", msgs_path(side, side_thread), 404, token=bob, js={"message": "x"})
        await refused(h, "GET", msgs_path(team, unknown), 404, token=bob, contains="no such thread")
        await refused(h, "POST", msgs_path(team, unknown), 404, token=bob, contains="no such thread",
                      js={"message": b64(m.raw)})
        fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await cs.ws_connect(f"{w.server.url}/api/v1/teams/{side}/live",
                                    headers={"Authorization": f"Bearer {bob}"})
            assert e.value.status == 404
            async with cs.ws_connect(f"{w.server.url}/api/v1/teams/{team}/live",
                                     headers={"Authorization": f"Bearer {bob}"}) as ws:
                await ws.send_json({"after": {unknown: 0}})
                assert (await ws.receive_json(timeout=10))["error"] == "not_found"
                assert (await ws.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            for bad in ("not json", "[" * 30000, json.dumps({"after": {"x": 0}}),
                        json.dumps({"after": {}, "all": False}),
                        json.dumps({"surprise": 1}), json.dumps({"after": {unknown: -1}})):
                async with cs.ws_connect(f"{w.server.url}/api/v1/teams/{team}/live",
                                         headers={"Authorization": f"Bearer {bob}"}) as ws:
                    await ws.send_str(bad)
                    frame = await ws.receive_json(timeout=10)
                    assert frame["type"] == "error" and frame["error"] == "bad_encoding", (bad, frame)


async def test_post_refusals(w: World) -> None:
    team, thread = await thread_in(w, w.alice, "drafting", "refusals")
    side, side_thread = await thread_in(w, w.alice, "side", "carol-reads")
    _, other_thread = await thread_in(w, w.alice, "drafting", "refusals-other")
    path = msgs_path(team, thread)
    async with Http(w.server) as h:
        bob, carol = await login(h, w.bob), await login(h, w.carol)
        ok = await next_message(w, w.bob, "drafting", "refusals")
        await refuse_bad_json(h, path, {"message": b64(ok.raw)}, b64_fields=["message"], token=bob)
        other = await next_message(w, w.bob, "drafting", "refusals-other")
        await refused(h, "POST", path, 400, token=bob, contains="another team or thread", what="other thread",
                      js={"message": b64(other.raw)})
        skewed = await next_message(w, w.bob, "drafting", "refusals", time=now(w) - 3600)
        await refused(h, "POST", path, 400, token=bob, contains="too far", js={"message": b64(skewed.raw)})
        f = Fields(decode(ok.raw), "message")
        unsigned = encode({"header": f.raw["header"], "ct": f.raw["ct"], "sig": bytes(64)})
        await refused(h, "POST", path, 400, token=bob, what="bad signature", js={"message": b64(unsigned)})
        alices = await next_message(w, w.alice, "drafting", "refusals")
        await refused(h, "POST", path, 403, token=bob, contains="signed by the posting device",
                      js={"message": b64(alices.raw)})
        carols = await next_message(w, w.carol, "side", "carol-reads")
        await refused(h, "POST", msgs_path(side, side_thread), 403, token=carol, contains="may not post",
                      js={"message": b64(carols.raw)})
        await refused(h, "POST", path, 409, token=bob, contains="team changed", what="stale team state",
                      js={"message": b64((await next_message(w, w.bob, "drafting", "refusals",
                                                             team_seq=1)).raw)})
        gap = await next_message(w, w.bob, "drafting", "refusals", seq=5, prev="ab" * 16, prev_time=now(w) - 5)
        await refused(h, "POST", path, 409, token=bob, contains="last message", what="a gap in our own sequence",
                      js={"message": b64(gap.raw)})
        huge = b"x" * (MAX_RECORD + 1)
        await refused(h, "POST", path, 413, token=bob, js={"message": b64(huge)})
        status, _ = await h.call("POST", path, token=bob, js={"message": b64(ok.raw)})
        assert status == 201
        await refused(h, "POST", path, 409, token=bob, contains="last message", what="the same message again",
                      js={"message": b64(ok.raw)})
    async with session(w, w.alice) as s:
        await maintenance.rotate(s, (await s.view(refresh=True)).team_by_name("drafting"))
    old = await next_message(w, w.bob, "drafting", "refusals", gen=1)
    async with Http(w.server) as h:
        await refused(h, "POST", path, 409, token=await login(h, w.bob), contains="not current",
                      js={"message": b64(old.raw)})


async def test_thread_reads_need_a_current_role(w: World) -> None:
    side, thread = await thread_in(w, w.alice, "side", "expiring-role")
    async with Http(w.server) as h:
        carol = await login(h, w.carol)
        status, _ = await h.call("GET", f"/api/v1/teams/{side}/threads", token=carol)
        assert status == 200  # while her role lasts
        past_carol(w)
        carol = await login(h, w.carol)
        await refused(h, "GET", f"/api/v1/teams/{side}/threads", 403, token=carol, contains="may not read")
        await refused(h, "GET", msgs_path(side, thread), 403, token=carol, contains="may not read")
        fp = aiohttp.Fingerprint(bytes.fromhex(w.server.fingerprint))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=fp)) as cs:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await cs.ws_connect(f"{w.server.url}/api/v1/teams/{side}/live",
                                    headers={"Authorization": f"Bearer {carol}"})
            assert e.value.status == 403
