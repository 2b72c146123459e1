"""What every rule check shares: the input and result types, levels, and lookups over the input.

``Context`` indexes one ``AuditInput`` once (events by action, chain links by hash, the organization's
link times, the log's clock at each index), so that each check reads it without scanning everything again.

A link's own time is its signer's claim. Windows measured in days (probation, vouches before an entry,
approvals within 72 h, reviews every 30 days) are judged by when the link was appended instead
(``Context.appended_at``): the audit log's clock at the event that recorded the append, which the server
stamps and members cosign, and never earlier than any event logged before it (SECURITY.md "Authority").

A link the log should hold but does not (something appended before it is logged: an earlier link of its chain,
or, for a team link, the organization link it names; retention only prunes a prefix) is *unlogged*: the server
failed to log its append. It is never judged by its signer's date: by the log's clock at the next logged link of
its chain (appended after it), or the log's latest time when none is (``Context.unlogged``). log-integrity
reports those a later link of their chain is logged after: the log must hold them; the last links of a chain may
have been appended after the checkpoint the log was read to."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from security.events import Event
from security.protocols import Rule
from vault.chains import MemberState, OrgMember, OrgState, TeamState
from vault.errors import EncodingError
from vault.links import Link

MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400

VIOLATION: Final = "violation"
WARNING: Final = "warning"
ALERT: Final = "alert"

CHAIN_LINK_PREFIXES: Final = frozenset({"member", "device", "org", "team", "export", "coalition"})
KEY_CHANGE_LINKS: Final = ("device.add", "device.revoke")


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str  # "violation" | "warning" | "alert"
    message: str  # one line; names member/team/device ids (the client shows names in their place)
    subject: str  # the member, team or device id it is about ("" if none)
    events: tuple[int, ...] = ()  # audit log indices of the events behind it
    next_command: str = ""  # the command that resolves it, exactly as it is to be run (ids for members and teams)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "level": self.level, "message": self.message, "subject": self.subject,
                "events": list(self.events), "next_command": self.next_command}


@dataclass(frozen=True)
class RuleResult:
    rule: str
    severity: str
    enabled: bool
    status: str  # "disabled" | "violated" | "alert" | "warning" | "ok"
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "enabled": self.enabled, "status": self.status,
                "findings": [f.to_json() for f in self.findings]}


@dataclass(frozen=True)
class AuditInput:
    now: int
    org: OrgState
    members: Mapping[str, MemberState]
    teams: Mapping[str, TeamState]
    org_links: Sequence[Link]
    team_links: Mapping[str, Sequence[Link]]  # team id -> links
    member_links: Mapping[str, Sequence[Link]]  # member id -> links
    events: Sequence[tuple[int, Event]]  # (log index, decrypted event), in log order
    log_ok: bool = True  # did the log verify against every checkpoint
    log_problem: str = ""
    last_witness: int | None = None  # time of the newest verified Security Team cosignature
    last_outside_witness: int | None = None  # timestamp of the newest verified listed outside witness's cosignature


def status_of(enabled: bool, findings: Iterable[Finding]) -> str:
    if not enabled:
        return "disabled"
    levels = {f.level for f in findings}
    for level, status in ((VIOLATION, "violated"), (ALERT, "alert"), (WARNING, "warning")):
        if level in levels:
            return status
    return "ok"


# -- shared lookups ---------------------------------------------------------------------------------


@dataclass
class Context:
    inp: AuditInput
    now: int
    link_events: dict[str, int]  # hex hash of a chain link -> index of the event that recorded it
    org_by_seq: dict[int, Link]
    org_times: list[int]  # times of org links, in chain order (non-decreasing)
    org_seqs: list[int]
    by_action: dict[str, list[tuple[int, Event]]] = field(default_factory=dict)
    log_clock: dict[int, int] = field(default_factory=dict)  # log index -> newest event time up to that index
    unlogged: dict[str, Unlogged] = field(default_factory=dict)  # hex hash of a link -> when it can have been appended

    @classmethod
    def build(cls, inp: AuditInput) -> Context:
        link_events: dict[str, int] = {}
        by_action: dict[str, list[tuple[int, Event]]] = defaultdict(list)
        log_clock: dict[int, int] = {}
        newest: int | None = None
        for idx, ev in inp.events:
            by_action[ev.action].append((idx, ev))
            newest = ev.time if newest is None else max(newest, ev.time)
            log_clock[idx] = newest
            link = ev.res.get("link")
            if link and ev.action.split(".", 1)[0] in CHAIN_LINK_PREFIXES:
                link_events.setdefault(link, idx)
        org_links = sorted(inp.org_links, key=lambda lk: lk.seq)
        org_by_seq = {lk.seq: lk for lk in org_links}
        unlogged = _unlogged(inp, link_events, log_clock, org_by_seq, newest)
        return cls(inp, inp.now, link_events, org_by_seq, [lk.time for lk in org_links],
                   [lk.seq for lk in org_links], dict(by_action), log_clock, unlogged)

    def actions(self, action: str) -> list[tuple[int, Event]]:
        return self.by_action.get(action, [])

    def link_event(self, link: Link | None) -> tuple[int, ...]:
        if link is None:
            return ()
        idx = self.link_events.get(link.hash.hex())
        return () if idx is None else (idx,)

    def appended_at(self, link: Link) -> int:
        """When ``link`` was appended to its chain, as the audit log shows it: the newest time of any event logged
        up to the event that recorded the append (a server that stamps that event back in time cannot put it
        before the events it logged ahead of it). An unlogged link (``unlogged``): the latest time the log allows
        (for windows that must not be exceeded; ``appended_earliest`` for those that must be). A link the log read
        has no event for and nothing logged before (pruned, or a log that was not read): its own time, never later
        than ``now`` (it exists now)."""
        return self._appended(link, late=True)

    def appended_earliest(self, link: Link) -> int:
        """``appended_at``, but an unlogged link at the earliest time the log allows (an entry "too soon after"
        its admission: judged as soon as it can have been)."""
        return self._appended(link, late=False)

    def _appended(self, link: Link, late: bool) -> int:
        key = link.hash.hex()
        idx = self.link_events.get(key)
        if idx is not None:
            return self.log_clock[idx]
        u = self.unlogged.get(key)
        if u is None:
            return min(link.time, self.now)
        if not u.seen:
            return min(max(link.time, u.earliest), u.latest, self.now)
        return min(u.latest if late else u.earliest, self.now)

    def org_time(self, seq: int, default: int) -> int:
        link = self.org_by_seq.get(seq)
        return default if link is None else link.time

    def org_seq_at(self, t: int) -> int:
        """The organization chain head in force at time ``t`` (0: none yet)."""
        i = bisect.bisect_right(self.org_times, t)
        return self.org_seqs[i - 1] if i else 0

    def team_links(self, team_id: str) -> Sequence[Link]:
        return self.inp.team_links.get(team_id, ())

    def member_links(self, member_id: str) -> Sequence[Link]:
        return self.inp.member_links.get(member_id, ())

    def current_members(self) -> list[tuple[OrgMember, MemberState]]:
        """Organization members who are not removed, with their member chain state."""
        out = []
        for mid, om in self.inp.org.members.items():
            ms = self.inp.members.get(mid)
            if ms is not None and om.status != "removed" and om.removed_at is None:
                out.append((om, ms))
        return out


@dataclass(frozen=True)
class Unlogged:
    """A chain link the log should hold but has no append event for, and the times it can have been appended
    between, as the log shows them (``Context.unlogged``)."""

    link: Link
    earliest: int  # the log's clock at the last logged append before it (its chain's, or the org link it names)
    latest: int  # the log's clock at the next logged link of its chain, else the log's latest time
    certain: bool  # a later link of its chain is logged: the log must hold it (not appended after the checkpoint)
    # every event in its window was read: no event the reader cannot open (from before the audit key, or sealed to
    # others) can be its append. When not, it is judged by its own time within the window (README walk-through:
    # a member admitted before the audit key existed is not "admitted" at the next readable event).
    seen: bool = True


def _unlogged(inp: AuditInput, link_events: Mapping[str, int], log_clock: Mapping[int, int],
              org_by_seq: Mapping[int, Link], latest: int | None) -> dict[str, Unlogged]:
    """The chain links the log should hold but does not (``Context.unlogged``): something appended before one is
    logged (an earlier link of its chain, or the organization link a team link names). Certain only when every
    event between the logged appends around it was read (an event the reader's key does not open may be its)."""
    if latest is None:
        return {}
    out: dict[str, Unlogged] = {}
    read: list[int] = []  # the log indices read, in log order (``AuditInput.events`` is): made when first needed

    def all_read(after: int, until: int) -> bool:
        if not read:
            read.extend(log_clock)
        return bisect.bisect_left(read, until) - bisect.bisect_right(read, after) == until - after - 1

    def named_idx(link: Link) -> int | None:
        seq = link.body.raw.get("org_seq")
        named = org_by_seq.get(seq) if isinstance(seq, int) else None
        return None if named is None else link_events.get(named.hash.hex())

    def walk(links: Iterable[Link], team: bool) -> None:
        before: int | None = None  # the log index of the last logged link of the chain so far
        pending: list[tuple[Link, int]] = []  # (link, log index of the last logged append before it)
        for link in sorted(links, key=lambda lk: lk.seq):
            idx = link_events.get(link.hash.hex())
            if idx is not None:
                for lk, i in pending:  # a later link is logged: certain exactly when its window was all read
                    seen = all_read(i, idx)
                    out[lk.hash.hex()] = Unlogged(lk, min(log_clock[i], log_clock[idx]), log_clock[idx], seen, seen)
                before, pending = idx, []
                continue
            named = named_idx(link) if team else None
            if before is not None or named is not None:
                pending.append((link, max(i for i in (before, named) if i is not None)))
        end = max(log_clock, default=0) + 1
        out.update((lk.hash.hex(), Unlogged(lk, min(log_clock[i], latest), latest, False, all_read(i, end)))
                   for lk, i in pending)

    walk(inp.org_links, False)
    for links in inp.member_links.values():
        walk(links, False)
    for links in inp.team_links.values():
        walk(links, True)
    return out


def admitted_at(ctx: Context, om: OrgMember) -> int | None:
    """When ``om`` was (first) admitted: when the org link that admitted them was appended (None: never)."""
    entry = next((e for e in om.log if e.status == "admitted"), None)
    if entry is None:
        return None
    link = ctx.org_by_seq.get(entry.seq)
    return om.since if link is None else ctx.appended_at(link)


def finding(rule: Rule, level: str, message: str, subject: str, events: Iterable[int] = (),
            next_command: str = "") -> Finding:
    return Finding(rule.id, level, message, subject, tuple(sorted(set(events))), next_command)


def obligation(rule: Rule, overdue: bool, subject: str, events: Iterable[int], violation: str,
               warning: str, next_command: str = "") -> Finding:
    """An obligation with a window: a violation once it has passed (``overdue``), a warning while it is open."""
    return finding(rule, VIOLATION if overdue else WARNING, violation if overdue else warning, subject, events,
                   next_command)


def approve_command(link: Link) -> str:
    """What a second NCC member runs to approve ``link`` (``mvault audit approve`` takes this hash prefix)."""
    return f"mvault audit approve {link.hash.hex()[:16]}"


def rotate_command(team_id: str) -> str:
    return f"mvault team rotate {team_id}"


def revoke_command(device_id: str) -> str:
    """Run by the device's member, from another of their devices."""
    return f"mvault device revoke {device_id}"


def dur(seconds: int) -> str:
    """A coarse human duration: 3d 4h, 5h 10m, 12m, 40s."""
    s = max(0, int(seconds))
    d, h, m = s // DAY, s % DAY // HOUR, s % HOUR // MINUTE
    if d:
        return f"{d}d {h}h" if h else f"{d}d"
    if h:
        return f"{h}h {m}m" if m else f"{h}h"
    if m:
        return f"{m}m"
    return f"{s}s"


def body_str(link: Link, key: str) -> str:
    v = link.body.raw.get(key)
    return v if isinstance(v, str) else ""


def as_int(v: int | str | None) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None


REMOVALS = ("team.remove", "coalition.remove")  # team links removing a member (the key rotates with it or after)


def starts_generation(link: Link) -> bool:
    """Does this team link start a new key generation?"""
    if link.type in ("team.create", "team.rotate"):
        return True
    return link.type in REMOVALS and link.body.raw.get("key") is not None


def sets_member(link: Link, member_id: str) -> bool:
    """Does this team link set ``member_id``'s role or term (create, add, role)?"""
    if link.type in ("team.add", "team.role"):
        return body_str(link, "member") == member_id
    if link.type == "team.create":
        items = link.body.raw.get("members")
        return isinstance(items, list) and any(isinstance(i, dict) and i.get("member") == member_id for i in items)
    return False


def adding_link(links: Sequence[Link], member_id: str) -> Link | None:
    """The last team.create/team.add that put ``member_id`` into the team."""
    found = None
    for link in links:
        if link.type in ("team.create", "team.add") and sets_member(link, member_id):
            found = link
    return found


def ok_events(events: Iterable[tuple[int, Event]]) -> list[tuple[int, Event]]:
    return [(i, e) for i, e in events if e.result == "ok"]


def signed_record(detail: Mapping[str, int | str]) -> tuple[bytes, bytes]:
    """The device-signed record and its signature an event carries (``record``, ``sig``: hex)."""
    raw, sig = detail.get("record"), detail.get("sig")
    if not isinstance(raw, str) or not isinstance(sig, str):
        raise EncodingError("the event carries no signed record")
    try:
        return bytes.fromhex(raw), bytes.fromhex(sig)
    except ValueError as e:
        raise EncodingError(f"the event's record is not hex: {e}") from None


Check = Callable[[Context, Rule], list[Finding]]
