"""A server restored from an older backup (docs/restore.md): what this client sees, the Security Team's
acceptance, and following it.

When the login's log check fails (``client.checkpoints.sync_log``: the server's log is shorter than, or
forked from, the checkpoint this device accepted), the client cannot tell a restore from an older backup
from a server that rolls it back to hide something. ``follow`` looks for the Security Team's signed
acceptance (``security.restore``); it follows one only if

* it names this organization and is signed by a device of a member then holding the org role ``security``,
  judged by the one judge at the state this client replays (its pinned organization root), and that member and
  device are in the Security Team this device pinned at its newest verified view (``pins.signers``: a removal or
  revocation the rolled-back chains lost still counts);
* its checkpoint is signed by the server's current log key, and the server's current checkpoint extends it
  (a consistency proof from the acceptance's size); the organization head it names is in the served chain;
* it is newer than every acceptance this device followed before (checkpoint size and time) and not older
  than the checkpoint this device accepted last (its checkpoint's server-signed time, and its own signed time
  against this device's clock when it accepted that checkpoint, within ``ALLOWANCE``): an old acceptance
  replayed after a second rollback names a state this device has already moved past;

then it lowers only the pins that went back, to what the server serves (never below it, nor below what the
acceptance's signed ``lost`` list names: ``check_covered``; ``keys`` and ``verified`` untouched), records
the restore in the sealed pins (``pins.log["restored"]``) and goes on.
Without a valid acceptance nothing changes here and the command stops (exit 3) with what it sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.checkpoints import LogView, check_extends, signed_checkpoint, sync_log
from client.home import Pins
from client.pinmerge import anchors_merged
from client.sanitize import escape
from client.session import Session
from client.view import Chains, View, doc_pin, pinned_deleted
from security.authority import POLICY
from security.events import Checkpoint
from security.restore import Acceptance, Lost, acceptance_statement, judge_acceptance, sign_acceptance
from vault.acts import ALLOWANCE, Act
from vault.chains import org_id_for
from vault.envelope import Record
from vault.errors import (
    BadSignature,
    ChainError,
    IntegrityError,
    LogInconsistent,
    NotFound,
    PolicyDenied,
    RollbackDetected,
    ServerBehind,
    VaultError,
)
from vault.wire.schemas import CheckpointAnswer, Docs, RestoreAcceptances, RestoreAccepted, RestoreAcceptRequest

WINDOW = 600  # the clock window between a client and the server (client/checkpoints.py)
STATUS = "mvault restored status"
ACCEPT = "mvault restored accept"
BEHIND_NOT_LOG = ("the server serves chains or documents older than this device saw (its audit log extends the "
                  "checkpoint this device accepted)")


@dataclass
class Seen:
    """The server's state against this device's pins: what went back, and the pins lowered to the server's."""

    checkpoint: Checkpoint
    cp_sig: bytes
    log_key: bytes
    pinned_size: int
    pinned_root: str
    lost: Lost
    pins: Pins
    view: View
    hashes: dict[str, list[bytes]]  # chain id -> the hash of each served link
    deletions: dict[str, list[Any]]  # documents that went back from a deletion this device pinned: their pins

    def heads(self) -> dict[str, tuple[int, bytes]]:
        """The head of every member and team chain in the verified view (what an acceptance names)."""
        shown = set(self.view.members) | set(self.view.teams)
        return {c: (len(h), h[-1]) for c, h in self.hashes.items() if c in shown and h}


async def current(s: Session, since: int = 0) -> tuple[Checkpoint, CheckpointAnswer]:
    """The server's newest checkpoint, signed by the key it names, with a consistency proof from ``since``."""
    res = await s.api.get(f"/api/v1/audit/checkpoint?from={since}", CheckpointAnswer)
    return signed_checkpoint(res, res.log_key, org_id_for(bytes.fromhex(s.cfg.org_root)), "checkpoint"), res


async def compare(s: Session, chains: Chains) -> Seen:
    """What the server serves against this device's pins (nothing saved)."""
    pins = s.home.pins()
    cp, res = await current(s)
    behind: dict[str, tuple[int, int]] = {}
    hashes: dict[str, list[bytes]] = {}
    view = await chains.view_behind(pins, behind, hashes)
    docs: dict[str, tuple[int, int]] = {}
    deletions: dict[str, list[Any]] = {}
    for team in view.teams.values():
        try:
            listed = await s.api.get(f"/api/v1/teams/{team.team_id}/docs", Docs)
        except (PolicyDenied, NotFound):
            continue  # a team whose documents this member may not read (any pins of it stay as they are)
        seen: set[str] = set()
        for item in listed.docs:
            try:
                rec = Record.parse(item.record)
            except VaultError as e:
                raise IntegrityError(f"the server sent a malformed document record: {e}") from e
            if rec.core.team != team.team_id:
                raise IntegrityError("the server listed a document of another team")
            key = f"{team.team_id}/{rec.core.doc}"
            seen.add(key)
            pin = pins.docs.get(key)
            if pin is not None and (rec.core.seq < int(pin[0]) or
                                    (rec.core.seq == int(pin[0]) and rec.version_id != str(pin[1]))):
                docs[key] = (rec.core.seq, int(pin[0]))
                if pinned_deleted(pin):
                    deletions[key] = list(pin)
                pins.docs[key] = doc_pin(rec)
        for key in [k for k in pins.docs if k.startswith(f"{team.team_id}/") and k not in seen]:
            if pinned_deleted(pins.docs[key]):
                deletions[key] = list(pins.docs[key])
            docs[key] = (0, int(pins.docs.pop(key)[0]))
    pinned_size = int(pins.log.get("size", 0))
    lost = Lost((cp.size, pinned_size), behind, docs)
    return Seen(cp, res.sig, res.log_key, pinned_size, str(pins.log.get("root", "")), lost, pins, view, hashes,
                deletions)


def summary(seen: Seen) -> str:
    """One line: the server's log against the pinned one, and how many chains and documents went back (names
    escaped: the line is composed text, shown as it is)."""
    lost = seen.lost
    log = (f"the server's log has {seen.checkpoint.size} events (root {seen.checkpoint.root.hex()[:16]}), the "
           f"checkpoint you accepted had {seen.pinned_size} (root {seen.pinned_root[:16]})")
    chains = ", ".join(f"{_chain_name(seen.view, c)} {a} of {b} links" for c, (a, b) in sorted(lost.chains.items()))
    return (f"{log}; chains behind your pins: {len(lost.chains)}{' (' + chains + ')' if chains else ''}; "
            f"documents behind your pins: {len(lost.docs)}")


def _chain_name(view: View, chain_id: str) -> str:
    """A chain for people (names are members' text: escaped)."""
    if chain_id == "org":
        return "organization"
    if chain_id in view.members:
        return f"member {escape(view.members[chain_id].name)}"
    if chain_id in view.teams:
        return f"team {escape(view.teams[chain_id].name)}"
    return chain_id[:12]


async def newest_acceptance(s: Session) -> tuple[Acceptance, bytes] | None:
    listed = await s.api.get("/api/v1/restore/acceptances", RestoreAcceptances)
    if not listed.acceptances:
        return None
    first = listed.acceptances[0]
    return Acceptance.parse(first.statement), first.sig


async def judge(s: Session, acc: Acceptance, sig: bytes, seen: Seen) -> None:
    """Refuse (``ServerBehind``, with the reason) an acceptance this device must not follow (module docstring)."""
    pins = s.home.pins()
    log = s.log_before if s.log_before is not None else pins.log  # what this device accepted before this command
    cp = acc.checkpoint
    if acc.time > s.now() + WINDOW:
        raise ServerBehind("it is dated in the future")
    if acc.time + WINDOW < int(log.get("time", 0)):
        raise ServerBehind("it is older than the checkpoint this device accepted last (a replay)")
    for before in pins.log.get("restored", []):
        if cp.size <= int(before["size"]) or acc.time <= int(before["time"]):
            raise ServerBehind("it is no newer than an acceptance this device followed before (a replay after "
                                  "another rollback)")
    if acc.log_key != seen.log_key:
        raise ServerBehind("it names another checkpoint-signing key than the server's")
    now, res = await current(s, cp.size)
    if now.size < cp.size:
        raise ServerBehind("it names a checkpoint the server's log does not reach")
    try:
        check_extends(cp.size, cp.root, now, list(res.proof)[:128], "the accepted checkpoint")
    except LogInconsistent as e:
        raise ServerBehind(f"it names a checkpoint the server's log does not extend ({e.reason})") from e
    # On the org chain this device replayed (and will pin), not on a second fetch a seized server could answer
    # with another history (review round 8).
    org_hashes = seen.hashes.get("org", [])
    if not 1 <= acc.org_seq <= len(org_hashes) or org_hashes[acc.org_seq - 1] != acc.org_head:
        raise ServerBehind("it names an organization chain head the server does not serve")
    try:
        judge_acceptance(acc, sig, seen.view.org, seen.view.members)
    except (PolicyDenied, ChainError, BadSignature, IntegrityError) as e:
        raise ServerBehind(f"its signer was not entitled, or it does not verify ({e})") from e
    if acc.device not in pins.signers.get(acc.member, []):
        raise ServerBehind("its signer is not on the Security Team as this device last verified it (a member removed "
                           "from it, or a device revoked, after the state the server now serves; or this device "
                           "never verified the organization with this version)")
    # Signed after this device last accepted the server's log (a replay names a state it has moved past). The
    # accepted checkpoint and the pinned one are both dated by the server's clock: an honest restored server
    # signs the first after the restore, so after every checkpoint the server signed before it.
    if cp.time < int(log.get("time", 0)):
        raise ServerBehind("its checkpoint is older than the checkpoint this device accepted last (a replay)")
    # A server may lie about its checkpoints' times: the device's own clock when it accepted its last checkpoint
    # bounds the signer's time too (within the clock allowance between two members' devices).
    if acc.time + ALLOWANCE < int(log.get("seen_at", 0)):
        raise ServerBehind("it was signed before this device last accepted the server's log (by this device's "
                           "clock; a replay)")


def explain(failure: LogInconsistent | RollbackDetected, sees: str) -> str:
    """The stop for people: what was found, what may have happened, what went back, what to do."""
    if isinstance(failure, LogInconsistent):
        found = (f"{failure.reason}. The audit log was rewritten, truncated or forked")
    else:
        found = f"{failure}. {BEHIND_NOT_LOG[0].upper()}{BEHIND_NOT_LOG[1:]}"
    return (f"STOP: {found}: a server restored from an older backup looks like this, and so does a server that "
            f"rolls you back to hide something; this device cannot tell them apart and changed nothing. What it "
            f"sees: {sees} (details: `{STATUS}`). A member of the Security Team must check what happened "
            f"and sign an acceptance (`{ACCEPT}`)")


async def follow(s: Session, chains: Chains, failure: LogInconsistent | RollbackDetected) -> LogView:
    """After ``sync_log`` failed with ``failure`` (``LogInconsistent``), or a chain or document pin did
    (``RollbackDetected``, the log being in step): follow the Security Team's acceptance, or stop explaining."""
    if isinstance(failure, RollbackDetected):
        keep_log_pin(s)
    try:
        seen = await compare(s, chains)
    except VaultError as e:
        raise ServerBehind(explain(failure, f"the server's chains do not check ({e})")) from e
    what = explain(failure, summary(seen))
    if seen.deletions:
        what += (f"; {len(seen.deletions)} document(s) this device saw deleted are served again (once this device "
                 "followed an acceptance, `mvault republish TEAM` signs such a deletion again)")
    if isinstance(failure, RollbackDetected) and not seen.lost.chains and not seen.lost.docs:
        raise ServerBehind(f"{what}; nothing this device pinned went back, so no acceptance applies") from failure
    found = await newest_acceptance(s)
    if found is None:
        raise ServerBehind(f"{what}; the server shows none")
    acc, sig = found
    try:
        await judge(s, acc, sig, seen)
    except ServerBehind as e:
        raise ServerBehind(f"{what}; the acceptance the server shows is refused: {e.reason}") from e
    try:
        check_covered(acc, seen)
    except ServerBehind as e:
        raise ServerBehind(f"{what}; {e.reason}") from e
    held = apply(s, acc, seen)
    name = escape(seen.view.name_of(acc.member))
    if held:
        s.warnings.append(f"{len(held)} document(s) this device saw deleted are served again, and the Security "
                          "Team's acceptance does not name them: this device keeps them deleted (they stop its "
                          "commands) until `mvault republish TEAM` signs the deletion again")
    s.warnings.append(f"the server was restored from an older backup; {name} (Security Team) accepted its state: "
                      f"{len(seen.lost.chains)} chains and {len(seen.lost.docs)} documents went back from what this "
                      f"device saw; see `{STATUS}`, and `mvault republish TEAM` brings back local copies")
    return await sync_log(s, after_login=True)


def keep_log_pin(s: Session) -> None:
    """Put back the log pin this command's log check moved on: a device stopped by a rollback has not accepted
    the server's state, and an acceptance is judged against the state it last accepted (``judge``). Only while
    the file still holds the checkpoint this command accepted (under the pins lock): a newer one another command
    accepted meanwhile is that command's to keep."""
    before, accepted = s.log_before, s.log_accepted
    if before is None or accepted is None:
        return

    def put_back(pins: Pins) -> None:
        if (int(pins.log.get("size", 0)), str(pins.log.get("root", ""))) == accepted:
            # the anchors stay (a union: they only make the pruning check stricter; another command's among them)
            pins.log = {**before, "anchors": anchors_merged(before.get("anchors", []), pins.log.get("anchors", []))}

    s.home.change_pins(put_back)


def check_covered(acc: Acceptance, seen: Seen) -> None:
    """Refuse (``ServerBehind``) to lower a pin below what the acceptance names for it: every chain it names a
    head of must hold that head (the same history, at least as long); a chain that went back on this device must
    be named in the signed ``lost`` list, served now at least as far as the signer saw it served, and, if still
    served, its head named; a document the list names likewise. (Every member's device replays every chain, so a
    signer whose device was in step saw every chain that went back; documents of teams the signer cannot read
    are not in its list.)"""
    if acc.heads is None:
        raise ServerBehind("the Security Team's acceptance is of format 1, which does not name the chains' heads: "
                           f"a member of the Security Team must sign it again with this version (`{ACCEPT}`)")
    for chain, (seq, head) in sorted(acc.heads.items()):
        served_hashes = seen.hashes.get(chain)
        if served_hashes is None or (chain not in seen.view.members and chain not in seen.view.teams):
            continue  # a chain this device does not see (whole): another member's team
        if len(served_hashes) < seq or served_hashes[seq - 1] != head:
            raise ServerBehind(f"the {_chain_name(seen.view, chain)} chain the server serves does not hold the head "
                               f"the Security Team accepted (link {seq}): another history, a rollback")
    for chain, (served, _) in sorted(seen.lost.chains.items()):
        if served and chain != "org" and chain not in acc.heads:
            raise ServerBehind(f"the {_chain_name(seen.view, chain)} chain went back, and the Security Team's "
                               "acceptance does not name its head: it does not cover it, a rollback")
        named = acc.lost.chains.get(chain)
        what = f"the {_chain_name(seen.view, chain)} chain (served {served} links)"
        if named is None:
            raise ServerBehind(f"{what} went back, and the Security Team's acceptance does not cover it (it does not "
                               "name that chain among what went back): a rollback")
        if served < named[0]:
            raise ServerBehind(f"{what} went back further than the Security Team's acceptance names for it "
                               f"({named[0]} links): the acceptance does not cover it, a rollback")
    for doc, (served, _) in sorted(seen.lost.docs.items()):
        named = acc.lost.docs.get(doc)
        if named is not None and served < named[0]:
            raise ServerBehind(f"document {doc} (served version {served}) went back further than the Security "
                               f"Team's acceptance names for it (version {named[0]}): the acceptance does not cover "
                               "it, a rollback")


def apply(s: Session, acc: Acceptance, seen: Seen) -> list[str]:
    """Lower the pins that went back to the server's state and record the restore (sealed, in the pins); a
    document this device pinned at a deletion keeps its pin unless the acceptance's ``lost`` list names it
    (nothing else tells this device the deletion was lost rather than dropped). Returns those documents."""
    pins = seen.pins
    cp = acc.checkpoint
    held = sorted(k for k in seen.deletions if k not in acc.lost.docs)
    for key in held:
        pins.docs[key] = seen.deletions[key]
    restored: list[Any] = list(pins.log.get("restored", []))
    restored.append({"size": cp.size, "root": cp.root.hex(), "time": acc.time, "member": acc.member,
                     "name": seen.view.name_of(acc.member), "at": s.now(), "lost": seen.lost.as_json(),
                     "held": held})
    pins.log.update({"size": cp.size, "root": cp.root.hex(), "time": cp.time, "log_key": acc.log_key.hex(),
                     "witness_size": 0, "restored": restored})
    # Under the pins lock from a fresh read: only what went back is lowered (and the log); every other pin keeps
    # what another command of this device pinned meanwhile.
    s.home.lower_pins(pins, chains=seen.lost.chains, docs=[k for k in seen.lost.docs if k not in held], log=True)
    return held


def may_sign(s: Session, seen: Seen) -> None:
    """Refuse (``PolicyDenied``) here, before anything is shown or sent, a member who may not sign an acceptance
    (the server and every client would refuse it)."""
    POLICY.judge(Act(s.me, s.device.device_id, s.now(), "restore.accept"), seen.view.org, seen.view.members, None)


async def sign(s: Session, seen: Seen) -> tuple[Acceptance, bytes]:
    """An acceptance of the server's state as ``seen`` (its current checkpoint, its organization head)."""
    org = seen.view.org
    raw = acceptance_statement(org.org_id, seen.checkpoint.raw, seen.cp_sig, seen.log_key, org.seq, org.head,
                               s.now(), s.me, s.device.device_id, seen.lost, heads=seen.heads())
    return Acceptance.parse(raw), sign_acceptance(s.device, raw)


async def publish(s: Session, acc: Acceptance, sig: bytes) -> int:
    res = await s.api.post("/api/v1/restore/acceptances", RestoreAcceptRequest(acc.raw, sig), RestoreAccepted)
    return res.size
