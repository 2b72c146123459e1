"""An allied organization's own removals, carried to the host's coalition space by its guests (issue 20;
docs/lifecycle.md section 2, "The ally's own removals").

The host's server never sees the ally's organization chain, so nothing there tells it that the ally expelled one of
its guests, or that a guest revoked one of its devices. The ally's guests carry both, at every contact with the
host (each ``mvault --space`` command, before the command itself; a running ``--space sync --watch`` at each full
pass after its first and ``--space thread follow`` once a minute), from what their own organization's verified
chains say:

- **expulsion**: the ally's NCC's client signs, with each coalition key it holds, a ``coalition.expel`` of the
  member in the ``org.remove`` itself (``coalition``; ``vault.chains.coalition.expel_statements``). A guest of the
  same ally whose space still holds the expelled member carries it in a ``coalition.remove`` link, rotating the
  space's key in the same link when it holds it (as any removal), so the expelled member, with a copy of the host's
  data and its old keys, opens nothing newer. Nobody had to remember which spaces the member was in.
- **device revocation**: the guest's own member chain, as its own server holds it, is posted to the host's server
  where the host's copy is behind. A ``device.revoke`` carries PUK boxes the host's server checks against the link,
  so ``mvault device revoke`` posts it (with its boxes) to every space this home joined in the same command
  (``carry_member_links``; the spaces joined on another device: client/joinedspaces.py); a later contact posts what
  is still missing (a ``member.spaces`` record only ahead of a later link). Once there, the revoked device no longer
  logs in at the host and no version or message it signs after the revocation is accepted by any client.

A host's server that drops a carried removal is caught: the carrier checks the space's chain holds it right after,
and every later contact of any of the ally's guests finds the expelled member still in the space and carries again,
or stops (exit 3) when the server keeps refusing. What stays open is in SECURITY.md ("Coalition guests").
"""

from __future__ import annotations

import asyncio

from client import coalitionrekey, guestspace
from client.api import Api
from client.client import Client
from client.clock import Clock
from client.home import Home, Secrets
from client.sanitize import escape
from client.testknobs import stall
from client.view import View
from vault.chains import TeamState
from vault.chains.coalition import verify_statement
from vault.encoding import Fields
from vault.errors import ChainError, Conflict, ServerMismatch, VaultError
from vault.joinedspaces import LINK_TYPE as SPACES_LINK
from vault.links import Link
from vault.wire.schemas import MemberLinkRequest, SeqAnswer, SignedAt


class RevocationRefused(Conflict):
    """The host's server refused our ``device.revoke`` as dated before something the device signed there (409 with
    ``not_before``: a thief's act dated ahead, review round 24). The link is in our own chain already and cannot be
    signed again, so no later contact lands it either: the revoked device stays in the space until its admin
    removes us there."""


async def own_state(home: Home, secrets: Secrets, clock: Clock) -> tuple[View, list[Link]]:
    """The guest's own organization as its own server serves it, verified: the view and its own member chain."""
    cfg = home.config()
    async with Api(cfg.url, cfg.pin) as api:
        own = await Client.open(home, secrets, api, clock)
        view = await own.chains.view()
        return view, await own.chains.links(f"/api/v1/chains/member/{own.session.me}")


async def carry(home: Home, secrets: Secrets, clock: Clock, guest: Client) -> list[str]:
    """Before a guest's command in the space: its member chain's missing links, then every expulsion by its own
    organization of a member the space still holds, and its rekeys of the key the space pins for it (each after the
    expulsions signed with the key it retires: ``coalitionrekey.carry_ally``). Returns what was carried (one line
    each)."""
    try:
        own, mine = await own_state(home, secrets, clock)
    except VaultError as e:  # the space's work goes on; the removals wait for a contact that reaches both
        return [f"warning: your own organization's server did not answer ({e}): its removals were not checked"]
    try:
        done = await carry_member_links(guest, mine, {})
    except RevocationRefused as e:  # said at every contact; the space's work goes on (the member is not shut out)
        done = [f"warning: {e}"]

    async def expelled_first() -> list[str]:  # signed with the key the space pins still: carried before its rekey
        return [line for line in await carry_expulsions(guest, own) if not line.startswith("warning:")]

    done += await coalitionrekey.carry_ally(guest, own, expelled_first)  # our NCC's new coalition keys (session 17)
    return done + await carry_expulsions(guest, own)


async def carry_expulsions(guest: Client, own: View) -> list[str]:
    """Every expulsion by our own organization (``own``) of a member the space still holds, carried."""
    done: list[str] = []
    view = await guest.chains.view()
    team = next(iter(view.teams.values()))
    for mid in sorted(m for m, g in team.guests.items() if g.ally == own.org.root and m in team.active_members(
            guest.session.now())):
        om = own.org.members.get(mid)
        if om is None or om.removed_at is None:
            continue
        if not usable_expels(team, mid, own):  # said, and the command goes on (review round 14: silent, or exit 1)
            done.append(f"warning: {escape(own.name_of(mid))}, removed from your organization, is still in coalition "
                        f"space {escape(team.name)}: the removal carries no statement signed with the coalition key "
                        "the space pins for your organization; a space admin there removes them (tell your NCC)")
            continue
        for attempt in range(3):  # the space may move on meanwhile (another guest carrying it, say)
            try:
                await carry_expel(guest, team, mid, own)
                accepted = True
            except Conflict:
                if attempt == 2:
                    raise
                accepted = False
            view = await guest.chains.view(refresh=True)
            team = next(iter(view.teams.values()))
            if mid not in team.active_members(guest.session.now()) or accepted:
                break
        if mid in team.active_members(guest.session.now()):
            raise ServerMismatch(f"the host's server accepted the removal of {escape(own.name_of(mid))} (expelled by "
                                 f"your organization) from coalition space {escape(team.name)} but still serves them: "
                                 "stop and tell your Security Team")
        done.append(f"carried your organization's expulsion of {escape(own.name_of(mid))} to coalition space "
                    f"{escape(team.name)} "
                    f"(key generation {team.generation})")
    return done


async def carry_expel(guest: Client, team: TeamState, mid: str, own: View) -> None:
    """``coalition.remove`` of ``mid`` carrying the first of its ``coalition.expel`` statements that this space's pin
    of our organization verifies and has not used; the key rotates in the same link when this guest holds it."""
    usable = usable_expels(team, mid, own)
    if not usable:
        raise VaultError(f"your organization's expulsion of {escape(own.name_of(mid))} carries no statement signed "
                         f"with the coalition key coalition space {escape(team.name)} pins for it: a space admin "
                         "there removes them")
    view = await guest.chains.view()
    body: dict[str, object] = {"member": mid, "key": None, "statement": usable[0].raw}
    boxes: dict[str, bytes] = {}
    if team.holds_key(guest.session.me, guest.session.now()):
        old = await guest.keys.team_key(team, team.generation)
        body["key"], boxes = guest.keys.new_generation(team, view, old, leaving=mid)
    await guest.chains.append_team(team, "coalition.remove", dict(body), boxes)


def usable_expels(team: TeamState, mid: str, own: View) -> list[Fields]:
    """The ``coalition.expel`` statements of ``mid`` in our organization's removal that this space's pin of our
    organization verifies and that the space has not used."""
    usable = []
    for carried in own.org.expels.get(mid, []):
        try:
            st = verify_statement(carried, team.allies, team.team_id, "coalition.remove")
        except ChainError:
            continue  # signed with the key of another space of ours
        if st.hash not in team.statements_used:
            usable.append(carried)
    return usable


async def carry_member_links(guest: Client, mine: list[Link], boxes: dict[int, dict[str, bytes]]) -> list[str]:
    """Post the links of our own member chain (``mine``, as our own server holds it) that the host's copy lacks,
    with the PUK boxes ``boxes`` (link seq -> device -> box) where we have them. A host copy that is not a prefix of
    ours is a fork: stop."""
    me = guest.session.me
    held = (await guest.chains.view()).members[me]
    if len(mine) < held.seq or mine[held.seq - 1].hash != held.head:
        raise ServerMismatch("the host's server holds another member chain of yours than your own server does: stop "
                             "and tell your Security Team")
    done, conflicted = [], 0
    # a record of joined spaces (member.spaces) goes only ahead of a later link that needs it (a device.revoke), in
    # the same request: the host has no use for it otherwise (client/joinedspaces.py), and takes none alone (session
    # 18, review 19: a record posted alone there forked the host's copy of our chain)
    needed = max((link.seq for link in mine if link.type != SPACES_LINK), default=0)
    records: list[Link] = []
    for link in mine[held.seq:needed]:
        if link.type == SPACES_LINK:
            records.append(link)
            continue
        sent, records = [*records, link], []
        try:
            await guest.session.api.post(f"/api/v1/members/{me}/links", MemberLinkRequest(
                link.wire, boxes.get(link.seq, {}), [x.wire for x in sent[:-1]]), SeqAnswer)
        except Conflict as e:
            if e.not_before is not None and link.type == "device.revoke":  # not "moved on": dated too early there
                raise RevocationRefused(
                    f"the host's server refused your device.revoke (member link {link.seq}, dated {link.time}): it "
                    f"takes it only dated {e.not_before} or later, as the revoked device signed something there "
                    "dated after it (its clock ahead, or a thief's); the revocation is in your member chain and "
                    "cannot be signed again, so the revoked device can still log in there: tell the space's admin "
                    "(a space admin removes you there; join again after) and your Security Team",
                    e.not_before) from e
            conflicted = link.seq  # posted by another of our devices meanwhile, or so the host's server says
            continue
        except VaultError as e:  # a link committing PUK boxes only the device that made it held (device add/revoke)
            done.append(f"warning: your {link.type} (member link {link.seq}) is NOT on the host's server ({e}); the "
                        "command that made it carries it, as it holds its PUK boxes: tell your Security Team")
            break
        done += [f"carried your {x.type} (member link {x.seq}) to the host's server" for x in sent]
    if done or conflicted:
        guest.chains.links_posted += 1
        held = (await guest.chains.view(refresh=True)).members[me]
    if conflicted and (held.seq < conflicted or (held.seq == conflicted and held.head != mine[conflicted - 1].hash)):
        # review round 15: a host's server answering 409 and storing nothing kept a revocation off it, unsaid
        raise ServerMismatch(f"the host's server answered that your member chain moved on past link {conflicted} "
                             f"but does not hold it (it serves {held.seq} links): stop and tell your Security Team")
    return done


async def signed_at_hosts(own: Client, device: str) -> tuple[int, str]:
    """Before ``mvault device revoke`` signs: the latest time ``device`` signed something that the host's server of a
    coalition space this home joined holds (``GET .../devices/{device}/signed``), and that space's name (0 and "" when
    none). The revocation is dated after it, as it cannot be signed again once in our own chain (review round 24: a
    thief's act dated ahead at the host kept the carried revocation out for good). Visited at once, each bounded by
    ``stall()``; a host that does not answer (or an older server) is skipped: the carry then names its refusal."""
    s = own.session
    wait = stall()

    async def ask(space: str, name: str) -> tuple[int, str]:
        cfg = guestspace.sibling(s.home, space).config()
        async with Api(cfg.url, cfg.pin) as api:
            guest = await guestspace.GuestClient.open(guestspace.sibling(s.home, space), s.secrets, api, s.clock)
            got = await guest.session.api.get(f"/api/v1/members/{s.me}/devices/{device}/signed", SignedAt)
            return got.time, name

    async def bounded(space: str, name: str) -> tuple[int, str]:
        try:
            return await asyncio.wait_for(ask(space, name), wait)
        except Exception:  # review round 18: whatever one host raises, the revocation goes on (its carry says)
            return 0, ""

    found = await asyncio.gather(*(bounded(space, name) for space, name in guestspace.joined(s.home).items()))
    return max(found, default=(0, ""))


async def carry_revocation(own: Client, boxes: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """Right after ``mvault device revoke`` (``own``: the session with our own server that posted it): the
    revocation, with its PUK boxes, to the host's server of every coalition space this home joined as a guest.
    Returns the lines carried (and warnings) and the spaces whose host refused it as dated too early (each with why:
    the command then exits 1, ``joinedspaces.not_reached``)."""
    s = own.session
    mine = await own.chains.links(f"/api/v1/chains/member/{s.me}")
    notes: list[str] = []
    refused: list[str] = []
    for space, name in guestspace.joined(s.home).items():  # team id -> name (review round 14: it read them swapped)
        home = guestspace.sibling(s.home, space)
        try:
            cfg = home.config()  # one space's damaged record stops neither the others nor the command
            async with Api(cfg.url, cfg.pin) as api:
                guest = await guestspace.GuestClient.open(home, s.secrets, api, s.clock)
                notes += [f"{line} of coalition space {escape(name)}" for line in
                          await carry_member_links(guest, mine, {mine[-1].seq: boxes})]
        except RevocationRefused as e:
            refused.append(f"{escape(name)} ({escape(str(e))})")
        except VaultError as e:
            notes.append(f"warning: the revocation is NOT on the host's server of coalition space {escape(name)} "
                         f"({e}): the revoked device can still log in there; tell the space's admin and your "
                         "Security Team")
    return notes, refused


async def leave(home: Home, name: str, clock: Clock) -> tuple[View, Secrets]:
    """``mvault coalition leave NAME``: this guest leaves the space (``team.leave``; the key rotates at the next key
    holder's command, as for any member who leaves), and this device forgets it. Returns the space's view as it was
    before (what the record of ``leave`` in the own organization's log names) and the unlocked secrets."""
    space = guestspace.space_home(home, name)
    cfg, secrets = space.config(), space.unlock()
    async with Api(cfg.url, cfg.pin) as api:
        guest = await guestspace.GuestClient.open(space, secrets, api, clock)
        view = await guest.chains.view()
        team = next(iter(view.teams.values()))
        await guest.chains.append_team(team, "team.leave", {})
    for part in ("config", "pins", "space"):
        (home.path / f"space.{space.space}.{part}.bin").unlink(missing_ok=True)
    (home.path / f"space.{space.space}.pins.lock").unlink(missing_ok=True)
    return view, secrets
