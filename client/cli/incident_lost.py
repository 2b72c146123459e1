"""``mvault incident lost-device MEMBER DEVICE``: the Security Team cuts off a lost or seized device (rule
lost-device). The ``incident`` group (client/cli/incident.py) adds this command (this module has no ``COMMANDS`` of
its own: it is not a top-level group); it signs the cut, which pauses
the member's sensitive memberships, rotates every team this device holds the key of, and prints what it did,
what is left to rotate and the weekly review dates."""

from __future__ import annotations

import click

from client import lost
from client.cli._common import Ctx, emit_one, json_flag, out, with_session
from client.sanitize import escape


@click.command("lost-device")
@click.argument("member")
@click.argument("device")
@click.option("--reason", default="", help="why (kept only in the private incident record, never in the chains)")
@json_flag
@click.pass_obj
def lost_device(ctx: Ctx, member: str, device: str, reason: str) -> None:
    """Cut off MEMBER's DEVICE (Security Team): no login, nothing it signs later is believed, every team it could
    read rotates, MEMBER's sensitive memberships pause until `mvault incident clear`; weekly reviews for 4 weeks."""
    report = with_session(ctx, lambda s: lost.cut_device(s, member, device, reason))

    def human() -> None:
        out.print(f"cut off device {escape(report.device)} of member {escape(member)} "
                  f"(organization link {report.cut_seq})")
        out.print(f"rotated: {escape(', '.join(report.rotated_teams)) or 'none'}")
        if report.pending_rotation_teams:
            out.print(f"waiting for a key holder to rotate: {escape(', '.join(report.pending_rotation_teams))} "
                      "(their clients do it on their next run)")
        out.print(f"paused until cleared: {escape(', '.join(report.paused_teams)) or 'no sensitive team'}")
        out.print(f"weekly reviews due: {', '.join(report.reviews_due)}")
        if report.incident_id is not None:
            out.print(f"incident {report.incident_id} opened (`mvault incident show {report.incident_id}`)")
        else:
            out.print(f"warning: no incident record: {escape(report.record_problem)}; the cut stands")
        out.print(f"the member revokes the device from another of theirs (`mvault device revoke {escape(device)}`) "
                  "before they get new keys")

    emit_one(ctx, report.as_json(), human)

