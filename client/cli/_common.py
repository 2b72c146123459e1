"""What every ``mvault`` command group shares: the context object, running a command in a
verified session, output (``--json`` or text for people), progress bars, dates.

Output has one API, so that every command pipes the same way (as ``gh`` does):

* ``emit_rows(ctx, rows, columns)`` for a listing: a table on a terminal; in a pipe or a file
  one line per row, fields separated by tabs, no header, nothing wrapped or cut, times in
  ISO 8601 (UTC); under ``--json`` the list ``rows`` itself (a list even for one row or none).
* ``emit_one(ctx, value, text)`` for one result: ``text`` (a string, or a function that prints)
  for people, the object ``value`` under ``--json``.

Names and texts shown come from other members and the server: each field passes ``escape``
(client/sanitize.py): in a table cell and a tab-separated field alike (which escapes a tab, a
newline and the backslash, so a field never splits a row), and ``out``/``err`` escape any
control character left (client/terminal.py).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from client import (
    closed,
    coalitionrekey,
    expulsions,
    guestacts,
    guestspace,
    maintenance,
    moves,
    restore,
    spacemoves,
)
from client.api import Api
from client.client import Client
from client.clock import Clock
from client.home import Home, Secrets, default_home
from client.names import Names
from client.sanitize import escape
from client.terminal import err, out
from client.view import View
from vault.errors import AuthError, OrgClosed, RollbackDetected, ServerBehind, VaultError

__all__ = ["Column", "Ctx", "Escaped", "Time", "emit", "emit_one", "emit_rows", "err", "json_flag", "out",
           "parse_until", "print_rows", "progress_bar", "record_guest_act", "run", "when", "with_session"]

T = TypeVar("T")
#: the commands ``mvault --space NAME`` runs as a guest of a coalition space (the others are the organization's)
GUEST_COMMANDS = frozenset({"ls", "put", "get", "history", "rm", "mv", "restore", "sync", "thread"})
PROGRESS_MIN = 4 * 1024 * 1024


class Ctx:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.home = Home(default_home())
        self.clock = Clock.from_environment()  # the one clock of this command
        self.space: str | None = None  # `mvault --space NAME`: a coalition space joined as a guest
        self.guest: tuple[Secrets, Client] | None = None  # while a guest's command runs: its secrets and session

    async def record_space_acts(self, acts: list[tuple[str, int]]) -> None:
        """A long or many-document command's acts in a coalition space (a sync pass, a followed thread), recorded
        in the guest's own organization's audit log as a batch (client/guestacts.py); nothing for a member."""
        if self.guest is not None and self.guest[1].chains.cached is not None:
            await record_guest_acts(self, self.guest[0], self.guest[1].chains.cached, acts)


def run(coro: Awaitable[T]) -> T:
    import uvloop

    async def wrap() -> T:
        return await coro

    return uvloop.run(wrap())


async def stale_keys_after(c: Client, seen: View | None = None) -> list[str]:
    """The stale coalition keys' rekey after a command that succeeded (``coalitionrekey.when_stale``; ``seen``: the
    view this command verified before it ran, decided on when the command's own link left no current one): its failure
    never fails the command. A command that ended the session (``org close --run``, the member's own removal) leaves
    nothing to rekey from here: silent; anything else is a warning."""
    try:
        return await coalitionrekey.when_stale(c, c.chains.cached or seen)
    except AuthError:
        return []
    except VaultError as e:
        c.session.warnings.append(f"coalition keys not checked for staleness: {e}")
        return []


def with_session(ctx: Ctx, fn: Callable[[Client], Awaitable[T]], maintain: bool = True,
                 check_log: bool = True) -> T:
    """Unlock, log in, verify, do pending key work (rotations, shares), then run ``fn``.

    ``check_log=False`` (``mvault restored``, which looks at what failed): log in only, without the audit log
    check every other command starts with, and without the key work. Otherwise a command stopped by a rollback
    (``RollbackDetected``: chains or documents older than this device saw, while the log is not) is judged as a
    restore (client/restore.py ``follow``): it stops explaining, or follows the Security Team's acceptance and
    the command runs once more from the lowered pins."""
    if ctx.space is not None:
        return _as_guest(ctx, ctx.space, fn)
    cfg = ctx.home.config()
    secrets = ctx.home.unlock()
    notes: list[str] = []

    async def command(c: Client) -> T:
        try:
            if maintain and check_log:
                notes.extend(await maintenance.maintain(c))
                notes.extend(await moved_note(c))
            seen = c.chains.cached  # verified by this command (``maintain``): the hook's decision without a request
            result = await fn(c)
            if maintain and check_log:  # after the command (which may rekey itself: role revoke, coalition rekey)
                notes.extend(await stale_keys_after(c, seen))
            return result
        except VaultError as e:  # an error that names a member or team by id names them by name
            if c.chains.cached is not None:
                Names(c.chains.cached).error(e)
            raise
        finally:
            if c.session.warnings:  # names only when there is something to name (not every command)
                named = Names(c.chains.cached).text if c.chains.cached is not None else str
                notes.extend(f"warning: {named(w)}" for w in c.session.warnings)
                c.session.warnings.clear()

    async def go() -> T:
        async with Api(cfg.url, cfg.pin) as api:
            try:
                return await in_session(api)
            except OrgClosed:  # the server's word only: client/closed.py verifies it before it wipes anything
                wiped = await closed.follow(ctx.home, cfg, api, ctx.clock)
                raise OrgClosed(closed.report(wiped)) from None

    async def in_session(api: Api) -> T:
        if not check_log:
            c = Client(ctx.home, secrets, api, ctx.clock)
            await c.session.login()
            return await command(c)
        c = await Client.open(ctx.home, secrets, api, ctx.clock)
        try:
            return await command(c)
        except RollbackDetected as e:
            try:
                await restore.follow(c.session, c.chains, e)  # stops explaining, or follows an acceptance
            except ServerBehind as stop:  # explained, with the error code scripts know for this stop
                raise RollbackDetected(stop.reason) from stop
            if c.session.warnings:
                notes.extend(f"warning: {w}" for w in c.session.warnings)
        return await command(await Client.open(ctx.home, secrets, api, ctx.clock))

    try:
        return run(go())
    finally:
        for note in notes:
            err.print_line(note)


def _as_guest(ctx: Ctx, space: str, fn: Callable[[Client], Awaitable[T]]) -> T:
    """A command in a coalition space of another organization, as its guest (client/guestspace.py): no key work,
    audit log or closing of the host's is followed (none of it is this member's organization's); the host's server
    move is, as the space's chain states it (``coalition.server``, client/spacemoves.py)."""
    words = click.get_current_context().command_path.split()[1:]
    command = words[:1]
    if command and command[0] not in GUEST_COMMANDS:
        raise VaultError(f"`mvault --space` runs {', '.join(sorted(GUEST_COMMANDS))} in a coalition space you are a "
                         f"guest of; `{command[0]}` is for your own organization (run it without --space)")
    home = guestspace.space_home(ctx.home, space)
    cfg, secrets = home.config(), home.unlock()
    before = guestacts.act_before(words, click.get_current_context().params)

    async def go() -> T:
        async with Api(cfg.url, cfg.pin) as api:
            c = await guestspace.GuestClient.open(home, secrets, api, ctx.clock)
            ctx.guest = (secrets, c)
            if before is not None:  # recorded first (else refused): a reader stopped any way leaves its record
                await guestacts.record(ctx.home, secrets, ctx.clock, await c.chains.view(), [(before, 1)])
            try:
                for line in await expulsions.carry(ctx.home, secrets, ctx.clock, c):  # our own organization's removals
                    err.print_line(line)
                space_now = next(iter((await c.chains.view()).teams.values()))
                moved = spacemoves.follow(home, space_now, c.session.warnings)  # the host's move, as the space says
                if moved is not None:
                    err.print_line(escape(moved))
                result = await fn(c)
            finally:
                for w in c.session.warnings:
                    err.print_line(f"warning: {w}")
        done = None if before is not None else guestacts.act_of(words, result)
        if done is not None and c.chains.cached is not None:
            await record_guest_act(ctx, secrets, c.chains.cached, *done)
        return result

    return run(go())


async def record_guest_act(ctx: Ctx, secrets: Secrets, guest: View, act: str, count: int = 1) -> None:
    """Record a guest's act in a coalition space in its own organization's audit log (``record_guest_acts``)."""
    await record_guest_acts(ctx, secrets, guest, [(act, count)])


async def record_guest_acts(ctx: Ctx, secrets: Secrets, guest: View, acts: list[tuple[str, int]]) -> None:
    """Record a guest's acts (each ``(act, count)``) in a coalition space in its own organization's audit log
    (client/guestacts.py). Not sent: the command still prints what it did on the host's server, then fails with the
    reason (exit 1, or 3 for a security error of the own server), a warning line first naming the acts missing from
    the log."""
    if not acts:
        return
    try:
        await guestacts.record(ctx.home, secrets, ctx.clock, guest, acts)
    except VaultError as e:
        space, failure = escape(next(iter(guest.teams.values())).name), e
        done = ", ".join(f"{act} (x{count})" for act, count in acts)

        def unrecorded() -> None:
            err.print_line(f"warning: {done} in coalition space {space} was done on the host's server but "
                           "is NOT in your own organization's audit log; tell your Security Team")
            raise failure

        click.get_current_context().call_on_close(unrecorded)


async def moved_note(s: Client) -> list[str]:
    """Follow a server move the organization chain puts in force (client/moves.py): the line that says so; an NCC
    member's client first carries it into the coalition spaces whose guests lack it (client/spacemoves.py)."""
    try:
        carried = [escape(line) for line in (await spacemoves.carry(s))[0]]
    except VaultError as e:  # a convenience of this command, not its purpose: said, and the command goes on
        carried = [f"warning: the server move was not carried into the coalition spaces: {escape(str(e))}"]
    m = await moves.follow(s)
    if m is None:
        return carried
    view = await s.chains.view()
    return [*carried, f"the organization's server moved to {escape(m.url)} (pin {m.pin}), announced by "
            f"{escape(view.name_of(m.signer))} on {when(m.time)}: this device uses it from your next command"]


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, sort_keys=True, ensure_ascii=True))  # control characters stay escaped


def emit_one(ctx: Ctx, value: Any, text: str | Callable[[], None]) -> None:
    """One result: ``value`` under ``--json``; otherwise ``text`` (its fields already escaped), or what the
    function ``text`` prints."""
    if ctx.as_json:
        print_json(value)
    elif isinstance(text, str):
        out.print(text)
    else:
        text()


def emit(ctx: Ctx, value: Any, human: Callable[[], None]) -> None:
    """The older name of ``emit_one``; a command that can return several items uses ``emit_rows``."""
    emit_one(ctx, value, human)


@dataclass(frozen=True)
class Time:
    """A cell holding a unix time: ``when`` on a terminal, ISO 8601 (UTC) in a pipe."""

    ts: int


class Escaped(str):
    """A cell's text that already passed ``escape`` (with our words around the fields): shown as it is."""


Cell = str | int | Time | None


@dataclass(frozen=True)
class Column:
    """A listing's column: its header on a terminal, and its cell for each row (a JSON row dict); ``piped``
    when a pipe gets more than a terminal (whole ids where a table shows their start). String cells are
    escaped here; ``None`` shows as ``-`` on a terminal and as an empty field in a pipe."""

    header: str
    cell: Callable[[dict[str, Any]], Cell]
    piped: Callable[[dict[str, Any]], Cell] | None = None


def _text(value: Cell, terminal: bool) -> str:
    if value is None:
        return "-" if terminal else ""
    if isinstance(value, Time):
        return when(value.ts) if terminal else iso_time(value.ts)
    if isinstance(value, Escaped):
        return value
    return escape(str(value))


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    """A table on a terminal; tab-separated lines, unwrapped and uncut, anywhere else."""
    if out.is_terminal:
        from rich.table import Table  # only for a terminal (a pipe gets tab-separated lines)

        table = Table(*(c.header for c in columns))
        for r in rows:
            table.add_row(*(_text(c.cell(r), True) for c in columns))
        out.print(table)
    elif rows:  # one write, not rich (no width, no wrapping): ~0.3 ms a line saved for long listings
        click.echo("\n".join("\t".join(_text((c.piped or c.cell)(r), False) for c in columns) for r in rows))


def emit_rows(ctx: Ctx, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    """A listing: the list ``rows`` under ``--json``, otherwise ``print_rows``."""
    if ctx.as_json:
        print_json(list(rows))
    else:
        print_rows(rows, columns)


@contextmanager
def progress_bar(ctx: Ctx, total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    if total < PROGRESS_MIN or ctx.as_json or not err.is_terminal:
        yield None
        return
    # Imported only when a bar is shown (~40 ms of a command's start otherwise).
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    # markup=False: the label is shown as written (escaped), and the console's markup is off anyway, so a
    # markup column would print its tags ("[progress.description]put ...").
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=err.console, transient=True) as bar:
        task = bar.add_task(escape(label), total=total)
        yield lambda n: bar.advance(task, n)


def json_flag(f: Callable[..., Any]) -> Callable[..., Any]:
    def set_json(c: click.Context, _p: click.Parameter, value: bool) -> None:
        if value:
            c.ensure_object(Ctx)
            c.find_object(Ctx).as_json = True  # type: ignore[union-attr]

    return click.option("--json", "as_json_local", is_flag=True, expose_value=False, callback=set_json,
                        is_eager=True, help="machine-readable output")(f)


def when(ts: int) -> str:
    """A time for people (local time), or ``@ts`` when it is out of range."""
    try:
        return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return f"@{ts}"


def iso_time(ts: int) -> str:
    """A time for scripts: ISO 8601 in UTC, or ``@ts`` when it is out of range."""
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return f"@{ts}"


def parse_until(value: str | None) -> int | None:
    """``--until YYYY-MM-DD``: the end of that day (UTC), or None."""
    if value is None:
        return None
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter("use a date like 2027-06-30") from e
    return int(datetime.datetime.combine(day, datetime.time(23, 59, 59), datetime.UTC).timestamp())
