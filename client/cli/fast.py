"""The ``mvault`` console script: ``mvault sync TEAM DIR`` asks a running watcher of that folder first.

Before click, aiohttp or the crypto libraries are imported, a one-pass ``mvault sync TEAM DIR`` (no option but
``--json``) asks the ``mvault sync TEAM DIR --watch`` of this uid serving that folder, if there is one, whether
the folder is in step (client/sync/ask.py; the watcher's side: client/sync/serve.py). "In step" prints what a
pass that found nothing to do prints (nothing in a pipe, an empty table on a terminal (rich loaded only then),
``[]`` with ``--json``) and exits 0. Any other answer, or none, and every other command: the full CLI
(client/cli/main.py), as without a watcher. ``MVAULT_SYNC_ASK=0`` never asks (the full pass always runs).
"""

from __future__ import annotations

import os
import sys

from client.homepath import home_dir
from client.sync.ask import REPORT_HEADERS, in_step
from client.tty import is_terminal

TYPE_CHECKING = False  # without importing typing (see client/sync/ask.py)
if TYPE_CHECKING:
    from typing import Any

FULL = "client.cli.main"  # the full CLI: imported by name, only when the watcher did not answer
CONSOLE = "client.terminal"  # the consoles: imported by name, only to draw the empty table on a terminal


def answered(argv: list[str]) -> bool:
    """Was ``mvault`` with ``argv`` a one-pass sync that the folder's watcher answered "in step" (printed)?"""
    if os.environ.get("MVAULT_SYNC_ASK") == "0":
        return False
    as_json, words = False, []
    for arg in argv:
        if arg == "--json":
            as_json = True
        elif arg.startswith("-"):
            return False  # any other option: the full command
        else:
            words.append(arg)
    if len(words) != 3 or words[0] != "sync" or words[1] == "status" or not os.path.isdir(words[2]):
        return False
    if not in_step(home_dir(), words[1], os.path.realpath(words[2])):
        return False
    if as_json:
        sys.stdout.write("[]\n")
        sys.stdout.flush()
    elif is_terminal(sys.stdout):  # the empty table a pass with nothing to do draws (client/cli/_common.py)
        table = _module("rich.table").Table(*REPORT_HEADERS)
        _module(CONSOLE).out.print(table)
    return True


def _module(name: str) -> Any:
    """``importlib.import_module`` without importing ``importlib`` (and ``warnings``) at every start."""
    __import__(name)
    return sys.modules[name]


def main() -> None:
    if answered(sys.argv[1:]):
        sys.exit(0)
    _module(FULL).main()
