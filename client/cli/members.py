"""``mvault admit``, ``role grant|revoke``, ``members``, ``verify``, ``vouch``, ``remove``: the organization's
members."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from client import admin, coalitionrekey, records
from client.cli._common import Column, Ctx, emit_one, emit_rows, json_flag, out, parse_until, with_session
from client.client import Client
from client.sanitize import escape
from vault.chains.member import MemberState

_MEMBERS = (Column("name", lambda r: r["name"]), Column("roles", lambda r: ", ".join(r["roles"])),
            Column("status", lambda r: r["status"]), Column("devices", lambda r: r["devices"]),
            Column("verified", lambda r: r["verified"]), Column("teams", lambda r: ", ".join(r["teams"])))


@click.command()
@click.argument("member")
@json_flag
@click.pass_obj
def admit(ctx: Ctx, member: str) -> None:
    """Admit a pending member (NCC; after the bootcamp)."""
    m = with_session(ctx, lambda s: admin.admit(s, member))
    emit_one(ctx, {"member": m.member_id, "name": m.name, "status": "admitted"},
             lambda: out.print(f"admitted {escape(m.name)}"))


@click.group()
def role() -> None:
    """Grant or revoke organization roles (NCC only)."""


async def _holds_ncc(s: Client, name: str) -> bool:
    """Whether ``name`` holds NCC now: losing it, they keep the coalition keys they opened (replaced at once)."""
    view = await s.chains.view()
    return "ncc" in view.org.roles_of(view.member_by_name(name).member_id, s.session.now())


def _rekeys(rekeyed: list[coalitionrekey.Rekeyed]) -> dict[str, Any]:
    return {"coalition_rekeys": [{"name": r.name, "state": r.state, "key": r.key.hex() if r.key else None,
                                  "note": r.note} for r in rekeyed]} if rekeyed else {}


def _role_cmd(grant: bool) -> Callable[..., None]:
    @click.argument("member")
    @click.argument("role_name", metavar="ROLE", type=click.Choice(["ncc", "staff", "security", "compa"]))
    @json_flag
    @click.pass_obj
    def cmd(ctx: Ctx, /, member: str, role_name: str, **kw: Any) -> None:
        until = parse_until(kw.get("until"))

        async def go(s: Client) -> tuple[MemberState, bool, list[coalitionrekey.Rekeyed]]:
            held = not grant and role_name == "ncc" and await _holds_ncc(s, member)
            m, done = await admin.set_org_role(s, member, role_name, grant, until)
            return m, done, await coalitionrekey.after_ncc_loss(s) if done and held else []

        m, done, rekeyed = with_session(ctx, go)
        verb = "granted" if grant else "revoked"
        again = f"mvault role {'grant' if grant else 'revoke'} {m.name} {role_name}" + (
            f" --until {kw['until']}" if kw.get("until") else "")
        emit_one(ctx, {"member": m.member_id, "name": m.name, "role": role_name, verb: done, "proposed": not done,
                       "until": kw.get("until"), **_rekeys(rekeyed)},
                 lambda: out.print("\n".join([f"{verb} {role_name} {'to' if grant else 'from'} {escape(m.name)}"
                                               if done else f"proposed: another NCC member (not {escape(m.name)}) "
                                               f"puts it in force with `{escape(again)}`",
                                               *map(coalitionrekey.describe, rekeyed)])))

    return cmd


role.command("grant", help="Grant ROLE to MEMBER.")(
    click.option("--until", default=None, help="role ends on this date (YYYY-MM-DD)")(_role_cmd(True)))
role.command("revoke", help="Revoke ROLE from MEMBER.")(_role_cmd(False))


@click.command("members")
@json_flag
@click.pass_obj
def members_cmd(ctx: Ctx) -> None:
    """The organization: roles, devices, verified or not."""
    emit_rows(ctx, with_session(ctx, admin.members), _MEMBERS)


@click.command()
@click.argument("member")
@click.option("--confirm", is_flag=True, help="mark verified after comparing the number in person")
@json_flag
@click.pass_obj
def verify(ctx: Ctx, member: str, confirm: bool) -> None:
    """Show the safety number you and MEMBER compare in person."""
    info = with_session(ctx, lambda s: admin.verify(s, member, confirm))
    emit_one(ctx, info, lambda: out.print(f"safety number with {escape(info['name'])}:\n  {info['safety_number']}\n"
                                          f"verified: {info['verified']}"))


@click.command()
@click.argument("member")
@json_flag
@click.pass_obj
def vouch(ctx: Ctx, member: str) -> None:
    """Vouch for MEMBER: a signed record in the organization chain (rule vouching)."""
    m = with_session(ctx, lambda s: records.vouch(s, member))
    emit_one(ctx, {"member": m.member_id, "name": m.name, "vouched": True},
             lambda: out.print(f"vouched for {escape(m.name)} (signed, in the organization chain)"))


@click.command("remove")
@click.argument("member")
@click.option("--reason", default="", help="a short reason for the record (kept in the org chain)")
@json_flag
@click.pass_obj
def remove_cmd(ctx: Ctx, member: str, reason: str) -> None:
    """NCC: remove MEMBER from the organization: logins stop, and they are out of every team at once."""

    async def go(s: Client) -> tuple[MemberState, bool, list[coalitionrekey.Rekeyed]]:
        held = await _holds_ncc(s, member)
        m, done = await admin.remove_member(s, member, reason)
        return m, done, await coalitionrekey.after_ncc_loss(s) if done and held else []

    m, done, rekeyed = with_session(ctx, go)
    emit_one(ctx, {"member": m.member_id, "status": "removed" if done else "proposed", **_rekeys(rekeyed)},
             lambda: out.print("\n".join([
                 f"removed {escape(m.name)} from the organization and from every team; the keys of their teams "
                 "rotate on a key holder's next command" if done else
                 f"proposed: {escape(m.name)} holds NCC or Security Team roles, so another NCC member (not them) puts "
                 f"the removal in force with `mvault remove {escape(m.name)}`",
                 *map(coalitionrekey.describe, rekeyed)])))


COMMANDS: tuple[click.Command, ...] = (admit, role, members_cmd, verify, vouch, remove_cmd)
