"""The audit log's checkpoints as C2SP notes (``vault/signednote.py``): fetch the current one for an outside
witness, hand in the witness's cosignature, and check the newest one outside witnesses cosigned.

What the server serves is checked here before anyone relies on it: the log key's signature (the key this
device pinned), the origin (this organization), the tree the note names (the leaves this device fetched),
and each cosignature against the witness keys the security protocols in force list.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.checkpoints import LogView, protocols_of, sync_log
from client.client import Client
from security.merkle import root_of
from security.protocols import witness_keys
from vault.chains import OrgState
from vault.errors import EncodingError, LogInconsistent, VaultError
from vault.signednote import (
    MAX_NOTE,
    CheckpointText,
    Note,
    VerifierKey,
    log_key,
    origin_of,
    verify_log_signature,
    witness_cosignatures,
)
from vault.wire.schemas import CosignAnswer, WitnessCosignRequest

NOTE = "/api/v1/audit/checkpoint.note"
CLOCK_ALLOWANCE = 600  # seconds a cosignature's timestamp may be ahead of this device's clock


@dataclass(frozen=True)
class WitnessedNote:
    note: Note
    checkpoint: CheckpointText
    cosigs: list[tuple[VerifierKey, int]]  # (witness key, timestamp), verified
    log_public: bytes  # the pinned log key that signed the note

    @property
    def newest(self) -> int:
        return max(t for _, t in self.cosigs)


def check_note(text: str, org_id: str, pinned_log_key: bytes) -> tuple[Note, CheckpointText]:
    """The note, parsed, signed by the pinned log key for this organization's log (``LogInconsistent``)."""
    try:
        note = Note.parse(text)
        cp = CheckpointText.parse(note.text)
        verify_log_signature(note, log_key(org_id, pinned_log_key))
    except VaultError as e:
        raise LogInconsistent(f"the server's checkpoint note does not check: {e}") from e
    if cp.origin != origin_of(org_id):
        raise LogInconsistent("the server's checkpoint note is for another log")
    return note, cp


def outside_witness(lv: LogView, org: OrgState, hashes: list[bytes], now: int) -> WitnessedNote | None:
    """The newest checkpoint outside witnesses cosigned, checked against the leaves fetched (``hashes``, the
    log up to ``lv.checkpoint``) and the witness keys the protocols in force list; None if none did."""
    if lv.witness_note is None:
        return None
    note, cp = check_note(lv.witness_note, org.org_id, lv.log_key)
    if cp.size > len(hashes) or root_of(hashes[: cp.size]) != cp.root:
        raise LogInconsistent("the outside witnesses' checkpoint is not a prefix of the log this device verified")
    try:
        found = witness_cosignatures(note, witness_keys(protocols_of(org)))
    except VaultError as e:
        raise LogInconsistent(f"an outside witness's cosignature does not verify: {e}") from e
    if not found:
        raise LogInconsistent("the server shows a witnessed checkpoint without a listed witness's cosignature")
    if any(t > now + CLOCK_ALLOWANCE for _, _, t in found):
        raise LogInconsistent("an outside witness's cosignature is dated in the future")
    return WitnessedNote(note, cp, [(k, t) for k, _, t in found], lv.log_key)


async def current_note(s: Client) -> tuple[str, str]:
    """The newest checkpoint note as served, checked (signed by the pinned log key, for the checkpoint this
    device just verified), and the log's verifier key (what a witness is configured with)."""
    lv = await sync_log(s.session)
    raw = b""
    async for chunk in s.session.api.download(NOTE):
        raw += chunk
        if len(raw) > MAX_NOTE:
            raise LogInconsistent("the server's checkpoint note is too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LogInconsistent("the server's checkpoint note is not UTF-8") from e
    org_id = lv.checkpoint.org
    _, cp = check_note(text, org_id, lv.log_key)
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
