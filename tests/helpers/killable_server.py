"""The real server as an operator runs it: ``mvault-server run`` in a subprocess, stopped with kill -9.

``ServerProcess.start`` waits for the connection line ``run --json`` prints once it is listening; the
server's stderr goes to a file next to the data directory (read it when a test fails). What a crash
must not leave behind is checked on the data directory itself (``leftovers``). ``extra`` arguments go to ``run``
(``--database URL``: several processes over one PostgreSQL database and one data directory); ``fingerprint`` and
``clock`` let the tests' in-process clients (``tests/helpers/members.py`` ``session``, ``tests/helpers/http.py``)
talk to it as to a ``ServerThread``.
"""

from __future__ import annotations

import json
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from server.tls import fingerprint
from tests.conftest import free_port

MVAULT_SERVER = str(Path(sys.executable).parent / "mvault-server")
START_TIMEOUT = 60.0


class ServerProcess:
    """``mvault-server run`` on a loopback port: the same data directory and port across restarts."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.fingerprint = ""
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.invite: str | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        if self._proc is not None:
            raise RuntimeError("the server is running already")
        with self.log.open("ab") as err:
            self._proc = subprocess.Popen(
                [MVAULT_SERVER, "run", "--data", str(self.data_dir), "--port", str(self.port), "--json",
                 "--rate", "1000", "--burst", "10000", *self.extra],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"mvault-server did not start: {self.log.read_text(errors='replace')[-2000:]}")
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.1)
            if ready:
                line += self._proc.stdout.readline()
        info = json.loads(line)
        self.invite = self.invite or info["invite"]
        self.fingerprint = fingerprint(self.data_dir / "server.crt").hex()
        return self

    def clock(self) -> float:
        return time.time()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def kill(self) -> None:
        """kill -9: no shutdown handler runs, nothing is flushed or closed."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()

    def leftovers(self) -> list[str]:
        """What a start must have collected: temporary files and blobs no version row names."""
        found = [f"tmp/{p.name}" for p in (self.data_dir / "tmp").iterdir()]
        con = sqlite3.connect(f"file:{self.data_dir / 'vault.db'}?mode=ro", uri=True)
        try:
            used = {str(r[0]) for r in con.execute("SELECT blob FROM versions")}
        finally:
            con.close()
        blobs = {p.name for p in (self.data_dir / "blobs").rglob("*") if p.is_file()}
        found += [f"orphan blob {name}" for name in sorted(blobs - used)]
        found += [f"missing blob {name}" for name in sorted(used - blobs)]
        return found
