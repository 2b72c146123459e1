"""``mvault join``, ``unlock``, ``lock``, ``whoami``, ``status``, ``invite`` (``ls``, ``revoke``),
``passphrase change``: this member's identity, passphrase, unlock session and invites."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from client import admin, status
from client.cli._common import (
    Column,
    Ctx,
    Escaped,
    Time,
    emit_one,
    emit_rows,
    json_flag,
    out,
    parse_until,
    run,
    when,
    with_session,
)
from client.client import Client, join
from client.home import SESSION_MINUTES
from client.passphrase import ask_new, new_from_file
from client.sanitize import escape
from vault.errors import VaultError


@click.command("join")
@click.argument("code")
@click.option("--name", required=True, help="your member name (letters, digits, - _ .)")
@click.option("--org-name", default="member-vault", help="organization name (founder only)")
@click.option("--until", default=None, help="founder only: your NCC term ends on this date (YYYY-MM-DD; "
              "default: one year from founding)")
@json_flag
@click.pass_obj
def join_cmd(ctx: Ctx, code: str, name: str, org_name: str, until: str | None) -> None:
    """Make keys (asks a passphrase) and join the organization with an invite CODE."""
    ncc_until = parse_until(until)
    passphrase = ctx.home.passphrases.new([name, org_name])
    cfg = run(join(ctx.home, code, name, passphrase, org_name, ctx.clock, ncc_until))
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


_INVITE_OPTIONS = ("role", "note", "days")


@click.group(invoke_without_command=True, subcommand_metavar="[ls | revoke ID]")
@click.option("--role", type=click.Choice(["member", "compa"]), default="member", show_default=True)
@click.option("--note", default="", help="a note for the record (e.g. bootcamp)")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 30), help="validity")
@json_flag
@click.pass_context
def invite(c: click.Context, role: str, note: str, days: int) -> None:
    """Print a one-time invite code for a new member; `invite ls` lists open invites, `invite revoke ID`
    withdraws one."""
    if c.invoked_subcommand is not None:
        given = [f"--{p}" for p in _INVITE_OPTIONS if c.get_parameter_source(p) != ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for creating an invite: "
                                   f"not with `{c.invoked_subcommand}`")
        return
    ctx: Ctx = c.obj
    code = with_session(ctx, lambda s: admin.invite(s, role, note, days))
    emit_one(ctx, {"invite": code}, lambda: click.echo(code))


@invite.command("ls")
@click.option("--all", "every", is_flag=True, help="also used, expired and revoked invites")
@json_flag
@click.pass_obj
def invite_ls(ctx: Ctx, every: bool) -> None:
    """The organization's open invites (from its chain): id, created, by whom, role, note, expiry."""
    rows = with_session(ctx, lambda s: admin.invites(s, every))
    if not rows and not ctx.as_json and out.is_terminal:
        out.print("no open invites" + ("" if every else " (--all shows used, expired and revoked ones)"))
        return
    emit_rows(ctx, rows, INVITE_COLUMNS)


def _invite_state(r: dict[str, Any]) -> Escaped:
    if r["state"] == "used":
        return Escaped(f"used by {escape(r['used_by_name'])}")
    if r["state"] == "revoked":
        return Escaped(f"revoked by {escape(r['revoked_by_name'])}")
    return Escaped(escape(r["state"]))


INVITE_COLUMNS = (Column("id", lambda r: r["id"]), Column("seq", lambda r: r["seq"]),
                  Column("created", lambda r: Time(r["created"])), Column("by", lambda r: r["by_name"]),
                  Column("role", lambda r: r["role"]), Column("note", lambda r: r["note"]),
                  Column("expires", lambda r: Time(r["expires"])), Column("state", _invite_state))


@invite.command("revoke")
@click.argument("invite_id", metavar="ID")
@json_flag
@click.pass_obj
def invite_revoke(ctx: Ctx, invite_id: str) -> None:
    """Withdraw an open invite (ID or seq as `invite ls` prints it): joining with its code is refused."""
    r = with_session(ctx, lambda s: admin.revoke_invite(s, invite_id))
    emit_one(ctx, r, lambda: out.print(f"revoked invite {r['id']} ({r['role']}, by {escape(r['by_name'])}"
                                       + (f", {escape(r['note'])}" if r["note"] else "") + ")"))


@click.command("status")
@click.option("--unlock", "ask", is_flag=True, help="ask the passphrase if no unlock session or file opens the keys")
@click.option("--offline", is_flag=True, help="do not contact the server")
@json_flag
@click.pass_obj
def status_cmd(ctx: Ctx, ask: bool, offline: bool) -> None:
    """Server, unlock session, who you are, pinned checkpoint, pending work, warnings. Changes nothing and never
    asks the passphrase unless --unlock; exits 0 whenever the status could be determined."""
    st = run(status.gather(ctx.home, ctx.clock, unlock=ask, offline=offline))
    emit_one(ctx, st.to_value(), lambda: _print_status(st))


def _print_status(st: status.Status) -> None:
    sess = st.session
    how = {"agent": "unlocked (unlock agent)", "passphrase file": "unlocked (MVAULT_PASSPHRASE_FILE)",
           "passphrase command": "unlocked (passphrase command)",
           "passphrase": "unlocked (passphrase)", "locked": "locked"}[sess["state"]]
    if sess["agent"]:
        how += f"; an unlock agent runs ({sess['seconds_left']} s left)"
    lines = [f"home:       {escape(st.home)}", f"session:    {how}"]
    srv = st.server
    if srv["url"] is not None:
        reach = {True: f"answers (version {escape(srv['version'] or '?')}); certificate {srv['certificate']}",
                 False: "does not answer", None: "not contacted"}[srv["reachable"]]
        lines.append(f"server:     {escape(srv['url'])}: {reach}")
    if st.member is not None:
        who = escape(st.member["name"])
        if "roles" in st.member:
            who += f" ({escape(', '.join(st.member['roles']))}; {escape(st.member['status'])})"
        named = st.device is not None and st.device["name"] is not None
        device = escape(st.device["name"]) if st.device and named else "this device (its name is not known offline)"
        lines.append(f"member:     {who} on {device}")
    if st.checkpoint is not None:
        lines.append(f"checkpoint: audit log of {st.checkpoint['size']} events, {when(st.checkpoint['time'])}")
    if srv["reachable"]:
        lines.append("pending:    " + ("nothing" if not st.pending else ""))
        lines += [f"  - {escape(p['team']) + ': ' if 'team' in p else ''}{escape(p['detail'])}" for p in st.pending]
    lines += [f"warning:    {escape(w)}" for w in st.warnings]
    out.print("\n".join(lines))


@click.group()
def passphrase() -> None:
    """Your keystore's passphrase."""


@passphrase.command("change")
@click.option("--new-passphrase-file", metavar="PATH", default=None,
              help="read the new passphrase from PATH (first line) instead of asking it twice")
@json_flag
@click.pass_obj
def passphrase_change(ctx: Ctx, new_passphrase_file: str | None) -> None:
    """Change the passphrase: asks the current one (or takes it from MVAULT_PASSPHRASE_FILE or a passphrase
    command; never from an unlock session), then the new one twice. Ends the unlock session."""
    ctx.home.require()
    current = ctx.home.passphrases.current("current passphrase")
    ctx.home.unlock(agent_ok=False, passphrase=current)  # a wrong current passphrase stops here, before the new one
    context = [ctx.home.config().name]
    new = new_from_file(new_passphrase_file, context) if new_passphrase_file else ask_new(context)
    if new == current:
        raise VaultError("the new passphrase is the current one; nothing changed")
    ctx.home.change_passphrase(new)
    emit_one(ctx, {"changed": True, "ended_session": True},
         lambda: out.print("passphrase changed; copies of the old keystore.bin (backups) still open with the old one"))


COMMANDS: tuple[click.Command, ...] = (join_cmd, unlock, lock, whoami, invite, status_cmd, passphrase)
