"""Adding an ally's member to a coalition space (docs/lifecycle.md section 2, "Guest login"): the member chain
of someone who is not a member of this organization is stored only together with a ``team.add`` the one judge
accepts, which for an ally's member means their organization's ``coalition.admit`` signed with the coalition key
the space pins. An approval is what lets a member chain in, and nothing else does."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from msgspec import UnsetType

from server.access import LinksWrite, append_judged, visible_team
from server.context import CONFIG, DIRECTORY, LOCK, Handler, now_of
from server.http import answer, read_body
from server.links import note_links, require_signer
from server.routes.chains import new_box_rows, require_fresh_org
from server.store.records import StoredLink
from vault.chains import MemberState, TeamState, replay_member
from vault.errors import ChainError, Conflict, VaultError
from vault.joinedspaces import LINK_TYPE as SPACES_LINK
from vault.links import Link, parse_link
from vault.wire import schemas


async def add_guest(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.GuestRequest)
    try:
        member_links, link = [parse_link(x) for x in body.member_links], parse_link(body.link)
    except VaultError as e:
        raise ChainError(f"malformed link: {e}") from e
    require_signer(request, link)
    if link.type != "team.add" or "approval" not in link.body.raw:
        raise ChainError("a guest enters with a team.add carrying their organization's coalition.admit (approval)")
    boxes = {} if isinstance(body.boxes, UnsetType) else body.boxes
    app = request.app

    async def judge() -> tuple[tuple[MemberState, list[Link], TeamState], LinksWrite]:
        directory = app[DIRECTORY]
        team = visible_team(request, request.match_info["team"])
        if link.chain != team.team_id:
            raise ChainError("link belongs to another chain")
        if link.seq <= team.seq:
            raise Conflict("the team chain moved on; fetch it and retry")
        require_fresh_org(request, link)
        member, new = _guest_chain(member_links, directory.members,
                                   int(now_of(request)) + int(app[CONFIG].clock_skew))
        if link.body.raw.get("member") != member.member_id:
            raise ChainError("the team.add names another member than the member chain sent")
        state = directory.check_team_link(team.team_id, link, extra_member=member)
        rows = new_box_rows(team, state, boxes)
        stored = [StoredLink(member.member_id, x.seq, "member", x.wire) for x in new]
        return (member, new, state), LinksWrite([*stored, StoredLink(state.team_id, link.seq, "team", link.wire)], [],
                                                rows)

    async with app[LOCK]:
        member, new, state = await append_judged(request, judge)
        if new:
            app[DIRECTORY].commit_guest(member, member_links)
        app[DIRECTORY].commit_team(state, link)
    note_links(request, *new, link)
    return answer(schemas.TeamSeq(team=state.team_id, seq=state.seq), 201)


def _guest_chain(links: list[Link], held: Mapping[str, MemberState], latest: int) -> tuple[MemberState, list[Link]]:
    """The guest's member chain as sent (self-certifying from its first device), and the links of it to store: all
    of them for a member chain this server does not hold; for one it holds (found by the member id the chain
    replays to; review round 12: a first link names no chain, so looking it up by ``links[0].chain`` never found
    one and every later space's add was a 409), none when the sent chain is no longer, and the ``member.spaces``
    links past it when the held chain is a prefix of the sent one (session 17, review 18; anything else refused).
    Links dated ahead of the server's clock are refused."""
    if any(x.kind != "member" for x in links) or any(x.time > latest for x in links):
        raise ChainError("a guest's member chain: member links only, none dated ahead of the server's clock")
    member = replay_member(links)
    known = held.get(member.member_id)
    if known is None:
        return member, links
    if known.seq >= member.seq:
        return known, []
    # Session 17 (review 18): the guest's home chain moved on by records of joined spaces (``member.spaces``, one
    # per ``coalition join``) that the guest carries only ahead of a later link. Taken past the held chain when
    # that is a prefix of the one sent (the whole chain replayed above: signatures by devices active in it, places),
    # as a relayed record is (server/links.py ``relayed_record``: it changes no device, key or right); any other
    # link (a device added or revoked: its PUK boxes only the member's own device holds) is still not taken here.
    if member.hashes[known.seq - 1] != known.head:
        raise ChainError("the member chain sent is not a continuation of the one this server holds for that member "
                         "(a fork): nothing was added")
    new = links[known.seq:]
    if any(x.type != SPACES_LINK for x in new):
        raise ChainError("this server already holds that member's chain; past it an add takes only records of "
                         "joined spaces (member.spaces): the member's own device carries the rest (any command of "
                         "theirs in a space of this host), then add again")
    return member, new


# The handler of each operation of vault/wire/operations.py this module serves (server/app.py registers them).
HANDLERS: dict[str, Handler] = {"add_guest": add_guest}
