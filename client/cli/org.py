"""``mvault org ...``: closing the organization (issue 20, docs/lifecycle.md section 3), roster exports (issue 18).

``org roster export --out FILE --to MEMBER...`` (NCC, Security Team) writes the member list sealed to the named
members and the Security Team, after the server logged its signed record (rule no-master-lists); ``org roster open
FILE`` shows one to a reader, after checking it.

``org close --hand-over PLAN.toml`` (NCC) proposes the closing with its hand-over plan; ``org approve-close`` (NCC
and Security Team) approves the pending proposal; ``org closing`` shows it; ``org close --run --out DIR`` (NCC, once
the quorum is met) writes the plan's age exports into DIR, records each, and signs ``org.closed``: the server then
shreds everything it holds, and every member's client wipes its copy of the organization on its next contact,
after verifying the closing against the chain it pinned (client/closed.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from client import closing, roster
from client.cli._common import Ctx, emit_one, json_flag, when, with_session
from client.client import Client
from client.sanitize import escape
from vault.chains.exports import APPROVALS_NEEDED


@click.group()
def org() -> None:
    """The organization as a whole: closing it (NCC proposes, NCC and Security Team approve)."""


def _shown(s: closing.Shown) -> str:
    p = s.proposal
    lines = [f"closing proposed {when(p.time)} (plan {p.plan_hash.hex()[:16]}, not before {when(p.not_before)}); "
             f"approvals {len(p.approvals)} of {p.quorum.ncc} of {p.ncc_members} NCC + {p.quorum.security} Security "
             f"Team: {'quorum met' if s.met else 'quorum not met yet'}"]
    for i, (e, team, docs) in enumerate(zip(p.plan, s.teams, s.documents, strict=True)):
        what = ", ".join(escape(d) for d in docs) if e.documents else "every document"
        lines.append(f"  {i + 1}. team {escape(team)}: {what} -> {', '.join(e.recipients)}")
    lines.extend(f"  not there: {escape(problem)}" for problem in s.problems)
    return "\n".join(lines)


@org.command("close")
@click.option("--hand-over", "plan", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="propose the closing with this hand-over plan (TOML: [[hand-over]] team, documents, to)")
@click.option("--delay", type=click.IntRange(0, 365 * 86400), default=0, show_default=True,
              help="with --hand-over: seconds before the closing may be made (time for members to object)")
@click.option("--run", "run_", is_flag=True, help="run the approved closing: exports, then org.closed")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="with --run: the new folder the hand-over exports (.age files) are written to")
@json_flag
@click.pass_obj
def close(ctx: Ctx, plan: Path | None, delay: int, run_: bool, out: Path | None) -> None:
    """NCC: propose closing the organization (--hand-over PLAN.toml), or run the approved closing (--run --out)."""
    if (plan is None) == (not run_) or (run_ and out is None):
        raise click.UsageError("give --hand-over PLAN.toml to propose, or --run --out DIR to run an approved closing")
    if plan is not None:
        wanted = closing.read_plan(plan)

        async def propose(c: Client) -> closing.Shown:
            return await closing.show(c, await closing.propose(c, await closing.resolve_plan(c, wanted), delay))

        shown = with_session(ctx, propose)
        emit_one(ctx, shown.to_json(),
                 _shown(shown) + "\nproposed: NCC and Security Team members approve with `mvault org approve-close`")
        return
    assert out is not None
    if out.exists():
        raise click.UsageError(f"{out} exists already: the exports go to a new folder")

    async def go(c: Client) -> closing.Run:
        return await closing.run(c, out)

    done = with_session(ctx, go)
    if done.awaiting:
        emit_one(ctx, {"proposal": done.proposal.hash.hex(), "closed": False,
                       "awaiting": [a.to_json() for a in done.awaiting]},
                 "not closed, nothing written: plan entries of sensitive teams are exported under the Security "
                 "Team's two-person approval (rule exports)\n"
                 + "".join(f"  {a.entry + 1}. team {escape(a.team.name)}: export request {a.request.hash.hex()} "
                           f"({'made now' if a.made else 'made before'}), {len(a.request.approvals)} of "
                           f"{APPROVALS_NEEDED} approvals\n" for a in done.awaiting)
                 + "two Security Team members approve each with `mvault export approve ID`; then run this again")
        sys.exit(1)
    emit_one(ctx, {"proposal": done.proposal.hash.hex(), "closed": True, "files": [str(f) for f in done.files],
                   "manifests": list(done.manifests)},
             "closed: the organization chain ends with org.closed and the server shreds what it held.\n"
             + "".join(f"hand-over export: {escape(str(f))}\n" for f in done.files)
             + "give each file to its successor; members' clients wipe on their next contact")


@org.command("approve-close")
@json_flag
@click.pass_obj
def approve_close(ctx: Ctx) -> None:
    """NCC and Security Team: approve the proposed closing (read it first: `mvault org closing`)."""
    shown = with_session(ctx, closing.approve)
    emit_one(ctx, shown.to_json(), _shown(shown))


@org.command("closing")
@json_flag
@click.pass_obj
def show_closing(ctx: Ctx) -> None:
    """The proposed closing: its plan (names this device can open), approvals and quorum."""

    async def go(c: Client) -> closing.Shown:
        return await closing.show(c, closing.pending(await c.chains.view()))

    shown = with_session(ctx, go)
    emit_one(ctx, shown.to_json(), _shown(shown))


@org.group("roster")
def roster_group() -> None:
    """Roster exports: the member list for at most 3 named members plus the Security Team (rule no-master-lists)."""


def _roster_text(r: roster.Roster, members: bool) -> str:
    lines = [f"roster exported by {escape(r.record.member)} {when(r.record.time)}, sealed to "
             f"{len(r.record.readers)} members ({len(r.outside)} outside the Security Team: "
             f"{', '.join(escape(m) for m in r.outside) or 'none'})"]
    if members:
        lines += [f"  {escape(m['name'])}\t{escape(m['member'])}\t{escape(','.join(m['roles']))}\t{escape(m['status'])}"
                  for m in r.members]
    return "\n".join(lines)


@roster_group.command("export")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="the new file to write (mode 0600)")
@click.option("--to", "to", multiple=True, required=True, metavar="MEMBER",
              help="a member (name or id) who may read it; repeat, at most 3 outside the Security Team")
@json_flag
@click.pass_obj
def roster_export(ctx: Ctx, out: Path, to: tuple[str, ...]) -> None:
    """NCC, Security Team: export the member list, readable only by the named members and the Security Team."""

    async def go(c: Client) -> roster.Roster:
        return await roster.export_roster(c, out, to)

    done = with_session(ctx, go)
    emit_one(ctx, {**done.to_json(), "members": len(done.members), "file": str(out)},
             _roster_text(done, False) + f"\nwritten to {escape(str(out))}: it maps the organization, keep it safe")


@roster_group.command("open")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_flag
@click.pass_obj
def roster_open(ctx: Ctx, file: Path) -> None:
    """Show a roster export sealed to you, after checking who signed it and that nothing was changed."""

    async def go(c: Client) -> roster.Roster:
        return await roster.read_roster(c, file)

    shown = with_session(ctx, go)
    emit_one(ctx, shown.to_json(), _roster_text(shown, True))


COMMANDS: tuple[click.Command, ...] = (org,)
