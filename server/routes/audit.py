"""The audit endpoints: checkpoints and their cosignatures, leaves, the Security Team's audit key,
attestations, and the versions list for exposure reports. What every request records is the
audit middleware's work (``server/recorder.py``).
"""

from __future__ import annotations

import base64
from typing import TypeVar, assert_never

from aiohttp import web
from msgspec import UnsetType

from security.auditkey import AuditKeyClaim, judge_audit_key, judge_cosignature
from security.events import valid_box_public
from security.protocols import witness_keys
from server import replies
from server.access import catch_up_locked, judge_now, judged_again, protocols_of, session_of, stored_judged
from server.coalitionacts import coalition_act
from server.context import AUDIT, CHAINS, CONFIG, DIRECTORY, DOCUMENTS, LOCK, STATE, AuditKey, Handler, now_of
from server.exports import doc_export
from server.http import answer, int_query, read_body
from server.notes import note
from server.recorder import record_notes_now, settle
from server.rosters import roster_export
from server.store.records import CosigAdded, CosigOutcome, SignerHeads, SignerMoved
from vault.encoding import encode
from vault.errors import BadSignature, ChainError, EncodingError, NotFound, PolicyDenied
from vault.signednote import CheckpointText, Note, origin_of, witness_cosignatures
from vault.wire import schemas


def _org_id(request: web.Request) -> str:
    org = request.app[DIRECTORY].org
    return org.org_id if org is not None else ""


async def checkpoint(request: web.Request) -> web.Response:
    app = request.app
    store = app[AUDIT]
    old = int_query(request, "from", 0)
    cp = await store.checkpoint(_org_id(request), int(now_of(request)))
    size = cp.checkpoint.size
    proof = store.tree.consistency_proof(old, size) if 0 < old <= size else []
    witness = None
    found = await store.witnessed()
    if found is not None:
        w, cosigs = found
        w_proof = store.tree.consistency_proof(w.checkpoint.size, size) if 0 < w.checkpoint.size <= size else []
        witness = schemas.Witnessed(checkpoint=w.checkpoint.raw, sig=w.sig, proof=list(w_proof), cosigs=[
            schemas.Cosignature(member=c.member, device=c.device, sig=c.sig, time=c.time) for c in cosigs])
    note_text = await store.witness_note()
    note_proof: list[bytes] = []
    if note_text is not None:  # the log it cosigned is a prefix of this one: every login checks it
        note_size = CheckpointText.parse(Note.parse(note_text).text).size
        note_proof = list(store.tree.consistency_proof(note_size, size)) if 0 < note_size <= size else []
    return answer(schemas.CheckpointAnswer(checkpoint=cp.checkpoint.raw, sig=cp.sig, proof=list(proof),
                                           witness=witness, log_key=store.log_public,
                                           witness_note=note_text, witness_note_proof=note_proof))


async def checkpoint_note(request: web.Request) -> web.Response:
    """The newest checkpoint as a C2SP tlog-checkpoint note (what an outside witness cosigns). With ``old`` (the
    size the witness cosigned last): the C2SP tlog-witness ``add-checkpoint`` request body, ``old N``, the RFC 9162
    consistency proof from N to the note's size (one base64 hash a line), an empty line, then the note."""
    store = request.app[AUDIT]
    cp = await store.checkpoint(_org_id(request), int(now_of(request)))
    text = store.note_of(cp.checkpoint).serialized
    if "old" in request.query:
        old, size = int_query(request, "old", 0), cp.checkpoint.size
        if old > size:
            raise EncodingError(f"old: {old} is beyond the newest checkpoint ({size} events)")
        proof = store.tree.consistency_proof(old, size) if 0 < old < size else []
        text = f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + text
    return web.Response(text=text, content_type="text/plain")


async def witness_cosign(request: web.Request) -> web.Response:
    """A Security Team member hands in an outside witness's cosignature/v1 of a note this server issued; only
    cosignatures by witness keys the protocols in force list are kept (docs/format.md, "Checkpoint notes")."""
    judge_now(request, "audit.cosign")
    body = await read_body(request, schemas.WitnessCosignRequest)
    signed = Note.parse(body.note)
    claimed = CheckpointText.parse(signed.text)
    store = request.app[AUDIT]
    stored = await store.issued_size(claimed.size)
    if claimed.origin != origin_of(_org_id(request)) or stored is None or stored.checkpoint.root != claimed.root:
        raise NotFound("this server never issued that checkpoint for its current log")
    keys = witness_keys(protocols_of(request.app))
    try:
        cosigs = witness_cosignatures(signed, keys)
    except BadSignature as e:
        raise EncodingError(f"a cosignature by a listed witness key does not verify: {e}") from e
    if not cosigs:
        raise EncodingError("the note carries no cosignature by a witness key the security protocols list "
                            "(rules.log-integrity.witness_keys)")
    now = int(now_of(request))
    skew = request.app[CONFIG].clock_skew
    for key, _, t in cosigs:
        if not stored.checkpoint.time - skew <= t <= now + skew:
            raise EncodingError(f"witness {key.name}'s cosignature is dated outside the checkpoint's lifetime")
    note(request, "audit.cosign", detail={"size": claimed.size, "witnesses": len(cosigs)})
    for key, line, t in cosigs:
        await store.add_witness_cosig(claimed.size, key.name, key.id, line.sig, t)
    return answer(schemas.CosignAnswer(size=claimed.size), 201)


def _require_admitted(request: web.Request) -> str:
    me = session_of(request).member
    if not request.app[DIRECTORY].require_org().admitted(me):
        raise PolicyDenied("members still waiting for admission cannot read the audit log")
    return me


def _require_security(request: web.Request) -> str:
    me = session_of(request).member
    if "security" not in request.app[DIRECTORY].require_org().roles_of(me, int(now_of(request))):
        raise PolicyDenied("only the Security Team may do this")
    return me


async def leaves(request: web.Request) -> web.Response:
    _require_admitted(request)
    start, count = int_query(request, "start", 0), int_query(request, "count", 1000)
    rows = await request.app[AUDIT].leaves(start, count)
    note(request, "audit.read", detail={"start": start, "count": len(rows)})
    return answer(schemas.Leaves(leaves=[schemas.Leaf(index=i, hash=h, leaf=leaf) for i, h, leaf in rows]))


async def cosign(request: web.Request) -> web.Response:
    judge_now(request, "audit.cosign")
    body = await read_body(request, schemas.CosignRequest)
    raw, sig, t = body.checkpoint, body.sig, body.time
    s = session_of(request)
    app = request.app
    store = app[AUDIT]
    if abs(t - now_of(request)) > app[CONFIG].clock_skew:
        raise EncodingError("the cosignature's time is too far from the server's")
    issued = await store.issued(raw)
    if issued is None:
        raise NotFound("this server never issued that checkpoint for its current log")
    # A cosignature is a signed act of its device (review 26, finding 1): judged and noted under the chain lock, so a
    # revocation, cut, removal or end of the role is either in force before it is judged or dated after it
    # (``check_not_before``); every client refuses a cosignature whose device was not active at its time. Stored
    # only while the signer's chains are as judged (review 27, finding 2: over PostgreSQL another process's
    # revocation between the judge and the insert): else caught up, the session and the cosignature judged again.
    directory = app[DIRECTORY]

    def judge() -> None:  # the one judge again, at the cosignature's signed time
        try:
            judge_cosignature(raw, s.member, s.device, t, sig, directory.require_org(), directory.members,
                              stored=True)
        except BadSignature as e:
            raise EncodingError("the cosignature does not verify with your device key") from e
        directory.check_unheld(s.member, s.device, t)  # a link ending their rights is signed again: 409

    async def add(signer: SignerHeads) -> CosigOutcome:
        # positional: tests hold this call (tests/test_review27_exploits.py)
        return await store.add_cosig(issued.checkpoint.size, s.member, s.device, sig, t, signer)

    async with app[LOCK]:
        await catch_up_locked(app)
        judge()
        # on SignerMoved: caught up under LOCK, the session (a revocation of this device among the links: refused
        # "revoked") and the cosignature judged again
        stored = await stored_judged(add, lambda: judged_again(request, s, judge, locked=True),
                                     directory.signer_heads(s.member))
        match stored:
            case CosigAdded():
                pass
            case SignerMoved():
                raise replies.signer_moved()
            case _:
                assert_never(stored)
        directory.note_signed(s.member, s.device, t)
        note(request, "audit.cosign", detail={"size": issued.checkpoint.size})
    return answer(schemas.CosignAnswer(size=issued.checkpoint.size), 201)


async def get_key(request: web.Request) -> web.Response:
    key = request.app[STATE].key
    if key.pub is None:
        return answer(schemas.AuditKeyAnswer(key=None))
    return answer(schemas.AuditKeyAnswer(key=schemas.AuditKeyStatement(statement=key.statement, sig=key.sig)))


async def put_key(request: web.Request) -> web.Response:
    judge_now(request, "audit.key")
    s = session_of(request)
    body = await read_body(request, schemas.AuditKeyRequest)
    raw, sig = body.statement, body.sig
    claim = AuditKeyClaim.parse(raw)
    key = AuditKey(claim.gen, claim.pub, claim.team, raw)
    if not valid_box_public(claim.pub):
        raise EncodingError("the audit public key is not a usable X25519 key")
    app = request.app
    directory = app[DIRECTORY]
    now = int(now_of(request))
    if (claim.org, claim.member, claim.device) != (_org_id(request), s.member, s.device):
        raise PolicyDenied("the statement must name this organization and the logged-in device")
    if abs(claim.time - now) > app[CONFIG].clock_skew:
        raise EncodingError("the statement's time is too far from the server's")
    # Review 36, finding 3: the log order of the statement's event is the order of its checks. Under the chain lock
    # (this process's links) and with the organization's and the team's chains held (every process's: PostgreSQL),
    # caught up, judged, the key taken into force and the ``audit.key`` event appended, durable, before any link
    # that could change the judgement is stored: a rotation or designation accepted after the checks is logged
    # after the statement, and one stored before them is judged here (refused: "the team's current generation").
    # No await from the checks to the leaf's place in the log (``record`` seals and queues it before it first
    # waits; the events owed since a full disk are appended first, here): no event is sealed to the new key
    # ahead of the statement's.
    async with app[LOCK], app[CHAINS].chains_held(["org", claim.team]):
        await catch_up_locked(app)
        await settle(app)
        org = directory.require_org()
        # The one judge (act audit.key at the statement's time), the designated team (the current one:
        # a statement for a team designated until a moment ago is refused), the team's kind.
        team = directory.team(claim.team)
        judge_audit_key(claim, sig, org, directory.members, team, org.audit_team)
        if key.gen != team.generation or not team.holds_key(s.member, now):
            raise ChainError(f"the audit key must be the team's current generation ({team.generation}), held by "
                             "you")
        current = app[STATE].key
        if current.pub is not None and current.team == key.team and current.gen > key.gen:
            raise ChainError("a newer audit key is already in force")
        key.sig = sig
        app[STATE].key = key  # first: the statement's own event is sealed to the key it publishes, as before
        # the leaf carries the statement and signature judged here: the verifier judges them itself (session 23)
        note(request, "audit.key", {"team": key.team}, detail={"gen": key.gen}, claim=(raw, sig))
        await record_notes_now(request)
    # Stored after its event, outside the locks (a slow write holds up no link): one write at a time, and none once
    # a newer key has taken this one's place in memory (its own write stores that one), so the stored key never
    # goes back. A crash before this write: the restart reads the key stored before (SECURITY.md, "Publication").
    async with app[STATE].key_write:
        if app[STATE].key is key:
            await app[AUDIT].set_meta("audit_key", encode({"statement": raw, "sig": sig}))
    return answer(schemas.AuditKeyStored(gen=key.gen), 201)


Field = TypeVar("Field", int, str)


def _needed(value: Field | UnsetType, name: str) -> Field:
    """A field of ``AttestRequest`` that its kind needs."""
    if isinstance(value, UnsetType):
        raise EncodingError(f"request: missing field {name!r}")
    return value


async def attest(request: web.Request) -> web.Response:
    f = await read_body(request, schemas.AttestRequest)
    kind = f.kind
    directory = request.app[DIRECTORY]
    me = session_of(request).member
    now = int(now_of(request))
    if kind == "keystore":
        detail: dict[str, int | str] = {
            "time_cost": _needed(f.time_cost, "time_cost"), "memory_kib": _needed(f.memory_kib, "memory_kib"),
            "parallelism": _needed(f.parallelism, "parallelism")}
        note(request, "attest.keystore", detail=detail)
    elif kind == "lost":
        target = directory.member(_needed(f.member, "member"))
        device = target.device(_needed(f.device, "device")).device_id
        roles = directory.require_org().roles_of(me, now)
        if target.member_id != me and not roles & {"security", "ncc"}:
            raise PolicyDenied("only the device's member, the Security Team or the NCC report a device lost")
        # Sealed to the reporter and the Security Team only: a member under suspicion does not
        # learn who reported their device.
        note(request, "attest.lost", {"member": target.member_id, "device": device},
             target.member_id if target.member_id == me else None)
    elif kind == "report":
        # The Security Team's report found these rules violated: policy violations become events too.
        _require_security(request)
        note(request, "audit.report", detail={"violated": _needed(f.violated, "violated"),
                                                 "count": _needed(f.count, "count")})
    elif kind == "doc-export":
        await doc_export(request, f)
    elif kind == "roster-export":
        await roster_export(request, f)
    elif kind == "coalition-act":
        await coalition_act(request, f)
    else:
        note(request, "audit.export", detail={"count": _needed(f.count, "count")})
    return answer(schemas.Ok(ok=True), 201)


async def team_versions(request: web.Request) -> web.Response:
    """Every version's signed record (no body, no key) of one team: for exposure reports."""
    _require_security(request)
    team = request.app[DIRECTORY].team(request.match_info["team"])
    versions = await request.app[DOCUMENTS].team_versions(team.team_id)
    note(request, "doc.list", {"team": team.team_id})
    return answer(schemas.TeamVersions(versions=[schemas.VersionRecord(vid=v.vid, doc=v.doc, seq=v.seq,
                                                                       record=v.record) for v in versions]))


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "audit_checkpoint": checkpoint, "audit_checkpoint_note": checkpoint_note, "audit_witness_cosign": witness_cosign,
    "audit_leaves": leaves, "audit_cosign": cosign, "audit_key": get_key,
    "publish_audit_key": put_key, "attest": attest, "audit_team_versions": team_versions,
}
