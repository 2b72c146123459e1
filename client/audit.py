"""The client side of the audit log: checkpoints, verification, reading, reports, exposure.

Every session checks the server's newest signed checkpoint against the one this
member accepted last (a consistency proof whose sizes come from the two signed
checkpoints, never from the proof), and against the newest checkpoint the Security
Team cosigned. Any mismatch stops the client with ``LogInconsistent``.

Reading events needs a key: the Security Team's audit key (derived from its team key)
opens every event; a member's own member keys open the events about that member.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from client.api import b64, unb64
from client.home import Pins
from security.auditkey import (
    AuditKeyClaim,
    designated_at,
    entitled_cosigner,
    judge_audit_key,
    judge_cosignature,
    parse_claim,
)
from security.authority import POLICY
from security.events import (
    DAY,
    Checkpoint,
    Event,
    Leaf,
    Opener,
    audit_key_statement,
    audit_keypair,
    cosign_statement,
)
from security.merkle import EMPTY_ROOT, ProofError, leaf_hash, root_of, verify_consistency
from security.protocols import Protocols, defaults, parse
from security.rules import AuditInput, RuleResult, evaluate
from vault.acts import Act
from vault.chains import MemberState, TeamState, org_id_for
from vault.envelope import Record
from vault.errors import DecryptionFailed, IntegrityError, NotFound, PolicyDenied, VaultError
from vault.links import Link
from vault.logsign import sign_audit_key, sign_cosignature

if TYPE_CHECKING:
    from client.client import Session, View

PAGE = 2000


class LogInconsistent(ProofError):
    """The server's audit log contradicts a checkpoint this member accepted: stop."""

    code = "log_inconsistent"

    def __init__(self, message: str) -> None:
        super().__init__("STOP: " + message + ". The audit log was rewritten, truncated or forked; do not trust "
                         "this server and tell your Security Team.")


@dataclass
class Witness:
    checkpoint: Checkpoint
    cosigs: list[dict[str, Any]]


@dataclass
class LogView:
    checkpoint: Checkpoint
    witness: Witness | None = None


def _pinned(pins: Pins) -> tuple[int, bytes, int]:
    log = pins.log
    size = int(log.get("size", 0))
    root = bytes.fromhex(str(log.get("root", ""))) if size else EMPTY_ROOT
    return size, root, int(log.get("time", 0))


def _extends(old_size: int, old_root: bytes, cp: Checkpoint, proof: list[bytes], what: str) -> None:
    if cp.size < old_size:
        raise LogInconsistent(f"the server's log has {cp.size} events but {what} had {old_size}")
    try:
        verify_consistency(old_size, cp.size, old_root, cp.root, proof)
    except ProofError as e:
        raise LogInconsistent(f"the server's log does not extend {what} (size {old_size}): {e}") from e


def _proof(value: Any) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 128:
        raise LogInconsistent("the server sent a malformed proof")
    return [unb64(h) for h in value]


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LogInconsistent(f"the server sent a malformed {what}")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LogInconsistent(f"the server sent a malformed {what}")
    return value


def _b64(value: Any, what: str) -> bytes:
    try:
        return unb64(value)
    except VaultError as e:
        raise LogInconsistent(f"the server sent a malformed {what}") from e


def _signed_checkpoint(answer: dict[str, Any], log_key: bytes, org_id: str, what: str) -> Checkpoint:
    """``answer["checkpoint"]``, signed by the pinned log key (``answer["sig"]``), for this organization."""
    cp = Checkpoint.parse(_b64(answer.get("checkpoint"), what))
    try:
        cp.verify(log_key, _b64(answer.get("sig"), f"{what} signature"))
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
    res = _dict(await s.api.get(f"/api/v1/audit/checkpoint?from={old_size}"), "checkpoint answer")
    log_key = _b64(res.get("log_key"), "log key")
    pinned_key = pins.log.get("log_key")
    if pinned_key is not None and pinned_key != log_key.hex():
        raise LogInconsistent("the server's checkpoint-signing key changed")
    org_id = org_id_for(bytes.fromhex(s.cfg.org_root))
    cp = _signed_checkpoint(res, log_key, org_id, "checkpoint")
    if len(old_root) != 32:
        raise LogInconsistent("the pinned checkpoint is damaged")
    _extends(old_size, old_root, cp, _proof(res.get("proof", [])), "the checkpoint you accepted before")
    if after_login and old_size and cp.size == old_size:
        # Our login was logged before this checkpoint was asked for: an unchanged size is a frozen view.
        raise LogInconsistent("the server shows a log that did not record your login")
    if cp.time + 600 < old_time:
        raise LogInconsistent("the checkpoint is older than one you accepted before")
    witness = None
    seen_witness = int(pins.log.get("witness_size", 0))
    w = res.get("witness")
    if w is None and seen_witness:
        raise LogInconsistent("the server no longer shows the Security Team's cosigned checkpoint you saw before")
    if w is not None:
        w = _dict(w, "witness")
        wcp = _signed_checkpoint(w, log_key, org_id, "witnessed checkpoint")
        if wcp.size > cp.size:
            raise LogInconsistent("the server shows a witnessed log longer than its current one")
        # The witnessed tree must be a prefix of the current one: its root at its size is signed twice.
        _extends(wcp.size, wcp.root, cp, _proof(w.get("proof", [])), "the log the Security Team witnessed")
        if wcp.size < seen_witness:
            raise LogInconsistent("the server hides a newer witnessed checkpoint that you saw before")
        cosigs = w.get("cosigs")
        if not isinstance(cosigs, list) or not cosigs or not all(isinstance(c, dict) for c in cosigs):
            raise LogInconsistent("a witnessed checkpoint without well-formed cosignatures")
        witness = Witness(wcp, cosigs)
    pins.log.update({"size": cp.size, "root": cp.root.hex(), "time": cp.time, "log_key": log_key.hex()})
    s.home.save_pins(pins)
    return LogView(cp, witness)


def check_witness(s: Session, view: View, witness: Witness) -> int:
    """Verify every cosignature (a Security Team member's device active at the signed time) and pin the
    witnessed size; returns the newest cosignature's (signed) time."""
    newest = 0
    t_now = _now()
    for c in witness.cosigs:
        member, device = str(c.get("member")), str(c.get("device"))
        t = _int(c.get("time"), "cosignature time")
        # Judged by the one judge at the (signed) time of the cosignature: a device revoked later, or a
        # term that ended later, does not undo a witness that was valid when made.
        if not entitled_cosigner(member, device, t, view.org, view.members):
            raise LogInconsistent("a cosignature names a device or member that was not on the Security Team then")
        if not witness.checkpoint.time - 600 <= t <= t_now + 600:
            raise LogInconsistent("a cosignature is dated outside its checkpoint's lifetime")
        try:
            judge_cosignature(witness.checkpoint.raw, member, device, t, _b64(c.get("sig"), "cosignature"), view.org,
                              view.members)
        except VaultError as e:
            raise LogInconsistent("a witness cosignature does not verify") from e
        newest = max(newest, t)
    pins = s.home.pins()
    pins.log["witness_size"] = max(int(pins.log.get("witness_size", 0)), witness.checkpoint.size)
    s.home.save_pins(pins)
    return newest


# -- reading the log --------------------------------------------------------------------------------


@dataclass
class Fetched:
    checkpoint: Checkpoint
    hashes: list[bytes]
    leaves: dict[int, Leaf] = field(default_factory=dict)  # index -> leaf (pruned ones missing)


async def fetch_log(s: Session, lv: LogView) -> Fetched:
    """Every leaf up to the checkpoint, each checked against the tree the checkpoint signs."""
    cp = lv.checkpoint
    hashes: list[bytes] = []
    leaves: dict[int, Leaf] = {}
    while len(hashes) < cp.size:
        res = await s.api.get(f"/api/v1/audit/leaves?start={len(hashes)}&count={min(PAGE, cp.size - len(hashes))}")
        rows = res.get("leaves") if isinstance(res, dict) else None
        if not isinstance(rows, list) or not rows:
            raise LogInconsistent(f"the server stopped serving the log at event {len(hashes)} of {cp.size}")
        for row in rows:
            if len(hashes) == cp.size:
                break
            row = _dict(row, "log page")
            index = _int(row.get("index"), "event index")
            if index != len(hashes):
                raise LogInconsistent(f"the server served event {index} where {len(hashes)} belongs")
            h = _b64(row.get("hash"), "event hash")
            if row.get("leaf") is not None:
                raw = _b64(row.get("leaf"), "event")
                if leaf_hash(raw) != h:
                    raise LogInconsistent(f"event {index} does not match its hash")
                try:
                    leaves[index] = Leaf.parse(raw)
                except IntegrityError as e:
                    raise LogInconsistent(f"event {index} is malformed: {e}") from e
            hashes.append(h)
    if root_of(hashes) != cp.root:
        raise LogInconsistent("the events the server served do not hash to its signed checkpoint")
    return Fetched(cp, hashes, leaves)


@dataclass
class Keys:
    audit: dict[int, tuple[bytes, bytes]]  # audit generation -> key pair
    member: list[tuple[bytes, bytes]]

    @property
    def security(self) -> bool:
        return bool(self.audit)


def security_team(view: View, me: str) -> TeamState | None:
    """The security team whose key seals the audit log, if ``me`` holds its key: the team designated in
    the organization chain (``org.audit_team``); before any designation, any team of kind security."""
    now = _now()
    designated = view.org.audit_team
    for team in sorted(view.teams.values(), key=lambda t: t.team_id):
        if team.kind == "security" and designated in (None, team.team_id) and team.holds_key(me, now):
            return team
    return None


async def keys_of(s: Session, view: View) -> Keys:
    audit: dict[int, tuple[bytes, bytes]] = {}
    team = security_team(view, s.me)
    if team is not None and "security" in view.org.roles_of(s.me, _now()):
        for gen in range(1, team.generation + 1):
            try:
                audit[gen] = audit_keypair((await s.team_key(team, gen)).seed)
            except (PolicyDenied, NotFound):
                continue
    mine = view.members[s.me]
    member = []
    for gen in sorted(mine.puks):
        try:
            member.append((await s.puk(gen)).box_keypair)
        except VaultError:
            continue
    return Keys(audit, member)


def read_events(fetched: Fetched, keys: Keys) -> list[tuple[int, Event]]:
    """Every event these keys open, in log order."""
    audit = {gen: Opener(*pair) for gen, pair in keys.audit.items()}
    member = [Opener(*pair) for pair in keys.member]
    out = []
    for index in sorted(fetched.leaves):
        leaf = fetched.leaves[index]
        event = None
        opener = audit.get(leaf.audit_gen)
        if opener is not None:
            try:
                event = opener.open(leaf, (0,))
            except DecryptionFailed:
                event = None
        if event is None:
            for m in member:
                try:
                    event = m.open(leaf, (1, 2))
                    break
                except DecryptionFailed:
                    continue
        if event is not None:
            out.append((index, event))
    return out


def _now() -> int:
    from client.client import now  # noqa: PLC0415

    return now()


async def load(s: Session) -> tuple[View, LogView, Fetched, Keys, list[tuple[int, Event]], int | None]:
    lv = await sync_log(s)
    view = await s.view()
    last_witness = check_witness(s, view, lv.witness) if lv.witness is not None else None
    fetched = await fetch_log(s, lv)
    keys = await keys_of(s, view)
    return view, lv, fetched, keys, read_events(fetched, keys), last_witness


def parse_since(text: str | None) -> int | None:
    """``7d``, ``12h``, ``30m`` or a unix time -> unix time (None: no limit)."""
    if not text:
        return None
    units = {"d": DAY, "h": 3600, "m": 60, "s": 1}
    if text[-1:] in units and text[:-1].isdigit():
        return _now() - int(text[:-1]) * units[text[-1]]
    if text.isdigit():
        return int(text)
    raise VaultError(f"--since takes a duration like 7d, 12h or 30m, not {text!r}")


def event_json(index: int, event: Event, view: View) -> dict[str, Any]:
    out = event.to_json()
    out["index"] = index
    out["actor_name"] = view.name_of(event.actor) if event.actor in view.members else ""
    return out


def filter_events(events: Iterable[tuple[int, Event]], view: View, member: str | None, team: str | None,
                  action: str | None, since: int | None) -> list[tuple[int, Event]]:
    member_id = view.member_by_name(member).member_id if member else None
    team_id = _team_id(view, team) if team else None
    out = []
    for index, e in events:
        if member_id and member_id not in (e.actor, e.res.get("member")):
            continue
        if team_id and e.res.get("team") != team_id:
            continue
        if action and not (e.action == action or e.action.startswith(action + ".")):
            continue
        if since is not None and e.time < since:
            continue
        out.append((index, e))
    return out


def _team_id(view: View, name: str) -> str:
    for t in view.teams.values():
        if t.name == name or t.team_id == name:
            return t.team_id
    raise NotFound(f"unknown team {name}")


# -- verification and witnessing ----------------------------------------------------------------------


@dataclass
class Verified:
    checkpoint: Checkpoint
    pruned: int
    events_read: int
    last_witness: int | None
    problems: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.problems, "size": self.checkpoint.size, "root": self.checkpoint.root.hex(),
                "time": self.checkpoint.time, "pruned": self.pruned, "events_read": self.events_read,
                "last_witness": self.last_witness, "problems": self.problems}


async def verify_log(s: Session) -> tuple[Verified, View, list[tuple[int, Event]], Keys]:
    """Replay the whole log; with the audit key also check the events against the chains."""
    view, lv, fetched, keys, events, last_witness = await load(s)
    problems = _check_pruning(fetched, protocols_of(view).retention_days)
    if keys.security:
        opened = {i for i, _ in events}
        unreadable = [i for i, leaf in fetched.leaves.items() if leaf.audit_gen in keys.audit and i not in opened]
        if unreadable:
            problems.append(f"{len(unreadable)} events sealed to the audit key do not open (first: {unreadable[0]})")
        problems += _check_generations(fetched, events, max(keys.audit))
        sealed_to_us = [(i, e) for i, e in events if fetched.leaves[i].audit_gen in keys.audit]
        problems += await _check_links_logged(s, view, sealed_to_us)
        problems += _check_order(events)
    return Verified(lv.checkpoint, lv.checkpoint.size - len(fetched.leaves), len(events), last_witness,
                    problems), view, events, keys


def _check_pruning(fetched: Fetched, retention_days: int) -> list[str]:
    """Retention deletes the oldest leaves only: the pruned ones must be a prefix of the log,
    and nothing the retention period still covers may be missing."""
    kept = sorted(fetched.leaves)
    first_kept = kept[0] if kept else fetched.checkpoint.size
    missing = [i for i in range(first_kept, fetched.checkpoint.size) if i not in fetched.leaves]
    problems = []
    if missing:
        problems.append(f"{len(missing)} events are missing after kept ones (first: {missing[0]}); "
                        "retention deletes only the oldest")
    if first_kept and kept:
        cutoff = _now() // DAY - retention_days
        if fetched.leaves[first_kept].day < cutoff - 1:
            problems.append(f"events before {first_kept} were deleted although event {first_kept}, "
                            "older than the retention period, was kept")
    return problems


def _check_generations(fetched: Fetched, events: list[tuple[int, Event]], newest_held: int) -> list[str]:
    """Once the audit key exists, every event is sealed to it, never to an older generation
    than the newest one published, and never to a generation the Security Team does not hold."""
    published = {i: int(e.detail.get("gen", 0)) for i, e in events if e.action == "audit.key" and e.result == "ok"}
    problems = []
    current = 0
    for i in sorted(fetched.leaves):
        ag = fetched.leaves[i].audit_gen
        if current and ag < current:
            problems.append(f"event {i} is sealed to audit key generation {ag}, not the published {current}")
        if ag > newest_held:
            problems.append(f"event {i} is sealed to an audit key generation ({ag}) the Security Team never held")
        # The event that records a publication is sealed before the new key takes effect.
        current = max(current, ag, published.get(i, 0))
    return problems[:20]


def _check_order(events: list[tuple[int, Event]]) -> list[str]:
    problems = []
    last = 0
    for index, e in events:
        if e.time + 600 < last:
            problems.append(f"event {index} is dated {last - e.time} s before the event logged ahead of it")
        last = max(last, e.time)
    return problems


async def chain_links(s: Session, view: View) -> tuple[list[Link], dict[str, list[Link]], dict[str, list[Link]]]:
    org_links = await s._links("/api/v1/chains/org")
    team_links = {tid: await s._links(f"/api/v1/chains/team/{tid}") for tid in view.teams}
    member_links = {mid: await s._links(f"/api/v1/chains/member/{mid}") for mid in view.members}
    return org_links, team_links, member_links


async def _check_links_logged(s: Session, view: View, events: list[tuple[int, Event]]) -> list[str]:
    """Every chain link must have its event, logged when it was made (no backdating).

    ``events`` are those sealed to the audit key; links older than the first of them (made
    before the Security Team published its key, or in that same second) cannot be checked.
    """
    logged = {e.res.get("link"): e for _, e in events if "link" in e.res and not e.action.startswith("attest.")}
    earliest = min((e.time for _, e in events), default=None)
    org_links, team_links, member_links = await chain_links(s, view)
    problems = []
    for link in [*org_links, *(x for ls in team_links.values() for x in ls),
                 *(x for ls in member_links.values() for x in ls)]:
        e = logged.get(link.hash.hex())
        if e is None:
            if earliest is not None and link.time > earliest:
                problems.append(f"chain link {link.type} {link.hash.hex()[:16]} has no audit event")
            continue
        if abs(e.time - link.time) > 600:
            problems.append(f"chain link {link.type} {link.hash.hex()[:16]} is dated {link.time} but was "
                            f"logged at {e.time}: backdated")
    return problems


async def witness(s: Session) -> tuple[Verified, int]:
    result, view, _, keys = await verify_log(s)
    if not _entitled(s, view, "audit.cosign"):
        raise PolicyDenied("only the Security Team witnesses the log")
    if result.problems:
        raise LogInconsistent("not cosigning: " + "; ".join(result.problems[:3]))
    t = _now()
    sig = sign_cosignature(s.device, cosign_statement(result.checkpoint.raw, s.me, s.device.device_id, t))
    res = await s.api.post("/api/v1/audit/cosign", {"checkpoint": b64(result.checkpoint.raw), "sig": b64(sig),
                                                    "time": t})
    return result, int(res.get("size", 0))


def _entitled(s: Session, view: View, action: str) -> bool:
    return POLICY.entitled(Act(s.me, s.device.device_id, _now(), action), view.org, view.members, None)


async def served_audit_key(s: Session, view: View) -> AuditKeyClaim | None:
    """The audit-key statement the server says it seals to, judged before it is believed: signed by a
    member entitled to at its time, for the security team designated then (the server may lie)."""
    res = await s.api.get("/api/v1/audit/key")
    current = res.get("key") if isinstance(res, dict) else None
    if current is None:
        return None
    if not isinstance(current, dict):
        raise IntegrityError("the server sent a malformed audit key")
    claim = parse_claim(_b64(current.get("statement"), "audit key statement"))
    try:
        judge_audit_key(claim, _b64(current.get("sig"), "audit key signature"), view.org, view.members,
                        view.teams.get(claim.team), designated_at(view.org, claim.time))
    except VaultError as e:
        raise IntegrityError(f"the server says it seals the audit log to a key no one entitled published ({e}); "
                             "do not trust this server and tell your Security Team") from e
    return claim


async def publish_audit_key(s: Session, view: View, team_name: str | None = None,
                            explicit: bool = False) -> str | None:
    """Security Team clients make sure the server seals to the designated team's current generation.

    ``explicit`` (``mvault audit key``): refusals are errors, and a key already in force is said so;
    ``team_name``: publish that team's key (the server refuses any but the designated team's)."""
    team = security_team(view, s.me) if team_name is None else view.team_by_name(team_name)
    if not _entitled(s, view, "audit.key"):
        if explicit:
            raise PolicyDenied("only the Security Team publishes the audit key")
        return None
    if team is None:
        if explicit:
            raise PolicyDenied("you hold no key of the designated security team")
        return None
    key = await s.team_key(team, team.generation)
    pub = audit_keypair(key.seed)[0]
    current = await served_audit_key(s, view)
    if current is not None and (current.team, current.gen, current.pub) == (team.team_id, team.generation, pub):
        return f"the audit key of team {team.name} (generation {team.generation}) is in force" if explicit else None
    raw = audit_key_statement(org_id_for(bytes.fromhex(s.cfg.org_root)), team.team_id, team.generation, pub,
                              _now(), s.me, s.device.device_id)
    await s.api.post("/api/v1/audit/key", {"statement": b64(raw), "sig": b64(sign_audit_key(s.device, raw))})
    return f"published the audit key of team {team.name} (generation {team.generation})"


async def designate(s: Session, team_name: str) -> bool:
    """NCC: designate ``team_name`` as the audit log's security team; True if in force, False if it
    waits for a second NCC member's same designation."""
    view = await s.view()
    team = view.team_by_name(team_name)
    if team.kind != "security":
        raise PolicyDenied(f"team {team.name} is of kind {team.kind!r}: the audit log's team is of kind 'security'")
    await s.append_org("org.audit_team", {"team": team.team_id})
    return (await s.view(refresh=True)).org.audit_team == team.team_id


async def designate_first(s: Session, team: TeamState) -> bool:
    """After creating a security team: designate it if no team is designated or proposed and ``s.me`` is
    the only NCC member (a young organization: one signature suffices). Otherwise nothing."""
    view = await s.view()
    org, t = view.org, _now()
    ncc = {m for m in org.members if "ncc" in org.roles_of(m, t)}
    if team.kind != "security" or org.audit_team is not None or org.audit_team_proposals or ncc != {s.me}:
        return False
    await s.append_org("org.audit_team", {"team": team.team_id})
    return (await s.view(refresh=True)).org.audit_team == team.team_id


# -- report and exposure ------------------------------------------------------------------------------


def protocols_of(view: View) -> Protocols:
    change = view.org.protocols
    return parse(change.text) if change is not None else defaults()


async def report(s: Session) -> tuple[list[RuleResult], Verified]:
    result, view, events, keys = await verify_log(s)
    if not keys.security:
        raise PolicyDenied("the report needs the Security Team's audit key (a key of a 'security' team)")
    org_links, team_links, member_links = await chain_links(s, view)
    inp = AuditInput(now=_now(), org=view.org, members=view.members, teams=view.teams, org_links=org_links,
                     team_links=team_links, member_links=member_links, events=events,
                     log_ok=not result.problems, log_problem="; ".join(result.problems),
                     last_witness=result.last_witness)
    results = evaluate(inp, protocols_of(view))
    violated = [r for r in results if r.status == "violated"]
    await s.api.post("/api/v1/audit/attest", {"kind": "report", "violated": ",".join(r.rule for r in violated)[:1024],
                                              "count": sum(len(r.findings) for r in violated)})
    return results, result


async def exposure(s: Session, name: str) -> dict[str, Any]:
    result, view, events, keys = await verify_log(s)
    if "security" not in view.org.roles_of(s.me, _now()) and "ncc" not in view.org.roles_of(s.me, _now()):
        raise PolicyDenied("exposure reports are for the Security Team")
    ms = view.member_by_name(name)
    mid = ms.member_id
    mine = [(i, e) for i, e in events if e.actor == mid]
    fetched_vids = {e.res.get("vid") for _, e in mine if e.action == "doc.read" and e.result == "ok"}
    last_seen: dict[str, int] = {}
    for _, e in mine:
        if e.action == "auth.login" and e.result == "ok":
            last_seen[e.device] = max(last_seen.get(e.device, 0), e.time)
    threads = _threads_seen(events, mine)
    teams = []
    for team in sorted(view.teams.values(), key=lambda t: t.name):
        held = sorted(g for (g, m) in team.boxes if m == mid)
        if not held and mid not in team.members:
            continue
        readable = set(range(1, max(held) + 1)) if (team.history and held) else set(held)
        versions = await _team_versions(s, team)
        exposed = [v for v in versions if v["gen"] in readable]
        teams.append({
            "team": team.team_id, "name": team.name, "kind": team.kind,
            "member": mid in team.members, "role": team.members[mid].role if mid in team.members else None,
            "removed_at_link": team.removed_at.get(mid), "generations": sorted(readable),
            "current_generation": team.generation,
            "rotation_needed": team.rotation_reasons(_now(), view.members, view.org),
            "versions": [{**v, "fetched": v["vid"] in fetched_vids} for v in exposed],
            "threads": [{**t, "messages": sum(n for g, n in t.pop("by_gen").items() if g in readable)}
                        for t in threads.get(team.team_id, {}).values()],
            "live_delivered": sum(d for _, e in mine if e.action == "thread.unfollow"
                                  and e.res.get("team") == team.team_id
                                  and isinstance(d := e.detail.get("delivered", 0), int)),
            "co_members": sorted(view.name_of(m) for m in team.active_members(_now()) if m != mid),
        })
    om = view.org.members.get(mid)
    return {
        "member": mid, "name": ms.name, "status": om.status if om else "unknown",
        "removed_at": om.removed_at if om else None,
        "devices": [{"device": d.device_id, "name": d.name, "kind": d.kind, "added": d.added, "revoked": d.revoked,
                     "last_seen": last_seen.get(d.device_id)} for d in ms.devices.values()],
        "verified": s.verified(ms),
        "invited": sorted(view.name_of(i.used_by) for i in view.org.invites.values()
                          if i.by == mid and i.used_by is not None),
        "teams": teams,
        "fetched": len(fetched_vids),
        "messages_fetched": sum(t["fetched"] for ts in threads.values() for t in ts.values()),
        "events": len(mine),
        "retention_days": protocols_of(view).retention_days,
        "log": result.to_json(),
    }


def _threads_seen(events: list[tuple[int, Event]], mine: list[tuple[int, Event]]) -> dict[str, dict[str, Any]]:
    """team id -> thread id -> what the log tells of the thread: its expiry (what may still sit on a
    device), messages posted per key generation, and how many the member fetched (reads and live)."""
    out: dict[str, dict[str, Any]] = {}
    for _, e in events:
        if e.result != "ok" or not e.res.get("team") or not e.res.get("thread"):
            continue
        team, thread = e.res["team"], e.res["thread"]
        if e.action == "thread.create":
            out.setdefault(team, {})[thread] = {"thread": thread, "expire": e.detail.get("expire", 0),
                                                "created": e.time, "by_gen": {}, "fetched": 0}
        elif e.action == "msg.post" and thread in out.get(team, {}):
            gen = e.detail.get("gen")
            by_gen = out[team][thread]["by_gen"]
            by_gen[gen] = by_gen.get(gen, 0) + 1
    for _, e in mine:
        t = out.get(e.res.get("team", ""), {}).get(e.res.get("thread", ""))
        if t is not None and e.action == "msg.read" and e.result == "ok":
            count = e.detail.get("count", 0)
            t["fetched"] += count if isinstance(count, int) else 0
    return out


async def _team_versions(s: Session, team: TeamState) -> list[dict[str, Any]]:
    res = await s.api.get(f"/api/v1/audit/teams/{team.team_id}/versions")
    out = []
    for v in res.get("versions", []):
        rec = Record.parse(unb64(v["record"]))
        if rec.core.team != team.team_id:
            raise IntegrityError("the server listed another team's document version")
        out.append({"vid": rec.version_id, "doc": rec.core.doc, "seq": rec.core.seq, "gen": rec.core.gen,
                    "author": rec.core.author, "time": rec.core.time})
    return out


def member_name(view: View, ms: MemberState) -> str:
    return view.name_of(ms.member_id)
