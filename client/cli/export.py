"""``mvault export``: a team's documents as files with a signed manifest, and ``mvault export verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from client.cli import export_requests
from client.cli._common import Column, Ctx, Time, emit_rows, err, json_flag, with_session
from client.client import Client
from client.export import Exported, check_output, export_team
from client.exportcheck import Verified, verify_age, verify_folder
from client.exportsigner import Signer, check_exporter
from client.sanitize import escape
from vault.agefile import check_recipient

_FILES = (Column("path", lambda r: r["path"]), Column("name", lambda r: r["name"]),
          Column("version", lambda r: r["version"]), Column("author", lambda r: r["author_name"]),
          Column("time", lambda r: Time(r["time"])), Column("sha256", lambda r: r["sha256"][:16],
                                                            lambda r: r["sha256"]))


def _rows(files: Any) -> list[dict[str, Any]]:
    return [f.to_json() for f in files]


@click.command("export")
@click.argument("args", metavar="TEAM [NAME...] | verify DIR|FILE.age | request TEAM [NAME...] | approve ID | "
                "requests [TEAM]", nargs=-1, required=True)
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="the new folder (or, with --age-recipient, the new .age file) to write")
@click.option("--age-recipient", "recipients", multiple=True, metavar="AGE1...",
              help="encrypt the export (a tar archive) to this age recipient; repeat for several")
@click.option("--identity", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="verify: the age identity file (age-keygen's) that decrypts FILE.age")
@click.option("--request", "request_id", default=None, metavar="ID",
              help="export a sensitive team under this approved export request (its id from `export requests`)")
@click.option("--expires", default=None, metavar="DURATION", help="request: how long it is valid (default 7d, at "
              "most 30d)")
@click.option("--all-versions", is_flag=True, help="export every version of each document (a file and a manifest "
              "entry each, named NAME@vN), not only the newest")
@click.option("--check-chain", is_flag=True, help="verify: also check the signing key against the exporter's member "
              "chain as this account pins it (an account of the exporter's organization)")
@json_flag
@click.pass_obj
def export(ctx: Ctx, args: tuple[str, ...], out: Path | None, recipients: tuple[str, ...],
           identity: Path | None, request_id: str | None, expires: str | None, all_versions: bool,
           check_chain: bool) -> None:
    """Export a team's documents as files with a manifest signed in SSH's format (or age-encrypted); `export
    verify` checks one.

    TEAM's documents (the newest version of each, or of each NAME or folder NAME/) as plain files and
    a manifest signed with this device's key in SSH's format (ssh-keygen -Y verify checks it); with
    --age-recipient, as one age-encrypted tar archive. The export is an audit event; from a sensitive team
    (NCC, Security Team, circle, staff) it needs the Security Team's approval under two-person: `mvault export
    request TEAM [NAME...] --age-recipient R... [--expires 7d]` signs a request, two Security Team members (neither
    the requester) sign `mvault export approve ID`, and `mvault export TEAM --request ID --out FILE.age` exports the
    request's documents to its recipients, once, before it expires. `mvault export requests [TEAM]` lists requests.
    `mvault export verify DIR|FILE.age` checks an export's manifest and every file, with nothing but the export (and
    --identity for an .age file). A team named "verify", "request", "approve" or "requests" is exported by its id.

    Give the reader the key fingerprint this prints, out of band: the export proves it was signed by that key.
    """
    if args[0] in ("request", "approve", "requests"):
        if out is not None or identity is not None or request_id is not None or (
                args[0] != "request" and (recipients or expires is not None)):
            raise click.UsageError(f"export {args[0]} takes no --out, --identity or --request"
                                   f"{'' if args[0] == 'request' else ', --age-recipient or --expires'}")
        if args[0] == "request":
            export_requests.request(ctx, args[1:], recipients, expires or "7d")
        else:
            (export_requests.approve if args[0] == "approve" else export_requests.requests)(ctx, args[1:])
        return
    if expires is not None:
        raise click.UsageError("--expires is for export request")
    if args[0] == "verify":
        if len(args) != 2 or out is not None or recipients or request_id is not None or all_versions:
            raise click.UsageError("export verify takes one DIR or FILE.age (and --identity for an .age file)")
        _verify(ctx, Path(args[1]), identity, check_chain)
        return
    if check_chain:
        raise click.UsageError("--check-chain is for export verify")
    if identity is not None:
        raise click.UsageError("--identity is for export verify")
    if out is None:
        raise click.UsageError("give --out DIR (or --out FILE.age with --age-recipient or --request)")
    for r in recipients:
        check_recipient(r)
    check_output(out)  # before unlocking and logging in
    team_name, names = args[0], args[1:]

    async def go(s: Client) -> Exported:
        return await export_team(s, team_name, names, out, recipients, request=request_id, all_versions=all_versions)

    done = with_session(ctx, go)
    emit_rows(ctx, _rows(done.manifest.files), _FILES)
    if done.skipped:
        err.print_line(f"warning: {len(done.skipped)} documents were left out: their newest versions are under a "
                       "key generation this member never held")
    if not ctx.as_json:
        err.print_line(f"signed by {escape(done.manifest.exporter.principal)} with key {done.fingerprint}: give "
                       "this fingerprint to the reader out of band")


def _verify(ctx: Ctx, path: Path, identity: Path | None, check_chain: bool) -> None:
    if path.is_dir():
        if identity is not None:
            raise click.UsageError("--identity is for an .age export, not a folder")
        verified: Verified = verify_folder(path)
    elif path.is_file():
        if identity is None:
            raise click.UsageError("an .age export needs --identity KEY (the age identity file that decrypts it)")
        verified = verify_age(path, identity)
    else:
        raise click.UsageError(f"{escape(str(path))} is neither a folder nor a file")
    m = verified.manifest
    signer = None
    if check_chain:
        async def check(c: Client) -> Signer:
            return await check_exporter(c, verified)

        signer = with_session(ctx, check)
    emit_rows(ctx, _rows(m.files), _FILES)
    if not ctx.as_json:
        err.print_line(f"verified: {len(m.files)} files of team {escape(m.team_name)} ({m.team}), exported by "
                       f"{escape(m.exporter.name)} ({m.exporter.member}) with key {verified.fingerprint}; "
                       + ("compare that fingerprint with the one the exporter gave you" if signer is None else
                          f"that key is device {escape(signer.device_name)} ({signer.device}) of member "
                          f"{escape(signer.name)} in the member chain this account pins"))
        if m.request is not None:
            err.print_line(f"made under export request {m.request} (its approvals are in the team's chain)")


COMMANDS: tuple[click.Command, ...] = (export,)
