"""The HTTP API, operation by operation and error by error, against the real server: the contract,
the public endpoints, founding and joining.

``COVERAGE`` maps every (method, path, status) that ``server/openapi.py`` documents to the
test that exercises it (in any ``tests/test_*.py``); ``test_every_documented_status_is_covered``
keeps the two in step.
Every refused request must answer ``{"error": str, "message": str}`` with a 4xx status
(never a 500) and leave the stored state exactly as it was: the rows of ``links``,
``team_boxes``, ``puk_boxes`` and ``versions`` and the files under ``blobs/`` and ``tmp/``.
Most tests share one organization per module (``w``, ``tests/helpers/api_fixtures.py``).
Tests that need a server without an organization use the ``server`` fixture.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

from server.context import DIRECTORY
from server.openapi import OPENAPI
from tests.conftest import ServerThread
from tests.helpers.api_fixtures import (
    bad_sig,
)
from tests.helpers.api_world import (
    World,
    found_body,
    info_of,
    join_body,
    new_invite,
    newcomer,
    now,
    org_create,
    org_join,
    session,
)
from tests.helpers.db import snapshot
from tests.helpers.http import Http, b64, login, login_as, raw_exchange, refuse_bad_json, refused, request_head
from vault.invite import InviteCode
from vault.links import invite_public, parse_link

COVERAGE: dict[tuple[str, str, str], str] = {
    ("get", "/api/health", "200"): "test_public_endpoints",
    ("get", "/api/health", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("get", "/api/openapi.json", "200"): "test_public_endpoints",
    ("get", "/api/openapi.json", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("get", "/api/v1/info", "200"): "test_public_endpoints",
    ("get", "/api/v1/info", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("get", "/api/v1/closing", "200"): "test_closing_end_to_end",
    ("get", "/api/v1/closing", "404"): "test_an_open_organization_has_no_closing_to_serve",
    ("get", "/api/v1/closing", "429"): "test_requests_without_a_session_are_limited_per_source",
    ("get", "/api/metrics", "200"): "test_metrics_after_a_walkthrough_name_routes_not_ids",
    ("get", "/api/metrics", "403"): "test_only_the_token_opens_the_metrics_when_loopback_is_off",
    ("get", "/api/metrics", "429"): "test_metrics_requests_are_limited_like_any_request_without_a_session",
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
    ("get", "/api/v1/chains/org", "403"): "test_an_allys_member_joins_the_space_as_a_guest",
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
    ("get", "/api/v1/members/{member}/devices/{device}/signed", "200"): "test_device_signed",
    ("get", "/api/v1/members/{member}/devices/{device}/signed", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/members/{member}/devices/{device}/signed", "404"): "test_device_signed",
    ("get", "/api/v1/chains/member/{member}", "200"): "test_member_chain",
    ("get", "/api/v1/chains/member/{member}", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/chains/member/{member}", "404"): "test_member_chain",
    ("get", "/api/v1/chains/member/{member}", "400"): "test_a_bad_after_on_a_member_or_team_chain",
    ("get", "/api/v1/chains/team/{team}", "200"): "test_team_chain_and_boxes",
    ("get", "/api/v1/chains/team/{team}", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/chains/team/{team}", "404"): "test_team_chain_and_boxes",
    ("get", "/api/v1/chains/team/{team}", "400"): "test_a_bad_after_on_a_member_or_team_chain",
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
    ("post", "/api/v1/teams/{team}/guests", "201"): "test_an_allys_member_joins_the_space_as_a_guest",
    ("post", "/api/v1/teams/{team}/guests", "400"): "test_the_guests_route_refuses_what_the_judge_refuses",
    ("post", "/api/v1/teams/{team}/guests", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams/{team}/guests", "403"): "test_the_guests_route_refuses_what_the_judge_refuses",
    ("post", "/api/v1/teams/{team}/guests", "404"): "test_the_guests_route_refuses_what_the_judge_refuses",
    ("post", "/api/v1/teams/{team}/guests", "409"): "test_the_guests_route_refuses_what_the_judge_refuses",
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
    ("post", "/api/v1/teams/{team}/versions", "201"): "test_each_item_is_stored_or_refused_alone",
    ("post", "/api/v1/teams/{team}/versions", "400"): "test_a_malformed_body_is_refused_whole",
    ("post", "/api/v1/teams/{team}/versions", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams/{team}/versions", "403"): "test_only_writers_of_visible_teams_may_send_a_batch",
    ("post", "/api/v1/teams/{team}/versions", "404"): "test_only_writers_of_visible_teams_may_send_a_batch",
    ("post", "/api/v1/teams/{team}/versions", "413"): "test_a_malformed_body_is_refused_whole",
    ("post", "/api/v1/teams/{team}/versions", "507"): "test_a_batch_onto_a_full_disk_is_refused_cleanly",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "200"): "test_put_and_read_versions",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "403"): "test_doc_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/versions/{vid}/body", "404"): "test_doc_reads_of_unknown_or_invisible_things",
    ("post", "/api/v1/teams/{team}/bodies", "200"): "test_each_body_is_sent_or_refused_alone",
    ("post", "/api/v1/teams/{team}/bodies", "400"): "test_a_malformed_request_is_refused_whole",
    ("post", "/api/v1/teams/{team}/bodies", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/teams/{team}/bodies", "403"): "test_only_readers_of_visible_teams_may_ask",
    ("post", "/api/v1/teams/{team}/bodies", "404"): "test_only_readers_of_visible_teams_may_ask",
    ("post", "/api/v1/teams/{team}/bodies", "413"): "test_a_malformed_request_is_refused_whole",
    # the audit log (tests/test_audit_api_*.py)
    ("get", "/api/v1/audit/checkpoint", "200"): "test_checkpoint_is_signed_and_extends_earlier_ones",
    ("get", "/api/v1/audit/checkpoint", "400"): "test_checkpoint_is_signed_and_extends_earlier_ones",
    ("get", "/api/v1/audit/checkpoint", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/audit/leaves", "200"): "test_leaves_page_through_the_signed_tree",
    ("get", "/api/v1/audit/leaves", "400"): "test_leaves_page_through_the_signed_tree",
    ("get", "/api/v1/audit/leaves", "401"): "test_private_operations_need_a_session",
    ("get", "/api/v1/audit/leaves", "403"): "test_leaves_page_through_the_signed_tree",
    ("get", "/api/v1/audit/checkpoint.note", "200"): "test_outside_witness_cosigns_and_log_integrity_counts_it",
    ("get", "/api/v1/audit/checkpoint.note", "400"): "test_the_witness_cosigns_only_with_a_proof_from_its_last_size",
    ("get", "/api/v1/audit/checkpoint.note", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/audit/witness", "201"): "test_outside_witness_cosigns_and_log_integrity_counts_it",
    ("post", "/api/v1/audit/witness", "400"): "test_server_refuses_bad_witness_cosignatures",
    ("post", "/api/v1/audit/witness", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/audit/witness", "403"): "test_server_refuses_bad_witness_cosignatures",
    ("post", "/api/v1/audit/witness", "404"): "test_server_refuses_bad_witness_cosignatures",
    ("get", "/api/v1/restore/acceptances", "200"): "test_restore_acceptance_endpoints",
    ("get", "/api/v1/restore/acceptances", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/restore/acceptances", "201"): "test_restore_acceptance_endpoints",
    ("post", "/api/v1/restore/acceptances", "400"): "test_restore_acceptance_endpoints",
    ("post", "/api/v1/restore/acceptances", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/restore/acceptances", "403"): "test_restore_acceptance_endpoints",
    ("post", "/api/v1/restore/acceptances", "404"): "test_restore_acceptance_endpoints",
    ("post", "/api/v1/audit/cosign", "201"): "test_cosign_a_checkpoint",
    ("post", "/api/v1/audit/cosign", "400"): "test_cosign_a_checkpoint",
    ("post", "/api/v1/audit/cosign", "401"): "test_private_operations_need_a_session",
    ("post", "/api/v1/audit/cosign", "403"): "test_cosign_a_checkpoint",
    ("post", "/api/v1/audit/cosign", "404"): "test_cosign_a_checkpoint",
    ("post", "/api/v1/audit/cosign", "409"): "test_a_cosignature_whose_signers_chains_keep_moving_is_refused_with_409",
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
    ("get", "/api/v1/teams/{team}/live", "400"): "test_live_without_a_websocket_upgrade",
    ("get", "/api/v1/teams/{team}/live", "403"): "test_thread_reads_need_a_current_role",
    ("get", "/api/v1/teams/{team}/live", "404"): "test_threads_of_invisible_teams_and_unknown_threads",
    ("get", "/api/v1/teams/{team}/live", "429"): "test_live_followers",
}


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
        status, chain = await h.call("GET", f"/api/v1/chains/member/{n.member_id}", token=s.session.api.token)
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
                                         token=s.session.api.token)
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
