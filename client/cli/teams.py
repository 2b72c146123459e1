"""``mvault team ...`` and ``mvault leave``: teams, their members and roles, and key rotation."""

from __future__ import annotations

from typing import Any

import click

from client import admin, records
from client.cli._common import (
    Column,
    Ctx,
    Time,
    emit_one,
    emit_rows,
    json_flag,
    out,
    parse_until,
    print_rows,
    with_session,
)
from client.client import Client
from client.maintenance import rotate
from client.sanitize import escape
from security.policy import TEAM_KINDS, TEAM_ROLES

_TEAMS = (Column("team", lambda r: r["name"]), Column("kind", lambda r: r["kind"]),
          Column("members", lambda r: r["members"]), Column("key gen", lambda r: r["generation"]),
          Column("your role", lambda r: r["role"]))
_TEAM_MEMBERS = (Column("member", lambda m: m["name"]),
                 Column("role", lambda m: m["role"] if m["active"] else f"{m['role']} (ended)"),
                 Column("until", lambda m: Time(m["until"]) if m["until"] else None),
                 Column("key", lambda m: "yes" if m["has_key"] else "no"))


@click.group()
def team() -> None:
    """Create and manage teams."""


@team.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(TEAM_KINDS), default="program", show_default=True)
@click.option("--no-history", is_flag=True, help="new members do not get older keys")
@json_flag
@click.pass_obj
def team_create(ctx: Ctx, name: str, kind: str, no_history: bool) -> None:
    """Create a team; you become its first admin."""
    t = with_session(ctx, lambda s: admin.create_team(s, name, kind, not no_history))
    emit_one(ctx, {"team": t.team_id, "name": t.name, "kind": t.kind, "generation": t.generation},
             lambda: out.print(f"created {escape(t.kind)} team {escape(t.name)} ({t.team_id})"))


@team.command("add")
@click.argument("team_name", metavar="TEAM")
@click.argument("member")
@click.option("--role", type=click.Choice(TEAM_ROLES), default="writer", show_default=True)
@click.option("--until", default=None, help="role ends on this date (YYYY-MM-DD)")
@json_flag
@click.pass_obj
def team_add(ctx: Ctx, team_name: str, member: str, role: str, until: str | None) -> None:
    """Add MEMBER to TEAM with a role (and give them the team key)."""
    boxed = with_session(ctx, lambda s: admin.add_member(s, team_name, member, role, parse_until(until)))
    emit_one(ctx, {"team": team_name, "member": member, "role": role, "until": until, "key_shared": boxed},
             lambda: out.print(f"added {escape(member)} to {escape(team_name)} as {role}"
                               + ("" if boxed else "; they get the key when a key holder's client next runs")))


@team.command("ls")
@json_flag
@click.pass_obj
def team_ls(ctx: Ctx) -> None:
    """Teams you can see."""

    async def go(s: Client) -> list[dict[str, Any]]:
        view = await s.chains.view()
        return [{"team": t.team_id, "name": t.name, "kind": t.kind, "members": len(t.members),
                 "generation": t.generation, "role": t.role_of(s.session.me, s.session.now())}
                for t in sorted(view.teams.values(), key=lambda t: t.name)]

    emit_rows(ctx, with_session(ctx, go), _TEAMS)


@team.command("show")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def team_show(ctx: Ctx, team_name: str) -> None:
    """Members, roles, expiries, key generation and pending work of a team."""
    info = with_session(ctx, lambda s: admin.team_info(s, team_name))

    def human() -> None:
        out.print(f"{escape(info['name'])} ({escape(info['kind'])}), key generation {info['generation']}"
                  + ("" if info["history"] else ", no history for new members"))
        print_rows(info["members"], _TEAM_MEMBERS)
        for g, who in info["rekeyed"].items():
            out.print_line(f"generation {g} was re-keyed by {who} (nothing from before it is readable with it)")
        for p in info["pending"]:
            out.print_line(f"pending: {p}")

    emit_one(ctx, info, human)


@team.command("remove")
@click.argument("team_name", metavar="TEAM")
@click.argument("member")
@json_flag
@click.pass_obj
def team_remove(ctx: Ctx, team_name: str, member: str) -> None:
    """Remove MEMBER from TEAM and rotate the team key in the same step."""
    rotated = with_session(ctx, lambda s: admin.remove_from_team(s, team_name, member))
    emit_one(ctx, {"team": team_name, "member": member, "rotated": rotated},
             lambda: out.print(f"removed {escape(member)} from {escape(team_name)}; "
                               + ("key rotated" if rotated else "new content waits until a key holder rotates")))


@team.command("role")
@click.argument("team_name", metavar="TEAM")
@click.argument("member")
@click.argument("role", type=click.Choice(TEAM_ROLES))
@click.option("--until", default=None, help="role ends on this date (YYYY-MM-DD)")
@json_flag
@click.pass_obj
def team_role(ctx: Ctx, team_name: str, member: str, role: str, until: str | None) -> None:
    """Change MEMBER's role (and expiry) in TEAM."""
    with_session(ctx, lambda s: admin.set_team_role(s, team_name, member, role, parse_until(until)))
    emit_one(ctx, {"team": team_name, "member": member, "role": role, "until": until},
             lambda: out.print(f"{escape(member)} is now {role} in {escape(team_name)}"))


@team.command("rotate")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def team_rotate(ctx: Ctx, team_name: str) -> None:
    """Start a new key generation for TEAM now."""

    async def go(s: Client) -> tuple[int, bool]:
        team = (await s.chains.view()).team_by_name(team_name)
        rekeyed = await rotate(s, team)
        return (await s.chains.view()).team_by_name(team_name).generation, rekeyed

    gen, rekeyed = with_session(ctx, go)
    emit_one(ctx, {"team": team_name, "generation": gen, "rekeyed": rekeyed},
             lambda: out.print(f"{escape(team_name)}: key generation {gen}" + (
                 " (re-keyed: no member held the key; documents and threads from before are readable only to "
                 "those who held the old keys, and members waiting for a share get it from you)" if rekeyed else "")))


@team.command("review")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def team_review(ctx: Ctx, team_name: str) -> None:
    """Admins: confirm TEAM's member list as it stands (rule membership-review): a signed team.review link.

    Run it after checking the list `mvault team show TEAM` prints; the link carries the digest of that list."""

    async def go(s: Client) -> dict[str, Any]:
        team, confirmed = await records.review(s, team_name)
        view = await s.chains.view()
        return {"team": team.team_id, "name": team.name, "members": confirmed,
                "member_names": [view.name_of(m) for m in confirmed]}

    info = with_session(ctx, go)
    emit_one(ctx, info, lambda: out.print(f"reviewed {escape(info['name'])}: "
                                          f"{', '.join(map(escape, info['member_names']))}"))


@team.command("approve")
@click.argument("team_name", metavar="TEAM")
@click.argument("link")
@json_flag
@click.pass_obj
def team_approve(ctx: Ctx, team_name: str, link: str) -> None:
    """Approve a link of TEAM as the second person (rule two-person: admin grants and removals): a signed
    team.approve link. LINK is what the finding prints: the start of the link's hash or its team sequence number."""

    async def go(s: Client) -> dict[str, Any]:
        t, seq, h = await records.approve_team_link(s, team_name, link)
        return {"team": t.team_id, "name": t.name, "seq": seq, "approved": h.hex()}

    info = with_session(ctx, go)
    emit_one(ctx, info, lambda: out.print(f"approved link {info['approved'][:16]} (team seq {info['seq']}) "
                                          f"of {escape(info['name'])}"))


@click.command("leave")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def leave_cmd(ctx: Ctx, team_name: str) -> None:
    """Leave a team (its key is rotated by the next key holder's client)."""
    with_session(ctx, lambda s: admin.leave(s, team_name))
    emit_one(ctx, {"team": team_name, "left": True}, lambda: out.print(f"left {escape(team_name)}"))


COMMANDS: tuple[click.Command, ...] = (team, leave_cmd)
