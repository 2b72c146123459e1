"""``mvault put``, ``get``, ``ls``, ``history``: a team's documents."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from client import docops
from client.cli._common import Column, Ctx, Time, emit_rows, err, json_flag, progress_bar, with_session
from client.client import Client
from client.docplaces import check_unique_names
from client.docs import DocVersion, Fetched
from client.putbase import Base
from client.sanitize import escape
from vault.envelope import DELETE
from vault.errors import BadName, BatchFailed, EncodingError, FetchFailed
from vault.names import check_name, check_prefix, name_for_path, name_in_folder, name_problem
from vault.review import parse_review_by

_STORED = (Column("name", lambda r: r["name"]), Column("version", lambda r: r["version"]),
           Column("size", lambda r: r["size"]), Column("id", lambda r: r["vid"]))
_GOT = (Column("name", lambda r: r["name"]), Column("version", lambda r: r["version"]),
        Column("output", lambda r: r["output"]),
        Column("written", lambda r: "written" if r["written"] else "already there, unchanged"))
_LISTED = (Column("name", lambda r: r["name"]), Column("size", lambda r: r["size"]),
           Column("version", lambda r: r["version"]), Column("author", lambda r: r["author_name"]),
           Column("time", lambda r: Time(r["time"])),
           Column("note", lambda r: None if r["valid_name"] else "not a valid name: get it with -o FILE"))
_DELETED = (Column("name", lambda r: r["name"]), Column("version", lambda r: r["version"]),
            Column("deleted by", lambda r: r["author_name"]), Column("time", lambda r: Time(r["time"])),
            Column("moved to", lambda r: r["moved_to"]))
_VERSIONS = (Column("version", lambda r: r["version"]), Column("size", lambda r: r["size"]),
             Column("author", lambda r: r["author_name"]), Column("time", lambda r: Time(r["time"])),
             Column("id", lambda r: r["vid"]), Column("op", lambda r: r["op"]), Column("name", lambda r: r["name"]))


def _doc_json(d: DocVersion, s: Client | None = None, names: dict[str, tuple[str, str | None]] | None = None
              ) -> dict[str, Any]:
    c = d.record.core
    if d.opened is None:
        name, size = f"(no key for generation {c.gen})", None
    else:
        name, size = d.opened.name, d.opened.size
    author_name, guest_of = (names or {}).get(c.author, (c.author[:8], None))
    out = {"name": name, "size": size, "version": c.seq, "vid": d.vid, "author": c.author,
           "author_name": author_name, "author_guest_of": guest_of, "time": c.time, "generation": c.gen,
           "op": c.op, "deleted": c.op == DELETE}
    if c.op == DELETE:
        out["moved_to"] = d.opened.moved_to if d.opened is not None else None
    return out


def _files_under(folder: Path) -> list[tuple[Path, str]]:
    """Every regular file under ``folder`` with its name relative to it (symbolic links and special
    files are skipped, with a warning: never followed out of the folder)."""
    found: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for d in dirs:
            if os.path.islink(os.path.join(root, d)):
                err.print_line(f"warning: skipped {escape(os.path.join(root, d))}: a symbolic link")
        for f in sorted(files):
            path = Path(root) / f
            if path.is_symlink() or not path.is_file():
                err.print_line(f"warning: skipped {escape(str(path))}: not a regular file")
                continue
            found.append((path, name_in_folder(str(path), str(folder))))
    if not found:
        raise click.UsageError(f"no files under {escape(str(folder))}")
    return found


def _put_items(paths: tuple[Path, ...], as_name: str | None, recursive: bool) -> list[tuple[Path, str]]:
    """(file, document name) for each file to put, every name valid and given once."""
    if as_name is not None and (len(paths) > 1 or recursive):
        raise click.UsageError("--as names one document: give exactly one PATH with it, without -r")
    items: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            if not recursive:
                raise click.UsageError(f"{escape(str(path))} is a folder: use put -r to store the files in it")
            items.extend(_files_under(path))
        else:
            items.append((path, as_name if as_name is not None else name_for_path(str(path))))
    for path, name in items:
        problem = name_problem(name)
        if problem is not None:
            raise BadName(f"{escape(str(path))}: '{escape(name)}' is not a valid document name: {problem}")
    check_unique_names([name for _, name in items])
    return items


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--as", "as_name", default=None, help="document name (default: the path; one PATH only)")
@click.option("-r", "--recursive", is_flag=True, help="store every file under each folder PATH, named by its path "
              "relative to that folder (a/b.md)")
@click.option("--if-version", "if_version", type=click.IntRange(0), default=None,
              help="store only if the newest version is N (0: only if the document does not exist yet)")
@click.option("--force-new-version", is_flag=True,
              help="store on top of the newest version even if your file is based on an older one")
@click.option("--review-by", "review_by", default=None, metavar="YYYY-MM-DD",
              help="the date by which the document is to be reviewed (sealed in its metadata; the server learns the "
              "month); default in sensitive teams: 180 days from now")
@json_flag
@click.pass_obj
def put(ctx: Ctx, team_name: str, paths: tuple[Path, ...], as_name: str | None, recursive: bool,
        if_version: int | None, force_new_version: bool, review_by: str | None) -> None:
    """Encrypt and upload each PATH as a new document, or a new version of it.

    A relative PATH inside the current folder is stored under that path (notes/a.md), any other under
    its file name. A file fetched or stored from here before is stored only on top of the version it
    came from: if someone stored a newer one meanwhile, that is a conflict (exit 1, nothing stored).
    Many files go in one session, several uploads at a time; each is its own signed version.
    If some fail, the others are still stored and the command exits 1 naming the failed ones.
    """
    if if_version is not None and force_new_version:
        raise click.UsageError("--if-version and --force-new-version exclude each other")
    try:
        review = None if review_by is None else parse_review_by(review_by)
    except EncodingError as e:
        raise click.UsageError(f"--review-by: {e}") from e
    items = _put_items(paths, as_name, recursive)  # before unlocking and logging in
    sizes = {name: path.stat().st_size for path, name in items}
    total = sum(sizes.values())
    label = f"put {items[0][1]}" if len(items) == 1 else f"put {len(items)} files"
    failure: BatchFailed | None = None
    with progress_bar(ctx, total, label) as advance:
        async def go(s: Client) -> list[tuple[str, int, str]]:
            nonlocal failure
            try:
                return await s.docs.put_many(team_name, items, advance, base=Base(if_version, force_new_version),
                                             review_by=review)
            except BatchFailed as e:
                failure = e
                return e.stored
        stored = with_session(ctx, go)
    rows = [{"name": name, "version": seq, "vid": vid, "size": sizes[name]} for name, seq, vid in stored]
    emit_rows(ctx, rows, _STORED)  # under --json a list, even for one file
    if failure is not None:
        raise failure


def _fetched_json(f: Fetched, shown: str) -> dict[str, Any]:
    return {**_doc_json(f.doc), "output": shown, "written": f.written}


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@click.option("-o", "--output", default=None,
              help="file to write (- for standard output); for a FOLDER/ name, the folder to fetch into")
@click.option("--version", "version", type=click.IntRange(1), default=None)
@click.option("--force", is_flag=True, help="replace an existing file that is not this version")
@click.option("--hidden", is_flag=True, help="FOLDER/ only: also write hidden names (a part starting with '.')")
@json_flag
@click.pass_obj
def get(ctx: Ctx, team_name: str, name: str, output: str | None, version: int | None, force: bool,
        hidden: bool) -> None:
    """Download, verify and decrypt a document (written only if everything verifies).

    Without -o, the document goes to its name here (notes/a.md, folders made), as put names it.
    An existing file is never replaced unless --force (if it already holds exactly this version,
    nothing is done). NAME ending in / (notes/, or / for all) fetches every document under it into
    the folder -o (default: here), keeping the names' folders; hidden names (.ssh/..., .profile) only
    with --hidden. Nothing is ever written into the client's own home (MVAULT_HOME).
    """
    if name.endswith("/"):
        _get_folder(ctx, team_name, name, output, version, force, hidden)
        return
    if hidden:
        raise click.UsageError("--hidden is for a FOLDER/ name (a single document is fetched by its name)")
    if output == "-" and ctx.as_json:
        raise click.UsageError("-o - writes the document to standard output: no --json with it")
    if output is None:
        check_name(name)  # the name becomes a local path, here (folders made): only a valid one
        target: Path | None = Path(name)
    else:
        target = None if output == "-" else Path(output)  # an explicit file: any name may be fetched into it

    async def go(s: Client) -> Fetched:
        return await s.docs.get(team_name, name, target, version, force=force, make_folders=output is None)

    f = with_session(ctx, go)
    if target is None:
        return  # standard output holds the document and nothing else
    shown = str(target)  # as given (-o), or the name
    emit_rows(ctx, [_fetched_json(f, shown)], _GOT)  # a list: one row a document


def _get_folder(ctx: Ctx, team_name: str, prefix: str, output: str | None, version: int | None,
                force: bool, hidden: bool) -> None:
    if version is not None:
        raise click.UsageError("--version is for one document, not a folder")
    if output == "-":
        raise click.UsageError("a folder cannot go to standard output: give -o FOLDER")
    check_prefix(prefix)
    folder = Path(output or ".")
    if folder.exists() and not folder.is_dir():
        raise click.UsageError(f"{escape(str(folder))} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[str, BaseException]] = []

    async def go(s: Client) -> list[Fetched]:
        done, bad = await s.docs.get_folder(team_name, "" if prefix == "/" else prefix, folder, force=force,
                                            hidden=hidden)
        failed.extend(bad)
        return done

    done = with_session(ctx, go)
    emit_rows(ctx, [_fetched_json(f, str(f.path)) for f in done], _GOT)
    if failed:
        raise FetchFailed(len(done), failed)


def _names(s: Client) -> Callable[[], Awaitable[dict[str, tuple[str, str | None]]]]:
    """Member id -> (the name shown: NAME@ORG for a guest, its organization or None)."""
    async def go() -> dict[str, tuple[str, str | None]]:
        view = await s.chains.view()
        return {m: (view.name_of(m), view.guest_of(m)) for m in view.members}

    return go


@click.command("ls")
@click.argument("team_name", metavar="TEAM")
@click.argument("prefix", metavar="[PREFIX/]", required=False)
@click.option("--deleted", is_flag=True, help="only deleted documents: who deleted them, when, and where one "
              "was moved to")
@json_flag
@click.pass_obj
def ls_cmd(ctx: Ctx, team_name: str, prefix: str | None, deleted: bool) -> None:
    """Documents of a team: names, sizes, versions, authors.

    Deleted documents are left out; --deleted lists only them (bring one back with mvault restore).
    PREFIX/ lists only the names under that folder (notes/).
    """
    start = check_prefix(prefix) if prefix is not None else ""

    async def go(s: Client) -> list[dict[str, Any]]:
        docs = await s.docs.ls(team_name, deleted=deleted)
        names = await _names(s)()
        return [{**_doc_json(d, s, names), "valid_name": d.opened is None or name_problem(d.opened.name) is None}
                for d in docs if not start or (d.opened is not None and d.opened.name.startswith(start))]

    emit_rows(ctx, with_session(ctx, go), _DELETED if deleted else _LISTED)


@click.command()
@click.argument("team_name", metavar="TEAM")
@click.argument("name")
@json_flag
@click.pass_obj
def history(ctx: Ctx, team_name: str, name: str) -> None:
    """Every version of a document.

    Each version's op (put, delete, move, restore, conflict); a document renamed from another name has
    that document's versions listed first, with their old name.
    """

    async def go(s: Client) -> list[dict[str, Any]]:
        docs = await docops.history(s.docs, team_name, name)
        names = await _names(s)()
        return [_doc_json(d, s, names) for d in docs]

    emit_rows(ctx, with_session(ctx, go), _VERSIONS)


COMMANDS: tuple[click.Command, ...] = (put, get, ls_cmd, history)
