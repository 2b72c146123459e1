"""``mvault sync TEAM DIR`` (one pass) and ``mvault sync status [DIR]``: a team's documents as a folder.

``mvault --space NAME sync DIR`` syncs a coalition space joined as a guest (client/guestspace.py) with the same
engine and every check of a member's sync, against the host's server; each pass's reads and writes are recorded as
two ``coalition.act`` records in the guest's own organization's audit log (client/guestacts.py ``sync_acts``)."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from client import expulsions, guestspace, maintenance, moves, spacemoves
from client.cli._common import Column, Ctx, Time, emit_rows, json_flag, print_json, progress_bar, when, with_session
from client.client import Client
from client.guestacts import sync_acts
from client.sanitize import escape
from client.sync.ask import REPORT_HEADERS, watch_socket
from client.sync.engine import Outcome, sync_pass
from client.sync.folders import SyncFolders
from client.sync.live import doc_notices
from client.sync.scan import scan
from client.sync.serve import Served
from client.sync.watch import RETRY_FIRST, RETRY_MAX, Hint, install_stop_signals, transient, watch
from client.terminal import err, out
from client.view import View
from vault.errors import Conflict

_ACTIONS = tuple(Column(header, cell) for header, cell in zip(REPORT_HEADERS, (
    lambda r: r["action"], lambda r: r["name"], lambda r: r["seq"], lambda r: r["detail"] or None), strict=True))
_FOLDERS = (Column("team", lambda r: f"{r['team_name']} (--space)" if r["space"] else r["team_name"]),
            Column("folder", lambda r: r["folder"]),
            Column("last sync", lambda r: Time(r["last_sync"]) if r["last_sync"] else None),
            Column("files", lambda r: r["files"]), Column("pending", lambda r: r["pending"]),
            Column("conflicts", lambda r: r["conflicts"]))


@click.command("sync")
@click.argument("args", metavar="TEAM DIR | status [DIR] | (with --space NAME) DIR", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="show what would change (conflicts included); change nothing")
@click.option("--confirm-deletes", is_flag=True,
              help="store local deletions even when the folder is gone or empty, or many files would be deleted")
@click.option("--hidden", is_flag=True, help="also sync hidden names (a part starting with '.')")
@click.option("--watch", "watching", is_flag=True,
              help="keep going: push local saves, pull others' versions live, until Ctrl-C or SIGTERM")
@click.option("--backstop", type=click.FloatRange(1.0, 86400.0), default=60.0, show_default=True,
              help="with --watch: a full pass at least this often (seconds)")
@json_flag
@click.pass_obj
def sync(ctx: Ctx, args: tuple[str, ...], dry_run: bool, confirm_deletes: bool, hidden: bool, watching: bool,
         backstop: float) -> None:
    """Keep folder DIR in step with team TEAM's documents: one pass that pulls, pushes and reports.

    Subfolders become names with /. A file is deleted here only when a member entitled to write signed
    its deletion, and only if you did not change it; a file you deleted is deleted in the team only if
    this folder had synced it. Both sides changed: the team's version goes under the name and yours is
    kept beside it as "NAME (conflict MEMBER DATE TIME).EXT", uploaded as its own document. A server
    leaving out or rolling back a document stops the pass (exit 3) before anything changes here.
    `mvault sync status [DIR]` lists synced folders: team, last sync, pending local changes, conflicts.
    `mvault --space NAME sync DIR`: coalition space NAME joined as a guest (its passes recorded in your own
    organization's audit log).
    Exit 0 in step, 1 with conflicts, refusals or changes not pushed, 3 for a server caught lying.
    """
    if args and args[0] == "status":
        if dry_run or confirm_deletes or hidden or watching:
            raise click.UsageError("sync status takes no --dry-run, --confirm-deletes, --hidden or --watch")
        if len(args) > 2:
            raise click.UsageError("sync status takes at most one DIR")
        _status(ctx, Path(args[1]) if len(args) == 2 else None)
        return
    if ctx.space is not None and len(args) == 1:  # the space is the team
        args = (ctx.space, *args)
    if len(args) != 2:
        raise click.UsageError("give TEAM and DIR (or `sync status [DIR]`; with --space NAME, DIR)")
    team_name, folder = args[0], Path(args[1])
    if folder.exists() and not folder.is_dir():
        raise click.UsageError(f"{escape(str(folder))} is not a folder")
    if watching:
        if dry_run:
            raise click.UsageError("--watch and --dry-run do not go together (a dry run is one pass)")
        _watch(ctx, team_name, folder, confirm_deletes, hidden, backstop)
        return
    with contextlib.ExitStack() as stack:
        def on_plan(total: int) -> Callable[[int], None] | None:
            return stack.enter_context(progress_bar(ctx, total, f"sync {team_name}"))

        async def go(s: Client) -> Outcome:
            return await _recorded_pass(ctx, s, team_name, folder, dry_run=dry_run, confirm_deletes=confirm_deletes,
                                        hidden_ok=hidden, on_plan=on_plan)

        outcome = with_session(ctx, go)
    emit_rows(ctx, outcome.rows, _ACTIONS)
    if outcome.refused:
        where = f"--space {shlex.quote(ctx.space)} sync" if ctx.space is not None else f"sync {shlex.quote(team_name)}"
        again = f"mvault {where} {shlex.quote(str(folder))} --confirm-deletes"
        raise Conflict(f"{outcome.refused} local deletion(s) held back (the folder is gone or empty, or too many "
                       f"files would be deleted); if you meant it, run `{escape(again)}`")
    if outcome.trouble:
        raise Conflict(f"{outcome.trouble} conflict(s), failure(s) or change(s) not pushed: see the report above")


class _Moved(Exception):
    """A pass saw a server move come in force and followed it (``moves.follow``: saved as this device's place):
    the watcher's session ends and a new one starts there (review round 25)."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(row["detail"])
        self.row = row


def _watch(ctx: Ctx, team_name: str, folder: Path, confirm_deletes: bool, hidden: bool, backstop: float) -> None:
    """``sync --watch``: a pass now, then one whenever the folder changes, a document notice arrives or
    ``backstop`` seconds passed (client/sync/watch.py); one line per action (one JSON object with --json).
    Each pass reads the team's chains again and does pending key work first, so a removal stops the loop
    (exit 1, files kept) and a new key generation is used without a restart. A server move that comes in force
    meanwhile (the verified organization chain puts another place in force: ``moves.follow``, as a command's start
    does) ends the pass before it sends anything, prints a ``moved`` line and starts a new session at the new place
    with every check a new command makes there (login, audit log, the chains against the pins); a new place not
    serving yet (the old one still runs while members follow: docs/tls-and-moves.md) is tried again with the
    passes' backoff (``retry`` lines) until it answers; any other failure there stops the watcher as it would stop
    a command. While it runs, a one-pass
    `mvault sync TEAM DIR` asks it first (client/sync/serve.py)."""
    def emit(row: dict[str, Any]) -> None:
        if ctx.as_json:
            print_json(row)
        else:
            seq = f" v{row['seq']}" if row.get("seq") else ""
            detail = f"  {escape(str(row['detail']))}" if row.get("detail") else ""
            out.print_line(f"{escape(str(row.get('action', '')))} {escape(str(row.get('name', '')))}{seq}{detail}")

    started: list[bool] = []  # this session logged in and verified (at a new place: reached)

    async def go(s: Client) -> None:
        started.append(True)
        stop = install_stop_signals(asyncio.get_running_loop())
        view = await s.chains.view()
        team = view.team_by_name(team_name)

        full_passes = [0]
        # the org.server links already looked at (this session's start followed the one in force then)
        examined = {view.org.server.seq} if view.org.server is not None else set()
        here = (s.session.api.url, s.session.api.pin)  # the place this session talks to

        async def followed(now: View) -> None:
            """A move in force not yet looked at is followed (``moves.follow``: saved as this device's place, or,
            older than the one it follows, kept out with a warning); when the device's place is then not this
            session's (followed here, by another command, or at this session's start), the pass stops before it
            sends anything to the old place."""
            if ctx.space is not None:  # a guest: the host's move as the space's chain states it (``coalition.server``)
                space = guestspace.space_home(ctx.home, ctx.space)
                spacemoves.follow(space, next(iter(now.teams.values())), s.session.warnings)
                url, pin = moves.place_of(space)
                if (url.rstrip("/"), pin) == here:
                    return
                raise _Moved({"action": "moved", "name": url, "seq": None,
                              "detail": f"pin {pin}, signed with the host's coalition key: the host's server moved; "
                                        "following it (a new session there)"})
            place = now.org.server
            if place is not None and place.seq not in examined:
                examined.add(place.seq)
                await moves.follow(s)
            url, pin = moves.place_of(ctx.home)
            if (url.rstrip("/"), pin) == here:
                return
            detail = "this device's server is now this place"
            if place is not None and (place.url, place.pin) == (url, pin):
                detail = f"pin {pin}, announced by {now.name_of(place.by)} on {when(place.time)}"
            raise _Moved({"action": "moved", "name": url, "seq": None,
                          "detail": f"{detail}: the organization's server moved; following it (a new session there)"})

        async def run_pass(hint: Hint | None) -> list[dict[str, Any]]:
            await followed(await s.chains.view(refresh=True))
            if ctx.space is None:  # a guest has no key work in the host's space (its admins' clients do it)
                await maintenance.maintain(s)
            elif hint is None and ctx.guest is not None and full_passes[0]:
                # each full pass after the first (the command carried before it) carries the guest's own
                # organization's removals, as a new command would (review round 15: a watcher never did)
                for line in await expulsions.carry(ctx.home, ctx.guest[0], ctx.clock, s):
                    err.print_line(line)
            full_passes[0] += hint is None
            # a hinted pass scans only the paths the watcher saw change; the team's listing is always whole
            outcome = await _recorded_pass(ctx, s, team_name, folder, confirm_deletes=confirm_deletes,
                                           hidden_ok=hidden, only=hint.paths if hint is not None else None)
            return outcome.rows

        if not folder.is_dir():  # a first sync makes the folder (a known one that vanished stays gone: an error)
            for row in await run_pass(None):
                emit(row)

        root = str(folder.resolve())  # `mvault sync TEAM DIR` asks here first (client/cli/fast.py)
        # a guest's watcher answers no one-pass sync (`mvault --space NAME sync` never asks: client/cli/fast.py)
        served = Served(watch_socket(str(ctx.home.path), team_name, root), team_name, root, hidden) \
            if ctx.space is None else None
        await watch(run_pass, folder, doc_notices(s, team), emit, stop, backstop=backstop, renew=s.login,
                    served=served)

    following, failures = False, 0
    while True:
        started.clear()
        try:
            with_session(ctx, go)
            return
        except _Moved as moved:  # its config is saved: the next session is at the new place
            emit(moved.row)
            following, failures = True, 0
        except Exception as e:  # the new place not (yet) reached: tried again, as a pass would be; anything else stops
            if not following or started or not transient(e):
                raise
            failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
            emit({"action": "retry", "error": str(e) or type(e).__name__, "after": delay})
            time.sleep(delay)


async def _recorded_pass(ctx: Ctx, s: Client, team_name: str, folder: Path, *, dry_run: bool = False,
                         **options: Any) -> Outcome:
    """One ``sync_pass``; a guest's reads and writes in it recorded in its own organization's audit log
    (``Ctx.record_space_acts``), also when the pass stops: a pass a lying server stopped read what it pulled before
    (review round 14). A dry run reads and writes nothing (its rows say what a pass would do): not recorded."""
    outcome = Outcome()
    try:
        return await sync_pass(s, team_name, folder, dry_run=dry_run, outcome=outcome, **options)
    finally:
        if not dry_run:
            await ctx.record_space_acts(sync_acts(outcome.rows))


def _status(ctx: Ctx, folder: Path | None) -> None:
    """Every synced folder (or DIR's): team, folder, last sync, pending local changes (a scan, no network). A
    coalition space's folder synced as a guest (``--space``) is listed too (``space``: true; on a terminal the
    space's name followed by ``(--space)``)."""
    secrets = ctx.home.unlock()
    folders = SyncFolders(ctx.home.path, secrets.device)
    indexes = folders.all()
    if folder is not None:
        root = folder.resolve()
        indexes = [i for i in indexes if Path(i.root) == root]
        if not indexes:
            raise click.UsageError(f"{escape(str(folder))} is not a synced folder")
    spaces = set(guestspace.joined(ctx.home))  # the coalition spaces joined as a guest (their ids)
    rows: list[dict[str, Any]] = []
    for index in indexes:
        root = Path(index.root)
        found = scan(root, index) if root.is_dir() else None
        pending = 0
        if found is not None:
            pending += sum(1 for n, f in found.files.items()
                           if n not in index.files or (f.digest is not None and f.digest != index.files[n].digest))
            pending += sum(1 for n in index.files if n not in found.files and n not in found.present)
        conflicts = sum(1 for n in (found.files if found else {}) if " (conflict " in n)
        rows.append({"team": index.team, "team_name": index.team_name, "folder": index.root,
                     "last_sync": index.last_sync, "files": len(index.files), "pending": pending,
                     "conflicts": conflicts, "missing": found is None, "space": index.team in spaces})
    emit_rows(ctx, rows, _FOLDERS)


COMMANDS: tuple[click.Command, ...] = (sync,)
