"""``mvault-server run --workers N``: N server processes on one port, under a parent that supervises them.

Each worker is ``mvault-server run`` itself (the same arguments, ``--workers 1``, ``MVAULT_SERVER_WORKER=1`` in its
environment): its own event loop, database pool and listening socket, bound with ``SO_REUSEPORT`` so that the
kernel spreads new connections over the workers. Nothing that matters lives in one worker's memory (issue 19:
nonces, sessions, budgets, failed logins, chain heads, thread positions and the audit log are the database's),
so any worker may serve any request.

Only on PostgreSQL: an SQLite data directory is served by one process (``--workers`` above 1 is refused).

The parent initializes the data directory and the database first (certificate, ``log.key``, schema, and the
collection of unreferenced blobs: workers never collect, as another worker's upload may be waiting in ``tmp/``),
prints how to connect once a worker accepts connections, then supervises: a worker that exits while the parent
is not stopping is started again after ``RESTART_DELAY`` (its clients' requests in flight fail; what it had
acknowledged is in the database); a worker that keeps dying at once (``MAX_QUICK_DEATHS`` in a row, each within
``QUICK`` seconds of its start: a port taken, a certificate that does not load) stops the whole, exit 1. SIGTERM
or SIGINT stops every worker (SIGTERM, their own graceful shutdown) and the parent exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WORKER_ENV = "MVAULT_SERVER_WORKER"
RESTART_DELAY = 1.0
QUICK = 5.0
MAX_QUICK_DEATHS = 5
READY_TIMEOUT = 60.0

log = logging.getLogger("mvault.server")


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def refusal(workers: int, database_url: str) -> str | None:
    """Why ``--workers`` cannot be used here (None: it can)."""
    if workers > 1 and not database_url:
        return (f"--workers {workers} needs PostgreSQL (--database or database_url): an SQLite data directory is "
                "served by one process")
    return None


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


def supervise(command: list[str], workers: int, host: str, port: int, on_ready: Callable[[], None],
              shutdown_timeout: float) -> int:
    """Run ``workers`` workers of ``command`` (``mvault-server run ...`` as the parent was started) until SIGTERM
    or SIGINT; the exit status."""
    stopping: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _f: stopping.append(s))
    command = [*command, "--workers", "1"]
    env = {**os.environ, WORKER_ENV: "1"}

    def start() -> _Worker:
        return _Worker(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))

    pool = [start() for _ in range(workers)]
    try:
        if not _accepting(host, port, pool, stopping):
            if not stopping:
                log.error("no worker started (see their errors above)")
                return 1
            return 0
        on_ready()
        quick_deaths = 0
        while not stopping:
            time.sleep(0.2)
            for i, w in enumerate(pool):
                code = w.process.poll()
                if code is None or stopping:
                    continue
                quick_deaths = quick_deaths + 1 if time.monotonic() - w.started < QUICK else 0
                if quick_deaths >= MAX_QUICK_DEATHS:
                    log.error("workers keep exiting at start (the last with status %s): stopping", code)
                    return 1
                log.warning("worker %d exited with status %s; starting another", w.process.pid, code,
                            extra={"fields": {"worker": w.process.pid, "status": code}})
                time.sleep(RESTART_DELAY)
                pool[i] = start()
        return 0
    finally:
        _stop_all(pool, shutdown_timeout)


def _accepting(host: str, port: int, pool: list[_Worker], stopping: list[int]) -> bool:
    """Wait until the port accepts a connection (a worker is serving); False if every worker exited first."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not stopping and time.monotonic() < deadline:
        if all(w.process.poll() is not None for w in pool):
            return False
        try:
            with socket.create_connection((host if host not in ("0.0.0.0", "::", "") else "127.0.0.1", port), 1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _stop_all(pool: list[_Worker], timeout: float) -> None:
    for w in pool:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout + 10
    for w in pool:
        try:
            w.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait()
