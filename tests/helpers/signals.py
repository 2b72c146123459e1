"""What a process does with its signals, from /proc (Linux): for a failure message when a command did not stop at
SIGINT. Twice, in loaded `make test` runs only (sessions 14 and 15), `device add --wait` and an interrupted `get`
did not exit within 60 s of SIGINT while their main thread sat in the event loop: a SIGINT blocked (``SigBlk``) or
ignored (``SigIgn``) since the command started (both survive exec) would do that; these masks say whether it was.
They said (session 15): the xdist worker itself had SIGINT ignored (``SigIgn``), and the command inherited it, so
Python never installed its KeyboardInterrupt handler. A test that sends SIGINT starts its command with
``preexec_fn=sigint_default``: what a shell gives a foreground command."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def signal_state(pid: int) -> str:
    """``SigBlk``/``SigIgn``/``SigCgt`` of ``pid`` and of this process, with whether SIGINT is in each."""
    bit = 1 << (signal.SIGINT - 1)
    lines = []
    for who, p in (("command", pid), ("test process", os.getpid())):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError as e:
            lines.append(f"{who} {p}: {e}")
            continue
        masks = {k: v.strip() for k, _, v in (ln.partition(":") for ln in status.splitlines())
                 if k in ("SigBlk", "SigIgn", "SigCgt", "State")}
        sigint = {k: bool(int(v, 16) & bit) for k, v in masks.items() if k != "State"}
        lines.append(f"{who} {p}: {masks}; SIGINT in {sigint}")
    return "\n".join(lines)


def sigint_default() -> None:
    """In the child before exec: SIGINT back to its default disposition (an ignored one survives exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
