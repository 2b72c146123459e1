"""``mvault join``, ``unlock``, ``lock``, ``whoami``, ``invite``: this member's identity and unlock session."""

from __future__ import annotations

from typing import Any

import click

from client import admin
from client.cli._common import Ctx, emit_one, json_flag, out, run, with_session
from client.client import Client, join
from client.home import SESSION_MINUTES, read_passphrase
from client.sanitize import escape
from vault.errors import VaultError


@click.command("join")
@click.argument("code")
@click.option("--name", required=True, help="your member name (letters, digits, - _ .)")
@click.option("--org-name", default="member-vault", help="organization name (founder only)")
@json_flag
@click.pass_obj
def join_cmd(ctx: Ctx, code: str, name: str, org_name: str) -> None:
    """Make keys (asks a passphrase) and join the organization with an invite CODE."""
    passphrase = read_passphrase(confirm=True)
    cfg = run(join(ctx.home, code, name, passphrase, org_name, ctx.clock))
    emit_one(ctx, {"member": cfg.member_id, "device": cfg.device_id, "name": cfg.name, "server": cfg.url},
             lambda: out.print(f"joined as {escape(cfg.name)} ({cfg.member_id}); keys are in {ctx.home.path}"))


@click.command()
@click.option("--minutes", default=SESSION_MINUTES, show_default=True, type=click.IntRange(1, 60))
@click.option("--for", "duration", metavar="DURATION", help="instead of --minutes: e.g. 90s, 10m, 1h (at most 1h)")
@json_flag
@click.pass_obj
def unlock(ctx: Ctx, minutes: int, duration: str | None) -> None:
    """Unlock for a few minutes: an agent holds the key in memory; prints `export MVAULT_SESSION=...`
    for your shell (not key material: useless once the agent is gone). Always asks the passphrase."""
    seconds = _duration(duration) if duration is not None else minutes * 60
    ctx.home.require()
    ctx.home.unlock(agent_ok=False)
    token, expires = ctx.home.start_session(seconds)
    emit_one(ctx, {"session": token, "expires": expires}, lambda: click.echo(f"export MVAULT_SESSION={token}"))


def _duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    number, unit = (t[:-1], t[-1]) if t[-1:] in units else (t, "m")
    if not number.isdigit() or not 0 < int(number) * units[unit] <= 3600:
        raise VaultError(f"--for {text!r}: give a duration from 1s to 1h, e.g. 90s, 10m, 1h")
    return int(number) * units[unit]


@click.command()
@json_flag
@click.pass_obj
def lock(ctx: Ctx) -> None:
    """End the unlock session now: the agent forgets the key and exits."""
    ended = ctx.home.end_session()
    emit_one(ctx, {"locked": True, "ended_session": ended}, lambda: out.print("locked"))


@click.command()
@json_flag
@click.pass_obj
def whoami(ctx: Ctx) -> None:
    """Who you are, on which server, with which roles."""

    async def go(s: Client) -> dict[str, Any]:
        view = await s.chains.view()
        om = view.org.members[s.session.me]
        return {"name": s.session.cfg.name, "member": s.session.me, "device": s.session.device.device_id,
                "server": s.session.cfg.url,
                "org_root": s.session.cfg.org_root, "roles": sorted(om.roles), "status": om.status,
                "teams": sorted(t.name for t in view.teams.values() if s.session.me in t.members)}

    info = with_session(ctx, go)
    emit_one(ctx, info, lambda: out.print(
        f"{escape(info['name'])} ({info['member']}) on {escape(info['server'])}\n"
        f"roles: {escape(', '.join(info['roles']))} ({escape(info['status'])}); "
        f"teams: {escape(', '.join(info['teams'])) or '-'}"))


@click.command()
@click.option("--role", type=click.Choice(["member", "compa"]), default="member", show_default=True)
@click.option("--note", default="", help="a note for the record (e.g. bootcamp)")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 30), help="validity")
@json_flag
@click.pass_obj
def invite(ctx: Ctx, role: str, note: str, days: int) -> None:
    """Print a one-time invite code for a new member."""
    code = with_session(ctx, lambda s: admin.invite(s, role, note, days))
    emit_one(ctx, {"invite": code}, lambda: click.echo(code))


COMMANDS: tuple[click.Command, ...] = (join_cmd, unlock, lock, whoami, invite)
