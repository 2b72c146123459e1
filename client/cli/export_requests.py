"""``mvault export request | approve | requests``: export requests of sensitive teams and the Security Team's
approvals (two members, neither the requester; docs/lifecycle.md "Who may export"). Everything shown that another
member chose (team and member names) goes through ``client.sanitize`` (``Column`` cells, ``escape``)."""

from __future__ import annotations

from typing import Any

import click

from client.cli._common import Column, Ctx, Time, emit_one, emit_rows, err, with_session
from client.client import Client
from client.export import select
from client.exportrequests import Listed, approve_export, list_requests, recipients_of, request_export
from client.sanitize import escape
from client.threads.info import parse_duration

_REQUESTS = (Column("id", lambda r: r["id"][:16], lambda r: r["id"]), Column("team", lambda r: r["team_name"]),
             Column("requester", lambda r: r["requester_name"]),
             Column("documents", lambda r: "all" if r["docs"] is None else len(r["docs"])),
             Column("recipients", lambda r: len(r["recipients"]), lambda r: " ".join(r["recipients"])),
             Column("approved by", lambda r: ", ".join(a["name"] for a in r["approvals"]) or None),
             Column("expires", lambda r: Time(r["expires"])), Column("status", lambda r: r["status"]),
             Column("used", lambda r: Time(r["used"]) if r["used"] is not None else "no" if r["used_known"] else "?"))


def request(ctx: Ctx, args: tuple[str, ...], recipients: tuple[str, ...], expires: str) -> None:
    if not args:
        raise click.UsageError("export request TEAM [NAME...] --age-recipient R... [--expires 7d]")
    ttl = parse_duration(expires)
    recipients_of(recipients)  # before unlocking and logging in
    team_name, names = args[0], args[1:]

    async def go(s: Client) -> Listed:
        view = await s.chains.view()
        team = view.team_by_name(team_name)
        heads = (select(await s.docs.ls(team.team_id), names, team.name)[0]) if names else []
        _, req = await request_export(s, team.team_id, heads, recipients, ttl)
        return (await list_requests(s, team.team_id, ref=req.hash.hex()))[0]

    done = with_session(ctx, go)
    row = done.to_json(done.request.time)
    emit_one(ctx, row, lambda: err.print_line(
        f"export request {row['id']} for team {escape(done.team.name)}: "
        f"{'every document' if row['docs'] is None else str(len(row['docs'])) + ' documents'} to "
        f"{len(row['recipients'])} recipients; two Security Team members approve it with `mvault export approve "
        f"{row['id'][:16]}`, then `mvault export {escape(done.team.name)} --request {row['id'][:16]} --out FILE.age`"))


def approve(ctx: Ctx, args: tuple[str, ...]) -> None:
    if len(args) != 1:
        raise click.UsageError("export approve ID (the request's id, or its first 8+ hex characters)")

    async def go(s: Client) -> tuple[Listed, int]:
        return await approve_export(s, args[0]), s.session.now()

    done, now = with_session(ctx, go)
    row = done.to_json(now)
    emit_one(ctx, row, lambda: err.print_line(
        f"approved export request {row['id'][:16]} of {escape(row['requester_name'])} for team "
        f"{escape(done.team.name)}: {len(row['approvals'])} of 2 approvals ({row['status']})"))


def requests(ctx: Ctx, args: tuple[str, ...]) -> None:
    if len(args) > 1:
        raise click.UsageError("export requests [TEAM]")

    async def go(s: Client) -> list[dict[str, Any]]:
        now = s.session.now()
        return [x.to_json(now) for x in await list_requests(s, args[0] if args else None, uses=True)]

    emit_rows(ctx, with_session(ctx, go), _REQUESTS)
