"""``mvault device ...``, ``recovery-key``, ``recover``: this member's devices and paper keys."""

from __future__ import annotations

import json
import sys

import click

from client import admin, devicerevoke, expulsions, joinedspaces
from client.cli._common import Column, Ctx, Time, emit_one, emit_rows, json_flag, out, run, with_session
from client.client import Client
from client.maintenance import maintain
from client.sanitize import escape, one_line
from client.testknobs import stall

_DEVICES = (Column("name", lambda r: r["name"]), Column("kind", lambda r: r["kind"]),
            Column("added", lambda r: Time(r["added"])),
            Column("revoked", lambda r: Time(r["revoked"]) if r["revoked"] else None),
            Column("", lambda r: "this device" if r["this"] else ""))


@click.group()
def device() -> None:
    """Your devices: add, link, list, revoke."""


@device.command("add")
@click.option("--name", default=None, help="name for the new device")
@click.option("--wait", default=600, show_default=True, type=click.IntRange(5, 3600), help="seconds to wait")
@json_flag
@click.pass_obj
def device_add(ctx: Ctx, name: str | None, wait: int) -> None:
    """Print a one-time code, then wait for `mvault device link CODE` on the new device."""

    def show(code: str) -> None:
        if ctx.as_json:
            click.echo(json.dumps({"code": code}))
        else:
            click.echo(f"on the new device run:\n  mvault device link {code}")
        sys.stdout.flush()

    added = with_session(ctx, lambda s: admin.device_add(s, name, show, wait))
    emit_one(ctx, {"device": added, "added": True}, lambda: out.print(f"added device {escape(added)}"))


@device.command("link")
@click.argument("code")
@click.option("--name", default=None, help="name for this device")
@click.option("--wait", default=600, show_default=True, type=click.IntRange(5, 3600), help="seconds to wait")
@json_flag
@click.pass_obj
def device_link(ctx: Ctx, code: str, name: str | None, wait: int) -> None:
    """On a new machine: join your member identity with the code from `device add`."""
    passphrase = ctx.home.passphrases.new([name or ""])
    cfg = run(admin.device_link(ctx.home, code, name, passphrase, wait, ctx.clock))
    emit_one(ctx, {"member": cfg.member_id, "device": cfg.device_id, "name": cfg.name},
             lambda: out.print(f"this device now belongs to {escape(cfg.name)} ({cfg.member_id})"))


@device.command("ls")
@json_flag
@click.pass_obj
def device_ls(ctx: Ctx) -> None:
    """Your devices (and paper keys), active and revoked."""
    emit_rows(ctx, with_session(ctx, admin.device_list), _DEVICES)


@device.command("revoke")
@click.argument("name")
@json_flag
@click.pass_obj
def device_revoke(ctx: Ctx, name: str) -> None:
    """Revoke a device: rolls your member key and rotates your teams' keys."""
    stall()  # a bad MVAULT_TEST_STALL (or one not below the connect timeout) stops the command before it revokes

    async def go(s: Client) -> tuple[int, list[str], list[str], list[str]]:
        done = await devicerevoke.device_revoke(s, name, lambda device: expulsions.signed_at_hosts(s, device))
        # to the coalition spaces this home is a guest of (those it could not land at: named, exit 1)
        carried, refused = await expulsions.carry_revocation(s, done.boxes)
        mine = await s.chains.links(f"/api/v1/chains/member/{s.session.me}")
        # and to those the member joined on another device (review 15): the record in the member chain
        spaces, more, missed = await joinedspaces.carry_revocation(s, done.boxes, mine)
        await joinedspaces.publish(s, base=spaces)  # the record sealed again, to the new member key
        dated = [done.ahead] if done.ahead else []
        return done.gen, [*dated, *await maintain(s), *carried, *more], missed, refused

    gen, rotated, missed, refused = with_session(ctx, go)
    emit_one(ctx, {"device": name, "revoked": True, "puk_gen": gen, "rotated": rotated},
             lambda: out.print(f"revoked {escape(name)}; member key generation {gen}"
                               + "".join(f"\n{one_line(r)}" for r in rotated)))
    if missed or refused:  # after what was done is printed: exit 1 (3 for a lie), naming the spaces
        raise joinedspaces.not_reached(missed, refused)


@click.command("recovery-key")
@click.option("--name", default=None, help="name for the paper key")
@json_flag
@click.pass_obj
def recovery_key(ctx: Ctx, name: str | None) -> None:
    """Make a paper key (an offline device): write down the key and the server line, keep them safe."""
    paper = with_session(ctx, lambda s: admin.recovery_key(s, name))
    groups = paper.code.split("-")

    def human() -> None:
        rows = [f"  {i + 1:>2}  " + "-".join(groups[i:i + 4]) for i in range(0, len(groups), 4)]
        out.print(f"recovery key {escape(paper.device)} (anyone holding it can act as you until you revoke it):\n"
                  + "\n".join(rows) + "\n"
                  "server (not secret; a new machine needs it with the key):\n"
                  f"  mvault recover --server {escape(paper.server)} --cert {paper.cert}", soft_wrap=True)

    emit_one(ctx, {"recovery_key": paper.code, "device": paper.device, "server": paper.server,
                   "cert": paper.cert}, human)


@click.command()
@click.argument("code", nargs=-1)
@click.option("--server", metavar="URL", default=None, help="the server's URL (printed beside the recovery key)")
@click.option("--cert", metavar="FINGERPRINT", default=None,
              help="the server certificate's SHA-256 fingerprint (printed beside the recovery key)")
@click.option("--name", default=None, help="name for this device")
@json_flag
@click.pass_obj
def recover(ctx: Ctx, code: tuple[str, ...], server: str | None, cert: str | None, name: str | None) -> None:
    """On a fresh machine: restore access with a recovery key (CODE, its groups with or without spaces; asked
    when not given, so that it stays out of the shell's history). An old mvr1- key names its server itself."""
    text = " ".join(code) or str(click.prompt("recovery key", err=True))
    target = admin.recovery_target(text, server, cert)  # a mistyped group is named before any passphrase
    passphrase = ctx.home.passphrases.new([name or ""])
    cfg = run(admin.recover(ctx.home, target, passphrase, name, ctx.clock))
    emit_one(ctx, {"member": cfg.member_id, "device": cfg.device_id, "name": cfg.name},
             lambda: out.print(f"restored {escape(cfg.name)} on this machine"))


COMMANDS: tuple[click.Command, ...] = (device, recovery_key, recover)
