"""A throw-away PostgreSQL cluster from Debian's server binaries (``initdb`` and ``pg_ctl`` in a temporary
directory, reached over a unix socket only, ``fsync=off``), for the tests (``tests/helpers/postgres.py``) and the
benches (``bench/pg.py``, which measure with ``durable=True``).

``initdb`` and ``pg_ctl`` run as the current user, or as ``postgres`` (Debian's package creates it) when run as
root, which PostgreSQL refuses to be.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "mvault"


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``MVAULT_PG_BIN``, ``pg_config --bindir``, or Debian's newest
    ``/usr/lib/postgresql/*/bin``."""
    candidates = [os.environ.get("MVAULT_PG_BIN", "")]
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(found.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running PostgreSQL cluster in a temporary directory."""

    def __init__(self, bindir: Path, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable  # fsync and synchronous commits as PostgreSQL's defaults (the benches)
        self.root = Path(tempfile.mkdtemp(prefix="mvault-pg-"))
        self.port = _free_port()  # names the socket file (the server listens on no TCP address)
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> Cluster:
        data = self.root / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                  "--locale=C", *(() if self.durable else ("--no-sync",)))
        return self.serve()

    def serve(self) -> Cluster:
        """Start the initialized cluster (again, after ``halt``)."""
        options = (f"-k {self.root} -c listen_addresses='' -p {self.port} -c max_connections=200"
                   + ("" if self.durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"))
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", options, "-l",
                  str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def halt(self) -> None:
        """``pg_ctl stop -m fast``: every connection is ended, as when an operator stops the database."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}&port={self.port}"

    @staticmethod
    def name(database: str) -> str:
        """The database's name, from a URL of ``url`` or a name."""
        return database.split("/")[3].split("?")[0] if "://" in database else database

    def _fresh_name(self) -> str:
        return f"t{os.getpid()}_{next(self._names)}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """``sql``'s output (unaligned, no headers) in ``database`` (a name, or a URL of ``url``)."""
        database = self.name(database)
        done = subprocess.run([str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, "-d", database,
                               "-c", sql], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr}")
        return done.stdout.strip()

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = self._fresh_name()
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def copy_database(self, template: str, into: str = "") -> str:
        """A database holding a copy of ``template`` (a URL of ``url``; nobody may be connected to it): ``into``
        (a URL of ``url``: that database is dropped and made again as the copy) or a new one; its URL. PostgreSQL
        copies the files: far cheaper than building the contents again."""
        name = self.name(into) if into else self._fresh_name()
        if into:
            self.psql(f"DROP DATABASE IF EXISTS {name}")
        self.psql(f"CREATE DATABASE {name} TEMPLATE {self.name(template)}")
        return self.url(name)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the cluster's server and the backends it has reaped so far (to compare
        runs: docs/performance.md asks for CPU time, not wall time, on a shared machine)."""
        pid = (self.root / "data" / "postmaster.pid").read_text().split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if os.environ.get("MVAULT_PG_CPU"):  # where to note the cluster's CPU seconds at its end
            with open(os.environ["MVAULT_PG_CPU"], "a") as f:
                f.write(f"{self.cpu_seconds():.2f}\n")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
