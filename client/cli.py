"""``mvault``: the member's command line.

Every failure prints one line (``error: ...``) to stderr and exits non-zero; ``--json``
prints machine-readable output; ``MVAULT_HOME`` and ``MVAULT_PASSPHRASE_FILE`` make it
scriptable, and ``mvault unlock`` starts a short unlock session (like ``bw unlock``).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.markup import escape as escape_markup
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from client import admin
from client.api import Api
from client.client import BatchFailed, DocVersion, Session, check_unique_names, join, now
from client.home import SESSION_MINUTES, Home, default_home, read_passphrase
from client.sanitize import escape, one_line
from client.terminal import err, out
from security.policy import TEAM_KINDS, TEAM_ROLES
from vault.errors import VaultError

T = TypeVar("T")
PROGRESS_MIN = 4 * 1024 * 1024
# Names and texts shown come from other members and the server: each field passes ``escape``
# (client/sanitize.py), and ``out``/``err`` escape any control character left (client/terminal.py).


class Ctx:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.home = Home(default_home())


def _run(coro: Awaitable[T]) -> T:
    import uvloop

    async def wrap() -> T:
        return await coro

    return uvloop.run(wrap())


def with_session(ctx: Ctx, fn: Callable[[Session], Awaitable[T]], maintain: bool = True) -> T:
    """Unlock, log in, verify, do pending key work (rotations, shares), then run ``fn``."""
    cfg = ctx.home.config()
    secrets = ctx.home.unlock()
    notes: list[str] = []

    async def go() -> T:
        async with Api(cfg.url, bytes.fromhex(cfg.cert_fp)) as api:
            session = await Session.open(ctx.home, secrets, api)
            try:
                if maintain:
                    notes.extend(await session.maintain())
                return await fn(session)
            finally:
                notes.extend(f"warning: {w}" for w in session.warnings)

    try:
        return _run(go())
    finally:
        for note in notes:
            err.print_line(note)


def emit(ctx: Ctx, value: Any, human: Callable[[], None]) -> None:
    if ctx.as_json:
        click.echo(json.dumps(value, sort_keys=True, ensure_ascii=True))  # control characters stay escaped
    else:
        human()


@contextmanager
def progress_bar(ctx: Ctx, total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    if total < PROGRESS_MIN or ctx.as_json or not sys.stderr.isatty():
        yield None
        return
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(escape_markup(escape(label)), total=total)
        yield lambda n: bar.advance(task, n)


def json_flag(f: Callable[..., Any]) -> Callable[..., Any]:
    def set_json(c: click.Context, _p: click.Parameter, value: bool) -> None:
        if value:
            c.ensure_object(Ctx)
            c.find_object(Ctx).as_json = True  # type: ignore[union-attr]

    return click.option("--json", "as_json_local", is_flag=True, expose_value=False, callback=set_json,
                        is_eager=True, help="machine-readable output")(f)


def _when(ts: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return f"@{ts}"


def _until(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter("use a date like 2027-06-30") from e
    return int(datetime.datetime.combine(day, datetime.time(23, 59, 59), datetime.UTC).timestamp())


@click.group()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def cli(c: click.Context, as_json: bool) -> None:
    """Member Vault: end-to-end encrypted team documents."""
    c.obj = Ctx(as_json)


@cli.command("join")
@click.argument("code")
@click.option("--name", required=True, help="your member name (letters, digits, - _ .)")
@click.option("--org-name", default="member-vault", help="organization name (founder only)")
@json_flag
@click.pass_obj
def join_cmd(ctx: Ctx, code: str, name: str, org_name: str) -> None:
    """Make keys (asks a passphrase) and join the organization with an invite CODE."""
    passphrase = read_passphrase(confirm=True)
    cfg = _run(join(ctx.home, code, name, passphrase, org_name))
    emit(ctx, {"member": cfg.member_id, "device": cfg.device_id, "name": cfg.name, "server": cfg.url},
         lambda: out.print(f"joined as {escape(cfg.name)} ({cfg.member_id}); keys are in {ctx.home.path}"))


@cli.command()
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
    emit(ctx, {"session": token, "expires": expires}, lambda: click.echo(f"export MVAULT_SESSION={token}"))


def _duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    number, unit = (t[:-1], t[-1]) if t[-1:] in units else (t, "m")
    if not number.isdigit() or not 0 < int(number) * units[unit] <= 3600:
        raise VaultError(f"--for {text!r}: give a duration from 1s to 1h, e.g. 90s, 10m, 1h")
    return int(number) * units[unit]


@cli.command()
@json_flag
@click.pass_obj
def lock(ctx: Ctx) -> None:
    """End the unlock session now: the agent forgets the key and exits."""
    ended = ctx.home.end_session()
    emit(ctx, {"locked": True, "ended_session": ended}, lambda: out.print("locked"))


@cli.command()
@json_flag
@click.pass_obj
def whoami(ctx: Ctx) -> None:
    """Who you are, on which server, with which roles."""

    async def go(s: Session) -> dict[str, Any]:
        view = await s.view()
        om = view.org.members[s.me]
        return {"name": s.cfg.name, "member": s.me, "device": s.device.device_id, "server": s.cfg.url,
                "org_root": s.cfg.org_root, "roles": sorted(om.roles), "status": om.status,
                "teams": sorted(t.name for t in view.teams.values() if s.me in t.members)}

    info = with_session(ctx, go)
    emit(ctx, info, lambda: out.print(
        f"{escape(info['name'])} ({info['member']}) on {escape(info['server'])}\n"
        f"roles: {escape(', '.join(info['roles']))} ({escape(info['status'])}); "
        f"teams: {escape(', '.join(info['teams'])) or '-'}"))


@cli.command()
@click.option("--role", type=click.Choice(["member", "compa"]), default="member", show_default=True)
@click.option("--note", default="", help="a note for the record (e.g. bootcamp)")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 30), help="validity")
@json_flag
@click.pass_obj
def invite(ctx: Ctx, role: str, note: str, days: int) -> None:
    """Print a one-time invite code for a new member."""
    code = with_session(ctx, lambda s: s.invite(role, note, days))
    emit(ctx, {"invite": code}, lambda: click.echo(code))


@cli.group()
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
    t = with_session(ctx, lambda s: s.create_team(name, kind, not no_history))
    emit(ctx, {"team": t.team_id, "name": t.name, "kind": t.kind, "generation": t.generation},
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
    boxed = with_session(ctx, lambda s: s.add_member(team_name, member, role, _until(until)))
    emit(ctx, {"team": team_name, "member": member, "role": role, "until": until, "key_shared": boxed},
         lambda: out.print(f"added {escape(member)} to {escape(team_name)} as {role}"
                           + ("" if boxed else "; they get the key when a key holder's client next runs")))


@team.command("ls")
@json_flag
@click.pass_obj
def team_ls(ctx: Ctx) -> None:
    """Teams you can see."""

    async def go(s: Session) -> list[dict[str, Any]]:
        view = await s.view()
        return [{"team": t.team_id, "name": t.name, "kind": t.kind, "members": len(t.members),
                 "generation": t.generation, "role": t.role_of(s.me, now())}
                for t in sorted(view.teams.values(), key=lambda t: t.name)]

    rows = with_session(ctx, go)

    def human() -> None:
        table = Table("team", "kind", "members", "key gen", "your role")
        for r in rows:
            table.add_row(escape(r["name"]), escape(r["kind"]), str(r["members"]), str(r["generation"]),
                          escape(r["role"] or "-"))
        out.print(table)

    emit(ctx, rows, human)


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
        table = Table("member", "role", "until", "key")
        for m in info["members"]:
            until = _when(m["until"]) if m["until"] else "-"
            table.add_row(escape(m["name"]), escape(m["role"] if m["active"] else f"{m['role']} (ended)"), until,
                          "yes" if m["has_key"] else "no")
        out.print(table)
        for g, who in info["rekeyed"].items():
            out.print_line(f"generation {g} was re-keyed by {who} (nothing from before it is readable with it)")
        for p in info["pending"]:
            out.print_line(f"pending: {p}")

    emit(ctx, info, human)


@team.command("remove")
@click.argument("team_name", metavar="TEAM")
@click.argument("member")
@json_flag
@click.pass_obj
def team_remove(ctx: Ctx, team_name: str, member: str) -> None:
    """Remove MEMBER from TEAM and rotate the team key in the same step."""
    rotated = with_session(ctx, lambda s: admin.remove_from_team(s, team_name, member))
    emit(ctx, {"team": team_name, "member": member, "rotated": rotated},
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
    with_session(ctx, lambda s: admin.set_team_role(s, team_name, member, role, _until(until)))
    emit(ctx, {"team": team_name, "member": member, "role": role, "until": until},
         lambda: out.print(f"{escape(member)} is now {role} in {escape(team_name)}"))


@team.command("rotate")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def team_rotate(ctx: Ctx, team_name: str) -> None:
    """Start a new key generation for TEAM now."""

    async def go(s: Session) -> tuple[int, bool]:
        team = (await s.view()).team_by_name(team_name)
        rekeyed = await s.rotate(team)
        return (await s.view()).team_by_name(team_name).generation, rekeyed

    gen, rekeyed = with_session(ctx, go)
    emit(ctx, {"team": team_name, "generation": gen, "rekeyed": rekeyed},
         lambda: out.print(f"{escape(team_name)}: key generation {gen}" + (
             " (re-keyed: no member held the key; documents and threads from before are readable only to "
             "those who held the old keys, and members waiting for a share get it from you)" if rekeyed else "")))


@cli.command("leave")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def leave_cmd(ctx: Ctx, team_name: str) -> None:
    """Leave a team (its key is rotated by the next key holder's client)."""
    with_session(ctx, lambda s: admin.leave(s, team_name))
    emit(ctx, {"team": team_name, "left": True}, lambda: out.print(f"left {escape(team_name)}"))


@cli.command()
@click.argument("member")
@json_flag
@click.pass_obj
def admit(ctx: Ctx, member: str) -> None:
    """Admit a pending member (NCC; after the bootcamp)."""
    m = with_session(ctx, lambda s: admin.admit(s, member))
    emit(ctx, {"member": m.member_id, "name": m.name, "status": "admitted"},
         lambda: out.print(f"admitted {escape(m.name)}"))


@cli.group()
def role() -> None:
    """Grant or revoke organization roles (NCC only)."""


def _role_cmd(grant: bool) -> Callable[..., None]:
    @click.argument("member")
    @click.argument("role_name", metavar="ROLE", type=click.Choice(["ncc", "staff", "security", "compa"]))
    @json_flag
    @click.pass_obj
    def cmd(ctx: Ctx, member: str, role_name: str, **kw: Any) -> None:
        until = _until(kw.get("until"))
        m, done = with_session(ctx, lambda s: admin.set_org_role(s, member, role_name, grant, until))
        verb = "granted" if grant else "revoked"
        again = f"mvault role {'grant' if grant else 'revoke'} {m.name} {role_name}" + (
            f" --until {kw['until']}" if kw.get("until") else "")
        emit(ctx, {"member": m.member_id, "name": m.name, "role": role_name, verb: done, "proposed": not done,
                   "until": kw.get("until")},
             lambda: out.print(f"{verb} {role_name} {'to' if grant else 'from'} {escape(m.name)}" if done else
                               f"proposed: another NCC member (not {escape(m.name)}) puts it in force with "
                               f"`{escape(again)}`"))

    return cmd


role.command("grant", help="Grant ROLE to MEMBER.")(
    click.option("--until", default=None, help="role ends on this date (YYYY-MM-DD)")(_role_cmd(True)))
role.command("revoke", help="Revoke ROLE from MEMBER.")(_role_cmd(False))


@cli.command("members")
@json_flag
@click.pass_obj
def members_cmd(ctx: Ctx) -> None:
    """The organization: roles, devices, verified or not."""
    rows = with_session(ctx, admin.members)

    def human() -> None:
        table = Table("name", "roles", "status", "devices", "verified", "teams")
        for r in rows:
            table.add_row(escape(r["name"]), escape(", ".join(r["roles"])), escape(r["status"]), str(r["devices"]),
                          r["verified"], escape(", ".join(r["teams"])))
        out.print(table)

    emit(ctx, rows, human)


@cli.command()
@click.argument("member")
@click.option("--confirm", is_flag=True, help="mark verified after comparing the number in person")
@json_flag
@click.pass_obj
def verify(ctx: Ctx, member: str, confirm: bool) -> None:
    """Show the safety number you and MEMBER compare in person."""
    info = with_session(ctx, lambda s: admin.verify(s, member, confirm))
    emit(ctx, info, lambda: out.print(f"safety number with {escape(info['name'])}:\n  {info['safety_number']}\n"
                                      f"verified: {info['verified']}"))


@cli.group()
def device() -> None:
    """Your devices: add, link, list, revoke."""


@device.command("add")
@click.option("--name", default=None, help="name for the new device")
@click.option("--wait", default=600, show_default=True, type=click.IntRange(5, 3600), help="seconds to wait")
@json_flag
@click.pass_obj
def device_add(ctx: Ctx, name: str | None, wait: int) -> None:
    """Print a one-time code, then wait for `mvault device link CODE` on the new device."""

    def show(code: str) -> None:
        if ctx.as_json:
            click.echo(json.dumps({"code": code}))
        else:
            click.echo(f"on the new device run:\n  mvault device link {code}")
        sys.stdout.flush()

    added = with_session(ctx, lambda s: admin.device_add(s, name, show, wait))
    emit(ctx, {"device": added, "added": True}, lambda: out.print(f"added device {escape(added)}"))


@device.command("link")
@click.argument("code")
@click.option("--name", default=None, help="name for this device")
@click.option("--wait", default=600, show_default=True, type=click.IntRange(5, 3600), help="seconds to wait")
@json_flag
@click.pass_obj
def device_link(ctx: Ctx, code: str, name: str | None, wait: int) -> None:
    """On a new machine: join your member identity with the code from `device add`."""
    passphrase = read_passphrase(confirm=True)
    cfg = _run(admin.device_link(ctx.home, code, name, passphrase, wait))
    emit(ctx, {"member": cfg.member_id, "device": cfg.device_id, "name": cfg.name},
         lambda: out.print(f"this device now belongs to {escape(cfg.name)} ({cfg.member_id})"))


@device.command("ls")
@json_flag
@click.pass_obj
def device_ls(ctx: Ctx) -> None:
    """Your devices (and paper keys), active and revoked."""
    rows = with_session(ctx, admin.device_list)

    def human() -> None:
        table = Table("name", "kind", "added", "revoked", "")
        for r in rows:
            table.add_row(escape(r["name"]), escape(r["kind"]), _when(r["added"]),
                          _when(r["revoked"]) if r["revoked"] else "-", "this device" if r["this"] else "")
        out.print(table)

    emit(ctx, rows, human)


@device.command("revoke")
@click.argument("name")
@json_flag
@click.pass_obj
def device_revoke(ctx: Ctx, name: str) -> None:
    """Revoke a device: rolls your member key and rotates your teams' keys."""

    async def go(s: Session) -> tuple[int, list[str]]:
        gen = await admin.device_revoke(s, name)
        return gen, await s.maintain()

    gen, rotated = with_session(ctx, go)
    emit(ctx, {"device": name, "revoked": True, "puk_gen": gen, "rotated": rotated},
         lambda: out.print(f"revoked {escape(name)}; member key generation {gen}"
                           + "".join(f"\n{one_line(r)}" for r in rotated)))


@cli.command("recovery-key")
@click.option("--name", default=None, help="name for the paper key")
@json_flag
@click.pass_obj
def recovery_key(ctx: Ctx, name: str | None) -> None:
    """Make a paper key (an offline device): write it down, keep it safe."""
    code = with_session(ctx, lambda s: admin.recovery_key(s, name))
    emit(ctx, {"recovery_key": code}, lambda: out.print(
        f"recovery key (anyone holding it can act as you until you revoke it):\n  {code}"))


@cli.command()
@click.argument("code")
@click.option("--name", default=None, help="name for this device")
@json_flag
@click.pass_obj
def recover(ctx: Ctx, code: str, name: str | None) -> None:
    """On a fresh machine: restore access with a recovery key."""
    passphrase = read_passphrase(confirm=True)
    cfg = _run(admin.recover(ctx.home, code, passphrase, name))
    emit(ctx, {"member": cfg.member_id, "device": cfg.device_id, "name": cfg.name},
         lambda: out.print(f"restored {escape(cfg.name)} ({cfg.member_id}) on this machine"))


def _doc_json(d: DocVersion, s: Session | None = None, names: dict[str, str] | None = None) -> dict[str, Any]:
    c = d.record.core
    if d.opened is None:
        name, size = f"(no key for generation {c.gen})", None
    else:
        name, size = d.opened.name, d.opened.size
    return {"name": name, "size": size, "version": c.seq, "vid": d.vid, "author": c.author,
            "author_name": (names or {}).get(c.author, c.author[:8]), "time": c.time, "generation": c.gen}


@cli.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "as_name", default=None, help="document name (default: the file's name; one PATH only)")
@json_flag
@click.pass_obj
def put(ctx: Ctx, team_name: str, paths: tuple[Path, ...], as_name: str | None) -> None:
    """Encrypt and upload each PATH as a new document, or a new version of it.

    Many files go in one session, several uploads at a time; each is its own signed version.
    If some fail, the others are still stored and the command exits 1 naming the failed ones.
    """
    if as_name is not None and len(paths) > 1:
        raise click.UsageError("--as names one document: give exactly one PATH with it")
    items = [(path, as_name or path.name) for path in paths]
    check_unique_names([name for _, name in items])  # before unlocking and logging in
    sizes = {name: path.stat().st_size for path, name in items}
    total = sum(sizes.values())
    label = f"put {paths[0].name}" if len(paths) == 1 else f"put {len(paths)} files"
    failure: BatchFailed | None = None
    with progress_bar(ctx, total, label) as advance:
        async def go(s: Session) -> list[tuple[str, int, str]]:
            nonlocal failure
            try:
                return await s.put_many(team_name, items, advance)
            except BatchFailed as e:
                failure = e
                return e.stored
        stored = with_session(ctx, go)
    rows = [{"name": name, "version": seq, "vid": vid, "size": sizes[name]} for name, seq, vid in stored]

    def human() -> None:  # one write: rich renders line by line, ~0.3 ms a line for 1,000 files
        if stored:
            click.echo("\n".join(f"{escape(name)}: version {seq} stored ({escape(vid)})" for name, seq, vid in stored))

    emit(ctx, rows[0] if len(paths) == 1 and rows else rows, human)
    if failure is not None:
        raise failure


@cli.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--version", "version", type=click.IntRange(1), default=None)
@json_flag
@click.pass_obj
def get(ctx: Ctx, team_name: str, name: str, output: Path | None, version: int | None) -> None:
    """Download, verify and decrypt a document (written only if everything verifies)."""
    target = output or Path(os.path.basename(name))

    async def go(s: Session) -> DocVersion:
        return await s.get(team_name, name, target, version)

    d = with_session(ctx, go)
    emit(ctx, {**_doc_json(d), "output": str(target)},
         lambda: out.print(f"{escape(name)} version {d.record.core.seq} -> {escape(str(target))}"))


def _names(s: Session) -> Callable[[], Awaitable[dict[str, str]]]:
    async def go() -> dict[str, str]:
        view = await s.view()
        return {m: st.name for m, st in view.members.items()}

    return go


@cli.command("ls")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def ls_cmd(ctx: Ctx, team_name: str) -> None:
    """Documents of a team: names, sizes, versions, authors."""

    async def go(s: Session) -> list[dict[str, Any]]:
        docs = await s.ls(team_name)
        names = await _names(s)()
        return [_doc_json(d, s, names) for d in docs]

    rows = with_session(ctx, go)

    def human() -> None:
        table = Table("name", "size", "version", "author", "time")
        for r in rows:
            size = "-" if r["size"] is None else str(r["size"])
            table.add_row(escape(r["name"]), size, str(r["version"]), escape(r["author_name"]), _when(r["time"]))
        out.print(table)

    emit(ctx, rows, human)


@cli.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@json_flag
@click.pass_obj
def history(ctx: Ctx, team_name: str, name: str) -> None:
    """Every version of a document."""

    async def go(s: Session) -> list[dict[str, Any]]:
        docs = await s.history(team_name, name)
        names = await _names(s)()
        return [_doc_json(d, s, names) for d in docs]

    rows = with_session(ctx, go)

    def human() -> None:
        table = Table("version", "size", "author", "time", "id")
        for r in rows:
            table.add_row(str(r["version"]), str(r["size"]), escape(r["author_name"]), _when(r["time"]),
                          escape(r["vid"]))
        out.print(table)

    emit(ctx, rows, human)


def _register_audit() -> None:
    from client.audit_cli import register  # noqa: PLC0415 (audit_cli imports this module)
    from client.thread_cli import register as register_threads  # noqa: PLC0415 (the same)

    register(cli)
    register_threads(cli)


_register_audit()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except VaultError as e:
        err.print_line(f"error: {e.message}")
        sys.exit(1)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as e:
        err.print_line(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
        sys.exit(1)
    except Exception as e:  # never a traceback for people; MVAULT_DEBUG=1 shows it
        if os.environ.get("MVAULT_DEBUG"):
            raise
        err.print_line(f"internal error: {type(e).__name__}: {e}")
        sys.exit(70)


if __name__ == "__main__":
    main()
