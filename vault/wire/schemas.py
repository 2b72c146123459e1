"""Every JSON body of the HTTP API, as msgspec Structs.

One Struct per request body and per JSON answer, with the constraints the server enforces. The server
reads every request body with them (``server/http.py`` ``read_body``) and writes every answer from them
(``answer``); the client decodes every answer with them (``client/api.py``). Unknown fields are refused
both ways (``forbid_unknown_fields``): the server refuses a request field it does not know, and a field
the server starts to send must be declared here first.

Bytes travel as standard base64 with padding, which is what msgspec reads and writes for ``bytes``.
A byte limit here is ``max_len * 3 // 4`` for a limit of ``max_len`` characters of base64 text, so the
generated schema's ``maxLength`` is that text limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from vault.msglimits import MAX_RECORD

HEX_ID = "^[0-9a-f]{32}$"
HEX_HASH = "^[0-9a-f]{64}$"

Id = Annotated[str, Meta(pattern=HEX_ID, description="an id: 32 lowercase hex characters")]
HexHash = Annotated[str, Meta(pattern=HEX_HASH, description="a 32-byte hash as 64 lowercase hex characters")]
Time = Annotated[int, Meta(ge=0, description="seconds since the Unix epoch")]
Instant = Annotated[float, Meta(description="seconds since the Unix epoch (with a fraction)")]
Seq = Annotated[int, Meta(ge=0, description="a position in a chain, a document or a thread (1 is the first)")]


LinkBytes = Annotated[bytes, Meta(max_length=2 * 1024 * 1024 * 3 // 4,
                                  description="a signed chain link (canonical bytes)")]
Box = Annotated[bytes, Meta(max_length=4096 * 3 // 4, description="a sealed key box")]
Signature = Annotated[bytes, Meta(max_length=128 * 3 // 4, description="an Ed25519 signature")]
PublicKey = Annotated[bytes, Meta(max_length=64 * 3 // 4, description="a public key")]
Statement = Annotated[bytes, Meta(max_length=4096 * 3 // 4, description="a signed statement (canonical bytes)")]
MessageBytes = Annotated[bytes, Meta(max_length=MAX_RECORD, description="a signed, encrypted thread message; "
                                     "413 when longer")]


class Wire(Struct, forbid_unknown_fields=True):
    """A JSON object of the API: every field declared, none other accepted."""


class Error(Wire):
    """Every refusal (4xx): a stable code and a sentence for people."""

    error: str
    message: str
    not_before: int | UnsetType = UNSET  # a 409 for a link dated too early: the earliest time it may be dated
    server_time: int | UnsetType = UNSET  # with ``not_before``: the server's clock when it refused (review 33)


class Ok(Wire):
    ok: bool


# -- public --------------------------------------------------------------------------------------


class Health(Wire):
    status: str
    version: str


class Info(Wire):
    """Server version, organization root (null before the founder joined) and server time."""

    version: str
    org_root: HexHash | None
    time: Time


class FoundRequest(Wire):
    """The founder's member chain (first link), its PUK box and the organization's org.create link."""

    member_link: LinkBytes
    puk_box: Box
    org_link: LinkBytes


class Founded(Wire):
    org_root: HexHash
    member: Id


class JoinHeadRequest(Wire):
    """Proof of holding an open invite: the invite's public key, a time and the holder's signature."""

    invite: PublicKey
    time: Time
    proof: Signature


class JoinHead(Wire):
    org_seq: Seq
    org_head: bytes


class JoinRequest(Wire):
    """The joiner's member chain (first link), its PUK box and the org.join link signed with the invite."""

    member_link: LinkBytes
    puk_box: Box
    join_link: LinkBytes


class Joined(Wire):
    member: Id
    status: str


class ChallengeRequest(Wire):
    member: Annotated[str, Meta(max_length=64)]
    device: Annotated[str, Meta(max_length=64)]


class Challenge(Wire):
    nonce: bytes
    expires: Instant


class LoginRequest(Wire):
    """The signed login statement; ``key`` (optional) is the signing key of a device not yet added."""

    statement: Statement
    sig: Signature
    key: PublicKey | UnsetType = UNSET


class LoginToken(Wire):
    token: str
    expires: Instant


# -- chains --------------------------------------------------------------------------------------


class OrgHead(Wire):
    seq: Seq
    head: HexHash
    root: HexHash


class MemberHead(Wire):
    seq: Seq
    head: HexHash
    name: str


class TeamHead(Wire, kw_only=True):
    """A team the caller may see: up to its head, or (``removed_at`` set, no ``head``) up to the link where
    the caller was removed or its role ended."""

    name: str
    seq: Seq
    head: HexHash | UnsetType = UNSET  # kw_only: the fields in the order the server writes them
    removed_at: Seq | None


class DirectoryView(Wire):
    org: OrgHead
    members: dict[Id, MemberHead]
    teams: dict[Id, TeamHead]


class Links(Wire):
    """Chain links after ``?after=``, oldest first."""

    links: list[bytes]


class ClosingChains(Wire):
    """A closed organization's chain (ending with ``org.closed``) and every member chain, for a member's client
    to verify the closing against what it pinned (client/closing.py)."""

    org: list[bytes]
    members: dict[str, list[bytes]]


class LinkRequest(Wire):
    """An organization link signed by the logged-in device."""

    link: LinkBytes


class MemberLinkRequest(Wire):
    """A member link and the PUK boxes it commits to, by device id (at most 64); ``before``: the records of joined
    spaces (``member.spaces``) that precede it in the chain, taken with it (at most 256; session 18: a host takes a
    guest's record only ahead of a later link)."""

    link: LinkBytes
    puk_boxes: Annotated[dict[str, Box], Meta(max_length=64)] | UnsetType = UNSET
    before: Annotated[list[LinkBytes], Meta(max_length=256)] | UnsetType = UNSET


class TeamLinkRequest(Wire):
    """A team link and the key boxes it commits to, by member id (at most 1000)."""

    link: LinkBytes
    boxes: Annotated[dict[str, Box], Meta(max_length=1000)] | UnsetType = UNSET


class GuestRequest(Wire):
    """A coalition space admin adds an ally's member (a guest): the guest's member chain (at most 200 links, oldest
    first) and the ``team.add`` carrying their organization's ``coalition.admit``, with its key box."""

    member_links: Annotated[list[LinkBytes], Meta(min_length=1, max_length=200)]
    link: LinkBytes
    boxes: Annotated[dict[str, Box], Meta(max_length=1)] | UnsetType = UNSET


class SeqAnswer(Wire):
    seq: Seq


class SignedAt(Wire):
    """``GET /api/v1/members/{member}/devices/{device}/signed``: a revocation of the device is taken dated after
    ``time`` (``Directory.check_not_before``; 0: it signed nothing here)."""

    time: Time


class TeamSeq(Wire):
    team: Id
    seq: Seq


class SlotOpened(Wire):
    slot: Id
    expires: Instant


class SlotOffer(Wire):
    payload: Box


class SlotPayload(Wire):
    """The new device's sealed keys, null until it delivered them."""

    payload: bytes | None


class TeamBox(Wire):
    gen: int
    box: bytes


class TeamBoxes(Wire):
    boxes: list[TeamBox]


class PukBox(Wire):
    puk_gen: int
    box: bytes


class PukBoxes(Wire):
    boxes: list[PukBox]


# -- documents -----------------------------------------------------------------------------------


class Version(Wire):
    """A document version's signed record (the body is fetched separately)."""

    vid: Id
    doc: Id
    seq: Seq
    record: bytes
    body_len: Annotated[int, Meta(ge=0)]


class Docs(Wire):
    docs: list[Version]


class Versions(Wire):
    versions: list[Version]


class Stored(Wire):
    vid: Id
    seq: Seq


class BatchOutcome(Wire):
    """One item of a batch upload, in the order sent: stored (201, ``vid`` and ``seq``) or refused alone (the
    status and ``Error`` fields the single upload would have answered)."""

    status: Annotated[int, Meta(ge=200, le=599)]
    vid: Id | None = None
    seq: Seq | None = None
    error: str = ""
    message: str = ""


class BatchStored(Wire):
    outcomes: list[BatchOutcome]


MAX_BODIES = 256  # version bodies one batch download asks for at most


class BodiesRequest(Wire):
    """The versions whose bodies a batch download asks for; the answer gives them in this order (docs/format.md
    "Batch download")."""

    vids: Annotated[list[Id], Meta(min_length=1, max_length=MAX_BODIES)]


# -- threads -------------------------------------------------------------------------------------


class Thread(Wire):
    thread: Id
    record: bytes
    next_pos: Seq
    last_time: Time
    count: Annotated[int, Meta(ge=0)]


class ThreadList(Wire):
    threads: list[Thread]


class ThreadCreate(Wire):
    record: Statement


class ThreadCreated(Wire):
    thread: Id


class MessageItem(Wire, tag_field="type", tag="msg"):
    """A stored message: its thread, position and signed, encrypted record."""

    thread: Id
    pos: Seq
    record: bytes


class LastSent(Wire):
    """The calling device's last message in the thread (its number, id and time)."""

    seq: Seq
    id: Id
    time: Time


class MessagePage(Wire):
    thread: Thread
    messages: list[MessageItem]
    more: bool
    mine: LastSent | None


class MessagePost(Wire):
    message: MessageBytes


class Posted(Wire):
    id: Id
    pos: Seq


# -- live delivery (WebSocket frames of GET /api/v1/teams/{team}/live) ----------------------------


class FollowStart(Wire):
    """The follower's first frame: its position in each thread, whether it follows every thread, and whether
    it wants a notice of every document version stored in the team (``doc`` frames)."""

    after: Annotated[dict[Id, Annotated[int, Meta(ge=0, lt=2**62)]], Meta(max_length=10_000)] = {}
    all: bool = False
    docs: bool = False


class ThreadFrame(Wire, tag_field="type", tag="thread"):
    thread: Id
    record: bytes


class LiveFrame(Wire, tag_field="type", tag="live"):
    """Every missed message was sent; what follows is new."""


class DocFrame(Wire, tag_field="type", tag="doc"):
    """A version of a document was stored (sent to followers that asked with ``docs``): a hint only, never
    a fact a client acts on without fetching and checking the version itself."""

    doc: Id
    seq: Seq
    vid: Id


class MessagesFrame(Wire, tag_field="type", tag="msgs"):
    items: list[MessageItem | ThreadFrame]


class ClosedFrame(Wire, tag_field="type", tag="closed"):
    """Delivery stops: ``unauthorized`` (log in again) or ``forbidden`` (access ended)."""

    error: str
    message: str


class ErrorFrame(Wire, tag_field="type", tag="error"):
    """The first frame was refused, or names an unknown thread."""

    error: str
    message: str


LiveEvent = MessageItem | ThreadFrame | LiveFrame | MessagesFrame | ClosedFrame | ErrorFrame | DocFrame


# -- audit ---------------------------------------------------------------------------------------


class Cosignature(Wire):
    member: Id
    device: Id
    sig: bytes
    time: Time


class Witnessed(Wire):
    """The newest cosigned checkpoint, its consistency proof to the newest checkpoint, its cosignatures."""

    checkpoint: bytes
    sig: bytes
    proof: list[bytes]
    cosigs: list[Cosignature]


class CheckpointAnswer(Wire):
    checkpoint: bytes
    sig: bytes
    proof: list[bytes]
    witness: Witnessed | None
    log_key: bytes
    # The newest checkpoint an outside witness cosigned, as a C2SP note with the log's signature and the
    # witnesses' cosignature lines (vault/signednote.py); null until one did.
    witness_note: str | None = None
    witness_note_proof: list[bytes] = []  # RFC 9162 consistency proof from the note's size to ``checkpoint``'s


class WitnessCosignRequest(Wire):
    """A checkpoint note (GET /api/v1/audit/checkpoint.note) with an outside witness's cosignature lines."""

    note: Annotated[str, Meta(max_length=16 * 1024, description="a C2SP signed note (tlog-checkpoint)")]


class Leaf(Wire):
    """A leaf's hash, and its sealed event (null once pruned)."""

    index: Annotated[int, Meta(ge=0)]
    hash: bytes
    leaf: bytes | None


class Leaves(Wire):
    leaves: list[Leaf]


class CosignRequest(Wire):
    checkpoint: Statement
    sig: Signature
    time: Time


class CosignAnswer(Wire):
    size: Annotated[int, Meta(ge=0)]


class RestoreAcceptRequest(Wire):
    """A Security Team member's signed acceptance of this (restored) server's state (security/restore.py)."""

    statement: Annotated[bytes, Meta(max_length=384 * 1024 * 4 // 3 + 4,
                                     description="the acceptance's canonical bytes (at most 384 KiB)")]
    sig: Signature


class RestoreAcceptance(Wire):
    statement: bytes
    sig: bytes


class RestoreAcceptances(Wire):
    """The acceptances stored, newest first (at most 16)."""

    acceptances: list[RestoreAcceptance]


class RestoreAccepted(Wire):
    size: Annotated[int, Meta(ge=0, description="the audit log size of the checkpoint accepted")]


class AuditKeyStatement(Wire):
    statement: bytes
    sig: bytes


class AuditKeyAnswer(Wire):
    """The Security Team's signed audit key statement, null until one is published."""

    key: AuditKeyStatement | None


class AuditKeyRequest(Wire):
    statement: Statement
    sig: Signature


class AuditKeyStored(Wire):
    gen: int


# Key verifications and approvals are signed chain links (org.verify, org.approve), not server records.
AttestKind = Literal["keystore", "lost", "export", "report", "doc-export", "roster-export", "coalition-act"]
Count = Annotated[int, Meta(ge=0, le=2**40)]
KdfParameter = Annotated[int, Meta(ge=1, le=2**32)]


class AttestRequest(Wire):
    """What each kind needs: keystore (time_cost, memory_kib, parallelism), lost (member, device), export
    (count: the audit log's), report (violated, count), doc-export (team, count: documents of a team, before
    they are written; docs/lifecycle.md; with request: the export request's link hash and docs: the document ids,
    which a team of the exports rule's sensitive kinds needs), roster-export (record and sig: the device-signed record
    of a roster export naming its readers, vault/roster.py), coalition-act (record and sig: a member's device-signed
    record of its act in a coalition space, vault/coalitionact.py)."""

    kind: AttestKind
    time_cost: KdfParameter | UnsetType = UNSET
    memory_kib: KdfParameter | UnsetType = UNSET
    parallelism: KdfParameter | UnsetType = UNSET
    member: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET
    device: Annotated[str, Meta(max_length=64)] | UnsetType = UNSET
    count: Count | UnsetType = UNSET
    violated: Annotated[str, Meta(max_length=1024)] | UnsetType = UNSET
    team: Id | UnsetType = UNSET
    request: HexHash | UnsetType = UNSET
    docs: Annotated[list[Id], Meta(max_length=10000)] | UnsetType = UNSET
    record: Annotated[bytes, Meta(max_length=8192)] | UnsetType = UNSET
    sig: Signature | UnsetType = UNSET


class VersionRecord(Wire):
    vid: Id
    doc: Id
    seq: Seq
    record: bytes


class TeamVersions(Wire):
    versions: list[VersionRecord]


OpenApiDocument = dict[str, Any]  # GET /api/openapi.json: this API's own description
