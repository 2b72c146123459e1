"""Reading the audit log: every leaf fetched and checked against the signed checkpoint, the events
this member's keys open (all of them with the Security Team's audit key, a member's own with its
member keys), their verification against the chains, and the Security Team's cosignature."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from client.audit.keys import entitled, security_team
from client.audit.notes import WitnessedNote, outside_witness
from client.audit.pruning import check_pruning, log_anchors, retention_history
from client.checkpoints import (
    LogView,
    check_witness,
    sync_log,
)
from client.client import Client
from client.names import Names
from client.sanitize import escape
from client.view import View
from security.auditkey import judge_published_audit_key, parse_claim
from security.auditwindow import SKEW, Publication, SealingWindows, designated_near, designations
from security.authority import POLICY
from security.events import DAY, Checkpoint, Event, Leaf, Opener, audit_keypair, cosign_statement
from security.merkle import leaf_hash, root_of
from security.policy import TEAM_KINDS
from vault.acts import ALLOWANCE, Act
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
    audit: dict[tuple[str, int], tuple[bytes, bytes]]  # (security team, audit generation) -> key pair
    member: list[tuple[bytes, bytes]]
    sealed: dict[int, str] = field(default_factory=dict)  # event index -> the team whose audit key opened it

    @property
    def security(self) -> bool:
        return bool(self.audit)

    def held(self, team: str) -> int:
        """The newest generation of ``team``'s audit key held here (0: none)."""
        return max((g for t, g in self.audit if t == team), default=0)


async def keys_of(s: Client, view: View) -> Keys:
    """The member's keys; a Security Team member's (one who holds the designated team's key) also the audit key
    pairs of every security team it holds a key of (a publication is a team's generation: review 29, a change of
    designation)."""
    audit: dict[tuple[str, int], tuple[bytes, bytes]] = {}
    me, now = s.session.me, s.session.now()
    if security_team(view, me, now) is not None and "security" in view.org.roles_of(me, now):
        for team in sorted(view.teams.values(), key=lambda t: t.team_id):
            if team.kind != "security" or not any(m == me for _, m in team.boxes):
                continue
            for gen in range(1, team.generation + 1):
                try:
                    audit[team.team_id, gen] = audit_keypair((await s.keys.team_key(team, gen)).seed)
                except (PolicyDenied, NotFound):
                    continue
    mine = view.members[me]
    member = []
    for gen in sorted(mine.puks):
        try:
            member.append((await s.keys.puk(gen)).box_keypair)
        except VaultError:
            continue
    return Keys(audit, member)


def read_events(fetched: Fetched, keys: Keys) -> list[tuple[int, Event]]:
    """Every event these keys open, in log order (``keys.sealed``: the team whose audit key opened each)."""
    audit: dict[int, list[tuple[str, Opener]]] = {}
    for (team, gen), pair in sorted(keys.audit.items()):
        audit.setdefault(gen, []).append((team, Opener(*pair)))
    member = [Opener(*pair) for pair in keys.member]
    out = []
    for index in sorted(fetched.leaves):
        leaf = fetched.leaves[index]
        event = None
        for team, opener in audit.get(leaf.audit_gen, []):
            try:
                event = opener.open(leaf, (0,))
            except DecryptionFailed:
                continue
            keys.sealed[index] = team
            break
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
    unheld: int = 0  # events sealed to a former designated team's key this member never held (no fault: counted)

    @property
    def outside_witness(self) -> int | None:
        """The timestamp of the newest listed outside witness's cosignature."""
        return self.outside.newest if self.outside else None

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.problems, "size": self.checkpoint.size, "root": self.checkpoint.root.hex(),
                "time": self.checkpoint.time, "pruned": self.pruned, "events_read": self.events_read,
                "last_witness": self.last_witness, "last_outside_witness": self.outside_witness,
                "unheld": self.unheld, "problems": self.problems}


async def verify_log(s: Client) -> tuple[Verified, View, list[tuple[int, Event]], Keys]:
    """Replay the whole log; with the audit key also check the events against the chains."""
    view, lv, fetched, keys, events, last_witness = await load(s)
    problems = check_pruning(fetched.leaves, fetched.checkpoint.size, retention_history(view.org), s.session.now(),
                             log_anchors(lv))
    unheld: list[int] = []
    if keys.security:
        links = await chain_links(s, view)
        windows, refused = sealing_windows(view, links[1], fetched, events, keys.sealed)
        problems += refused
        problems += _check_generations(view, fetched, events, keys, windows, unheld)
        if (overdue := windows.unpublished(int(s.session.now()), view.org.audit_team)) is not None:
            team, gen, made = overdue
            how = "designated" if view.org.audit_team and designations(view.org)[-1][0] == made else "rotated"
            problems.append(f"the Security Team's key generation {gen} (team {_name(view, team)}, {how} at "
                            f"{made}) has no publication in the log since: events are still sealed to no audit key "
                            "or to one no longer in force (a Security Team member's next command publishes it; if "
                            "it is published, the server does not log it)")
        earliest = min((e.time for i, e in events if i in keys.sealed), default=None)
        problems += _check_links_logged(links, events, earliest, windows)
        problems += _check_cosigners(lv, view, links[0], events)
        problems += _check_order(events)
    outside = outside_witness(lv, view.org, fetched.hashes, s.session.now())
    return Verified(lv.checkpoint, lv.checkpoint.size - len(fetched.leaves), len(events), last_witness,
                    problems, outside, fetched, len(unheld)), view, events, keys


def sealing_windows(view: View, team_links: dict[str, list[Link]], fetched: Fetched,
                    events: list[tuple[int, Event]], sealed: dict[int, str]) -> tuple[SealingWindows, list[str]]:
    """The server's sealing rule (``security.auditwindow``) replayed on the verified chains, with the audit-key
    publications as logged, each a (team, generation) under a designation (``_judge_publication``): every leaf
    carrying a signed audit-key statement (``Leaf.claim``, in clear: session 23) that this member judges itself
    (``_judge_claim``: the signer, the designation at its signed time, its place in the log within ``ALLOWANCE`` of
    that time) and that names the team designated at its signed time at its current generation there; and, before
    any such leaf is read (older ones pruned), the first event sealed to a newer generation of the team in force, or
    opened here with the audit key of another team designated at its place (``sealed``: index -> that team). Also the
    problems: each statement that is no publication, each ``audit.key`` event without its statement (a server that
    drops it does not get the weaker judgement of the server's words: every ``audit.key`` event carries it), and
    each event dated more than ``ALLOWANCE`` before a statement logged ahead of it."""
    teams = {t: ls for t, ls in team_links.items() if t in view.teams and view.teams[t].kind == "security"}
    windows = SealingWindows(view.org, view.members, teams, (), POLICY, TEAM_KINDS)
    windows.placed = {e.res["link"]: i for i, e in events if "link" in e.res and not e.action.startswith("attest.")}
    marks = designations(view.org)
    pubs: list[Publication] = []
    problems: list[str] = []
    last: Publication | None = None
    read = dict(events)
    seen = 0  # the newest time of the events read so far: an event's place in the log is not before it
    floor: tuple[int, int] | None = None  # (index, signed time) of the last statement logged
    for i in sorted(fetched.leaves):
        leaf, e = fetched.leaves[i], read.get(i)
        if e is not None and floor is not None and e.time < floor[1] - ALLOWANCE:
            problems.append(f"event {i} is dated {floor[1] - e.time} s before the signed audit-key statement logged "
                            f"ahead of it (event {floor[0]})")
        if leaf.claim is not None:
            judged = _judge_claim(view, windows, marks, last, i, leaf, e, seen)
            if isinstance(judged, str):
                problems.append(f"event {i} carries an audit-key statement that is no publication: {judged}")
            else:
                last = judged
                pubs.append(judged)
                floor = (i, judged.time)
        elif e is not None and e.action == "audit.key" and e.result == "ok":
            problems.append(f"event {i} is an audit.key event without its signed statement: no publication (the "
                            "statement the member signed travels in the leaf; a log without it is not believed)")
        # not opened with an audit key: the team in force; before any publication read (pruned, or sealed to a
        # former team's key never held here): the first event opened with the key of a team designated there
        elif e is not None and last is None and (ag := leaf.audit_gen) > 0 and (sealer := sealed.get(i, "")) and \
                isinstance(judged := _judge_publication(view, windows, marks, last, i, e.time, max(seen, e.time),
                                                        sealer, ag), Publication):
            last = judged
            pubs.append(judged)
        if e is not None:
            seen = max(seen, e.time)
    windows.publications = pubs
    return windows, problems


def _judge_claim(view: View, windows: SealingWindows, marks: list[tuple[int, str | None]], last: Publication | None,
                 index: int, leaf: Leaf, e: Event | None, seen: int) -> Publication | str:
    """The publication a leaf's signed statement makes, judged here, or why it is none: the statement must verify
    and its signer have been entitled at its signed time to publish that team's generation
    (``judge_published_audit_key`` against the chains replayed here); its place in the log (the event's time if it
    opens here, the events read before it, the leaf's day) within ``ALLOWANCE`` of its signed time (a genuine
    statement logged again later is refused); the event, if it opens here, the ``audit.key`` event of that
    statement; then ``_judge_publication`` at the signed time: the team designated then at its current
    generation then."""
    assert leaf.claim is not None
    raw, sig = leaf.claim
    try:
        claim = parse_claim(raw)
        state = view.teams.get(claim.team)
        if state is None or state.kind != "security":
            return f"team {_name(view, claim.team)} is not a security team"
        judge_published_audit_key(claim, sig, view.org, view.members, state)
    except VaultError as err:
        return f"it does not check ({err})"
    what = f"team {_name(view, claim.team)}'s key generation {claim.gen} signed at {claim.time}"
    if e is not None and (e.action, e.result, e.res.get("team"), e.detail.get("gen"), e.actor, e.device) != (
            "audit.key", "ok", claim.team, claim.gen, claim.member, claim.device):
        return f"{what}, on a {e.action} event that is not its publication"
    if e is not None and abs(e.time - claim.time) > ALLOWANCE:
        return f"{what}, logged at {e.time}: more than {ALLOWANCE} s from its signed time"
    if seen > claim.time + ALLOWANCE or abs(leaf.day - claim.time // DAY) > 1:
        return f"{what}, logged after events dated up to {seen}: more than {ALLOWANCE} s after its signed time"
    # links are dated by their signers' clocks, the statement by its signer's: up to ALLOWANCE apart (review 34)
    return _judge_publication(view, windows, marks, last, index, claim.time, claim.time, claim.team, claim.gen,
                              ALLOWANCE + 1)


def _judge_publication(view: View, windows: SealingWindows, marks: list[tuple[int, str | None]],
                       last: Publication | None, index: int, t: int, seen: int, team: str,
                       gen: int, lag: int = SKEW) -> Publication | str:
    """A publication of ``team``'s generation ``gen`` logged at ``index`` (dated ``t``; ``seen``: the newest time
    read up to it), or why it is none. Its place in the log is judged from the verified chains and the order of the
    log, not from the time the server wrote alone: the designation it is made under is one in force within ``SKEW``
    of its place (the later of ``t`` and ``seen``) that names ``team`` (none designated yet: any security team),
    never one before the earliest the publication read before it may have been made under (the chain's
    designations come in order; all those that fit are kept: ``Publication.epoch`` to ``latest``);
    and ``gen`` is that team's current generation there: not older than the generation its chain had at that place
    in log order (review 34: the last link whose event is read here before ``index``; a link whose event is not read
    here counts when dated ``lag`` or more before the place: ``SKEW`` for a place the server dated, ``ALLOWANCE``
    and a second for a signed statement's time, two signers' clocks), nor than the one already published under the
    same designation (review 30: a logged publication of an older generation, or of the former team dated before the
    designation, was taken as the one in force and the server sealed every later event to no key, or to the former
    team's, for good)."""
    state = view.teams.get(team)
    if state is None or state.kind != "security":
        return "not a security team"
    place = max(t, seen)
    lo, hi = place - SKEW, place + SKEW
    near = designated_near(marks, lo, hi)
    after = last.epoch if last is not None else 0
    epochs = [k for k, named in near if k >= after and named in (None, team)]
    if not epochs:
        there = ", ".join(sorted({_name(view, named) for k, named in near if named is not None and k >= after}))
        return f"team {there or 'none'} is designated at its place in the log"
    newest = windows.generation_logged_before(team, index, place - lag)
    if last is not None and last.team == team and last.latest >= epochs[0]:  # maybe under the same designation
        newest = max(newest, last.gen)
    if not newest <= gen <= state.generation or gen < 1:
        return f"the team's generation at its place in the log is {max(newest, 1)} or later"
    return Publication(index, t, team, gen, epochs[0], epochs[-1])


def _check_generations(view: View, fetched: Fetched, events: list[tuple[int, Event]], keys: Keys,
                       windows: SealingWindows, unheld: list[int]) -> list[str]:
    """Once the audit key exists, every event is sealed to it: to the team whose publication is in force at the
    event's place in the log (``windows.publications``; the leaf names only the generation), a team designated there,
    never to an older generation than the one published, to another team's key, nor to a generation that team never
    reached (held here); but to none (generation 0) while the server's rule withheld the key (a departure from the
    Security Team, until the next generation's publication): ``security.auditwindow``, judged at the event's time, or
    for an event that does not open here, at any time between the events read around it. An event that does not open
    here is judged against the team that should have sealed it (review 30: a leaf names a generation, not a team):
    the publication's in force at its place or, before any publication read, the teams designated around its place;
    one of a team whose keys this member does not hold (a former designated team it was never in) is unreadable
    here, no fault: its index goes to ``unheld``. Every event sealed to the published generation in force, opened
    here or not, is judged against the rule too (review 34: only those sealed to none were): a fault where the rule
    withheld the key at every time it may have been logged, or after an event sealed to none under the same
    publication with no reopening between (``_sealed_while_withheld``)."""
    pubs = {p.index: p for p in windows.publications}
    times = dict(events)
    read = sorted(times)
    marks = designations(view.org)
    places: dict[int, int] = {}  # index read -> the newest time read up to it
    seen = 0
    for i, e in events:
        places[i] = seen = max(seen, e.time)
    problems: list[str] = []
    unreadable: list[int] = []
    current: Publication | None = None
    shut: tuple[int, int] | None = None  # (index, earliest time) of the last event sealed to none under ``current``
    for i in sorted(fetched.leaves):
        ag = fetched.leaves[i].audit_gen
        sealer = keys.sealed.get(i)
        if ag == 0 and current is not None:
            shut = (i, _around(i, times, read, fetched)[0])
        if ag == 0:
            if current is not None and not _withheld(windows, i, times, read, fetched):
                problems.append(f"event {i} is sealed to audit key generation 0, not the published {current.gen} "
                                "(no departure from the Security Team withheld the key then)")
        elif sealer is not None and current is not None and sealer != current.team:
            if (p := pubs.get(i)) is None or p.team != sealer:
                problems.append(f"event {i} is sealed to team {_name(view, sealer)}'s audit key generation {ag}, "
                                f"not team {_name(view, current.team)}'s published {current.gen}")
        elif sealer is not None and i not in pubs and not any(
                named in (None, sealer) for _, named in designated_near(marks, places[i] - SKEW, places[i] + SKEW)):
            problems.append(f"event {i} is sealed to team {_name(view, sealer)}'s audit key generation {ag}, a team "
                            "not designated at its place in the log")
        elif current is not None and ag == current.gen and i not in pubs and sealer in (None, current.team) and \
                (why := _sealed_while_withheld(windows, i, times, read, fetched, shut)):
            problems.append(f"event {i} is sealed to audit key generation {ag} where the rule sealed to none: {why}")
        elif current is None:  # before the first publication read (older ones pruned, or a former team's)
            if sealer is None and i not in times:
                lo, hi = _around(i, times, read, fetched)
                (unreadable if _held_there(view, keys, marks, ag, lo - SKEW, hi + SKEW) else unheld).append(i)
        elif sealer is None and i not in times and (own := pubs.get(i)) is not None and ag == own.gen and \
                (own.team, own.gen) not in keys.audit:
            # a publication's own event, sealed to the key it publishes (the server stores the key first), one this
            # member never held (review 32: sec -> sec2, whose key carol never held -> sec)
            unheld.append(i)
        else:
            if ag < current.gen:
                problems.append(f"event {i} is sealed to audit key generation {ag}, not the published {current.gen}")
            elif ag > current.gen and sealer is not None and i not in pubs:  # every publication's statement is read
                problems.append(f"event {i} is sealed to audit key generation {ag} of team "
                                f"{_name(view, sealer)}, whose publication the log does not carry")
            if sealer is None and (held := keys.held(current.team)) and ag > held:
                problems.append(f"event {i} is sealed to an audit key generation ({ag}) the Security Team never "
                                f"held (team {_name(view, current.team)})")
            elif sealer is None and i not in times and not held and ag > current.gen and i not in pubs:
                # every publication's statement is read here, in clear: a team's key this member never held, but
                # of a generation the log does not publish
                problems.append(f"event {i} is sealed to audit key generation {ag}, not team "
                                f"{_name(view, current.team)}'s published {current.gen}")
            elif sealer is None and i not in times:
                (unreadable if held else unheld).append(i)
        # The event that records a publication is sealed before the new key takes effect.
        if i in pubs:
            current, shut = pubs[i], None
    if unreadable:
        problems.insert(0, f"{len(unreadable)} events sealed to the audit key do not open (first: {unreadable[0]})")
    return problems[:20]


def _sealed_while_withheld(windows: SealingWindows, i: int, events: dict[int, Event], read: list[int],
                           fetched: Fetched, shut: tuple[int, int] | None) -> str:
    """Why event ``i``, sealed to the published key in force, should have been sealed to none (empty: it may be
    sealed to it), for every event whoever verifies (review 34: the rule was replayed only for events sealed to
    none). The rule withheld the key at every time the event may have been logged (its time, or between the events
    read around it, give or take ``SKEW``); or an event sealed to none under the same publication (``shut``) was
    logged before it and the rule never reopened the key from that event's earliest time to this one's latest: the
    server's state moves in log order, and only a publication (none between) or a designation back reopens it."""
    lo, hi = _around(i, events, read, fetched)
    if reasons := windows.withheld_throughout(lo - SKEW - 1, hi + SKEW, i):
        return reasons[0]
    if shut is not None and not windows.reopened_between(shut[1] - SKEW - 1, hi + SKEW, i):
        return f"event {shut[0]} before it was sealed to none, and nothing reopened the key between"
    return ""


def _held_there(view: View, keys: Keys, marks: list[tuple[int, str | None]], gen: int, lo: int, hi: int) -> bool:
    """Whether every team that may have sealed an event to generation ``gen`` between ``lo`` and ``hi`` (those
    designated then; none designated: any security team) is one whose key of that generation is held here (an
    event that does not open is then a fault; otherwise it may be a team's this member never held)."""
    teams: set[str] = set()
    for _, named in designated_near(marks, lo, hi):
        teams |= {t for t, st in view.teams.items() if st.kind == "security"} if named is None else {named}
    return bool(teams) and all((t, gen) in keys.audit for t in teams)


def _name(view: View, team: str) -> str:
    return escape(view.teams[team].name) if team in view.teams else escape(team)


def _withheld(windows: SealingWindows, i: int, events: dict[int, Event], read: list[int], fetched: Fetched) -> bool:
    """Did the server's rule withhold the audit key when event ``i`` was logged? Its time if it opens here,
    otherwise anything between the events read before and after it (each give or take the clock skew)."""
    lo, hi = _around(i, events, read, fetched)
    return bool(windows.withheld_between(lo - SKEW, hi + SKEW, i))


def _around(i: int, events: dict[int, Event], read: list[int], fetched: Fetched) -> tuple[int, int]:
    """When event ``i`` was logged: its time if it opens here, otherwise between the events read around it."""
    if i in events:
        return events[i].time, events[i].time
    k = bisect.bisect_left(read, i)
    lo = events[read[k - 1]].time if k else 0
    hi = events[read[k]].time if k < len(read) else fetched.checkpoint.time
    return lo, hi


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


def _check_links_logged(links: tuple[list[Link], dict[str, list[Link]], dict[str, list[Link]]],
                        events: list[tuple[int, Event]], earliest: int | None, windows: SealingWindows) -> list[str]:
    """Every chain link must have its event, logged when it was made (no backdating).

    ``events``: every event read (sealed to the audit key, or to no audit key and opened with this member's
    keys: the server rightly seals a link's event to none while it withholds the key); ``earliest``: the time
    of the first sealed to the audit key; links older than it (made before the Security Team published its
    key, or in that same second) cannot be checked, nor can a link made while the server's rule withheld the
    key (``security.auditwindow``) whose event does not open here.
    """
    logged = {e.res.get("link"): e for _, e in events if "link" in e.res and not e.action.startswith("attest.")}
    org_links, team_links, member_links = links
    problems = []
    for link in [*org_links, *(x for ls in team_links.values() for x in ls),
                 *(x for ls in member_links.values() for x in ls)]:
        e = logged.get(link.hash.hex())
        if e is None:
            if earliest is not None and link.time > earliest and not windows.withheld_between(
                    link.time - SKEW, link.time + SKEW, None):
                problems.append(f"chain link {link.type} {link.hash.hex()[:16]} has no audit event")
            continue
        # the server's window: a link ending rights may be dated the skew + 1 s ahead (fix32a), none further behind
        ahead = SKEW + 1 if POLICY.rights_ended(link.type, link.body.raw) else SKEW
        if link.time - e.time > ahead or e.time - link.time > SKEW:
            how = "backdated" if link.time < e.time else (
                f"dated {link.time - e.time} s ahead (a signer's clock ahead, taken beyond the server's clock window)")
            problems.append(f"chain link {link.type} {link.hash.hex()[:16]} is dated {link.time} but was "
                            f"logged at {e.time}: {how}")
    return problems


def _check_cosigners(lv: LogView, view: View, org_links: list[Link], events: list[tuple[int, Event]]) -> list[str]:
    """A cosignature of the served witnessed checkpoint over a log already holding the event of a link that ended
    its signer's Security Team role (a role revocation, a removal; review 33): the server had stored that link when
    it issued the checkpoint, and an honest one refuses the role's acts once the link is stored, whatever their dates
    (``Authority.judge_stored``, here at the last organization link logged before the checkpoint's size)."""
    if lv.witness is None:
        return []
    size, seqs = lv.witness.checkpoint.size, {link.hash.hex(): link.seq for link in org_links}
    stored = max((seqs.get(str(e.res.get("link")), 0) for i, e in events if i < size), default=0)
    problems = []
    for c in lv.witness.cosigs if stored else []:
        try:
            POLICY.judge_stored(Act(c.member, c.device, c.time, "audit.cosign"), view.org, view.members, None, stored)
        except VaultError as e:  # PolicyDenied, ChainError
            problems.append(f"the witnessed checkpoint (size {size}) is cosigned after the log recorded the end of "
                            f"its signer's right: {e}")
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
