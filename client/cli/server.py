"""``mvault server ...``: where this client reaches the organization's server, and moving it.

``server show`` prints the URL and transport pin this client uses; ``server announce-move URL --pin PIN`` (NCC)
signs the ``org.server`` link that tells every member's client to go there; ``server moved URL --pin PIN``
switches this client to a place given out of band once the organization chain there names it.
"""

from __future__ import annotations

from typing import Any

import click

from client import moves, spacemoves
from client.cli._common import Ctx, emit_one, json_flag, run, when, with_session
from client.client import Client
from client.sanitize import escape
from client.terminal import err


@click.group()
def server() -> None:
    """Where this client reaches the organization's server; moving it."""


@server.command("show")
@json_flag
@click.pass_obj
def server_show(ctx: Ctx) -> None:
    """The server URL and transport pin this client uses."""
    url, pin = moves.place_of(ctx.home)
    emit_one(ctx, {"url": url, "pin": str(pin)}, f"server: {escape(url)}\npin:    {pin}")


@server.command("announce-move")
@click.argument("url")
@click.option("--pin", "pin_text", required=True, help="what clients pin at URL: cert:HEX, spki:HEX or webpki "
              "(`mvault-server init/run` print it)")
@click.option("--at-new", is_flag=True, help="sign it at URL itself (the old server is gone; the organization's "
              "data must be there already)")
@json_flag
@click.pass_obj
def announce_move(ctx: Ctx, url: str, pin_text: str, at_new: bool) -> None:
    """NCC: sign that the server moved to URL (with another NCC member, both sign the same move)."""
    place, pin = moves.parse_place(url, pin_text)

    async def go(s: Client) -> moves.Moved:
        m = await moves.announce(s, place, pin)
        if m.in_force:  # the coalition spaces' guests learn it from their space's chain (client/spacemoves.py)
            _, left = await spacemoves.carry(s)
            spaces.extend(left)
        return m

    spaces: list[str] = []  # coalition spaces this device could not carry the move to

    m = run(moves.announce_at(ctx.home, ctx.home.unlock(), place, pin, ctx.clock)) if at_new else with_session(ctx, go)
    value = {"url": m.url, "pin": str(m.pin), "in_force": m.in_force, "seq": m.seq}
    if spaces:
        err.print_line(f"warning: the move is not carried into coalition space(s) {', '.join(map(escape, spaces))}: "
                       "this device does not hold the host's coalition key there or is not in the space; an NCC "
                       "member of the space who holds it carries it with their next command, else its guests stay "
                       "at the old place")
    if m.in_force:
        text = (f"announced: the server is at {escape(m.url)} (pin {m.pin}); members' clients switch on their next "
                "command there (`mvault server moved` for those whose old server is gone)")
    else:
        text = (f"proposed: the move to {escape(m.url)} (pin {m.pin}) takes effect when another NCC member signs "
                f"the same: mvault server announce-move {escape(m.url)} --pin {m.pin}")
    emit_one(ctx, value, text)


@server.command("moved")
@click.argument("url")
@click.option("--pin", "pin_text", required=True, help="the new server's pin as given to you: cert:HEX, spki:HEX "
              "or webpki")
@json_flag
@click.pass_obj
def server_moved(ctx: Ctx, url: str, pin_text: str) -> None:
    """Switch to a moved server given out of band, once the organization chain there names it."""
    place, pin = moves.parse_place(url, pin_text)
    secrets = ctx.home.unlock()
    m = run(moves.moved(ctx.home, secrets, place, pin, ctx.clock))
    value: dict[str, Any] = {"url": m.url, "pin": str(m.pin), "seq": m.seq, "time": m.time}
    emit_one(ctx, value, f"switched to {escape(m.url)} (pin {m.pin}): the organization chain there names it "
                         f"(signed {when(m.time)}, org seq {m.seq})")


COMMANDS: tuple[click.Command, ...] = (server,)
