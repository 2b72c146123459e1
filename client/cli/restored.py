"""``mvault restored status|accept`` and ``mvault republish``: a server restored from an older backup
(docs/restore.md, client/restore.py, client/republish.py).

Exit codes as everywhere (docs/cli.md): ``status`` exits 0 when it could tell what it sees (behind or not);
``accept`` 0 once the acceptance is stored, 1 when the server refuses it, 130 when not confirmed.
"""

from __future__ import annotations

from typing import Any

import click

from client import restore
from client.checkpoints import sync_log
from client.cli._common import (
    Column,
    Ctx,
    Escaped,
    emit_one,
    emit_rows,
    err,
    json_flag,
    out,
    when,
    with_session,
)
from client.client import Client
from client.republish import republish as republish_team
from client.sanitize import escape
from vault.errors import LogInconsistent, ServerBehind


@click.group()
def restored() -> None:
    """A server restored from an older backup: what this device sees, and the Security Team's acceptance."""


def _past(pins_log: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"size": r["size"], "time": r["time"], "member": r["member"], "name": r["name"], "at": r["at"],
             "chains": len(r["lost"]["chains"]), "docs": len(r["lost"]["docs"])} for r in pins_log.get("restored", [])]


@restored.command("status")
@json_flag
@click.pass_obj
def status(ctx: Ctx) -> None:
    """What the server serves against what this device accepted before, and any acceptance of a restore."""

    async def go(c: Client) -> dict[str, Any]:
        s = c.session
        value: dict[str, Any] = {"state": "in step", "reason": None, "log": None, "chains": {}, "docs": {},
                                 "acceptance": None, "restored": []}
        s.log_before = dict(s.home.pins().log)  # what an acceptance is judged against (restore.judge)
        reason: str | None = None
        try:
            await sync_log(s, after_login=True)
        except LogInconsistent as e:
            reason = e.reason
        seen = await restore.compare(s, c.chains)
        if reason is None and (seen.lost.chains or seen.lost.docs):
            reason = restore.BEHIND_NOT_LOG
            restore.keep_log_pin(s)
        found = await restore.newest_acceptance(s)
        if reason is None:
            if found is not None:  # for the record: nothing to follow while the server extends this device's pins
                value["acceptance"] = {"member": found[0].member, "name": seen.view.name_of(found[0].member),
                                       "time": found[0].time, "size": found[0].checkpoint.size, "valid": None,
                                       "refused": None}
        else:
            lost = seen.lost.as_json()
            value.update({"state": "behind", "reason": reason, "log": lost["log"], "chains": lost["chains"],
                          "docs": lost["docs"], "summary": restore.summary(seen)})
            if found is not None:
                acc, sig = found
                refused = None
                try:
                    await restore.judge(s, acc, sig, seen)
                    restore.check_covered(acc, seen)
                except ServerBehind as refusal:
                    refused = refusal.reason
                value["acceptance"] = {"member": acc.member, "name": seen.view.name_of(acc.member),
                                       "time": acc.time, "size": acc.checkpoint.size, "valid": refused is None,
                                       "refused": refused}
        value["restored"] = _past(s.home.pins().log)
        return value

    value = with_session(ctx, go, maintain=False, check_log=False)

    def human() -> None:
        if value["state"] == "in step":
            out.print("The server extends everything this device accepted before.")
            if value["acceptance"] is not None:
                acc = value["acceptance"]
                out.print(f"The newest acceptance of a restore it shows: by {escape(acc['name'])} on "
                          f"{when(acc['time'])} (nothing to follow).")
        else:
            out.print(f"BEHIND: {value['summary']}")  # composed, its names escaped (restore.summary)
            for cid, v in value["chains"].items():
                out.print(f"  chain {escape(cid[:12])}: the server has {v['served']} links, you saw {v['pinned']}")
            for key, v in value["docs"].items():
                out.print(f"  document {escape(key[:45])}: the server has version {v['served']}, you saw "
                          f"{v['pinned']}")
            acc = value["acceptance"]
            if acc is None:
                out.print(f"The server shows no acceptance: a member of the Security Team must check what happened "
                          f"and run `{restore.ACCEPT}`; until then this device changes nothing.")
            elif acc["valid"]:
                out.print(f"{escape(acc['name'])} (Security Team) accepted this state on {when(acc['time'])}: your "
                          "next command follows it.")
            else:
                out.print(f"The acceptance the server shows is REFUSED: {escape(acc['refused'])}")
        for r in value["restored"]:
            out.print(f"This vault was restored: accepted by {escape(r['name'])} on {when(r['time'])} "
                      f"({r['chains']} chains, {r['docs']} documents went back).")

    emit_one(ctx, value, human)


@restored.command("accept")
@click.option("--yes", is_flag=True, help="do not ask for confirmation (scripts)")
@json_flag
@click.pass_obj
def accept(ctx: Ctx, yes: bool) -> None:
    """Security Team: sign an acceptance of the server's current state after a restore from an older backup."""

    async def go(c: Client) -> dict[str, Any]:
        s = c.session
        seen = await restore.compare(s, c.chains)
        restore.may_sign(s, seen)
        text = (f"Accept the server's state: audit log of {seen.checkpoint.size} events (root "
                f"{seen.checkpoint.root.hex()[:16]}), organization chain at link {seen.view.org.seq}. "
                f"What this device sees: {restore.summary(seen)}.")
        err.print(text)  # composed, its names escaped (restore.summary)
        if seen.lost.empty():
            err.print("Nothing went back from what this device saw (other members' devices may have seen more).")
        if not yes and not click.confirm("Sign this acceptance? Every member's device will follow it",
                                         default=False, err=True):
            raise click.Abort()
        acc, sig = await restore.sign(s, seen)
        size = await restore.publish(s, acc, sig)
        return {"accepted": {"size": size, "root": acc.checkpoint.root.hex(), "time": acc.time,
                             "org_seq": acc.org_seq, "lost": seen.lost.as_json()}}

    value = with_session(ctx, go, maintain=False, check_log=False)
    emit_one(ctx, value, f"Accepted the restored server's state (audit log of {value['accepted']['size']} events); "
                         "members' devices follow it at their next command.")


_ROWS = (Column("kind", lambda r: r["kind"]), Column("name", lambda r: r["name"] or r["id"][:12]),
         Column("served", lambda r: r["served"]), Column("you saw", lambda r: r["pinned"]),
         Column("result", lambda r: Escaped(r["result"] + (f" as version {r['version']}" if r["version"] else ""))),
         Column("why", lambda r: r["reason"] or None))


@click.command("republish")
@click.argument("team")
@json_flag
@click.pass_obj
def republish(ctx: Ctx, team: str) -> None:
    """After a restore: put back documents this device holds newer local copies of; list what is lost."""
    rows = with_session(ctx, lambda c: republish_team(c, team))
    emit_rows(ctx, rows, _ROWS)
    if not ctx.as_json and not rows:
        out.print("Nothing of this team went back from what this device saw.")


COMMANDS: tuple[click.Command, ...] = (restored, republish)
