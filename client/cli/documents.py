"""``mvault put``, ``get``, ``ls``, ``history``: a team's documents."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from client.cli._common import Column, Ctx, Time, emit_rows, json_flag, progress_bar, with_session
from client.client import Client
from client.docs import DocVersion, check_unique_names
from vault.errors import BatchFailed

_STORED = (Column("name", lambda r: r["name"]), Column("version", lambda r: r["version"]),
           Column("size", lambda r: r["size"]), Column("id", lambda r: r["vid"]))
_GOT = (Column("name", lambda r: r["name"]), Column("version", lambda r: r["version"]),
        Column("output", lambda r: r["output"]))
_LISTED = (Column("name", lambda r: r["name"]), Column("size", lambda r: r["size"]),
           Column("version", lambda r: r["version"]), Column("author", lambda r: r["author_name"]),
           Column("time", lambda r: Time(r["time"])))
_VERSIONS = (Column("version", lambda r: r["version"]), Column("size", lambda r: r["size"]),
             Column("author", lambda r: r["author_name"]), Column("time", lambda r: Time(r["time"])),
             Column("id", lambda r: r["vid"]))


def _doc_json(d: DocVersion, s: Client | None = None, names: dict[str, str] | None = None) -> dict[str, Any]:
    c = d.record.core
    if d.opened is None:
        name, size = f"(no key for generation {c.gen})", None
    else:
        name, size = d.opened.name, d.opened.size
    return {"name": name, "size": size, "version": c.seq, "vid": d.vid, "author": c.author,
            "author_name": (names or {}).get(c.author, c.author[:8]), "time": c.time, "generation": c.gen}


@click.command()
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
        async def go(s: Client) -> list[tuple[str, int, str]]:
            nonlocal failure
            try:
                return await s.docs.put_many(team_name, items, advance)
            except BatchFailed as e:
                failure = e
                return e.stored
        stored = with_session(ctx, go)
    rows = [{"name": name, "version": seq, "vid": vid, "size": sizes[name]} for name, seq, vid in stored]
    emit_rows(ctx, rows, _STORED)  # under --json a list, even for one file
    if failure is not None:
        raise failure


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--version", "version", type=click.IntRange(1), default=None)
@json_flag
@click.pass_obj
def get(ctx: Ctx, team_name: str, name: str, output: Path | None, version: int | None) -> None:
    """Download, verify and decrypt a document (written only if everything verifies)."""
    target = output or Path(os.path.basename(name))

    async def go(s: Client) -> DocVersion:
        return await s.docs.get(team_name, name, target, version)

    d = with_session(ctx, go)
    emit_rows(ctx, [{**_doc_json(d), "output": str(target)}], _GOT)  # a list: one row a document


def _names(s: Client) -> Callable[[], Awaitable[dict[str, str]]]:
    async def go() -> dict[str, str]:
        view = await s.chains.view()
        return {m: st.name for m, st in view.members.items()}

    return go


@click.command("ls")
@click.argument("team_name", metavar="TEAM")
@json_flag
@click.pass_obj
def ls_cmd(ctx: Ctx, team_name: str) -> None:
    """Documents of a team: names, sizes, versions, authors."""

    async def go(s: Client) -> list[dict[str, Any]]:
        docs = await s.docs.ls(team_name)
        names = await _names(s)()
        return [_doc_json(d, s, names) for d in docs]

    emit_rows(ctx, with_session(ctx, go), _LISTED)


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@json_flag
@click.pass_obj
def history(ctx: Ctx, team_name: str, name: str) -> None:
    """Every version of a document."""

    async def go(s: Client) -> list[dict[str, Any]]:
        docs = await s.docs.history(team_name, name)
        names = await _names(s)()
        return [_doc_json(d, s, names) for d in docs]

    emit_rows(ctx, with_session(ctx, go), _VERSIONS)


COMMANDS: tuple[click.Command, ...] = (put, get, ls_cmd, history)
