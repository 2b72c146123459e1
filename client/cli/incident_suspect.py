"""``mvault incident suspect MEMBER [--reason]``: the Security Team pauses a suspected member's sensitive memberships
without cutting a device (client/suspect.py); it joins the ``incident`` group (client/cli/incident.py)."""

from __future__ import annotations

import click

from client import suspect as suspecting
from client.cli._common import Ctx, emit_one, json_flag, out, with_session
from client.sanitize import escape


@click.command("suspect")
@click.argument("member")
@click.option("--reason", default="", help="why (kept only in the private incident record, never in the chains)")
@json_flag
@click.pass_obj
def suspect(ctx: Ctx, member: str, reason: str) -> None:
    """Pause MEMBER's sensitive memberships (Security Team; NCC while nobody holds the role) without cutting any
    device: no new content in sensitive teams until `mvault incident clear`; weekly reviews for 4 weeks."""
    report = with_session(ctx, lambda s: suspecting.suspect(s, member, reason))

    def human() -> None:
        out.print(f"paused member {escape(member)} (organization link {report['pause_seq']}); sensitive teams: "
                  f"{escape(', '.join(report['paused_teams'])) or 'none'}")
        out.print(f"weekly reviews due: {', '.join(report['reviews_due'])}")
        if report["id"] is not None:
            out.print(f"incident {report['id']} opened (`mvault incident clear {report['id']}` lifts the pause)")
        else:
            out.print(f"warning: no incident record: {escape(report['record_problem'])}; the pause stands")

    emit_one(ctx, report, human)
