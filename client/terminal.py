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
from typing import TYPE_CHECKING, Any

from client.sanitize import CONTINUATION, neutralize, one_line
from client.tty import FORCE_TTY, is_terminal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["FORCE_TTY", "LazyConsole", "err", "fold", "is_terminal", "out", "safe_console"]


def safe_console(stderr: bool = False) -> Console:
    """A rich console that never lets a string control the terminal (the module's docstring)."""
    from rich.console import Console

    class SafeConsole(Console):
        def render_str(self, text: str, **kwargs: Any) -> Text:
            return super().render_str(neutralize(text), **kwargs)

    terminal = is_terminal(sys.stderr if stderr else sys.stdout)
    # Not a terminal (a pipe, a file): soft wrap, which neither wraps nor crops, whatever the width.
    return SafeConsole(stderr=stderr, highlight=False, markup=False, emoji=False, force_terminal=terminal,
                       soft_wrap=not terminal)


class LazyConsole:
    """``safe_console`` made when something is first printed through it: rich.console (~20 ms of CPU at every
    command's start) is not imported by a command that prints nothing through it (``mvault get`` into a file, its
    row to a pipe: client/cli/_common.py). ``is_terminal`` is answered without it, as the console would answer
    (it is made with ``force_terminal`` set to that same answer)."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = safe_console(self._stderr)
        return self._console

    @property
    def is_terminal(self) -> bool:
        if self._console is not None:
            return self._console.is_terminal
        return is_terminal(sys.stderr if self._stderr else sys.stdout)

    @property
    def width(self) -> int:
        return self.console.width

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)

    def print_line(self, text: str) -> None:
        """Print composed text (an error, a warning) as exactly one line."""
        self.console.print(one_line(text), soft_wrap=True)


def fold(line: str, width: int) -> list[str]:
    """Screen rows for one line of a message on a terminal ``width`` cells wide. The terminal
    would wrap a longer line to column 0, where padding could place a forged message line;
    here every row past the first starts with ``CONTINUATION`` instead."""
    from rich.cells import cell_len, chop_cells

    if cell_len(line) <= width or width <= 2 * len(CONTINUATION):
        return [line]
    first, *_ = chop_cells(line, width)
    rest = line[len(first):]
    return [first] + [CONTINUATION + row for row in chop_cells(rest, width - len(CONTINUATION))]


out = LazyConsole()
err = LazyConsole(stderr=True)
