"""Scripts a test runs in a child process as a guest device of a coalition space (the thief's laptop of review
rounds 18 and 19): ``guest_script`` wraps a body in the opening they share, a guest session at the space's host
(``sys.argv[1]``: the device's home; ``sys.argv[2]``: the space's id), ``g`` the ``GuestClient`` and ``api`` its
``Api`` inside the body."""

from __future__ import annotations

import textwrap

_OPENING = """
import asyncio, sys
from pathlib import Path
from client import guestspace
from client.api import Api
from client.clock import SYSTEM
from client.home import Home
{imports}

async def main() -> None:
    home = Home(Path(sys.argv[1]))
    secrets = home.unlock()
    visit = guestspace.sibling(home, sys.argv[2])
    cfg = visit.config()
    async with Api(cfg.url, cfg.pin) as api:
        g = await guestspace.GuestClient.open(visit, secrets, api, SYSTEM)
{body}

asyncio.run(main())
"""


def guest_script(body: str, imports: str = "") -> str:
    """The script: ``imports`` (module-level lines) and ``body`` (run inside ``main``'s ``async with``, with
    ``home``, ``secrets``, ``api`` and ``g`` at hand) in the shared opening."""
    return _OPENING.format(imports=textwrap.dedent(imports).strip(),
                           body=textwrap.indent(textwrap.dedent(body).strip("\n"), " " * 8))
