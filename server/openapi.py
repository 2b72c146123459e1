"""The HTTP API as data (OpenAPI 3.1). ``tests/test_api.py`` walks it: every operation and
every documented error status must have a test."""

from __future__ import annotations

from typing import Any

_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_OK = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}


def _op(summary: str, ok: str, errors: list[str], auth: bool = True, body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: _OK, **{e: _ERR for e in errors}}}
    if not auth:
        op["security"] = []
    if body == "json":
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    elif body == "stream":
        op["requestBody"] = {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Member Vault", "version": "1"},
    "components": {
        "securitySchemes": {"session": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "security": [{"session": []}],
    "paths": {
        # Every operation without a session may answer 429 "throttled" (with Retry-After): too many requests
        # from one address, or (challenge and login) too many failed logins from it.
        "/api/health": {"get": _op("liveness", "200", ["429"], auth=False)},
        "/api/openapi.json": {"get": _op("this document", "200", ["429"], auth=False)},
        "/api/v1/info": {"get": _op("server version, organization root, time", "200", ["429"], auth=False)},
        "/api/v1/found": {"post": _op("found the organization with the founder invite", "201",
                                      ["400", "403", "429"], auth=False, body="json")},
        "/api/v1/join/head": {"post": _op("the organization chain's head, for the holder of an open invite", "200",
                                          ["400", "403", "404", "429"], auth=False, body="json")},
        "/api/v1/join": {"post": _op("join with an invite: member chain + org.join link", "201",
                                     ["400", "403", "404", "429"], auth=False, body="json")},
        "/api/v1/auth/challenge": {"post": _op("single-use login nonce (60 s), the same answer for any ids",
                                               "200", ["400", "429"], auth=False, body="json")},
        "/api/v1/auth/login": {"post": _op("signed challenge -> session token", "200", ["400", "401", "429"],
                                           auth=False, body="json")},
        "/api/v1/directory": {"get": _op("heads of every chain the caller may see", "200", ["401"])},
        "/api/v1/chains/org": {"get": _op("organization chain links", "200", ["400", "401"])},
        "/api/v1/org/links": {"post": _op("append an organization link (invites, later roles)", "201",
                                          ["400", "401", "403", "409"], body="json")},
        "/api/v1/members/{member}/links": {"post": _op("append a member link (device add / revoke + PUK boxes)",
                                                        "201", ["400", "401", "403", "404", "409"], body="json")},
        "/api/v1/device-links/{slot}": {
            "post": _op("open a one-time device-link mailbox (existing device); 429 at the quota link_slots",
                        "201", ["400", "401", "409", "429"]),
            "get": _op("read the new device's sealed keys from the mailbox", "200", ["400", "401", "404"]),
        },
        "/api/v1/device-links/{slot}/offer": {"post": _op("new device delivers its sealed public keys once", "201",
                                                          ["400", "404", "429"], auth=False, body="json")},
        "/api/v1/chains/member/{member}": {"get": _op("a member chain", "200", ["401", "404"])},
        "/api/v1/chains/team/{team}": {"get": _op("a team chain (members and NCC)", "200", ["401", "404"])},
        "/api/v1/teams": {"post": _op("create a team (team.create link + key boxes)", "201",
                                      ["400", "401", "403", "409"], body="json")},
        "/api/v1/teams/{team}/links": {"post": _op("append a team link (+ key boxes)", "201",
                                                   ["400", "401", "403", "404", "409"], body="json")},
        "/api/v1/teams/{team}/boxes": {"get": _op("the caller's key boxes for a team", "200", ["401", "404"])},
        "/api/v1/puk-boxes": {"get": _op("the calling device's PUK boxes", "200", ["401"])},
        "/api/v1/teams/{team}/docs": {"get": _op("head version of every document", "200", ["401", "403", "404"])},
        "/api/v1/teams/{team}/docs/{doc}": {
            "get": _op("every version of a document", "200", ["400", "401", "403", "404"]),
            "post": _op("upload a new version (streamed envelope); 413 over max_upload or the quotas "
                        "version_bytes or stored_bytes, 429 at versions_per_day (Retry-After)", "201",
                        ["400", "401", "403", "409", "413", "429"], body="stream"),
        },
        "/api/v1/teams/{team}/versions/{vid}/body": {
            "get": _op("ciphertext body of a version (streamed)", "200", ["401", "403", "404"])
        },
        "/api/v1/teams/{team}/threads": {
            "get": _op("every thread of a team: signed record, next position, last activity, count", "200",
                       ["401", "403", "404"]),
            "post": _op("create a thread (signed thread record: encrypted name, expiry); 429 at the quota "
                        "threads_per_day (Retry-After)", "201", ["400", "401", "403", "404", "409", "429"],
                        body="json"),
        },
        "/api/v1/teams/{team}/threads/{thread}/messages": {
            "get": _op("messages after ?after=POS (?limit=, at most 1000), oldest first, and the calling "
                       "device's last message", "200", ["400", "401", "403", "404"]),
            "post": _op("post a signed, encrypted message under the current key generation", "201",
                        ["400", "401", "403", "404", "409", "413"], body="json"),
        },
        "/api/v1/teams/{team}/live": {
            "get": _op("WebSocket: first frame {after: {thread: pos}, all: bool}; then missed messages, "
                       "{type: live}, and each new message; 429 (before the upgrade) at the quota "
                       "live_followers", "101", ["401", "403", "404", "429"]),
        },
        "/api/v1/audit/checkpoint": {"get": _op("newest signed checkpoint of the audit log, the consistency proof "
                                                "from ?from=SIZE and the newest cosigned checkpoint", "200",
                                                ["400", "401"])},
        "/api/v1/audit/leaves": {"get": _op("sealed leaves and their hashes from ?start= (?count=, at most 2000); "
                                            "admitted members", "200", ["400", "401", "403"])},
        "/api/v1/audit/cosign": {"post": _op("Security Team cosignature of a checkpoint this server issued", "201",
                                             ["400", "401", "403", "404"], body="json")},
        "/api/v1/audit/key": {
            "get": _op("the Security Team's signed audit key statement (null until one is published)", "200",
                       ["401"]),
            "post": _op("publish the audit key of the current generation of a team of kind security", "201",
                        ["400", "401", "403", "404"], body="json"),
        },
        "/api/v1/audit/attest": {"post": _op("record an attestation: keystore, verify, approve, lost or export", "201",
                                             ["400", "401", "403", "404"], body="json")},
        "/api/v1/audit/teams/{team}/versions": {
            "get": _op("every version's signed record of a team, no body (Security Team)", "200",
                       ["401", "403", "404"])
        },
    },
}
