"""Who may call what: the session behind a request, and the team it may address.

The two middlewares at the door (``limit_middleware``: what callers without a session may cost;
``auth_middleware``: the session token), then the checks handlers call: the session is still
good (``check_session``), the team is one the caller may see (``visible_team``) and act in
(``team_access``), and the one judge (``security.authority``) on acts now or signed. The
organization's protocols in force (``protocols_of``) and the quotas they set live here too:
both the handlers and the audit recorder read them.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, TypeVar

from aiohttp import web

from security.authority import POLICY, paused_note
from security.protocols import Protocols, defaults, parse
from server import replies
from server.context import (
    BODY_BEFORE_CATCH_UP,
    CHAINS,
    CHALLENGE,
    CLAIMED,
    CONFIG,
    DIRECTORY,
    GUARD,
    LOCK,
    LOG,
    LOGIN,
    LOGINS,
    PUBLIC,
    SESSION_KEY,
    STATE,
    Handler,
    now_of,
)
from server.directory import Directory
from server.guard import LoginGate
from server.guests import GUEST_ROUTES, check_guest, is_guest
from server.http import source_of
from server.messagelog import SignerChanged
from server.store.records import AuthSession, SignedCheck, SignerHeads, SignerMoved, StoredLink, TeamMoved
from vault.acts import Act
from vault.auth import token_hash
from vault.chains import Device, OrgState, TeamState
from vault.errors import (
    AuthError,
    Conflict,
    DeviceRevoked,
    EncodingError,
    NotFound,
    OrgClosed,
    PolicyDenied,
    Throttled,
)
from vault.links import parse_link

log = logging.getLogger("mvault.server")
T = TypeVar("T")
LOGGING_IN = (CHALLENGE, LOGIN)  # the routes whose limit statement also tells whether other processes stored links


@web.middleware
async def limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Requests without a session spend a token of their source address (429 ``throttled`` when out);
    a source that failed too many logins may not ask for challenges or log in for a while. A challenge's
    handler passes this gate itself once its body is read (``gate_public``: its nonce stored by the same
    statement on PostgreSQL)."""
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else request.path
    if canonical not in PUBLIC or (route is not None and canonical == CHALLENGE):
        return await handler(request)
    await gate_public(request, canonical)
    return await handler(request)


async def gate_public(request: web.Request, canonical: str, nonce: tuple[bytes, str, str, float] | None = None
                      ) -> LoginGate:
    """``limit_middleware``'s gate: a token of the source's budget spent, its failed logins' block, and for a
    challenge or a login the catch-up of other processes' links learnt from the same statement; a challenge's
    nonce (hash, member, device, expiry) stored by it where the guard's store keeps nonces (``nonce_stored``)."""
    app, source = request.app, source_of(request)
    now = app[CONFIG].clock()
    gate = await app[GUARD].take_for_login(source, now, nonce) if canonical in LOGGING_IN else LoginGate(
        await app[GUARD].take(source, now), 0.0)
    if gate.wait > 0:
        raise Throttled("too many requests from your address; wait and try again", gate.wait)
    if gate.blocked > 0:
        raise Throttled("too many failed logins from your address; wait and try again", gate.blocked)
    if gate.links_head is not None and gate.links_head > app[DIRECTORY].seen:
        # the catch-up ``chains_middleware`` leaves to this statement for a challenge or a login: links are new
        async with app[LOCK]:
            await catch_up_locked(app)
    return gate


@web.middleware
async def chains_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Over a database other server processes share (PostgreSQL): before a request is judged, this process's
    directory replays the links they stored (one indexed query when there are none; ``Directory.catch_up``). A
    challenge or a login learns whether there are any from its budget's statement instead (``limit_middleware``:
    one round trip less each, two a login)."""
    route = request.match_info.route.resource
    if route is None or route.canonical not in LOGGING_IN:
        # a body that had wholly arrived before the replay began (small bodies come with their headers): the
        # replay is one after the body arrived, which ``check_session_now`` then needs not repeat
        arrived = request.app[CONFIG].database_url and request.content.is_eof()
        await catch_up(request.app)
        if arrived:
            request[BODY_BEFORE_CATCH_UP] = True
    return await handler(request)


async def catch_up(app: web.Application) -> None:
    """This process's directory replays the links other server processes stored since it last looked (one
    indexed query when there are none), under the chain lock (not between a chain route's check and its commit).
    Before a request is judged (``chains_middleware``), again once a request's body has arrived
    (``check_session_now``): a removal or a cut stored meanwhile through another process counts (review round 10),
    and on a notice that links were stored (``server/relay.py``)."""
    if app[CONFIG].database_url and await app[CHAINS].links_after(app[DIRECTORY].seen):
        async with app[LOCK]:
            await catch_up_locked(app)


async def catch_up_locked(app: web.Application) -> None:
    """``catch_up`` for a caller holding the chain lock (a chain route, right before it judges and commits). Only
    over a database other processes share (PostgreSQL): on SQLite this process stores every link itself."""
    if app[CONFIG].database_url:
        await app[DIRECTORY].catch_up(app[CHAINS])
        _closed_elsewhere(app)


async def take_carried(app: web.Application, after: int, links: Sequence[tuple[int, StoredLink]]) -> bool:
    """The links a notice carried (``server/relay.py``), replayed under the chain lock without a read: False when
    this process may have missed links before them (the caller reads, ``catch_up``)."""
    async with app[LOCK]:
        if not app[DIRECTORY].take_carried(after, links):
            return False
        _closed_elsewhere(app)
    return True


def _closed_elsewhere(app: web.Application) -> None:
    directory = app[DIRECTORY]
    if directory.teams and closed_refusal(directory) is not None:  # closed through another process
        log.warning("the organization was closed (org.closed) through another server process: %d team chains "
                    "dropped from memory", forget_teams(app))


def forget_teams(app: web.Application) -> int:
    """Drop the teams this process holds in memory once the organization is closed (their chains and everything
    stored under them were shredded): how many."""
    directory = app[DIRECTORY]
    dropped = len(directory.teams)
    directory.teams.clear()
    directory.team_links.clear()
    app[LOG].refs.clear()
    return dropped


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else request.path
    if canonical in PUBLIC or not canonical.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise AuthError("log in first (no session token)")
    logins, config = request.app[LOGINS], request.app[CONFIG]
    session = await logins.session(token_hash(header[7:].strip()))
    if session is None or session.expires <= config.clock():
        raise AuthError("session expired or unknown; log in again")
    request[CLAIMED] = (session.member, session.device)  # so a refusal below is recorded against them
    check_session(request.app, session)
    if (request.method, canonical) not in GUEST_ROUTES and is_guest(request.app[DIRECTORY], session.member):
        raise PolicyDenied("a guest of a coalition space reaches only its spaces on this server, not the "
                           "organization's chains, members or audit log")
    request[SESSION_KEY] = session
    return await handler(request)


def protocols_of(app: web.Application) -> Protocols:
    st = app[STATE]
    org = app[DIRECTORY].org
    change = org.protocols if org is not None else None
    digest = change.digest if change is not None else b""
    if digest != st.protocols_digest:
        st.protocols = parse(change.text) if change is not None else defaults()
        st.protocols_digest = digest
    return st.protocols


def quotas(app: web.Application) -> dict[str, int]:
    """The per-member quotas in force: the organization's protocols, lowered by the operator's caps."""
    caps = app[CONFIG].quota_caps
    return {key: min(value, caps.get(key, value)) for key, value in protocols_of(app).quotas.items()}


def check_session(app: web.Application, session: AuthSession) -> None:
    """The session is unexpired, its device active and its member not removed. Handlers that
    wait for a request body call it again afterwards (a removal may land meanwhile)."""
    if session.expires <= app[CONFIG].clock():
        raise AuthError("session expired or unknown; log in again")
    directory = app[DIRECTORY]
    member = directory.members.get(session.member)
    if member is None or session.device not in member.devices:
        raise AuthError("this device is no longer active")
    device = member.devices[session.device]
    if device.revoked is not None:
        raise revoked_refusal(device)
    cut_off(directory, session.member, session.device, int(app[CONFIG].clock()))
    if removed(directory, session.member):
        raise AuthError("this member was removed from the organization")
    check_guest(directory, session.member, int(app[CONFIG].clock()))
    shut = closed_refusal(directory)
    if shut is not None:
        raise shut


def closed_refusal(directory: Directory) -> OrgClosed | None:
    """The refusal of a login or session once the organization is closed (None while it is open)."""
    org = directory.org
    closed = org.closing.closed if org is not None else None
    if closed is None:
        return None
    return OrgClosed(f"the organization was closed at {closed.time} (org.closed, link {closed.seq} of its chain); "
                     "this server holds nothing more of it. Run any mvault command: your client verifies the "
                     "closing against the chain it pinned before it wipes anything")


async def check_session_now(request: web.Request, session: AuthSession) -> None:
    """``check_session`` for a handler whose request body has just arrived: on the chains as they are now, with
    what other server processes stored while the body arrived (``catch_up``; not again when the body had wholly
    arrived before ``chains_middleware``'s replay began: that replay was after it, one query a request less)."""
    if not request.get(BODY_BEFORE_CATCH_UP):
        await catch_up(request.app)
    check_session(request.app, session)


async def judged_again(request: web.Request, session: AuthSession, judge: Callable[[], object], *,
                       locked: bool = False) -> dict[str, int]:
    """After a store answered ``SignerMoved`` (a link of the signer's member chain or of the organization chain was
    stored after the act was judged, maybe a revocation dated before it: review 24, finding 3): the chains as they
    are now, the session and the act (``judge``) again; the signer's chains as judged, for the next try. ``locked``:
    the caller holds ``LOCK`` (the cosign route), so ``catch_up_locked``."""
    await (catch_up_locked if locked else catch_up)(request.app)
    check_session(request.app, session)
    judge()
    return request.app[DIRECTORY].signer_heads(session.member)


STORE_TRIES = 3  # a store's ``SignerMoved`` answered this many times in a row: 409, the client retries


async def stored_judged(store: Callable[[SignerHeads], Awaitable[T]], again: Callable[[], Awaitable[SignerHeads]],
                        signer: SignerHeads) -> T:
    """``store`` the act while the signer's chains are as judged (``signer``); while it answers ``SignerMoved`` (or the
    message log's ``SignerChanged``), ``again`` (catch up, the session, the act again: ``judged_again``, or the cosign
    route's own under ``LOCK``; it raises to refuse) gives the chains as judged now and the act is stored again, up to
    ``STORE_TRIES`` stores. The last outcome (still ``SignerMoved`` after ``STORE_TRIES``: the route answers 409).
    ``again`` runs after the last ``SignerMoved`` too, so that an act refused now (say the device was revoked) is
    answered with its refusal rather than 409; every route does the same."""
    for _ in range(STORE_TRIES):
        outcome = await store(signer)
        if not isinstance(outcome, SignerMoved | SignerChanged):
            break
        signer = await again()
    return outcome


class LinksWrite(NamedTuple):
    """What a chain route appends (``append_links``'s arguments), once judged."""

    links: list[StoredLink]
    puk_boxes: list[tuple[str, int, str, bytes]]
    team_boxes: list[tuple[str, int, str, bytes]]
    signed: SignedCheck | None = None


async def append_judged(request: web.Request, judge: Callable[[], Awaitable[tuple[T, LinksWrite]]]) -> T:
    """For a chain route holding ``LOCK``: catch up (what other processes stored while the body arrived), ``judge``
    the links (it raises to refuse them; its result and what to append), and append them. Over PostgreSQL, a link
    stored by another process after the catch-up (``seen``; review 26, finding 2: a team link judged before its
    device's revocation was stored after it and broke every replay) is given to this process in the append's
    transaction, under the database's lock of link appends and before the chains' locks: replayed, then the session
    and the links judged again, and the append goes on (no retry, no spin however busy the organization). On SQLite
    this process stores every link itself (``LOCK``): no ``seen``."""
    app = request.app
    await catch_up_locked(app)
    result, write = await judge()
    _check_unheld(app[DIRECTORY], write)

    async def again(since: list[tuple[int, StoredLink]]) -> SignedCheck | None:
        nonlocal result
        directory = app[DIRECTORY]
        if not directory.take_carried(directory.seen, since):  # not expected: the caller holds ``LOCK``
            raise Conflict("the chains moved on; fetch and retry")
        _closed_elsewhere(app)
        check_session(app, session_of(request))  # a revocation of the signing device may be among them
        result, now = await judge()
        _check_unheld(directory, now)
        if now[:3] != write[:3]:  # the same links and boxes (the chains' heads are checked after this)
            raise Conflict("the chains moved on; fetch and retry")
        log.info("links stored through another server process while %s was judged: judged again",
                 ", ".join(f"{x.chain}/{x.seq}" for x in write.links))
        return now.signed

    seen = app[DIRECTORY].seen if app[CONFIG].database_url else None
    replies.check_appended(await app[CHAINS].append_links(write.links, write.puk_boxes, write.team_boxes,
                                                          write.signed, seen=seen, again=again))
    return result


def _check_unheld(directory: Directory, write: LinksWrite) -> None:
    """Each link a chain route appends, as an act of its signer: refused while a link ending the signer's rights is
    signed again (``Directory.check_unheld``, server/holds.py).
    Nothing to parse while nobody is held (nearly always)."""
    if not directory.holds.held:
        return
    for stored in write.links:
        link = parse_link(stored.wire)
        directory.check_unheld(link.signer, link.device, link.time, link)


def revoked_refusal(device: Device) -> DeviceRevoked:
    """The refusal of a revoked device, for a caller that holds its key (a session, or a login whose signature
    verified): which device and the day of the revocation, as its member chain says (SECURITY.md, "What ids
    tell a caller without a session")."""
    assert device.revoked is not None
    day = datetime.datetime.fromtimestamp(device.revoked, datetime.UTC).strftime("%Y-%m-%d")
    return DeviceRevoked(f"this device ({device.name}) was revoked on {day} (UTC): it is no longer active")


def cut_off(directory: Directory, member_id: str, device_id: str, now: int) -> None:
    """Refuse a device the Security Team cut off (``org.device.cut``), or one added after the cut before the
    member revoked the lost device, as of the server's clock: its sessions and logins end with the cut."""
    org, ms = directory.org, directory.members.get(member_id)
    if org is None or ms is None:
        return
    cut = org.incidents.cut_of(member_id, device_id)  # from when it is stored, even if dated ahead (review 10)
    why = org.incidents.refusal(ms, device_id, now if cut is None else max(now, cut.time))
    if why is not None:
        raise DeviceRevoked(f"this device is no longer active: {why}")


def removed(directory: Directory, member_id: str) -> bool:
    org = directory.org
    return org is not None and member_id in org.members and org.members[member_id].status == "removed"


def session_of(request: web.Request) -> AuthSession:
    s = request.get(SESSION_KEY)
    if not isinstance(s, AuthSession):
        raise AuthError("log in first (no session token)")
    return s


def is_overseer(request: web.Request) -> bool:
    """NCC and the Security Team see every team chain (membership, not content: that needs a key box).
    Org roles as of now: an NCC term that ended is over."""
    org = request.app[DIRECTORY].require_org()
    return bool(org.roles_of(session_of(request).member, int(now_of(request))) & {"ncc", "security"})


def visible_team(request: web.Request, team_id: str) -> TeamState:
    """A team the caller may address: one it is in (its role may have ended: the judge then refuses with
    403, which tells nothing new to a former member), or any team for NCC (which may sign membership
    changes anywhere). Anyone else gets 404, as for a team that does not exist."""
    directory = request.app[DIRECTORY]
    team = directory.team(team_id)
    me = session_of(request).member
    if me in team.members or "ncc" in directory.require_org().roles_of(me, int(now_of(request))):
        return team
    raise NotFound(f"unknown team {team_id}")


def team_access(request: web.Request, action: str, denied: str) -> TeamState:
    """The route's team, if the caller may see it (else 404) and do ``action`` in it now (else 403:
    "you may not {denied} team NAME")."""
    team = visible_team(request, request.match_info["team"])
    s = session_of(request)
    if not may_now(request.app, s, action, team):
        now = int(request.app[CONFIG].clock())
        raise PolicyDenied(f"you may not {denied} team {team.name}"
                           f"{paused_note(request.app[DIRECTORY].require_org(), s.member, team, now)}")
    return team


def check_current_team(request: web.Request, team: TeamState, team_seq: int, gen: int, *,
                       after_body: bool = False) -> None:
    """New content (a document version, a thread) names the team's current link and key generation,
    and no key rotation is due. ``after_body``: checked again once an upload's body has arrived, when a
    change is one the uploader could not have known of (the reply the store's ``TeamMoved`` gets too)."""
    if after_body and (team_seq, gen) != (team.seq, team.generation):
        raise replies.team_moved(TeamMoved(team.seq))
    if team_seq != team.seq:
        raise Conflict(f"the team changed (now at link {team.seq}); sync and retry")
    if gen != team.generation:
        raise Conflict(f"team key generation {gen} is not current ({team.generation}); sync and retry")
    check_no_rotation_due(request, team)


def check_no_rotation_due(request: web.Request, team: TeamState) -> None:
    """No new content while the team key must be rotated (a member left, a device was revoked, ...)."""
    directory = request.app[DIRECTORY]
    reasons = team.rotation_reasons(int(now_of(request)), directory.members, directory.require_org())
    if reasons:
        raise Conflict(f"the team key must be rotated before new content ({reasons[0]}); "
                       "any team member's client does it on its next run")


def may_now(app: web.Application, s: AuthSession, action: str, team: TeamState | None) -> bool:
    """May the session's member, with its device, do ``action`` now? The one judge decides, on the organization
    chain as stored (``judge_stored``)."""
    directory = app[DIRECTORY]
    act = Act(s.member, s.device, int(app[CONFIG].clock()), action)
    return POLICY.entitled(act, directory.require_org(), directory.members, team, stored=True)


def judge_act(request: web.Request, act: Act, team: TeamState | None) -> None:
    """The one judge (``security.authority``) on a signed act, as every client will judge it, and on the
    organization chain as stored (``judge_stored``: a revocation or removal dated after the act is in force)."""
    directory = request.app[DIRECTORY]
    POLICY.judge_stored(act, directory.require_org(), directory.members, team)
    directory.check_unheld(act.author, act.device, act.time)  # a link ending their rights is signed again: 409


def judge_now(request: web.Request, action: str) -> None:
    """The one judge on the logged-in device now, before the body is read (its signed time is judged later), on the
    organization chain as stored (``judge_stored``)."""
    s = session_of(request)
    directory = request.app[DIRECTORY]
    POLICY.judge_stored(Act(s.member, s.device, int(now_of(request)), action), directory.require_org(),
                        directory.members, None)


def own_record(request: web.Request, what: str, org_id: str, member: str, device: str, time: int) -> OrgState:
    """The organization, once a device-signed record (``what``) names it and the logged-in member and device (403),
    dated no further than the clock window ahead of the server's clock (400)."""
    s = session_of(request)
    org = request.app[DIRECTORY].require_org()
    if (org_id, member, device) != (org.org_id, s.member, s.device):
        raise PolicyDenied(f"the {what} must name this organization and the logged-in device")
    if time > now_of(request) + request.app[CONFIG].clock_skew:
        raise EncodingError(f"the {what}'s time is ahead of the server's clock")
    return org
