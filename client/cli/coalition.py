"""``mvault coalition pairing-code|create|approve|add|rekey|remove|ls|show|join-code|join|leave``: spaces shared
with allied organizations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from client import coalition, coalitionacts, coalitionrekey, expulsions, guests, guestspace, joinedspaces
from client.cli._common import (
    Column,
    Ctx,
    emit_one,
    emit_rows,
    json_flag,
    out,
    parse_until,
    record_guest_act,
    run,
    with_session,
)
from client.home import Secrets
from client.sanitize import escape
from client.terminal import err
from vault.chains import TeamState
from vault.errors import VaultError

_SPACES = (Column("space", lambda r: r["name"]), Column("allies", lambda r: r["allies"]),
           Column("members", lambda r: r["members"]), Column("guests", lambda r: r["guests"]),
           Column("key", lambda r: r["key"]))


@click.group("coalition")
def coalition_group() -> None:
    """Coalition spaces: a team shared with allied organizations, each pinned by its root and coalition key."""


@coalition_group.command("pairing-code")
@click.argument("name")
@json_flag
@click.pass_obj
def pairing_code(ctx: Ctx, name: str) -> None:
    """The allied side (NCC): this organization's pairing code for the host's space NAME.

    The first time, makes the organization's coalition key for NAME, records it in the organization chain and
    keeps it in this device's keystore; once recorded, this device seals it to every NCC member (any of them then
    approves and expels with it). Give the code to the host organization's leaders out of band (in person,
    as for an invite): it pins this organization (its root) and the key that approves its members' entry."""
    p = with_session(ctx, lambda s: coalition.pairing_code(s, name))
    if p is None:
        emit_one(ctx, {"space": name, "proposed": True},
                 lambda: out.print(f"proposed this organization's coalition key for {escape(name)}: a second NCC "
                                   f"member runs `mvault coalition pairing-code {escape(name)}` to record it (rule "
                                   "two-person); then this command prints the code and seals the key to the NCC"))
        return
    emit_one(ctx, {"space": name, "org_root": p.org_root.hex(), "key": p.key.hex(), "code": p.code},
             lambda: out.print(f"pairing code for the coalition space {escape(name)}:\n  {escape(p.code)}\n"
                               f"organization root {p.org_root.hex()}\ncoalition key {p.key.hex()}\n"
                               "give it to the host organization's leaders in person; they run "
                               f"`mvault coalition create {escape(name)} --with CODE`"))


_WITH = click.option("--with", "codes", multiple=True, required=True, metavar="PAIRING_CODE",
                     help="an allied organization's pairing code (`mvault coalition pairing-code` on its side); "
                          "repeatable")


@coalition_group.command("create")
@click.argument("name")
@_WITH
@json_flag
@click.pass_obj
def create(ctx: Ctx, name: str, codes: tuple[str, ...]) -> None:
    """The host's side (NCC): create the coalition space NAME and pin each allied organization.

    Also makes this organization's own coalition key for NAME (recorded in its chain, kept on this device, sealed to
    the NCC): the space's first link carries it, and every entry of one of this organization's members (and a
    promotion to admin) then carries the NCC's approval signed with it, which guests' clients check. With another
    NCC member the key is only proposed: a second NCC member runs the same command (rule two-person)."""
    t = with_session(ctx, lambda s: coalition.create(s, name, list(codes)))
    if t is None:
        emit_one(ctx, {"name": name, "proposed": True},
                 lambda: out.print(f"proposed this organization's coalition key for the space {escape(name)}: a "
                                   f"second NCC member runs `mvault coalition create {escape(name)} --with CODE...` "
                                   "to record it and create the space (rule two-person)"))
        return
    _pinned(ctx, t, f"created coalition space {escape(t.name)} ({t.team_id})", codes)


@coalition_group.command("pin")
@click.argument("name")
@_WITH
@json_flag
@click.pass_obj
def pin(ctx: Ctx, name: str, codes: tuple[str, ...]) -> None:
    """The host's side (NCC): pin allies in the space NAME; as a second NCC member, with the same pairing codes,
    this puts in force the pins another NCC member proposed (rule two-person)."""
    t = with_session(ctx, lambda s: coalition.pin(s, name, list(codes)))
    _pinned(ctx, t, f"coalition space {escape(t.name)} ({t.team_id})", codes)


def _pinned(ctx: Ctx, t: TeamState, what: str, codes: tuple[str, ...]) -> None:
    """What was pinned; codes whose ally is not pinned yet wait for a second NCC member (the codes parsed already)."""
    names = [a.name for a in t.allies.values()]
    waiting = {coalition.Pairing.parse(c).org_root for c in codes} - set(t.allies)
    emit_one(ctx, {"space": t.team_id, "name": t.name, "allies": names, "proposed": bool(waiting)},
             lambda: out.print(f"{what} with {', '.join(escape(n) for n in names) or 'no ally yet'}"
                               + (f"; pins proposed: a second NCC member runs `mvault coalition pin "
                                  f"{escape(t.name)} --with CODE...`" if waiting else "")))


@coalition_group.command("add")
@click.argument("name")
@click.argument("member", metavar="MEMBER[@ORG]")
@click.option("--role", type=click.Choice(["admin", "writer", "reader"]), default="writer", show_default=True)
@click.option("--until", default=None, help="the role ends on this date (YYYY-MM-DD)")
@click.option("--approval", default=None, metavar="CODE|FILE",
              help="for MEMBER@ORG of an allied organization: its guest code (`mvault coalition approve` on its side)")
@json_flag
@click.pass_obj
def add(ctx: Ctx, name: str, member: str, role: str, until: str | None, approval: str | None) -> None:
    """A space admin adds MEMBER of this organization, or MEMBER@ORG of an allied organization with the guest code
    its NCC gave (the member's chain and the organization's signed approval, for exactly this role and end)."""
    code = _code(approval)
    boxed = with_session(ctx, lambda s: coalition.add(s, name, member, role, parse_until(until), code))
    emit_one(ctx, {"space": name, "member": member, "role": role, "key_shared": boxed},
             lambda: out.print(f"added {escape(member)} to {escape(name)} as {role}"
                               + ("" if boxed else "; a key holder's client shares the key")))


def _code(value: str | None) -> str | None:
    return None if value is None else _text_or_file(value, guests.PREFIX)


def _text_or_file(value: str, prefix: str) -> str:
    if value.startswith(prefix):
        return value
    try:
        return Path(value).read_text().strip()
    except OSError as e:
        raise click.BadParameter(f"neither a code ({prefix}...) nor a readable file: {e.strerror}") from None


@coalition_group.command("approve")
@click.argument("name")
@click.argument("member")
@click.option("--space", required=True, metavar="ID", help="the space's id on the host's server (the host gives it)")
@click.option("--role", type=click.Choice(["writer", "reader", "admin"]), default="writer", show_default=True,
              help="admin only for a member of the host organization, in a space it hosts")
@click.option("--until", default=None, help="the role ends on this date (YYYY-MM-DD)")
@json_flag
@click.pass_obj
def approve(ctx: Ctx, name: str, member: str, space: str, role: str, until: str | None) -> None:
    """The allied side (NCC, the device that made the pairing code): approve MEMBER of this organization for the
    host's coalition space NAME (coalition.admit, signed with the coalition key; usable for 14 days, once).

    The approval is recorded in this organization's audit log first (a coalition.act record naming MEMBER). Prints a
    guest code: give it to a space admin of the host, who runs `mvault coalition add NAME MEMBER@ORG
    --approval CODE` with the same role and end. On the host's side (NCC, a space this organization created), the
    same approves one of its own members: the space admin runs `mvault coalition add NAME MEMBER --approval CODE`
    (an NCC member who is also a space admin just runs `coalition add`, which signs it)."""
    g = with_session(ctx, lambda s: coalitionacts.approve(s, name, member, space, role, parse_until(until)))
    emit_one(ctx, {"space": space, "member": g.member.member_id, "role": role, "code": g.code},
             lambda: out.print(f"guest code for {escape(member)} in {escape(name)} ({role}):\n{g.code}"))


@coalition_group.command("rekey")
@click.argument("name")
@json_flag
@click.pass_obj
def rekey(ctx: Ctx, name: str) -> None:
    """NCC: replace this organization's coalition key NAME (an ally's, or the host's own for a space it created),
    as `role revoke MEMBER ncc` and `remove` of an NCC member do for every key: for a suspected leak.

    Makes a new key (kept on this device), signs its rekey with the current one and records it in the organization
    chain; with another NCC member this proposes it, and the same command by a second NCC member records it. The
    device holding the new key then seals it to the NCC (its next `coalition rekey NAME` when another member recorded
    it). An ally's guests carry it to the host's space at their next contact; a host's member of the space carries the
    host's at once. From the record on, the old key signs nothing this organization's chain accepts."""
    r = with_session(ctx, lambda s: coalitionrekey.rekey(s, name))
    emit_one(ctx, {"name": name, "state": r.state, "key": r.key.hex() if r.key else None},
             lambda: out.print(coalitionrekey.describe(r)))


@coalition_group.command("remove")
@click.argument("name")
@click.argument("member", metavar="MEMBER[@ORG]")
@json_flag
@click.pass_obj
def remove(ctx: Ctx, name: str, member: str) -> None:
    """A space admin removes MEMBER from the space; the key rotates (now, or on a key holder's next command)."""
    rotated = with_session(ctx, lambda s: coalition.remove(s, name, member))
    emit_one(ctx, {"space": name, "member": member, "rotated": rotated},
             lambda: out.print(f"removed {escape(member)} from {escape(name)}; "
                               + ("the key was rotated" if rotated else "a key holder's client rotates the key")))


@coalition_group.command("ls")
@json_flag
@click.pass_obj
def ls(ctx: Ctx) -> None:
    """The coalition spaces you are in."""
    emit_rows(ctx, with_session(ctx, coalition.spaces), _SPACES)


@coalition_group.command("show")
@click.argument("name")
@json_flag
@click.pass_obj
def show(ctx: Ctx, name: str) -> None:
    """A coalition space: its pinned allies (root, key) and its members with their organization."""
    info = with_session(ctx, lambda s: coalition.show(s, name))

    def text() -> None:
        out.print(f"{escape(info['name'])} ({info['space']}), key generation {info['generation']}")
        own = info["coalition_key"]
        if own is not None and own["stale"]:
            out.print(f"  our coalition key {own['key']}: STALE, sealed to {', '.join(map(escape, own['stale']))}, "
                      "no longer NCC: an NCC member holding it replaces it at their next command")
        for a in info["allies"]:
            out.print(f"  ally {escape(a['name'])}: root {a['org_root']}, key {a['key']}")
        for m in info["members"]:
            out.print(f"  {escape(m['name'])} ({escape(m['organization'])}): {m['role']}")
    emit_one(ctx, info, text)


@coalition_group.command("join-code")
@click.argument("name")
@json_flag
@click.pass_obj
def join_code(ctx: Ctx, name: str) -> None:
    """The host's side (a space admin): the join code an allied member's device needs to work in the space NAME.

    It holds this server's address and pin, this organization's root, and the space's chain as your client verified
    it: the guest's client trusts that much of the chain on your word. Give it to the guest out of band (in person,
    or through their NCC); give a newer one after pinning another ally."""
    code = with_session(ctx, lambda s: guestspace.space_join_code(s, name))
    emit_one(ctx, {"space": code.space, "name": code.name, "seq": code.seq, "code": code.code},
             lambda: out.print(f"join code for {escape(code.name)} (its chain up to link {code.seq}):\n{code.code}\n"
                               "the guest runs `mvault coalition join CODE`, then `mvault --space "
                               f"{escape(code.name)} ls {escape(code.name)}`"))


@coalition_group.command("join")
@click.argument("code")
@json_flag
@click.pass_obj
def join(ctx: Ctx, code: str) -> None:
    """The allied member's side, on your own device: work in a host's coalition space with a join CODE (or a file
    holding it) that a space admin of the host gave you; your own keys, your own organization's approval.

    Then every command runs in the space with `mvault --space NAME ...` (ls, put, get, history, thread ...)."""
    text = _text_or_file(code, guestspace.PREFIX)

    async def go() -> dict[str, Any]:
        row, secrets, view = await guestspace.join_space(ctx.home, text, ctx.clock)
        await record_guest_act(ctx, secrets, view, "join")  # in this member's own organization's audit log
        await _record_spaces(ctx, secrets, row["name"], joined=row["space"])
        return row

    row = run(go())
    emit_one(ctx, row, lambda: out.print(
        f"joined coalition space {escape(row['name'])} ({row['space']}) as {row['role']}; members: "
        + ", ".join(f"{escape(n)} ({escape(o)})" for n, o in row["members"])
        + f"\nnow: mvault --space {escape(row['name'])} ls {escape(row['name'])}"
        + ("" if row["host_key"] else "\nnote: this space was created without the host organization's coalition key: "
           "your client takes the host's space admins' word for who of the host is in it (their adds are not approved "
           "by the host's NCC)")))


@coalition_group.command("leave")
@click.argument("name")
@json_flag
@click.pass_obj
def leave(ctx: Ctx, name: str) -> None:
    """The allied member's side: leave the coalition space NAME you joined as a guest (its key rotates at a key
    holder's next command); recorded in your own organization's audit log, and this device forgets the space."""

    async def go() -> dict[str, Any]:
        view, secrets = await expulsions.leave(ctx.home, name, ctx.clock)
        await record_guest_act(ctx, secrets, view, "leave")  # in this member's own organization's audit log
        team = next(iter(view.teams.values()))
        await _record_spaces(ctx, secrets, team.name, left=team.team_id)
        return {"space": team.team_id, "name": team.name, "left": True}

    row = run(go())
    emit_one(ctx, row, lambda: out.print(f"left coalition space {escape(row['name'])} ({row['space']})"))


async def _record_spaces(ctx: Ctx, secrets: Secrets, name: str, *, joined: str | None = None,
                         left: str | None = None) -> None:
    """The record of joined spaces in this member's own chain, which any of their devices reads to carry a device
    revocation (client/joinedspaces.py). Not updated: the command prints what it did, then a warning and exit 1 (3
    for a security error of the own server)."""
    try:
        await joinedspaces.update(ctx.home, secrets, ctx.clock, joined=joined, left=left)
    except VaultError as e:
        failure = e

        def unrecorded() -> None:
            done = "joined" if joined else "left"
            err.print_line(f"warning: coalition space {escape(name)} is {done} but the record "
                           "of your joined spaces in your own organization was NOT updated: a device revocation from "
                           "another of your devices " + ("would not reach this space's host: run this command "
                                                         "again" if joined else "still tries this space's host"))
            raise failure

        click.get_current_context().call_on_close(unrecorded)


COMMANDS: tuple[click.Command, ...] = (coalition_group,)
