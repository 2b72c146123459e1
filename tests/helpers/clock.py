"""A clock for in-process clients that follows MVAULT_TEST_CLOCK_OFFSET at every reading.

The client reads no environment variable itself (the CLI builds its clock once, at its entry);
tests that move the clocks of in-process clients with ``monkeypatch.setenv`` pass this one."""

from __future__ import annotations

from dataclasses import dataclass

from client.clock import Clock


class EnvironmentClock(Clock):
    def now(self) -> int:
        return Clock.from_environment().now()


FOLLOWS_ENVIRONMENT = EnvironmentClock()


@dataclass(frozen=True)
class StoppedClock(Clock):
    """A clock stopped at ``at``: acts of several in-process clients dated in one second."""

    at: int = 0

    def now(self) -> int:
        return self.at
