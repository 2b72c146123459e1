"""Every device of a member knows the coalition spaces the member joined as a guest (review round 15's open
finding; docs/lifecycle.md section 2 "Every device knows the spaces joined"; the record: vault/joinedspaces.py).

``mvault coalition join`` and ``leave`` bring the record in the member's own chain (a ``member.spaces`` link, sealed
to the member's PUK) up to date; ``mvault device revoke`` reads it and carries the revocation, with its PUK boxes,
to the host's server of every recorded space this device did not join itself, logging in there as a guest with
this device's own keys (the host's server holds the member's chain as the ally's approval carried it, or as the
member's guests carried it since: every device in it logs in) and with a transient record of the space made from
its join code (``carry.<space id>.*.bin`` beside the home's own state, removed after). A space it cannot reach is
named in an error (exit 1, or 3 for a lie) after the revocation is done at home: never silence.
"""

from __future__ import annotations

import asyncio
from typing import Final

from client import expulsions, guestspace
from client.api import Api
from client.client import Client
from client.clock import Clock
from client.home import Config, Home, Pins, Secrets
from client.sanitize import escape
from client.testknobs import stall
from vault.chains import replay_member
from vault.errors import EXIT_SECURITY, AuthError, IntegrityError, ServerMismatch, VaultError
from vault.joinedspaces import LINK_TYPE, open_spaces, parse_body, seal_spaces
from vault.links import Link

CARRY_PREFIX = "carry."  # a transient record of a space this device visits to carry a revocation


async def recorded(c: Client) -> dict[str, str]:
    """The record of joined spaces in our own member chain as our own server serves it (verified and pinned):
    space id -> join code; empty when none was ever made."""
    mine = (await c.chains.view()).members[c.session.me]
    if mine.spaces is None:
        return {}
    _, gen, box = mine.spaces
    return open_spaces(box, await c.keys.puk(gen), c.session.me)


def local_codes(home: Home) -> dict[str, str]:
    """The spaces this device joined (its own ``space.<id>.space.bin`` records): space id -> join code."""
    return {space: guestspace.sibling(home, space).anchor().code for space in guestspace.joined(home)}


async def publish(c: Client, *, joined: str | None = None, left: str | None = None,
                  base: dict[str, str] | None = None) -> bool:
    """Bring the record up to date: ``joined`` (a space id this device just joined) in it with the code this device
    holds, ``left`` out of it, sealed to the current PUK (a record sealed to an older one, as after a device
    revocation, is sealed again). The first record also takes every space this device joined before records
    existed. ``base``: the spaces to start from instead of the last record (after a revocation: ``for_revocation``).
    Returns whether a ``member.spaces`` link was appended."""
    s = c.session
    mine = (await c.chains.view()).members[s.me]
    try:
        before: dict[str, str] | None = await recorded(c)
    except IntegrityError:
        if base is None:
            raise
        before = None  # a record that does not open (the revoked device's, say) is replaced by ``base``
    local = local_codes(s.home)
    want = dict(base if base is not None else before or {})
    if mine.spaces is None:
        want.update(local)
    if joined is not None:
        want[joined] = local[joined]
    if left is not None:
        want.pop(left, None)
    if (not want and mine.spaces is None) or (want == before and mine.spaces and mine.spaces[1] == mine.puk_gen):
        return False
    box = seal_spaces(s.me, await c.keys.puk(mine.puk_gen), want)
    await c.chains.append_member(LINK_TYPE, {"puk_gen": mine.puk_gen, "box": box}, {})
    return True


async def update(home: Home, secrets: Secrets, clock: Clock, *, joined: str | None = None,
                 left: str | None = None) -> bool:
    """``publish`` on a session of its own with our own server (``coalition join`` and ``leave``)."""
    cfg = home.config()
    async with Api(cfg.url, cfg.pin) as api:
        own = await Client.open(home, secrets, api, clock)
        return await publish(own, joined=joined, left=left)


async def for_revocation(c: Client, mine: list[Link]) -> tuple[dict[str, str], set[str], list[str], list[str]]:
    """The spaces a revocation goes to (``mine``: our member chain, its last link the ``device.revoke``): every space
    ANY record in the chain ever named (review round 18: the revoked device, a thief holding it, may have taken
    spaces out of the record before the revocation, and another device's next record starts from its record and so
    signs its removal again: no removal is believed here). Returns the codes (the newest a record gave each space),
    the spaces the last record no longer names: for those a host that refuses our whole chain is said, not an
    error (as after a leave); a warning for each record that does not open (a bad space id, say: any device of
    ours, the revoked one included, can seal anything to our member key; this program never writes one), the
    others still read; and the order to visit them in (``visit_order``)."""
    state = replay_member(mine)  # every signature checked; it extends the chain our pins hold
    pinned = (await c.chains.view()).members[c.session.me]
    held = len(state.hashes) >= pinned.seq and state.hashes[pinned.seq - 1] == pinned.head
    if not held or mine[-1].type != "device.revoke":
        raise ServerMismatch("our own server served another member chain after the revocation than the one we hold: "
                             "stop and tell your Security Team")
    revoked = mine[-1].body.raw.get("device")
    out: dict[str, str] = {}
    last: dict[str, str] = {}
    bad: list[str] = []
    first: dict[str, tuple[bool, int]] = {}  # space -> (named by the revoked device only, first record naming it)
    for link in mine:
        if link.type != LINK_TYPE:
            continue
        gen, box = parse_body(link.body)
        try:
            last = open_spaces(box, await c.keys.puk(gen), c.session.me)
        except VaultError as e:
            bad.append(f"warning: the record of your joined coalition spaces in member link {link.seq}, signed by "
                       f"your device {link.device}, does not open ({escape(str(e))}): this program never writes "
                       "such a record; the other records were read. If that device is not the one revoked, revoke "
                       "it too and tell your Security Team")
            continue
        out.update(last)
        for space in last:
            seen = first.get(space, (True, link.seq))
            first[space] = (seen[0] and link.device == revoked, seen[1])
    return out, set(out) - set(last), bad, visit_order(first)


def visit_order(first: dict[str, tuple[bool, int]]) -> list[str]:
    """Session 18 (review 19): the spaces a revocation visits, in this order: those a record of another device than
    the revoked one named, then the revoked device's own, each group by the record that first named it (a thief
    holding the revoked device adds entries only after the spaces it joined before the theft), then by id."""
    return sorted(first, key=lambda space: (*first[space], space))


VISIT_LIMIT: Final = 60.0  # seconds the visits left after a stalled one may take in all (each its own task)


async def carry_revocation(own: Client, boxes: dict[str, bytes], mine: list[Link]
                           ) -> tuple[dict[str, str], list[str], list[str]]:
    """Right after ``mvault device revoke`` (``own``: the session that posted it; ``mine``: our member chain, its
    last link the revocation): the revocation to the host of every space of ``for_revocation`` this device did not
    join (``expulsions.carry_revocation`` carries it to those it joined). Returns the spaces (less those the last
    record no longer names whose host refuses our whole chain, as after a leave), the lines carried and the spaces
    not reached (each with why).

    Session 18 (review 19): a thief's entry at a server that accepts and never answers held the revocation back
    from the real spaces for a connection timeout per entry. The spaces are visited one after the other in
    ``visit_order`` while each answers within ``STALL`` seconds (``client.testknobs.stall``: 10, below the connect
    timeout); once one does not, it and every space left are visited at once, all bounded by ``VISIT_LIMIT`` (those
    not done by then are named, not reached): one silent server costs at most ``STALL`` + ``VISIT_LIMIT`` in all,
    never one wait per entry."""
    wait = stall()  # before any visit: a bad MVAULT_TEST_STALL is refused at once
    local = set(guestspace.joined(own.session.home))
    spaces, taken_out, notes, order = await for_revocation(own, mine)
    todo = [space for space in order if space not in local]  # local: carried by expulsions.carry_revocation
    results: dict[str, tuple[list[str], str | None, bool]] = {}
    tasks: dict[str, asyncio.Task[tuple[list[str], str | None, bool]]] = {}
    while todo:
        space = todo.pop(0)
        tasks[space] = asyncio.create_task(_visit(own, boxes, mine, space, spaces[space], space in taken_out))
        done, _ = await asyncio.wait({tasks[space]}, timeout=wait)
        if not done:  # a slow or silent server: the spaces left go all at once
            tasks.update({x: asyncio.create_task(_visit(own, boxes, mine, x, spaces[x], x in taken_out))
                          for x in todo})
            todo = []
    if tasks:
        await asyncio.wait(tasks.values(), timeout=VISIT_LIMIT)
    late = [task for task in tasks.values() if not task.done()]
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=5)  # their transient records removed (``_visit``'s finally)
    for space, task in tasks.items():
        if task.cancelled() or not task.done():
            results[space] = ([], f"{_name(spaces[space], space)} (no answer within {int(wait + VISIT_LIMIT)} s)",
                              False)
        else:
            results[space] = task.result()
    missed: list[str] = []
    for space in sorted(results):
        lines, why, dropped = results[space]
        notes += lines
        if why is not None:
            missed.append(why)
        if dropped:
            spaces.pop(space)
    return spaces, notes, missed


def _name(text: str, space: str) -> str:
    """A space's name for people, from its join code (its id when the code does not parse)."""
    try:
        return escape(guestspace.JoinCode.parse(text).name)
    except VaultError:
        return space


async def _visit(own: Client, boxes: dict[str, bytes], mine: list[Link], space: str, text: str,
                 taken_out: bool) -> tuple[list[str], str | None, bool]:
    """The revocation to one space's host: the lines carried, why it was not reached (None: it was) and whether the
    space leaves the record (its host refuses our login and the last record had taken it out)."""
    s = own.session
    name = space
    visit = guestspace.sibling(s.home, space)
    visit.state_prefix = f"{CARRY_PREFIX}{space}."
    try:
        code = guestspace.JoinCode.parse(text)
        if code.space != space:
            raise IntegrityError(f"its join code names another space ({escape(code.space)})")
        name = escape(code.name)
        me = s.home.config()
        visit.save_config(Config(code.url, code.pin.hex(), code.org_root.hex(), me.member_id, me.device_id,
                                 me.name, code.pin_kind))
        visit.replace_pins(Pins())  # the visit's scratch state starts empty
        visit.save_anchor(code)
        async with Api(code.url, code.pin) as api:
            guest = await guestspace.GuestClient.open(visit, s.secrets, api, s.clock)
            return [f"{line} of coalition space {name}" for line in
                    await expulsions.carry_member_links(guest, mine, {mine[-1].seq: boxes})], None, False
    except AuthError as e:
        if not taken_out:
            return [], f"{name} ({escape(str(e))})", False
        # a record took it out, as a leave does, and the host refuses all of our chain: neither this device
        # nor the revoked one logs in there (said, not an error; the record drops it)
        return [f"warning: coalition space {name} refuses your login ({escape(str(e))}); the record of your joined "
                "spaces had taken it out, as a leave does: if you did not leave it, tell the space's admin and your "
                "Security Team"], None, True
    except VaultError as e:
        why = " (the record of your joined spaces had taken it out)" if taken_out else ""
        return [], f"{name} ({escape(str(e))}){why}" + (" [security]" if e.exit_code == EXIT_SECURITY else ""), False
    except Exception as e:  # review round 18: whatever one space raises, the others are still carried to
        return [], f"{name} ({escape(type(e).__name__)}: {escape(str(e))})", False
    finally:
        for part in ("config", "pins", "space"):
            (s.home.path / f"{CARRY_PREFIX}{space}.{part}.bin").unlink(missing_ok=True)
        (s.home.path / f"{CARRY_PREFIX}{space}.pins.lock").unlink(missing_ok=True)


def not_reached(missed: list[str], refused: list[str] | None = None) -> VaultError:
    """The error ``device revoke`` ends with when a recorded space's host did not take the revocation (``missed``),
    or a space's host refused it as dated before an act of the revoked device there (``refused``: review round 24,
    ``expulsions.RevocationRefused``)."""
    where = []
    if missed:
        where.append(f"coalition space(s) you joined on another device: {'; '.join(missed)}")
    if refused:
        where.append(f"coalition space(s) whose host refused it as dated too early: {'; '.join(refused)}")
    text = (f"the revocation is done at home but NOT on the host's server of {'; and of '.join(where)}; the revoked "
            "device can still log in there: tell the space's admin (a space admin removes you there; join again "
            "after) and your Security Team")
    if any(m.endswith("[security]") for m in missed):
        return ServerMismatch(text)
    return VaultError(text)
