"""The client's clock: one object, passed in, read wherever the client needs the time.

The command line builds it once (``client.cli._common``), with the offset tests set in
``MVAULT_TEST_CLOCK_OFFSET`` to move a member's clock (expiries, terms, stale witnesses);
library callers pass their own or take the system clock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

OFFSET_VARIABLE = "MVAULT_TEST_CLOCK_OFFSET"


@dataclass(frozen=True)
class Clock:
    """Unix time in whole seconds, moved by ``offset`` seconds."""

    offset: float = 0.0

    def now(self) -> int:
        return int(time.time() + self.offset)

    @classmethod
    def from_environment(cls) -> Clock:
        """The clock of a command: the system clock moved by MVAULT_TEST_CLOCK_OFFSET (seconds), if set."""
        return cls(float(os.environ.get(OFFSET_VARIABLE, "0") or 0))


SYSTEM = Clock()

