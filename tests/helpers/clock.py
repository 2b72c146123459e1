"""A clock for in-process clients that follows MVAULT_TEST_CLOCK_OFFSET at every reading.

The client reads no environment variable itself (the CLI builds its clock once, at its entry);
tests that move the clocks of in-process clients with ``monkeypatch.setenv`` pass this one."""

from __future__ import annotations

from client.clock import Clock


class EnvironmentClock(Clock):
    def now(self) -> int:
        return Clock.from_environment().now()


FOLLOWS_ENVIRONMENT = EnvironmentClock()
