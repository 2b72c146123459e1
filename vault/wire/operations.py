"""Every operation of the HTTP API as data: method, path and its parameters, query parameters,
request body, answer per status, session or not, and what it does.

``server/openapi.py`` generates the OpenAPI document from ``OPERATIONS``; ``tests/test_api_contract.py``
checks that every (method, path, status) has a test, and ``tests/test_api_schemas.py`` that every
operation's real answers and the real client's requests match the Structs named here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from vault.wire import schemas as s

# The statuses a refusal may have, and what each means in this API.
ERROR_MEANINGS: dict[str, str] = {
    "400": "malformed request: a field, parameter, encoding, signature or link that does not check",
    "401": "no valid session (log in), or a refused login",
    "403": "not allowed: the one judge of authority refused, or the invite does not hold",
    "404": "unknown (or not visible to the caller): organization, member, team, document, thread, slot",
    "409": "conflict: the chain, team or document moved on; fetch and retry",
    "413": "too large: over the server's max_upload or a size quota",
    "429": "throttled or over a quota; Retry-After says when to try again where it applies",
    "507": "insufficient storage: the server's disk is full; nothing was stored, try again later",
}


class Binary:
    """The body is raw bytes (``application/octet-stream``): a document envelope, streamed."""


class WebSocket:
    """The request upgrades to a WebSocket (101): the client's first frame is ``FollowStart``, then the
    server sends ``LiveEvent`` frames."""


class Text:
    """The body is text (``text/plain``): the Prometheus exposition format of ``/api/metrics``, a checkpoint
    note."""


@dataclass(frozen=True)
class PathParam:
    name: str
    pattern: str
    description: str
    refused: Literal["400", "404"]  # the answer to a value that does not match: checked (400) or looked up (404)


@dataclass(frozen=True)
class QueryParam:
    """A non-negative integer of at most 12 digits (``int_query`` on the server); absent: its default."""

    name: str
    description: str


_ID, _ID_404 = "32 lowercase hex characters (400 otherwise)", "32 lowercase hex characters (an unknown id: 404)"
PATH_PARAMS: dict[str, PathParam] = {
    "member": PathParam("member", s.HEX_ID, f"a member id, {_ID_404}", "404"),
    "device": PathParam("device", s.HEX_ID, f"a device id, {_ID_404}", "404"),
    "team": PathParam("team", s.HEX_ID, f"a team id, {_ID_404}", "404"),
    "doc": PathParam("doc", s.HEX_ID, f"a document id, {_ID}", "400"),
    "vid": PathParam("vid", s.HEX_ID, f"a document version id, {_ID_404}", "404"),
    "thread": PathParam("thread", s.HEX_ID, f"a thread id, {_ID}", "400"),
    "slot": PathParam("slot", s.HEX_ID, f"a device-link mailbox (from the one-time code), {_ID}", "400"),
}
AFTER = QueryParam("after", "only the links (or messages) after this position; default 0")


@dataclass(frozen=True)
class Operation:
    name: str  # the OpenAPI operationId
    method: Literal["get", "post"]
    path: str
    summary: str
    ok: str  # the success status
    response: Any  # a Struct of schemas, OpenApiDocument, Binary, Text or WebSocket
    errors: tuple[str, ...]
    request: Any = None  # a Struct of schemas, Binary, or None (no body)
    auth: bool = True  # a session is needed (Authorization: Bearer TOKEN)
    query: tuple[QueryParam, ...] = ()

    @property
    def path_params(self) -> tuple[PathParam, ...]:
        return tuple(PATH_PARAMS[name] for name in re.findall(r"{(\w+)}", self.path))

    @property
    def statuses(self) -> tuple[str, ...]:
        return (self.ok, *self.errors)

    def matches(self, method: str, path: str) -> bool:
        """Is ``method path`` (a concrete path, no query) a call of this operation?"""
        return method.lower() == self.method and re.fullmatch(self._regex(), path) is not None

    def _regex(self) -> str:
        parts = re.split(r"({\w+})", self.path)
        return "".join(PATH_PARAMS[p[1:-1]].pattern.strip("^$") if p.startswith("{") else re.escape(p) for p in parts)


def _op(name: str, method: Literal["get", "post"], path: str, summary: str, ok: str, response: Any,
        errors: str, request: Any = None, auth: bool = True, query: tuple[QueryParam, ...] = ()) -> Operation:
    return Operation(name, method, path, summary, ok, response, tuple(errors.split()), request, auth, query)


TEAM, THREAD = "/api/v1/teams/{team}", "/api/v1/teams/{team}/threads/{thread}"

# Every operation without a session may answer 429 "throttled" (with Retry-After): too many requests from
# one address, or (challenge and login) too many failed logins from it.
OPERATIONS: tuple[Operation, ...] = (
    # -- public
    _op("health", "get", "/api/health", "liveness", "200", s.Health, "429", auth=False),
    _op("openapi", "get", "/api/openapi.json", "this document", "200", s.OpenApiDocument, "429", auth=False),
    _op("info", "get", "/api/v1/info", "server version, organization root, time", "200", s.Info, "429", auth=False),
    _op("found", "post", "/api/v1/found", "found the organization with the founder invite", "201", s.Founded,
        "400 403 429", s.FoundRequest, auth=False),
    _op("join_head", "post", "/api/v1/join/head", "the organization chain's head, for the holder of an open invite",
        "200", s.JoinHead, "400 403 404 429", s.JoinHeadRequest, auth=False),
    _op("join", "post", "/api/v1/join", "join with an invite: member chain + org.join link", "201", s.Joined,
        "400 403 404 429", s.JoinRequest, auth=False),
    _op("challenge", "post", "/api/v1/auth/challenge", "single-use login nonce (60 s), the same answer for any ids",
        "200", s.Challenge, "400 429", s.ChallengeRequest, auth=False),
    _op("login", "post", "/api/v1/auth/login", "signed challenge -> session token", "200", s.LoginToken,
        "400 401 429", s.LoginRequest, auth=False),
    _op("closing", "get", "/api/v1/closing", "a closed organization's chain and its members' chains (404 while "
        "it is open)", "200", s.ClosingChains, "404 429", auth=False),
    _op("metrics", "get", "/api/metrics",
        "Prometheus metrics (text format) for the operator: Authorization: Bearer <metrics_token>, or a loopback "
        "peer while metrics_loopback is on; 403 for anyone else. No session", "200", Text, "403 429", auth=False),
    # -- chains and keys
    _op("directory", "get", "/api/v1/directory", "heads of every chain the caller may see", "200", s.DirectoryView,
        "401"),
    _op("org_chain", "get", "/api/v1/chains/org", "organization chain links (403 for a coalition guest)", "200",
        s.Links, "400 401 403", query=(AFTER,)),
    _op("append_org_link", "post", "/api/v1/org/links", "append an organization link (invites, later roles)", "201",
        s.SeqAnswer, "400 401 403 409", s.LinkRequest),
    _op("append_member_link", "post", "/api/v1/members/{member}/links",
        "append a member link (device add / revoke + PUK boxes)", "201", s.SeqAnswer, "400 401 403 404 409",
        s.MemberLinkRequest),
    _op("device_signed", "get", "/api/v1/members/{member}/devices/{device}/signed",
        "the latest time of anything a device of the caller's own member signed that this server accepted (0: "
        "nothing), which a revocation of it must be dated after; another member's device: 404", "200", s.SignedAt,
        "401 404"),
    _op("open_link_slot", "post", "/api/v1/device-links/{slot}",
        "open a one-time device-link mailbox (existing device); 429 at the quota link_slots", "201", s.SlotOpened,
        "400 401 409 429"),
    _op("read_link_slot", "get", "/api/v1/device-links/{slot}", "read the new device's sealed keys from the mailbox",
        "200", s.SlotPayload, "400 401 404"),
    _op("offer_link_slot", "post", "/api/v1/device-links/{slot}/offer",
        "new device delivers its sealed public keys once", "201", s.Ok, "400 404 429", s.SlotOffer, auth=False),
    _op("member_chain", "get", "/api/v1/chains/member/{member}", "a member chain", "200", s.Links, "400 401 404",
        query=(AFTER,)),
    _op("team_chain", "get", "/api/v1/chains/team/{team}", "a team chain (members and NCC)", "200", s.Links,
        "400 401 404", query=(AFTER,)),
    _op("create_team", "post", "/api/v1/teams", "create a team (team.create link + key boxes)", "201", s.TeamSeq,
        "400 401 403 409", s.TeamLinkRequest),
    _op("append_team_link", "post", f"{TEAM}/links", "append a team link (+ key boxes)", "201", s.TeamSeq,
        "400 401 403 404 409", s.TeamLinkRequest),
    _op("add_guest", "post", f"{TEAM}/guests", "a coalition space admin adds an ally's member: their member chain and "
        "the team.add carrying their organization's approval, stored together", "201", s.TeamSeq,
        "400 401 403 404 409", s.GuestRequest),
    _op("team_boxes", "get", f"{TEAM}/boxes", "the caller's key boxes for a team", "200", s.TeamBoxes, "401 404"),
    _op("puk_boxes", "get", "/api/v1/puk-boxes", "the calling device's PUK boxes", "200", s.PukBoxes, "401"),
    # -- documents
    _op("list_docs", "get", f"{TEAM}/docs", "head version of every document", "200", s.Docs, "401 403 404"),
    _op("doc_versions", "get", f"{TEAM}/docs/{{doc}}", "every version of a document (none yet: an empty list)", "200",
        s.Versions, "400 401 403 404"),
    _op("put_version", "post", f"{TEAM}/docs/{{doc}}",
        "upload a new version (streamed envelope); 413 over max_upload or the quotas version_bytes or "
        "stored_bytes, 429 at versions_per_day (Retry-After), 507 when the server's disk is full", "201", s.Stored,
        "400 401 403 404 409 413 429 507", Binary,
        query=(QueryParam("review", "YYYY-MM: the month of the version's review-by date (rule document-review); "
                                 "must be the month signed in the version's header"),)),
    _op("put_versions", "post", f"{TEAM}/versions",
        "upload many small new versions in one body (each item a u32 length and a whole envelope, "
        "docs/format.md); each item is judged, stored and audited as put_version would, and refused alone "
        "(its outcome says why); 400 for a malformed body or more than 256 items, 413 over 16 MiB, 507 when "
        "the server's disk is full (nothing stored)", "201", s.BatchStored, "400 401 403 404 413 507", Binary),
    _op("version_body", "get", f"{TEAM}/versions/{{vid}}/body", "ciphertext body of a version (streamed)", "200",
        Binary, "401 403 404"),
    _op("version_bodies", "post", f"{TEAM}/bodies",
        "the ciphertext bodies of many small versions in one answer (each item a u16 status, a u32 length and "
        "the exact stored body, or an Error, in the order asked: docs/format.md); each item is read and audited as "
        "version_body would, and refused alone (404 unknown, 413 over 1 MiB or past 8 MiB in all)", "200", Binary,
        "400 401 403 404 413", s.BodiesRequest),
    # -- threads
    _op("list_threads", "get", f"{TEAM}/threads",
        "every thread of a team: signed record, next position, last activity, count", "200", s.ThreadList,
        "401 403 404"),
    _op("create_thread", "post", f"{TEAM}/threads",
        "create a thread (signed thread record: encrypted name, expiry); 429 at the quota threads_per_day "
        "(Retry-After)", "201", s.ThreadCreated, "400 401 403 404 409 429", s.ThreadCreate),
    _op("read_messages", "get", f"{THREAD}/messages",
        "messages after ?after=POS (?limit=, at most 1000), oldest first, and the calling device's last message",
        "200", s.MessagePage, "400 401 403 404",
        query=(AFTER, QueryParam("limit", "at most this many messages (at most and by default 1000)"))),
    _op("post_message", "post", f"{THREAD}/messages",
        "post a signed, encrypted message under the current key generation", "201", s.Posted,
        "400 401 403 404 409 413", s.MessagePost),
    _op("follow", "get", f"{TEAM}/live",
        "WebSocket: first frame {after: {thread: pos}, all: bool, docs: bool}; then missed messages, {type: live}, "
        "and each new message, and with docs a {type: doc, doc, seq, vid} notice of each document version stored "
        "(a hint); 429 (before the upgrade) at the quota live_followers; 400 for a request that is no WebSocket "
        "upgrade", "101", WebSocket, "400 401 403 404 429"),
    # -- audit
    _op("audit_checkpoint", "get", "/api/v1/audit/checkpoint",
        "newest signed checkpoint of the audit log, the consistency proof from ?from=SIZE and the newest "
        "cosigned checkpoint", "200", s.CheckpointAnswer, "400 401",
        query=(QueryParam("from", "the size of a checkpoint the caller holds: prove consistency from it"),)),
    _op("audit_leaves", "get", "/api/v1/audit/leaves",
        "sealed leaves and their hashes from ?start= (?count=, at most 2000); admitted members", "200", s.Leaves,
        "400 401 403",
        query=(QueryParam("start", "the first leaf's index; default 0"),
               QueryParam("count", "how many leaves; default 1000, at most 2000"))),
    _op("audit_cosign", "post", "/api/v1/audit/cosign", "Security Team cosignature of a checkpoint this server issued",
        "201", s.CosignAnswer, "400 401 403 404 409", s.CosignRequest),
    _op("audit_checkpoint_note", "get", "/api/v1/audit/checkpoint.note",
        "the newest checkpoint as a C2SP tlog-checkpoint signed note (text/plain), signed by the log key; with old, "
        "the C2SP tlog-witness add-checkpoint request body carrying the consistency proof from old",
        "200", Text, "400 401",
        query=(QueryParam("old", "the size the witness cosigned last: answer its add-checkpoint request body"),)),
    _op("audit_witness_cosign", "post", "/api/v1/audit/witness",
        "Security Team: store an outside witness's C2SP cosignature/v1 of a checkpoint note this server issued, "
        "by a witness key the security protocols list", "201", s.CosignAnswer, "400 401 403 404",
        s.WitnessCosignRequest),
    _op("audit_key", "get", "/api/v1/audit/key",
        "the Security Team's signed audit key statement (null until one is published)", "200", s.AuditKeyAnswer,
        "401"),
    _op("publish_audit_key", "post", "/api/v1/audit/key",
        "publish the audit key of the current generation of a team of kind security", "201", s.AuditKeyStored,
        "400 401 403 404", s.AuditKeyRequest),
    _op("attest", "post", "/api/v1/audit/attest",
        "record an attestation: keystore, verify, approve, lost or export", "201", s.Ok, "400 401 403 404",
        s.AttestRequest),
    _op("audit_team_versions", "get", "/api/v1/audit/teams/{team}/versions",
        "every version's signed record of a team, no body (Security Team)", "200", s.TeamVersions, "401 403 404"),
    _op("restore_acceptances", "get", "/api/v1/restore/acceptances",
        "the Security Team's signed acceptances of a restore from an older backup, newest first (at most 16)",
        "200", s.RestoreAcceptances, "401"),
    _op("restore_accept", "post", "/api/v1/restore/acceptances",
        "store a Security Team member's signed acceptance of this server's state (a checkpoint it issued for its "
        "current log, its organization chain head)", "201", s.RestoreAccepted, "400 401 403 404",
        s.RestoreAcceptRequest),
)


def operation_for(method: str, path: str) -> Operation | None:
    """The operation a concrete request (``path`` without its query) calls, if any."""
    return next((op for op in OPERATIONS if op.matches(method, path)), None)
