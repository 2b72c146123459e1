"""The chains: the directory of heads, each chain's links, and appending links to the organization,
member and team chains (with the key boxes they commit to); a member's own team key boxes."""

from __future__ import annotations

from aiohttp import web
from msgspec import UnsetType

from server.access import LinksWrite, append_judged, catch_up, is_overseer, session_of, visible_team
from server.context import CHAINS, CONFIG, DIRECTORY, LOCK, STORAGE, Handler, now_of
from server.exports import check_plan
from server.guests import is_guest, visible_members
from server.http import answer, int_query
from server.links import note_links, relayed_record, signed_link
from server.notes import note
from server.routes.closing import shred
from server.store.records import StoredLink
from vault.chains import MemberState, OrgState, TeamState, clone
from vault.errors import ChainError, Conflict, IntegrityError, NotFound, VaultError
from vault.joinedspaces import LINK_TYPE as SPACES_LINK
from vault.links import Link, parse_link
from vault.teamkeys import box_hash
from vault.wire import schemas


async def directory_view(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    org = directory.require_org()
    me = session_of(request).member
    now, overseer = int(now_of(request)), is_overseer(request)
    guest = is_guest(directory, me)
    members = visible_members(directory, me, now) if guest else directory.members
    teams: dict[str, schemas.TeamHead] = {}
    for tid, t in directory.teams.items():
        served = directory.served_length(tid, me, now, overseer)
        if served is None:
            continue
        if served[1]:
            teams[tid] = schemas.TeamHead(name=t.name, seq=t.seq, head=t.head.hex(), removed_at=None)
        else:  # removed, or the role ended: the chain up to then, to verify it
            teams[tid] = schemas.TeamHead(name=t.name, seq=served[0], removed_at=served[0])
    # A guest gets the organization's root (which it pinned) but not its head: the chain is the host's roster.
    return answer(schemas.DirectoryView(
        org=schemas.OrgHead(seq=0 if guest else org.seq, head=(bytes(32) if guest else org.head).hex(),
                            root=org.root.hex()),
        members={m: schemas.MemberHead(seq=s.seq, head=s.head.hex(), name=s.name)
                 for m, s in directory.members.items() if m in members},
        teams=teams,
    ))


def _after(request: web.Request) -> int:
    return int_query(request, "after", 0)


def _links_response(links: list[Link], after: int) -> web.Response:
    return answer(schemas.Links(links=[link.wire for link in links[after:]]))


async def org_chain(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    directory.require_org()
    return _links_response(directory.org_links, _after(request))


async def append_org_link(request: web.Request) -> web.Response:
    _, link = await signed_link(request, schemas.LinkRequest)
    if link.type == "org.join":
        raise ChainError("joins go through /api/v1/join")
    app = request.app

    async def judge() -> tuple[OrgState, LinksWrite]:
        directory = app[DIRECTORY]
        org = directory.require_org()
        if link.seq <= org.seq:
            raise Conflict("the organization chain moved on; fetch it and retry")
        state = directory.check_org_link(link)  # who may, first: a refused act gets 403 whatever its date
        if link.type == "org.close.propose":
            await check_plan(app, link)
        # last: a 409 for the subject's own acts holds the subject (server/holds.py), only for a link taken otherwise
        await directory.learn_signed(app[STORAGE], link, app[CONFIG].clock_skew)
        # a two-person act's first signature ends nobody's rights: its 409 holds nobody (review 38)
        proposal = link.seq in state.cosigned and state.cosigned[link.seq] is None
        with directory.holds.placing(not proposal):
            directory.check_not_before(link, (int(now_of(request)), int(app[CONFIG].clock_skew)))
        return state, LinksWrite([StoredLink("org", link.seq, "org", link.wire)], [], [],
                                 directory.signed_check(link, app[CONFIG].clock_skew))

    async with app[LOCK]:
        state = await append_judged(request, judge)
        app[DIRECTORY].commit_org(state, link)
        if link.type == "org.closed":
            await shred(app)
    note_links(request, link)
    return answer(schemas.SeqAnswer(seq=state.seq), 201)


async def member_chain(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    mid = request.match_info["member"]
    directory.member(mid)
    me = session_of(request).member
    if is_guest(directory, me) and mid not in visible_members(directory, me, int(now_of(request))):
        raise NotFound(f"unknown member {mid}")  # as for a member the server does not hold: the roster stays hidden
    return _links_response(directory.member_links[mid], _after(request))


async def append_member_link(request: web.Request) -> web.Response:
    body, link = await signed_link(request, schemas.MemberLinkRequest)
    if link.chain != request.match_info["member"]:
        raise ChainError("link belongs to another chain")
    records = _records_before(request, body, link)
    boxes = {} if isinstance(body.puk_boxes, UnsetType) else body.puk_boxes
    app = request.app

    async def judge() -> tuple[list[tuple[MemberState, Link]], LinksWrite]:
        directory = app[DIRECTORY]
        before = directory.member(link.chain or "")
        if (records or [link])[0].seq <= before.seq:
            raise Conflict("your member chain moved on; fetch it and retry")
        if link.type == SPACES_LINK and is_guest(directory, before.member_id):
            # Session 18 (review 19): a record posted alone at a host forked the host's copy from the home chain
            # (a thief's, from a device not yet revoked), and no later link of the member was taken there
            raise ChainError("a record of joined spaces (member.spaces) is taken here, at a coalition space's host, "
                             "only ahead of the later link of your member chain it precedes, in one request")
        states: list[tuple[MemberState, Link]] = []
        for x in [*records, link]:
            if states:  # the records sent ahead, then the link: each on the state the one before left
                state = clone(states[-1][0])
                state.apply(x)
                states.append((state, x))
            else:
                states.append(directory.check_member_link(x))
        state = states[-1][0]
        gen = state.puk_gen
        old = before.puks[gen].box_hashes if gen in before.puks else {}
        new = {d: h for d, h in state.puks[gen].box_hashes.items() if old.get(d) != h}
        matching = set(new) == set(boxes) and all(box_hash(boxes[d]) == h for d, h in new.items())
        await directory.learn_signed(app[STORAGE], link, app[CONFIG].clock_skew)
        # A 409 for the subject's own acts holds the subject (server/holds.py), only for a link taken otherwise; one
        # without its boxes (carried by a later command, review 24) still hears the 409 first
        with directory.holds.placing(matching):
            directory.check_not_before(link, (int(now_of(request)), int(app[CONFIG].clock_skew)))
        if not matching:
            raise IntegrityError("uploaded PUK boxes do not match the link's commitments")
        return states, LinksWrite(
            [StoredLink(state.member_id, x.seq, "member", x.wire) for x in [*records, link]],
            [(state.member_id, gen, d, boxes[d]) for d in new], [],
            directory.signed_check(link, app[CONFIG].clock_skew))  # again in its transaction: review 24

    async with app[LOCK]:
        states = await append_judged(request, judge)
        for checked in states:
            app[DIRECTORY].commit_member(checked)
    state = states[-1][0]
    note_links(request, *records, link)
    return answer(schemas.SeqAnswer(seq=state.seq), 201)


async def device_signed(request: web.Request) -> web.Response:
    """The latest time of anything a device of the caller's own member signed that this server accepted (what
    ``Directory.check_not_before`` dates its revocation after). Session 20 (review round 24): a member's client asks
    each coalition space's host before it signs a revocation at home, which it then carries there and cannot sign
    again: dated after what the device signed at the host too, the host takes it."""
    me = session_of(request).member
    member, device = request.match_info["member"], request.match_info["device"]
    app = request.app
    await catch_up(app)  # the links other processes stored
    directory = app[DIRECTORY]
    ms = directory.members.get(member)
    if member != me or ms is None or device not in ms.devices:
        raise NotFound(f"unknown device {device} of yours")
    since = int(now_of(request)) - 2 * int(app[CONFIG].clock_skew)  # older: before any revocation signed now
    stored = [t for d, t in await app[STORAGE].signed_since(member, [device], since) if d == device]
    return answer(schemas.SignedAt(time=max([directory.signed_by_device.get(device, 0), *stored])))


def _records_before(request: web.Request, body: schemas.MemberLinkRequest, link: Link) -> list[Link]:
    """The ``member.spaces`` links sent ahead of ``link`` (``before``), each taken as a relayed record is."""
    if isinstance(body.before, UnsetType) or not body.before:
        return []
    try:
        records = [parse_link(x) for x in body.before]
    except VaultError as e:
        raise ChainError(f"malformed link: {e}") from e
    if link.type == SPACES_LINK or any(x.type != SPACES_LINK or x.kind != "member" or x.chain != link.chain
                                       for x in records):
        raise ChainError("before: records of joined spaces (member.spaces) of the same member chain, ahead of a "
                         "link of another type")
    for x in records:
        relayed_record(request, x)
    return records


async def team_chain(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    team = directory.team(request.match_info["team"])
    served = directory.served_length(team.team_id, session_of(request).member, int(now_of(request)),
                                     is_overseer(request))
    if served is None:
        raise NotFound(f"unknown team {team.team_id}")
    return _links_response(directory.team_links[team.team_id][:served[0]], _after(request))


async def _team_link(request: web.Request) -> tuple[Link, dict[str, bytes]]:
    """A team link signed by the logged-in device, with the key boxes it commits to."""
    body, link = await signed_link(request, schemas.TeamLinkRequest)
    return link, {} if isinstance(body.boxes, UnsetType) else body.boxes


def new_box_rows(before: TeamState | None, after: TeamState,
                  boxes: dict[str, bytes]) -> list[tuple[str, int, str, bytes]]:
    old = before.boxes if before is not None else {}
    rows = []
    new = {k: c for k, c in after.boxes.items() if k not in old}
    if {mid for (_, mid) in new} != set(boxes) or len(new) != len(boxes):
        raise IntegrityError("uploaded key boxes do not match the link's box commitments")
    for (gen, mid), c in new.items():
        if box_hash(boxes[mid]) != c.hash:
            raise IntegrityError(f"key box for {mid} does not match its commitment")
        rows.append((after.team_id, gen, mid, boxes[mid]))
    return rows


def require_fresh_org(request: web.Request, link: Link) -> None:
    """Team links must be made against the current organization state; a coalition guest's, which never sees the
    host's organization chain, name the space's last one (the judge refuses one that goes back, and judges it at the
    state in force ``ALLOWANCE`` before it at the latest: ``vault/chains/coalitionspace.py`` ``guest_org_seq``)."""
    directory = request.app[DIRECTORY]
    org = directory.require_org()
    if is_guest(directory, link.signer):
        return
    seq = link.body.raw.get("org_seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and seq < org.seq:
        raise Conflict("the organization chain moved on; fetch it and retry")


async def create_team(request: web.Request) -> web.Response:
    link, boxes = await _team_link(request)
    app = request.app

    async def judge() -> tuple[TeamState, LinksWrite]:
        require_fresh_org(request, link)
        state = app[DIRECTORY].check_team_create(link)
        rows = new_box_rows(None, state, boxes)
        app[DIRECTORY].check_team_name(state)  # last: no other refusal may tell whether a name exists
        return state, LinksWrite([StoredLink(state.team_id, 1, "team", link.wire)], [], rows)

    async with app[LOCK]:
        state = await append_judged(request, judge)
        app[DIRECTORY].commit_team(state, link)
    note_links(request, link)
    return answer(schemas.TeamSeq(team=state.team_id, seq=1), 201)


async def append_team_link(request: web.Request) -> web.Response:
    link, boxes = await _team_link(request)
    app = request.app

    async def judge() -> tuple[TeamState, LinksWrite]:
        # The Security Team sees every team chain (is_overseer) and approves exports in teams it is not in.
        team = (app[DIRECTORY].team(request.match_info["team"]) if link.type == "export.approve"
                and is_overseer(request) else visible_team(request, request.match_info["team"]))
        if link.chain != team.team_id:
            raise ChainError("link belongs to another chain")
        if link.seq <= team.seq:
            raise Conflict("the team chain moved on; fetch it and retry")
        require_fresh_org(request, link)
        state = app[DIRECTORY].check_team_link(team.team_id, link)
        rows = new_box_rows(team, state, boxes)
        return state, LinksWrite([StoredLink(state.team_id, link.seq, "team", link.wire)], [], rows)

    async with app[LOCK]:
        state = await append_judged(request, judge)
        app[DIRECTORY].commit_team(state, link)
    note_links(request, link)
    return answer(schemas.TeamSeq(team=state.team_id, seq=state.seq), 201)


async def my_team_boxes(request: web.Request) -> web.Response:
    team = visible_team(request, request.match_info["team"])
    me = session_of(request).member
    note(request, "keys.team", {"team": team.team_id})
    rows = await request.app[CHAINS].team_boxes_for(team.team_id, me)
    return answer(schemas.TeamBoxes(boxes=[schemas.TeamBox(gen=g, box=b) for g, b in rows]))


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {
    "directory": directory_view, "org_chain": org_chain, "append_org_link": append_org_link,
    "append_member_link": append_member_link, "device_signed": device_signed, "member_chain": member_chain,
    "team_chain": team_chain,
    "create_team": create_team, "append_team_link": append_team_link, "team_boxes": my_team_boxes,
}
