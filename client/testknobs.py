"""Timeouts tests may shorten through the environment (README "Configuration": the ``MVAULT_TEST_*`` rows): a
value that is not a number of seconds above 0 and at most the default is refused, so a setting can make a wait
shorter, never longer or endless."""

from __future__ import annotations

import os
from typing import Final

from vault.errors import VaultError

CONNECT_TIMEOUT: Final = 15.0  # seconds to connect to a server (TCP and TLS): client/api.py
CONNECT_TIMEOUT_VARIABLE: Final = "MVAULT_TEST_CONNECT_TIMEOUT"
STALL: Final = 10.0  # seconds a revocation's visit may take before the spaces left go at once: client/joinedspaces.py
STALL_VARIABLE: Final = "MVAULT_TEST_STALL"
FOLLOW_EVERY: Final = 60.0  # seconds between a guest's records of a running ``thread follow``: client/guestacts.py
FOLLOW_EVERY_VARIABLE: Final = "MVAULT_TEST_FOLLOW_EVERY"


def shortened(variable: str, default: float) -> float:
    """``default`` seconds, or the shorter value tests set in the environment ``variable`` (refused: a longer one,
    zero or less, or a value that is no number)."""
    raw = os.environ.get(variable, "")
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= default:
        raise VaultError(f"{variable} must be a number of seconds above 0 and at most {default:g}")
    return seconds


def connect_timeout() -> float:
    """Seconds to connect to a server: ``CONNECT_TIMEOUT`` or ``MVAULT_TEST_CONNECT_TIMEOUT``."""
    return shortened(CONNECT_TIMEOUT_VARIABLE, CONNECT_TIMEOUT)


def stall() -> float:
    """Seconds a revocation waits on one space's host before visiting the spaces left at once: ``STALL`` or
    ``MVAULT_TEST_STALL``, always below the connect timeout (a silent server is noticed before its connection
    fails, so the visits left overlap it: one wait in all, not one per space)."""
    seconds = shortened(STALL_VARIABLE, STALL)
    if seconds >= connect_timeout():
        raise VaultError(f"{STALL_VARIABLE} ({seconds:g} s) must be below the connect timeout "
                         f"({connect_timeout():g} s; {CONNECT_TIMEOUT_VARIABLE})")
    return seconds


def follow_every() -> float:
    """Seconds between a running ``thread follow``'s records as a guest (and its carrying of our own organization's
    removals; client/guestacts.py, client/cli/threads.py): ``FOLLOW_EVERY``, or the shorter interval tests set in
    ``MVAULT_TEST_FOLLOW_EVERY`` (a longer one, zero, or a value that is no number is refused: the record stays at
    least once a minute)."""
    return shortened(FOLLOW_EVERY_VARIABLE, FOLLOW_EVERY)
