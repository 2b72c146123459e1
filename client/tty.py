"""Whether output goes to a terminal, decided without loading rich (the fast path of ``mvault sync`` asks it:
client/cli/fast.py); client/terminal.py builds its consoles on it."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the fast path's start: client/sync/ask.py)
if TYPE_CHECKING:
    from typing import TextIO

FORCE_TTY = "MVAULT_FORCE_TTY"


def is_terminal(stream: TextIO) -> bool:
    """Whether output to ``stream`` is for a terminal: ``MVAULT_FORCE_TTY`` (1 or 0) if set, else rich's
    ``TTY_COMPATIBLE`` (1 or 0), else ``isatty()``. Not ``FORCE_COLOR``, which rich would also take as a
    terminal: colour asked for in CI must not turn a script's tab-separated rows into a table."""
    for name in (FORCE_TTY, "TTY_COMPATIBLE"):
        forced = os.environ.get(name, "")
        if forced in ("0", "1"):
            return forced == "1"
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False
