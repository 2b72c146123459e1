"""The CLI's two consoles (stdout, stderr), which never let a string control the terminal.

Every string rich renders (``print`` arguments, table cells and headers) goes through
``render_str``; here it first passes ``sanitize.neutralize``, so an ESC, C1 or bidi control
that a caller forgot to escape is still shown escaped. Markup, emoji codes and highlighting
are off: ``[bold]`` or ``:warning:`` in a name prints as typed.
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len, chop_cells
from rich.console import Console
from rich.text import Text

from client.sanitize import CONTINUATION, neutralize, one_line


class SafeConsole(Console):
    def __init__(self, stderr: bool = False) -> None:
        super().__init__(stderr=stderr, highlight=False, markup=False, emoji=False)

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
