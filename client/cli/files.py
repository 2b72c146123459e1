"""``mvault rm``, ``mv``, ``restore``: delete, rename and bring back documents (each a signed version;
nothing is ever erased from the history). The work is in client/docops.py, shared with sync."""

from __future__ import annotations

from typing import Any

import click

from client import docops
from client.cli._common import Ctx, emit_one, json_flag, with_session
from client.client import Client
from client.sanitize import escape


def _done_json(d: docops.Done) -> dict[str, Any]:
    out: dict[str, Any] = {"team": d.team, "name": d.name, "doc": d.doc, "seq": d.seq, "vid": d.vid, "op": d.op}
    if d.restored_from is not None:
        out["restored_from"] = d.restored_from
    return out


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@click.option("--if-version", "if_version", type=click.IntRange(1), default=None,
              help="delete only if the newest version is N")
@json_flag
@click.pass_obj
def rm(ctx: Ctx, team_name: str, name: str, if_version: int | None) -> None:
    """Delete a document: a signed deletion as its newest version (its history is kept; restore brings it back)."""

    async def go(s: Client) -> docops.Done:
        return await docops.remove(s.docs, team_name, name, if_version)

    d = with_session(ctx, go)
    emit_one(ctx, _done_json(d), f"deleted {escape(d.name)} in {escape(d.team)} (version {d.seq}; bring it back "
                                 f"with mvault restore)")


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("old")
@click.argument("new")
@json_flag
@click.pass_obj
def mv(ctx: Ctx, team_name: str, old: str, new: str) -> None:
    """Rename a document: its content under NEW (history follows it), then OLD deleted.

    NEW must not exist (a deleted NEW gets the content as its newest version). If a rename was
    interrupted, running it again finishes it.
    """

    async def go(s: Client) -> docops.Done:
        return await docops.move(s.docs, team_name, old, new)

    d = with_session(ctx, go)
    emit_one(ctx, {"team": d.team, "from": old, "to": new, "seq": d.seq, "vid": d.vid},
             f"renamed {escape(old)} to {escape(new)} in {escape(d.team)} (version {d.seq} of {escape(new)})")


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(1), default=None,
              help="the version to bring back (default for a deleted document: the last one before its deletion)")
@json_flag
@click.pass_obj
def restore(ctx: Ctx, team_name: str, name: str, version: int | None) -> None:
    """Bring back a deleted or older version of a document as its newest version."""

    async def go(s: Client) -> docops.Done:
        return await docops.restore(s.docs, team_name, name, version)

    d = with_session(ctx, go)
    emit_one(ctx, _done_json(d), f"restored version {d.restored_from} of {escape(d.name)} in {escape(d.team)} as "
                                 f"version {d.seq}")


COMMANDS: tuple[click.Command, ...] = (rm, mv, restore)
