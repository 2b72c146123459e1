"""Loaded by every ``mvault`` process a test starts with this directory on PYTHONPATH and ``FLUSH_LOG`` naming
a file: each save of the local copies index (``client.localcopies.LocalCopies.save``, what a batch put's flush
ends with) appends one JSON line ``{"start": t0, "end": t1}`` (monotonic seconds) to that file. With
``FLUSH_DELAY`` (seconds) each save also takes that much longer, as it does in a home of many thousand
documents (the whole index is decrypted and sealed again at each save). Each time a ``SavePace`` puts a save off
because the last one cost too much (``client.savepace``: under a loaded machine even a small home's save can), one
line ``{"paced": true}``: a test can tell a save the pace put off from one the batch never asked for."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from client.localcopies import LocalCopies
from client.savepace import SavePace

_LOG = os.environ.get("FLUSH_LOG")
_DELAY = float(os.environ.get("FLUSH_DELAY", "0"))
_save = LocalCopies.save


def _logged_save(self: LocalCopies, entries: Any) -> None:
    start = time.monotonic()
    _save(self, entries)
    time.sleep(_DELAY)
    assert _LOG is not None
    with open(_LOG, "a") as f:
        f.write(json.dumps({"start": start, "end": time.monotonic(), "entries": len(entries)}) + "\n")


_due = SavePace.due


def _logged_due(self: SavePace, waiting: int = 0) -> bool:
    due = _due(self, waiting)
    if not due and self.clock() - self._last < self._cost / self.share:
        assert _LOG is not None
        with open(_LOG, "a") as f:
            f.write(json.dumps({"paced": True}) + "\n")
    return due


if _LOG:
    LocalCopies.save = _logged_save  # type: ignore[method-assign]
    SavePace.due = _logged_due  # type: ignore[method-assign]
