"""When a long batch (a batch put, a sync pass) saves a whole sealed file again: the local copies index, a
synced folder's index. (The document pins keep their own rule, every second or 64 versions: it bounds what
a kill leaves unpinned, SECURITY.md.)

Each of those files is sealed whole, so one save costs time in proportion to everything it holds: saved
every second (or every 64 versions) during a first sync of 10,000 files, the saves grow with the files done
and the pass grows as the square of the tree. A ``SavePace`` keeps the rule the batch had (``every``
seconds, or ``count`` changes waiting) while a save is cheap, and spaces saves out once they are not, so
that saving takes at most ``share`` of the batch's time: a save that took 0.2 s is not repeated within
the next 2 s. What a kill leaves behind grows by as much, and the next pass makes it up as it always did
(docs/sync.md, "Crash safety"): nothing is skipped, only done less often.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SHARE = 0.1  # at most this share of a batch's time goes to saving its sealed files again


@dataclass
class SavePace:
    every: float  # seconds between saves while saving is cheap
    count: int | None = None  # or this many changes waiting, whichever comes first
    share: float = SHARE
    clock: Callable[[], float] = time.monotonic
    _last: float = field(default=0.0, init=False)
    _cost: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._last = self.clock()

    def due(self, waiting: int = 0) -> bool:
        """Whether to save now, with ``waiting`` changes not saved yet."""
        since = self.clock() - self._last
        if since < self._cost / self.share:
            return False
        return since >= self.every or (self.count is not None and waiting >= self.count)

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Around one save: its time sets how long until the next one may be due. While it runs (in another thread:
        client/saver.py) none is due."""
        start = self._last = self.clock()
        self._cost = float("inf")
        try:
            yield
        finally:
            self._last = self.clock()
            self._cost = self._last - start
