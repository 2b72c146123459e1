"""``mvault-server run`` as a real process on a loopback port, its log kept in a file: for tests of what the
executable itself does (its log, its exit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

SERVER = str(Path(sys.executable).parent / "mvault-server")
WAIT = 60.0  # seconds a start or a stop may take before the test fails (never reached when all is well)


@dataclass
class ServerProcess:
    data: Path
    port: int
    invite: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """SIGTERM, then the exit status (the test fails if it does not end)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(WAIT)


def start_server(data: Path, *args: str) -> ServerProcess:
    """Initialize ``data`` and serve it with ``args`` (e.g. ``--log-format json``) until started."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}
    init = subprocess.run([SERVER, "init", "--data", str(data), "--port", str(port), "--json"], capture_output=True,
                          text=True, timeout=WAIT, env=env, check=True)
    invite = json.loads(init.stdout)["invite"]
    log = data.parent / f"{data.name}.log"
    with log.open("wb") as err:
        process = subprocess.Popen([SERVER, "run", "--data", str(data), "--port", str(port), *args], env=env,
                                   stdout=subprocess.DEVNULL, stderr=err)
    started = ServerProcess(data, port, invite, log, process)
    deadline = time.monotonic() + WAIT
    while "started" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            started.stop()
            raise AssertionError(f"mvault-server did not start: {log.read_text()}")
        time.sleep(0.1)
    return started
