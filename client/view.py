"""The verified view: every chain this member can see, fetched, replayed and checked against the pins.

The rollback checks are plain functions over the pins (``Pins``) and what the server served: a
pinned chain or document must be extended, never rolled back, forked or hidden. ``Chains`` does the
fetching (and the writing of new links), and keeps the verified ``View`` of one command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from client.checkpoints import LogView, check_outside_witness, check_witness, protocols_of
from client.home import Pins
from client.sanitize import escape
from client.session import Session
from security.authority import POLICY
from security.policy import ORG_RULES, TEAM_KINDS
from vault.acts import ALLOWANCE, Act
from vault.chains import MemberState, OrgState, TeamState, clone, replay_member, replay_org, replay_team
from vault.chains.coalition import guest_org
from vault.chains.records import Signed
from vault.chains.twoperson import void_devices
from vault.envelope import DELETE, Record
from vault.errors import ChainError, Conflict, NotFound, RollbackDetected, ServerMismatch, VaultError
from vault.keys import DeviceKeys, key_fingerprint
from vault.links import Link, make_link, parse_link
from vault.wire.schemas import DirectoryView, LinkRequest, Links, MemberLinkRequest, SeqAnswer, TeamLinkRequest, TeamSeq

T = TypeVar("T")

# An organization link ending someone's rights refused (409) as dated too early is signed again dated the second the
# server names, when that is at most ``END_AHEAD`` + ``CLOCKS_APART`` ahead of this device's clock and ``END_AHEAD``
# ahead of the server's (its 409 names its clock): a server takes such a link dated one second beyond its clock skew
# (at most ``ALLOWANCE / 2``), as a device's revocation (client/devicerevoke.py). ``CLOCKS_APART``: how far this
# device's clock may be behind the server's (review 33: with the subject's act dated at the server's skew, a revoker
# a second slow was refused); a bound on this device's own clock all the same, so a lying server (naming any time it
# likes) cannot have a revocation dated further ahead, which would put off its effect (the keys rotate at its date).
END_ATTEMPTS = 3
END_AHEAD = ALLOWANCE // 2 + 1
CLOCKS_APART = 60


def _apart(theirs: int, ours: int) -> str:
    return "the same as" if theirs == ours else f"{abs(theirs - ours)} s {'ahead of' if theirs > ours else 'behind'}"


class DatedAhead(Conflict):
    """``ending_time``'s and ``ending_retry``'s refusal: a link ending rights would have to be dated beyond its bound
    (nothing more was signed; looking again does not help until the date it names passes)."""


def ending_retry(refused: Conflict, now: int, what: str) -> int:
    """The time to sign again a link ending someone's rights (``what``) that the server refused (409) as dated too
    early, ``refused.not_before``, when within the bounds above (``now``: this device's clock); else a ``Conflict``
    naming both clocks, a ``DatedAhead`` (or ``refused`` itself when it names no time): a caller that looks again
    (``client.lost.cut_device``) raises it as it is, so the server's text is quoted once."""
    nb, server = refused.not_before, refused.server_time
    if not nb:
        raise refused
    limit = now + END_AHEAD + CLOCKS_APART if server is None else min(now + END_AHEAD + CLOCKS_APART,
                                                                        server + END_AHEAD)
    if nb <= limit:
        return nb
    clocks = (f"this device's clock reads {now}" if server is None else f"the server's clock reads {server}, "
              f"{_apart(server, now)} this device's ({now})")
    raise DatedAhead(f"the server takes this {what} only dated {nb} or later, {nb - now} s ahead of this device's "
                     f"clock; {clocks}; this client signs it at most {END_AHEAD} s ahead of the server's clock and "
                     f"{END_AHEAD + CLOCKS_APART} s ahead of its own (dated further ahead it would take effect that "
                     f"much later): check both clocks and run it again (the server said: {refused})", nb, server)


def ending_time(now: int, what: str, dates: Iterable[tuple[int, str]]) -> int:
    """The date of a link ending someone's rights (``what``, ``POLICY.rights_ended``): the latest of ``now`` (this
    device's clock) and ``dates``, the earliest dates it may take from the chains (after a chain's newest link, a cut, a
    device's revocation: each with which link it is). Each is bounded as ``ending_retry`` bounds the server's
    word on this device's clock, ``END_AHEAD`` + ``CLOCKS_APART``: a link dated further ahead is one only a server
    that took it beyond its clock window serves (a seized device's clock set ahead, review 35), and a link ending
    rights dated after it would take effect that much later. So a ``Conflict`` naming that link and both clocks,
    nothing signed."""
    limit = now + END_AHEAD + CLOCKS_APART
    time, which = max([(now, ""), *dates])
    if time <= limit:
        return time
    raise DatedAhead(
        f"this {what} would have to be dated {time}, {time - now} s ahead of this device's clock ({now}), to come "
        f"after {which} (dated by its signer's clock; a link ending rights must come after it); this client dates "
        f"one at most {END_AHEAD + CLOCKS_APART} s ahead of its own clock (dated later it would take effect that much "
        "later), so nothing was signed. If this device's clock is right, that link was signed with a clock set ahead "
        "(a seized device's, say) and the server took it outside its clock window: no such link can be stored until "
        "that date passes. Tell the Security Team now (an incident: a seized device, and a server that took a link "
        "dated beyond its clock window)")


def _the_one(found: list[T], missing: VaultError, several: VaultError) -> T:
    """The one thing a name (or id) names: ``missing`` raised for none, ``several`` for more than one."""
    if not found:
        raise missing
    if len(found) > 1:
        raise several
    return found[0]


@dataclass
class View:
    """The verified state of everything this member can see."""

    org: OrgState
    members: dict[str, MemberState]
    teams: dict[str, TeamState]

    def member_by_name(self, name: str) -> MemberState:
        return _the_one([m for m in self.members.values() if m.name == name or m.member_id == name],
                        NotFound(f"no member named {name!r}"),
                        VaultError(f"several members are named {name!r}; use the member id"))

    def team_by_name(self, name: str) -> TeamState:
        return _the_one([t for t in self.teams.values() if t.name == name or t.team_id == name],
                        NotFound(f"no team named {name!r} (or you are not in it)"),
                        ChainError(f"several teams are named {name!r} (the server should never allow that); "
                                   "use the team id"))

    def guest_of(self, member_id: str) -> str | None:
        """The allied organization, by the name its ``coalition.ally`` pin gives, of a guest (an ally's member
        admitted to a coalition space, kept after removal); None for anyone else (this organization's members)."""
        return next((org for t in self.teams.values() if (org := guest_org(t.allies, t.guests, member_id))), None)

    def chosen_name(self, member_id: str) -> str:
        """The name the member's own chain gives (no organization beside it: match it, do not show it alone)."""
        m = self.members.get(member_id)
        return m.name if m else member_id[:8]

    def name_of(self, member_id: str) -> str:
        """The member's name as its chain gives it; a guest's as NAME@ORG (``guest_of``): names are their owners'
        choice, and an ally's member named like one of ours (or a confusable of it: "\u0430lice") must not read
        as that member (review round 12). Escape it before printing (client/sanitize.py)."""
        org = self.guest_of(member_id) if member_id in self.members else None
        return self.chosen_name(member_id) if org is None else f"{self.chosen_name(member_id)}@{org}"


# -- the pin and rollback checks -------------------------------------------------------------------


def member_fingerprint(ms: MemberState) -> bytes:
    return key_fingerprint(ms.member_id, [(d.device_id, d.sign_public) for d in ms.active_devices()],
                           ms.puk_sign_public)


def check_chain_pin(pins: Pins, chain_id: str, links: list[Link]) -> None:
    """The served chain must extend the one we pinned; then pin its new head."""
    pin = pins.chains.get(chain_id)
    if pin is not None:
        seq, head = int(pin[0]), str(pin[1])
        if len(links) < seq or links[seq - 1].hash.hex() != head:
            raise RollbackDetected(
                f"the server rolled back or forked chain {chain_id[:12]} (we saw link {seq} before); "
                "stop and tell your Security Team"
            )
    if links:
        pins.chains[chain_id] = [len(links), links[-1].hash.hex()]


def lower_chain_pin(pins: Pins, chain_id: str, links: list[Link], behind: dict[str, tuple[int, int]]) -> None:
    """``check_chain_pin``, but a chain behind (or forked from) its pin is recorded in ``behind`` and its pin
    lowered to the served head (client/restore.py, after the Security Team accepted a restored server)."""
    try:
        check_chain_pin(pins, chain_id, links)
    except RollbackDetected:
        behind[chain_id] = (len(links), int(pins.chains[chain_id][0]))
        if links:
            pins.chains[chain_id] = [len(links), links[-1].hash.hex()]
        else:
            del pins.chains[chain_id]


def check_team_gone(team: TeamState, me: str, length: int, now: int) -> None:
    """A team the directory says we left: we were removed (the chain must end with the link that
    removed us), or our role ended (the chain is what was signed before the end)."""
    tm = team.members.get(me)
    removed = team.removed_at.get(me) == length and tm is None
    lapsed = tm is not None and tm.until is not None and tm.until <= now and team.time < tm.until
    if not (removed or lapsed):
        raise ChainError("the server hid a team from us without a valid removal")


# The third element of a team chain's pin (``pins.chains``, docs/format.md): this member was not in the team at the
# pinned state (never added, never removed), and saw its chain only as NCC or Security Team (``server/access.py``
# ``is_overseer``).
OVERSEEN = "overseen"
OVERSEER_ROLES = frozenset({"ncc", "security"})


def mark_overseen(pins: Pins, team: TeamState, me: str) -> None:
    """Note in the team chain's pin (just set) whether this member saw it only as an overseer."""
    pin = pins.chains.get(team.team_id)
    if pin is not None and me not in team.members and me not in team.removed_at:
        pins.chains[team.team_id] = [pin[0], pin[1], OVERSEEN]


def no_longer_overseen(pins: Pins, org: OrgState, me: str, now: int) -> set[str]:
    """The pinned team chains an honest server no longer shows this member (review 32, finding 5): those it saw only
    as NCC or Security Team (``OVERSEEN``), once the verified organization chain gives it neither role, at its clock
    or up to the server's clock window ahead of it (a term's end by the server's clock). A chain hidden while it
    holds one, or one it is in, is still a rollback (``check_no_chain_hidden``). The pin stays: shown again (the role
    granted anew), the chain must extend it."""
    if org.roles_of(me, now) & OVERSEER_ROLES and org.roles_of(me, now + ALLOWANCE // 2) & OVERSEER_ROLES:
        return set()
    return {c for c, pin in pins.chains.items() if len(pin) > 2 and pin[2] == OVERSEEN}


def check_no_chain_hidden(pins: Pins, members: dict[str, MemberState], teams: dict[str, TeamState],
                          gone: set[str]) -> None:
    """A pinned team chain that disappeared from our view is a rollback unless we were removed (or it is one we saw
    only as an overseer, and that role ended: ``no_longer_overseen``, in ``gone``)."""
    for chain_id in pins.chains:
        if chain_id not in members and chain_id != "org" and chain_id not in teams and chain_id not in gone:
            raise RollbackDetected(f"the server no longer shows chain {chain_id[:12]} that we saw before")


def key_change_warnings(pins: Pins, members: dict[str, MemberState], me: str) -> list[str]:
    """Pin every member's key fingerprint; a warning for each other member whose keys changed."""
    warnings = []
    for mid, ms in members.items():
        fp = member_fingerprint(ms).hex()
        seen = pins.keys.get(mid)
        if seen is not None and seen != fp and mid != me:
            if pins.verified.get(mid) is not None:
                warnings.append(f"{ms.name}'s keys changed (devices or member key); they were verified "
                                f"and are now UNVERIFIED: check with `mvault verify {ms.name}`")
            else:
                warnings.append(f"{ms.name}'s keys changed (devices or member key)")
        pins.keys[mid] = fp
    return warnings


def check_doc_pin(pins: Pins, key: str, records: list[Record]) -> bool:
    """The served versions of document ``key`` (team/doc) must extend the pinned ones; then pin the
    newest. True when there was something to pin."""
    pin = pins.docs.get(key)
    if pin is not None:
        seq, vid = int(pin[0]), str(pin[1])
        if len(records) < seq or records[seq - 1].version_id != vid:
            raise RollbackDetected(
                f"the server rolled back this document (we saw version {seq} before); tell your Security Team"
            )
    if records:
        pins.docs[key] = doc_pin(records[-1])
    return bool(records)


def doc_pin(head: Record) -> list[Any]:
    """A document's pin: [version number, vid], and ``"deleted"`` when that version is a deletion (a restore
    acceptance that does not name the document does not lower it: client/restore.py)."""
    return [head.core.seq, head.version_id, *(["deleted"] if head.core.op == DELETE else [])]


def pinned_deleted(pin: list[Any] | None) -> bool:
    return pin is not None and len(pin) > 2 and pin[2] == "deleted"


def check_listed_head(pins: Pins, key: str, rec: Record) -> None:
    """A listed head older than (or forked from) the version we pinned is a rollback."""
    check_listed_version(pins, key, rec.core.seq, rec.version_id)


def check_listed_version(pins: Pins, key: str, seq: int, vid: str) -> None:
    """``check_listed_head`` for a head known by its number and version id (a synced folder's unparsed one)."""
    pin = pins.docs.get(key)
    if pin is not None and (seq < int(pin[0]) or (seq == int(pin[0]) and vid != str(pin[1]))):
        raise RollbackDetected(
            f"the server rolled back a document (we saw version {pin[0]} before); tell your Security Team"
        )


def restore_signers(view: View, now: int) -> dict[str, list[str]]:
    """Who may sign a restore acceptance in this verified state (member -> devices active now): pinned, so that
    a server rolled back to before a removal or a revocation cannot have the removed signer judged on its
    restored chains (client/restore.py)."""
    signers: dict[str, list[str]] = {}
    for member_id, m in view.members.items():
        if not view.org.roles_of(member_id, now) & ORG_RULES["restore.accept"]:
            continue  # the judge below decides; this only skips members without the role (most of them)
        devices = sorted(d for d in m.devices
                         if POLICY.entitled(Act(member_id, d, now, "restore.accept"), view.org, view.members, None))
        if devices:
            signers[member_id] = devices
    return signers


def check_no_doc_hidden(pins: Pins, team_id: str, listed: set[str]) -> None:
    if any(k.startswith(f"{team_id}/") and k not in listed for k in pins.docs):
        raise RollbackDetected(
            "the server rolled back a document we saw before (it is no longer listed); tell your Security Team"
        )


# -- fetching and writing chains ---------------------------------------------------------------------



def _signed_by(view: View, signed: Mapping[bytes, Signed], head: bytes | None) -> str:
    """" (signed by NAME)" for the chain link ``head`` when this view knows its signer ("" when not)."""
    known = signed.get(head) if head is not None else None
    return "" if known is None else f" (signed by {escape(view.name_of(known.signer))})"


def team_link_time(now: int, team: TeamState, org: OrgState) -> int:
    """When a team link made ``now`` is dated: not before the team's last link nor the organization state it names
    (a cut dated ahead of the clock: the rotation it makes due is judged and dated after it; review round 10)."""
    return max(now, team.time, org.time)

class Chains:
    """The chains of one command: fetched and verified once (``view``), and new links appended."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.log: LogView | None = None  # the audit checkpoint accepted at login
        self.links_posted = 0  # links this command appended (what was cached from before may be stale)
        self._view: View | None = None

    @property
    def cached(self) -> View | None:
        """The view fetched last, if it is still current (None after a link was appended)."""
        return self._view

    def adopt(self, view: View) -> None:
        """Start from a view verified elsewhere (a benchmark replays the chains itself)."""
        self._view = view

    async def links(self, path: str) -> list[Link]:
        res = await self.session.api.get(path, Links)
        try:
            return [parse_link(x) for x in res.links]
        except VaultError as e:
            raise ChainError(f"server sent a malformed chain link: {e}") from e

    async def view(self, refresh: bool = False) -> View:
        """Fetch and replay every visible chain; check pins; return the verified state."""
        if self._view is not None and not refresh:
            return self._view
        s = self.session
        pins = s.home.pins()
        view = await self._fetch(pins, None)
        pins.signers = restore_signers(view, s.now())
        pins.signers_at = {m: [int(pins.chains["org"][0]), int(pins.chains[m][0])] for m in pins.signers}
        s.home.save_pins(pins)
        self._view = view
        if self.log is not None:
            hours = protocols_of(view.org).rule("log-integrity").int_("witness_hours")
            if self.log.witness is not None:
                witnessed = check_witness(s, view.org, view.members, self.log.witness)
                if s.now() - witnessed > hours * 3600:
                    s.warnings.append(f"the Security Team last witnessed the audit log "
                                      f"{(s.now() - witnessed) // 3600} hours ago (the protocols ask for every "
                                      f"{hours} hours)")
            outside = check_outside_witness(s, view.org, self.log)
            if outside is not None and s.now() - outside > hours * 3600:
                s.warnings.append(f"an outside witness last cosigned the audit log {(s.now() - outside) // 3600} "
                                  f"hours ago (the protocols ask for every {hours} hours)")
        return view

    async def view_behind(self, pins: Pins, behind: dict[str, tuple[int, int]],
                          hashes: dict[str, list[bytes]]) -> View:
        """``view`` for a server restored from an older backup (client/restore.py): every chain replayed and
        checked as always, but a chain behind its pin (or no longer shown) is recorded in ``behind``
        (chain id -> (served length, pinned length)) and its pin in ``pins`` lowered to what is served,
        instead of stopping; the hash of every served link goes in ``hashes`` (chain id -> hashes, in order).
        Nothing is saved and nothing is cached: the caller decides."""
        return await self._fetch(pins, behind, hashes)

    async def _fetch(self, pins: Pins, behind: dict[str, tuple[int, int]] | None,
                     hashes: dict[str, list[bytes]] | None = None) -> View:
        s = self.session
        directory = await s.api.get("/api/v1/directory", DirectoryView)

        def pin(chain_id: str, links: list[Link]) -> None:
            if hashes is not None:
                hashes[chain_id] = [link.hash for link in links]
            if behind is None:
                check_chain_pin(pins, chain_id, links)
            else:
                lower_chain_pin(pins, chain_id, links, behind)

        members = await self.member_chains(directory.members, pin)
        org_links = await self.links("/api/v1/chains/org")
        if not org_links or org_links[0].hash.hex() != s.cfg.org_root:
            raise ServerMismatch("the organization chain does not start at the pinned root")
        org = replay_org(org_links, members, POLICY)
        pin("org", org_links)
        if s.me not in org.members:
            raise ChainError("you are not a member of this organization's chain")
        teams: dict[str, TeamState] = {}
        gone: set[str] = set()
        for tid, info in directory.teams.items():
            links = await self.links(f"/api/v1/chains/team/{tid}")
            team = replay_team(links, org, members, POLICY, TEAM_KINDS)
            if team.team_id != tid:
                raise ChainError("server served a team chain under another team's id")
            pin(tid, links)
            if info.removed_at is not None:
                check_team_gone(team, s.me, len(links), s.now())
                gone.add(tid)
                continue
            teams[tid] = team
            mark_overseen(pins, team, s.me)
        gone |= no_longer_overseen(pins, org, s.me, s.now()) - set(teams)
        if behind is not None:
            for chain_id in [c for c in pins.chains if c not in members and c != "org" and c not in teams
                             and c not in gone]:
                behind[chain_id] = (0, int(pins.chains.pop(chain_id)[0]))
        check_no_chain_hidden(pins, members, teams, gone)
        if behind is None:  # (after a restore: the view that follows the acceptance compares the keys, and warns)
            s.warnings.extend(key_change_warnings(pins, members, s.me))
        return View(org, members, teams)

    async def member_chains(self, ids: Iterable[str], pin: Callable[[str, list[Link]], None]
                            ) -> dict[str, MemberState]:
        """The member chains ``ids``, each fetched, replayed and checked against its pin (``pin``)."""
        members: dict[str, MemberState] = {}
        for mid in ids:
            links = await self.links(f"/api/v1/chains/member/{mid}")
            state = replay_member(links)
            if state.member_id != mid:
                raise ChainError("server served a member chain under another member's id")
            pin(mid, links)
            members[mid] = state
        return members

    def verified(self, ms: MemberState) -> str:
        pins = self.session.home.pins()
        v = pins.verified.get(ms.member_id)
        if v is None:
            return "no"
        return "yes" if v == member_fingerprint(ms).hex() else "changed"

    async def _post_link(self, path: str, body: LinkRequest | MemberLinkRequest | TeamLinkRequest,
                         answer: type[SeqAnswer | TeamSeq]) -> None:
        await self.session.api.post(path, body, answer)
        self._view = None
        self.links_posted += 1  # a link may have added boxes (rotation, share)

    async def append_org(self, type_: str, body: dict[str, Any], not_before: int = 0, after: str = "") -> None:
        """Sign and post an organization link dated now (or ``not_before``). One that ends someone's rights
        (``POLICY.rights_ended``: a role's revocation, a removal) is dated after everything they signed: a server's
        409 names that second (``Conflict.not_before``; they signed something in this very second, a cosignature say,
        or with their clock ahead), and the link is signed again dated then within ``ending_retry``'s bounds
        (review 32; review 33: ``END_AHEAD`` ahead of the server's clock, ``CLOCKS_APART`` more of this device's).
        Every date such a link takes from the chains (the org head, ``not_before``: ``after`` says which link it
        comes from) is bounded the same way on this device's clock (``ending_time``, review 35)."""
        s = self.session
        server: int | None = None  # the server's clock, as its last 409 named it
        ending = bool(POLICY.rights_ended(type_, body))
        for attempt in range(END_ATTEMPTS):
            view = await self.view()
            dates = [(view.org.time, f"the organization chain's link {view.org.seq}"), (not_before, after)]
            time = ending_time(s.now(), type_, dates) if ending else max(s.now(), view.org.time, not_before)
            for _ in range(2):
                link = make_link(chain=view.org.org_id, seq=view.org.seq + 1, prev=view.org.head, time=time,
                                 signer=s.me, device=s.device, type_=type_, body=body)
                state = clone(view.org)
                state.apply(link, view.members, POLICY)  # fail here, before the server, on a bad request
                # never the second signature of a proposal whose device this view holds revoked or cut, at any date
                # (review 22): dated at the revocation, the judge has dropped it and this link proposes the act anew
                since = void_devices(view.org, view.members).get(state.cosigned_on.get(link.seq, ""))
                if since is None or since <= time:
                    break
                time = ending_time(s.now(), type_, [(since, "the revocation of the device that proposed it")]
                                   ) if ending else since
            try:
                await self._post_link("/api/v1/org/links", LinkRequest(link.wire), SeqAnswer)
                break
            except Conflict as e:
                if (attempt == END_ATTEMPTS - 1 or not POLICY.rights_ended(type_, body) or not e.not_before
                        or e.not_before <= link.time):
                    raise
                not_before, after = ending_retry(e, s.now(), type_), "the date the server named"
                server = e.server_time
        if attempt > 0 and link.time > s.now() + 1:
            behind = f" (the server's clock read {server}, {server - s.now()} s ahead of this device's)" if (
                server is not None and server > s.now()) else ""
            s.warnings.append(f"the {type_} is dated {link.time}, {link.time - s.now()} s ahead of this device's "
                              f"clock{behind}: its subject signed something dated just before it (their clock "
                              "ahead), and a link ending their rights must come after it")

    async def append_member(self, type_: str, body: dict[str, Any], puk_boxes: dict[str, bytes],
                            signer: DeviceKeys | None = None, not_before: int = 0) -> Link:
        s = self.session
        view = await self.view()
        mine = view.members[s.me]
        device = signer or s.device
        cuts = [c.time for c in view.org.incidents.cuts_of(s.me)]  # never dated before a cut of mine (review 9)
        time = max(s.now(), mine.time, not_before, *cuts)
        if POLICY.rights_ended(type_, body):  # a device's revocation: every date from the chains bounded (review 35)
            time = ending_time(s.now(), type_, [(mine.time, f"your member chain's link {mine.seq}"),
                                                (not_before, "the date the server named"),
                                                *((c, "a cut of one of your devices") for c in cuts)])
        link = make_link(chain=s.me, seq=mine.seq + 1, prev=mine.head, time=time,
                         signer=s.me, device=device, type_=type_, body=body)
        clone(mine).apply(link)
        await self._post_link(f"/api/v1/members/{s.me}/links", MemberLinkRequest(link.wire, dict(puk_boxes)),
                              SeqAnswer)
        return link

    async def append_team(self, team: TeamState, type_: str, body: dict[str, Any],
                          boxes: dict[str, bytes] | None = None) -> Link:
        """Sign and post a team link dated ``team_link_time``. One ending a member's rights in the team
        (``POLICY.team_rights_ended``: a removal, a demotion, a leave) takes the same date, bounded as
        ``ending_time`` bounds an organization link's (review 37): the team chain's head and the organization's are
        dates its signers' clocks chose, and a removal dated after a link taken a day ahead keeps its subject in the
        team for that day; beyond the bound ``DatedAhead`` names the link and its signer, nothing signed."""
        s = self.session
        view = await self.view()
        time = team_link_time(s.now(), team, view.org)
        if POLICY.team_rights_ended(type_, body, team, s.me) is not None:
            time = ending_time(s.now(), type_, [(team.time, f"team {escape(team.name)}'s link {team.seq}"
                                                 f"{_signed_by(view, team.signed, team.head)}"),
                                                (view.org.time, f"the organization chain's link {view.org.seq}"
                                                 f"{_signed_by(view, view.org.signed, view.org.head)}")])
        link = make_link(chain=team.team_id, seq=team.seq + 1, prev=team.head,
                         time=time, signer=s.me, device=s.device, type_=type_,
                         body={**body, "org_seq": view.org.seq if view.org.outside is None else team.org_seq})
        clone(team).apply(link, view.org, view.members, POLICY)
        await self._post_link(f"/api/v1/teams/{team.team_id}/links", TeamLinkRequest(link.wire, dict(boxes or {})),
                              TeamSeq)
        return link
