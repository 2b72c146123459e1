"""Reading the audit log: every leaf fetched and checked against the signed checkpoint, the events
this member's keys open (all of them with the Security Team's audit key, a member's own with its
member keys), their verification against the chains, and the Security Team's cosignature."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from client.audit.keys import entitled, security_team
from client.audit.notes import WitnessedNote, outside_witness
from client.checkpoints import (
    LogView,
    check_witness,
    protocols_of,
    sync_log,
)
from client.client import Client
from client.names import Names
from client.view import View
from security.events import DAY, Checkpoint, Event, Leaf, Opener, audit_keypair, cosign_statement
from security.merkle import leaf_hash, root_of
from vault.errors import DecryptionFailed, IntegrityError, LogInconsistent, NotFound, PolicyDenied, VaultError
from vault.links import Link
from vault.logsign import sign_cosignature
from vault.wire.schemas import CosignAnswer, CosignRequest, Leaves

PAGE = 2000
NAMED_RESOURCES = ("member", "team", "device")  # an event's resources that are ids of something with a name


@dataclass
class Fetched:
    checkpoint: Checkpoint
    hashes: list[bytes]
    leaves: dict[int, Leaf] = field(default_factory=dict)  # index -> leaf (pruned ones missing)


async def fetch_log(s: Client, lv: LogView) -> Fetched:
    """Every leaf up to the checkpoint, each checked against the tree the checkpoint signs."""
    cp = lv.checkpoint
    hashes: list[bytes] = []
    leaves: dict[int, Leaf] = {}
    while len(hashes) < cp.size:
        page = f"/api/v1/audit/leaves?start={len(hashes)}&count={min(PAGE, cp.size - len(hashes))}"
        rows = (await s.session.api.get(page, Leaves)).leaves
        if not rows:
            raise LogInconsistent(f"the server stopped serving the log at event {len(hashes)} of {cp.size}")
        for row in rows:
            if len(hashes) == cp.size:
                break
            index = row.index
            if index != len(hashes):
                raise LogInconsistent(f"the server served event {index} where {len(hashes)} belongs")
            h = row.hash
            if row.leaf is not None:
                raw = row.leaf
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


async def keys_of(s: Client, view: View) -> Keys:
    audit: dict[int, tuple[bytes, bytes]] = {}
    team = security_team(view, s.session.me, s.session.now())
    if team is not None and "security" in view.org.roles_of(s.session.me, s.session.now()):
        for gen in range(1, team.generation + 1):
            try:
                audit[gen] = audit_keypair((await s.keys.team_key(team, gen)).seed)
            except (PolicyDenied, NotFound):
                continue
    mine = view.members[s.session.me]
    member = []
    for gen in sorted(mine.puks):
        try:
            member.append((await s.keys.puk(gen)).box_keypair)
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



async def load(s: Client) -> tuple[View, LogView, Fetched, Keys, list[tuple[int, Event]], int | None]:
    lv = await sync_log(s.session)
    view = await s.chains.view()
    last_witness = check_witness(s.session, view.org, view.members, lv.witness) if lv.witness is not None else None
    fetched = await fetch_log(s, lv)
    keys = await keys_of(s, view)
    return view, lv, fetched, keys, read_events(fetched, keys), last_witness


def parse_since(text: str | None, now: int) -> int | None:
    """``7d``, ``12h``, ``30m`` or a unix time -> unix time (None: no limit)."""
    if not text:
        return None
    units = {"d": DAY, "h": 3600, "m": 60, "s": 1}
    if text[-1:] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    if text.isdigit():
        return int(text)
    raise VaultError(f"--since takes a duration like 7d, 12h or 30m, not {text!r}")


def event_json(index: int, event: Event, view: View, names: Names) -> dict[str, Any]:
    """An event for ``--json``: its ids, and beside them the names (``actor_name``; ``member_name``,
    ``team_name``, ``device_name`` for those resources; null for an id the view does not name)."""
    out = event.to_json()
    out["index"] = index
    out["actor_name"] = view.name_of(event.actor) if event.actor in view.members else ""
    for key in NAMED_RESOURCES:
        if key in event.res:
            out[f"{key}_name"] = names.raw.get(event.res[key])
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
    outside: WitnessedNote | None = None  # what listed outside witnesses cosigned (client/audit/notes.py)
    fetched: Fetched | None = None  # the leaves and hashes verified

    @property
    def outside_witness(self) -> int | None:
        """The timestamp of the newest listed outside witness's cosignature."""
        return self.outside.newest if self.outside else None

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.problems, "size": self.checkpoint.size, "root": self.checkpoint.root.hex(),
                "time": self.checkpoint.time, "pruned": self.pruned, "events_read": self.events_read,
                "last_witness": self.last_witness, "last_outside_witness": self.outside_witness,
                "problems": self.problems}


async def verify_log(s: Client) -> tuple[Verified, View, list[tuple[int, Event]], Keys]:
    """Replay the whole log; with the audit key also check the events against the chains."""
    view, lv, fetched, keys, events, last_witness = await load(s)
    problems = _check_pruning(fetched, protocols_of(view.org).retention_days, s.session.now())
    if keys.security:
        opened = {i for i, _ in events}
        unreadable = [i for i, leaf in fetched.leaves.items() if leaf.audit_gen in keys.audit and i not in opened]
        if unreadable:
            problems.append(f"{len(unreadable)} events sealed to the audit key do not open (first: {unreadable[0]})")
        problems += _check_generations(fetched, events, max(keys.audit))
        sealed_to_us = [(i, e) for i, e in events if fetched.leaves[i].audit_gen in keys.audit]
        problems += await _check_links_logged(s, view, sealed_to_us)
        problems += _check_order(events)
    outside = outside_witness(lv, view.org, fetched.hashes, s.session.now())
    return Verified(lv.checkpoint, lv.checkpoint.size - len(fetched.leaves), len(events), last_witness,
                    problems, outside, fetched), view, events, keys


def _check_pruning(fetched: Fetched, retention_days: int, now: int) -> list[str]:
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
        cutoff = now // DAY - retention_days
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


async def chain_links(s: Client, view: View) -> tuple[list[Link], dict[str, list[Link]], dict[str, list[Link]]]:
    org_links = await s.chains.links("/api/v1/chains/org")
    team_links = {tid: await s.chains.links(f"/api/v1/chains/team/{tid}") for tid in view.teams}
    member_links = {mid: await s.chains.links(f"/api/v1/chains/member/{mid}") for mid in view.members}
    return org_links, team_links, member_links


async def _check_links_logged(s: Client, view: View, events: list[tuple[int, Event]]) -> list[str]:
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



async def witness(s: Client) -> tuple[Verified, int]:
    result, view, _, keys = await verify_log(s)
    if not entitled(s, view, "audit.cosign"):
        raise PolicyDenied("only the Security Team witnesses the log")
    if result.problems:
        raise LogInconsistent("not cosigning: " + "; ".join(result.problems[:3]))
    t = s.session.now()
    sig = sign_cosignature(s.session.device, cosign_statement(result.checkpoint.raw, s.session.me,
                                                              s.session.device.device_id, t))
    res = await s.session.api.post("/api/v1/audit/cosign", CosignRequest(result.checkpoint.raw, sig, t), CosignAnswer)
    return result, res.size
