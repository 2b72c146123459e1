"""The audit log's checkpoints as C2SP notes (``vault/signednote.py``): fetch the current one for an outside
witness, hand in the witness's cosignature, and check the newest one outside witnesses cosigned.

What the server serves is checked here before anyone relies on it: the log key's signature (the key this
device pinned), the origin (this organization), the tree the note names (the leaves this device fetched),
and each cosignature against the witness keys the security protocols in force list.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from client.checkpoints import LogView, check_note, listed_cosignatures, sync_log
from client.client import Client
from security.merkle import root_of
from vault.chains import OrgState
from vault.errors import EncodingError, LogInconsistent
from vault.signednote import MAX_NOTE, CheckpointText, Note, VerifierKey, log_key
from vault.wire.schemas import CosignAnswer, WitnessCosignRequest

NOTE = "/api/v1/audit/checkpoint.note"


@dataclass(frozen=True)
class WitnessedNote:
    note: Note
    checkpoint: CheckpointText
    cosigs: list[tuple[VerifierKey, int]]  # (witness key, timestamp), verified
    log_public: bytes  # the pinned log key that signed the note

    @property
    def newest(self) -> int:
        return max(t for _, t in self.cosigs)


def outside_witness(lv: LogView, org: OrgState, hashes: list[bytes], now: int) -> WitnessedNote | None:
    """The newest checkpoint outside witnesses cosigned, checked against the leaves fetched (``hashes``, the
    log up to ``lv.checkpoint``) and the witness keys the protocols in force list; None if none did."""
    if lv.witness_note is None:
        return None
    note, cp = check_note(lv.witness_note, org.org_id, lv.log_key)
    if cp.size > len(hashes) or root_of(hashes[: cp.size]) != cp.root:
        raise LogInconsistent("the outside witnesses' checkpoint is not a prefix of the log this device verified")
    return WitnessedNote(note, cp, listed_cosignatures(note, org, now), lv.log_key)


def witness_request_parts(text: str, old: int) -> tuple[list[bytes], str]:
    """The consistency proof lines and the note of a C2SP tlog-witness ``add-checkpoint`` request body (``old N``,
    proof lines, an empty line, the note), checked for form (``LogInconsistent``)."""
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != f"old {old}" or len(lines) > 64:
        raise LogInconsistent("the server's witness request is not the add-checkpoint body asked for")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    except ValueError as e:
        raise LogInconsistent(f"the server's witness request has a malformed proof line: {e}") from e
    if any(len(h) != 32 for h in proof):
        raise LogInconsistent("the server's witness request has a malformed proof line")
    return proof, note


async def current_note(s: Client, old: int | None = None) -> tuple[str, str]:
    """The newest checkpoint note as served, checked (signed by the pinned log key, for the checkpoint this
    device just verified), and the log's verifier key (what a witness is configured with). With ``old`` (the size
    the witness cosigned last): the whole C2SP tlog-witness ``add-checkpoint`` request body, the server's
    consistency proof from ``old`` to the note's size before the note (the witness checks it)."""
    lv = await sync_log(s.session)
    raw = b""
    async for chunk in s.session.api.download(NOTE if old is None else f"{NOTE}?old={old}"):
        raw += chunk
        if len(raw) > MAX_NOTE:
            raise LogInconsistent("the server's checkpoint note is too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LogInconsistent("the server's checkpoint note is not UTF-8") from e
    org_id = lv.checkpoint.org
    _, cp = check_note(text if old is None else witness_request_parts(text, old)[1], org_id, lv.log_key)
    if (cp.size, cp.root) != (lv.checkpoint.size, lv.checkpoint.root):
        raise LogInconsistent("the checkpoint note names another tree than the server's signed checkpoint")
    return text, log_key(org_id, lv.log_key).text


async def hand_in(s: Client, text: str) -> int:
    """Hand an outside witness's cosigned note to the server; returns the tree size it cosigned."""
    try:
        Note.parse(text)
    except EncodingError as e:
        raise EncodingError(f"not a cosigned checkpoint note: {e}") from e
    return (await s.session.api.post("/api/v1/audit/witness", WitnessCosignRequest(text), CosignAnswer)).size
