"""The audit log's checkpoints, checked on every login: the server's newest signed checkpoint must
extend the one this member accepted last (a consistency proof whose sizes come from the two signed
checkpoints, never from the proof) and the newest one the Security Team cosigned. Any mismatch stops
the client with ``LogInconsistent`` (``vault.errors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from client.home import Pins
from client.pinmerge import anchors_merged
from client.session import Session
from security.auditkey import entitled_cosigner, judge_cosignature
from security.events import Checkpoint
from security.merkle import EMPTY_ROOT, ProofError, verify_consistency
from security.protocols import Protocols, defaults, parse, witness_keys
from vault.acts import ALLOWANCE
from vault.chains import MemberState, OrgState, org_id_for
from vault.errors import LogInconsistent, VaultError
from vault.signednote import (
    CheckpointText,
    Note,
    VerifierKey,
    log_key,
    origin_of,
    verify_log_signature,
    witness_cosignatures,
)
from vault.wire.schemas import CheckpointAnswer, Cosignature, Witnessed


@dataclass
class Witness:
    checkpoint: Checkpoint
    cosigs: list[Cosignature]


@dataclass
class LogView:
    checkpoint: Checkpoint
    witness: Witness | None = None
    log_key: bytes = b""  # the pinned key that signed ``checkpoint``
    witness_note: str | None = None  # as served: checked by ``check_outside_witness`` at every login
    witness_note_proof: list[bytes] = field(default_factory=list)  # from the note's size to ``checkpoint``'s
    # (size, time) pairs: this device saw the log at that size at that time of its own clock, so every leaf at or
    # after the size is younger (``pins.log["anchors"]`` with the checkpoint accepted before this one: the
    # pruning check, client/audit/pruning.py ``check_pruning``)
    anchors: list[tuple[int, int]] = field(default_factory=list)


def _pinned(pins: Pins) -> tuple[int, bytes, int]:
    log = pins.log
    size = int(log.get("size", 0))
    root = bytes.fromhex(str(log.get("root", ""))) if size else EMPTY_ROOT
    return size, root, int(log.get("time", 0))


def check_extends(old_size: int, old_root: bytes, cp: Checkpoint, proof: list[bytes], what: str) -> None:
    if cp.size < old_size:
        raise LogInconsistent(f"the server's log has {cp.size} events but {what} had {old_size}")
    try:
        verify_consistency(old_size, cp.size, old_root, cp.root, proof)
    except ProofError as e:
        raise LogInconsistent(f"the server's log does not extend {what} (size {old_size}): {e}") from e


def _proof(value: list[bytes]) -> list[bytes]:
    if len(value) > 128:
        raise LogInconsistent("the server sent a malformed proof")
    return value


def signed_checkpoint(answer: CheckpointAnswer | Witnessed, log_key: bytes, org_id: str, what: str) -> Checkpoint:
    """``answer.checkpoint``, signed by the pinned log key (``answer.sig``), for this organization."""
    cp = Checkpoint.parse(answer.checkpoint)
    try:
        cp.verify(log_key, answer.sig)
    except VaultError as e:
        raise LogInconsistent(f"the {what}'s server signature does not verify") from e
    if cp.org != org_id:
        raise LogInconsistent(f"the {what} is for another organization")
    return cp


async def sync_log(s: Session, after_login: bool = False) -> LogView:
    """Fetch the newest checkpoint and prove it extends ours and the newest witnessed one.

    ``after_login``: our login was just logged, so the log must have grown since our pin."""
    pins = s.home.pins()
    old_size, old_root, old_time = _pinned(pins)
    res = await s.api.get(f"/api/v1/audit/checkpoint?from={old_size}", CheckpointAnswer)
    log_key = res.log_key
    pinned_key = pins.log.get("log_key")
    if pinned_key is not None and pinned_key != log_key.hex():
        raise LogInconsistent("the server's checkpoint-signing key changed")
    org_id = org_id_for(bytes.fromhex(s.cfg.org_root))
    cp = signed_checkpoint(res, log_key, org_id, "checkpoint")
    if len(old_root) != 32:
        raise LogInconsistent("the pinned checkpoint is damaged")
    check_extends(old_size, old_root, cp, _proof(res.proof), "the checkpoint you accepted before")
    if after_login and old_size and cp.size == old_size:
        # Our login was logged before this checkpoint was asked for: an unchanged size is a frozen view.
        raise LogInconsistent("the server shows a log that did not record your login")
    if cp.time + 600 < old_time:
        raise LogInconsistent("the checkpoint is older than one you accepted before")
    witness = None
    seen_witness = int(pins.log.get("witness_size", 0))
    w = res.witness
    if w is None and seen_witness:
        raise LogInconsistent("the server no longer shows the Security Team's cosigned checkpoint you saw before")
    if w is not None:
        wcp = signed_checkpoint(w, log_key, org_id, "witnessed checkpoint")
        if wcp.size > cp.size:
            raise LogInconsistent("the server shows a witnessed log longer than its current one")
        # The witnessed tree must be a prefix of the current one: its root at its size is signed twice.
        check_extends(wcp.size, wcp.root, cp, _proof(w.proof), "the log the Security Team witnessed")
        if wcp.size < seen_witness:
            raise LogInconsistent("the server hides a newer witnessed checkpoint that you saw before")
        if not w.cosigs:
            raise LogInconsistent("a witnessed checkpoint without well-formed cosignatures")
        witness = Witness(wcp, w.cosigs)
    # "seen_at": this device's own clock when it accepted the checkpoint (a server cannot freeze it; restore.py);
    # "anchors": one (size, seen_at) a day, the checkpoint accepted before this one included (pins older versions
    # wrote have none)
    now = s.now()
    before = [[old_size, int(pins.log.get("seen_at", old_time))]] if old_size else []
    anchors = anchors_merged(pins.log.get("anchors", []), before, [[cp.size, now]])
    pins.log.update({"size": cp.size, "root": cp.root.hex(), "time": cp.time, "log_key": log_key.hex(),
                     "seen_at": now, "anchors": anchors})
    s.home.save_pins(pins)  # a merge: a newer checkpoint another command accepted meanwhile stays
    s.log_accepted = cp.size, cp.root.hex()
    return LogView(cp, witness, log_key, res.witness_note, _proof(res.witness_note_proof),
                   [(size, t) for size, t in anchors])


def check_witness(s: Session, org: OrgState, members: dict[str, MemberState], witness: Witness) -> int:
    """Verify every cosignature (a Security Team member's device active at the signed time) and pin the
    witnessed size; returns the newest cosignature's (signed) time."""
    newest = 0
    t_now = s.now()
    for c in witness.cosigs:
        member, device, t = c.member, c.device, c.time
        # Judged by the one judge at the (signed) time of the cosignature: a device revoked later, or a
        # term that ended later, does not undo a witness that was valid when made.
        if not entitled_cosigner(member, device, t, org, members):
            raise LogInconsistent("a cosignature names a device or member that was not on the Security Team then")
        # Not before the checkpoint less the cosigner's lag (the server's skew); not after this device's clock plus
        # ``ALLOWANCE``: the cosigner's clock up to the skew ahead of the server's, this one's up to the skew behind.
        if not witness.checkpoint.time - ALLOWANCE // 2 <= t <= t_now + ALLOWANCE:
            raise LogInconsistent("a cosignature is dated outside its checkpoint's lifetime")
        try:
            judge_cosignature(witness.checkpoint.raw, member, device, t, c.sig, org,
                              members)
        except VaultError as e:
            raise LogInconsistent("a witness cosignature does not verify") from e
        newest = max(newest, t)
    pins = s.home.pins()
    pins.log["witness_size"] = max(int(pins.log.get("witness_size", 0)), witness.checkpoint.size)
    s.home.save_pins(pins)
    return newest


def protocols_of(org: OrgState) -> Protocols:
    """The security protocols in force in the organization (the defaults until some are approved)."""
    change = org.protocols
    return parse(change.text) if change is not None else defaults()


CLOCK_ALLOWANCE = 600  # seconds a cosignature's timestamp may be ahead of this device's clock


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


def listed_cosignatures(note: Note, org: OrgState, now: int) -> list[tuple[VerifierKey, int]]:
    """(witness key, timestamp) of every cosignature of ``note`` by a witness the protocols in force list, each
    verified; ``LogInconsistent`` if one does not verify, none is there, or one is dated in the future."""
    try:
        found = witness_cosignatures(note, witness_keys(protocols_of(org)))
    except VaultError as e:
        raise LogInconsistent(f"an outside witness's cosignature does not verify: {e}") from e
    if not found:
        raise LogInconsistent("the server shows a witnessed checkpoint without a listed witness's cosignature")
    if any(t > now + CLOCK_ALLOWANCE for _, _, t in found):
        raise LogInconsistent("an outside witness's cosignature is dated in the future")
    return [(k, t) for k, _, t in found]


def check_outside_witness(s: Session, org: OrgState, lv: LogView) -> int | None:
    """At every login, while the protocols in force list outside witnesses (``[rules.log-integrity]
    witness_keys``): the checkpoint this device accepted must extend the newest one a listed witness cosigned (the
    note's log signature, each cosignature, and a consistency proof from the note's size to the accepted
    checkpoint, whose sizes come from the two signed checkpoints), and the server may not show an older witnessed
    note than one this device saw (pinned as ``outside_size``). Returns the newest cosignature's time (None: no
    witness listed, or none has cosigned yet and this device never saw one)."""
    if not witness_keys(protocols_of(org)):
        return None
    pins = s.home.pins()
    seen = int(pins.log.get("outside_size", 0))
    if lv.witness_note is None:
        if seen:
            raise LogInconsistent("the server no longer shows the checkpoint an outside witness cosigned, which you "
                                  "saw before")
        return None
    note, wcp = check_note(lv.witness_note, org.org_id, lv.log_key)
    if wcp.size < seen:
        raise LogInconsistent("the server shows an older outside-witnessed checkpoint than one you saw before")
    check_extends(wcp.size, wcp.root, lv.checkpoint, lv.witness_note_proof, "the log an outside witness cosigned")
    newest = max(t for _, t in listed_cosignatures(note, org, s.now()))
    pins.log["outside_size"] = wcp.size
    s.home.save_pins(pins)
    return newest
