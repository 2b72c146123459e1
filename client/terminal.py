"""The CLI's two consoles (stdout, stderr), which never let a string control the terminal.

Every string rich renders (``print`` arguments, table cells and headers) goes through
``render_str``; here it first passes ``sanitize.neutralize``, so an ESC, C1 or bidi control
that a caller forgot to escape is still shown escaped. Markup, emoji codes and highlighting
are off: ``[bold]`` or ``:warning:`` in a name prints as typed.

Not on a terminal (a pipe, a file), nothing is wrapped or cut: rich would otherwise wrap at
80 columns (or ``COLUMNS``). ``MVAULT_FORCE_TTY=1`` makes both consoles behave as on a
terminal (tables, progress bars, folding), ``MVAULT_FORCE_TTY=0`` as in a pipe; tests use it,
since they run without a terminal (``is_terminal``).
"""

from __future__ import annotations

import sys
from typing import Any

from rich.cells import cell_len, chop_cells
from rich.console import Console
from rich.text import Text

from client.sanitize import CONTINUATION, neutralize, one_line
from client.tty import FORCE_TTY, is_terminal

__all__ = ["FORCE_TTY", "SafeConsole", "err", "fold", "is_terminal", "out"]


class SafeConsole(Console):
    def __init__(self, stderr: bool = False) -> None:
        terminal = is_terminal(sys.stderr if stderr else sys.stdout)
        # Not a terminal (a pipe, a file): soft wrap, which neither wraps nor crops, whatever the width.
        super().__init__(stderr=stderr, highlight=False, markup=False, emoji=False, force_terminal=terminal,
                         soft_wrap=not terminal)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(neutralize(text), **kwargs)

    def print_line(self, text: str) -> None:
        """Print composed text (an error, a warning) as exactly one line."""
        self.print(one_line(text), soft_wrap=True)


def fold(line: str, width: int) -> list[str]:
    """Screen rows for one line of a message on a terminal ``width`` cells wide. The terminal
    would wrap a longer line to column 0, where padding could place a forged message line;
    here every row past the first starts with ``CONTINUATION`` instead."""
    if cell_len(line) <= width or width <= 2 * len(CONTINUATION):
        return [line]
    first, *_ = chop_cells(line, width)
    rest = line[len(first):]
    return [first] + [CONTINUATION + row for row in chop_cells(rest, width - len(CONTINUATION))]


out = SafeConsole()
err = SafeConsole(stderr=True)
