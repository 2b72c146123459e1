"""What every ``mvault`` command group shares: the context object, running a command in a
verified session, output (``--json`` or text for people), progress bars, dates.

Names and texts shown come from other members and the server: each field passes ``escape``
(client/sanitize.py), and ``out``/``err`` escape any control character left (client/terminal.py).
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.markup import escape as escape_markup
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from client import maintenance
from client.api import Api
from client.client import Client
from client.clock import Clock
from client.home import Home, default_home
from client.names import Names
from client.sanitize import escape
from client.terminal import err, out
from vault.errors import VaultError

__all__ = ["Ctx", "emit", "err", "json_flag", "out", "parse_until", "progress_bar", "run", "when", "with_session"]

T = TypeVar("T")
PROGRESS_MIN = 4 * 1024 * 1024


class Ctx:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.home = Home(default_home())
        self.clock = Clock.from_environment()  # the one clock of this command


def run(coro: Awaitable[T]) -> T:
    import uvloop

    async def wrap() -> T:
        return await coro

    return uvloop.run(wrap())


def with_session(ctx: Ctx, fn: Callable[[Client], Awaitable[T]], maintain: bool = True) -> T:
    """Unlock, log in, verify, do pending key work (rotations, shares), then run ``fn``."""
    cfg = ctx.home.config()
    secrets = ctx.home.unlock()
    notes: list[str] = []

    async def go() -> T:
        async with Api(cfg.url, bytes.fromhex(cfg.cert_fp)) as api:
            session = await Client.open(ctx.home, secrets, api, ctx.clock)
            try:
                if maintain:
                    notes.extend(await maintenance.maintain(session))
                return await fn(session)
            except VaultError as e:  # an error that names a member or team by id names them by name
                view = session.chains.cached
                if view is not None:
                    Names(view).error(e)
                raise
            finally:
                view = session.chains.cached
                named = Names(view).text if view is not None else str
                notes.extend(f"warning: {named(w)}" for w in session.session.warnings)

    try:
        return run(go())
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


def when(ts: int) -> str:
    """A time for people (local time), or ``@ts`` when it is out of range."""
    try:
        return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
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
