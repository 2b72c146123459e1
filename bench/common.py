"""What every bench script shares: alternating rounds, medians, ratios, rows, machine facts.

A *row* is one line of ``make bench``'s table: our figure and the reference's, both medians of
rounds that alternate reference and ours in the same run, the ratio of medians (always
oriented so that higher is better for us: ours/reference for rates, reference/ours for
times) and the issue's target. Each script writes ``{"rows": [...], ...}`` to its ``--out``
file; ``bench/run.py`` gathers the rows into one table and ``bench/results.json``.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def alternate(reference: Callable[[], float], ours: Callable[[], float],
              rounds: int) -> tuple[list[float], list[float]]:
    """Run reference then ours, ``rounds`` times; return both lists of samples."""
    refs: list[float] = []
    mine: list[float] = []
    for _ in range(rounds):
        refs.append(reference())
        mine.append(ours())
    return refs, mine


@dataclass
class Row:
    row: str
    unit: str
    ours: list[float]
    reference: list[float] | None
    higher_is_better: bool
    ours_what: str
    reference_what: str = ""
    target_ratio: float | None = None
    #: an absolute bound beside the ratio: ("<", 0.2) or (">=", 10000) on our median
    target_abs: tuple[str, float] | None = None
    target_text: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    #: further conditions of the target, by name (e.g. "p99 < 15 ms": True)
    checks: dict[str, bool] = field(default_factory=dict)
    #: the reference's unit when it differs (login: logins/s against requests/s)
    reference_unit: str = ""

    @property
    def ours_median(self) -> float:
        return float(statistics.median(self.ours))

    @property
    def reference_median(self) -> float | None:
        return float(statistics.median(self.reference)) if self.reference else None

    @property
    def ratio(self) -> float | None:
        ref = self.reference_median
        if ref is None:
            return None
        mine = self.ours_median
        if self.higher_is_better:
            return mine / ref if ref else None
        return ref / mine if mine else None

    @property
    def met(self) -> bool | None:
        checks: list[bool] = []
        if self.target_ratio is not None and self.ratio is not None:
            checks.append(self.ratio >= self.target_ratio)
        if self.target_abs is not None:
            op, bound = self.target_abs
            checks.append(self.ours_median < bound if op == "<" else self.ours_median >= bound)
        checks.extend(self.checks.values())
        return all(checks) if checks else None

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ours_median=round(self.ours_median, 4), reference_median=None if self.reference_median is None
                 else round(self.reference_median, 4), ratio=None if self.ratio is None else round(self.ratio, 4),
                 met=self.met, rounds=len(self.ours))
        return d


def write_rows(out: Path, rows: list[Row], rounds: int, started: float, digits: int = 1,
               details: bool = False) -> None:
    """Write a script's ``{"rows", "machine", "rounds", "seconds"}`` to ``out`` and print one line per row
    (``details``: with the row's detail as JSON)."""
    result: dict[str, Any] = {"rows": [r.as_json() for r in rows], "machine": machine(), "rounds": rounds,
                              "seconds": round(time.perf_counter() - started, 1)}
    out.write_text(json.dumps(result, indent=1) + "\n")
    for row in rows:
        ref = row.reference_median
        print(f"{row.row:<17} ours {row.ours_median:,.{digits}f} {row.unit}"
              + (f", reference {ref:,.{digits}f} {row.unit}, ratio {row.ratio:.2f}" if ref is not None and row.ratio
                 else "")
              + f" ({row.target_text}: {'met' if row.met else 'NOT met'})"
              + (f" {json.dumps(row.detail)}" if details else ""))


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def git_modified() -> list[str]:
    """Tracked files changed from the commit (figures of a dirty tree are not the commit's)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [line[3:] for line in out.splitlines()]


def machine() -> dict[str, Any]:
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_mib": mem, "python": sys.version.split()[0],
            "platform": platform.platform(), "commit": git_commit(), "modified": git_modified()}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        s = f"{value:,.0f}"
    elif abs(value) >= 10:
        s = f"{value:.1f}"
    elif abs(value) >= 1:
        s = f"{value:.2f}"
    else:
        s = f"{value:.3f}"
    return f"{s} {unit}".strip()


def uvloop_run() -> Callable[..., Any]:
    import uvloop
    return uvloop.run


def precompile() -> None:
    """Compile our modules as a wheel install would: the editable install leaves them uncompiled,
    and with PYTHONDONTWRITEBYTECODE every ``mvault`` command would compile them again (~0.25 s
    of each command here, which is not what a member's installed client pays)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / d) for d in
                                                                ("vault", "server", "client", "security"))],
                   check=True, capture_output=True)


class Sampler:
    """Peak RSS of one process, sampled every 20 ms in a thread; with ``children``, of the process and its
    children (recursively) summed."""

    def __init__(self, pid: int, children: bool = False) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.children = children
        self._error = psutil.Error
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                for child in self.proc.children(recursive=True) if self.children else []:
                    with contextlib.suppress(self._error):  # a child that ended meanwhile
                        rss += child.memory_info().rss
                self.peak = max(self.peak, rss)
            except self._error:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def serve_reference(app: Any, port: int, cert: Path, key: Path) -> None:
    """Run a bare aiohttp app the way ours runs: HTTPS with the same certificate, uvloop, its own
    process; the first stdout line is ``{"url": ...}``. Returns at Ctrl-C."""
    import asyncio
    import contextlib
    import json
    import ssl

    import uvloop
    from aiohttp import web

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
        print(json.dumps({"url": f"https://127.0.0.1:{port}"}), flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + sys, seconds) of process ``pid`` so far (all its threads, from /proc), or with no
    ``pid`` of this process's children that ended and were waited for (``RUSAGE_CHILDREN``)."""
    if pid is None:
        import resource

        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_workers(proc: psutil.Process) -> list[psutil.Process]:
    """A server process and its ``--workers`` (its children)."""
    return [proc, *proc.children(recursive=True)]


def cpu_of(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` so far."""
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def join_unlocked(mvault: str, invite: str, env: dict[str, str]) -> None:
    """Join with ``invite`` as "bench", unlock for an hour (``env`` then carries the session, not the passphrase
    file), and create the program team "bench"."""
    def run(*args: str) -> str:
        done = subprocess.run([mvault, *args], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"mvault {args[0]} ... failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    run("join", invite, "--name", "bench")
    env["MVAULT_SESSION"] = json.loads(run("--json", "unlock", "--minutes", "60"))["session"]
    del env["MVAULT_PASSPHRASE_FILE"]  # the session must carry every command from here
    run("team", "create", "bench", "--kind", "program")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], log: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start a server process (stderr to ``log``); its first stdout line is JSON connection info."""
    import json

    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise SystemExit(f"{cmd[0]} did not start: {log.read_text()}")
    return proc, dict(json.loads(line))


def secrets_after_join(home: Any) -> Any:
    """The keystore just written by ``join`` (a ``client.home.Home``), opened with the key it
    derived: no second Argon2id per member in a bench's setup."""
    from client.home import Secrets
    from vault import keystore

    key = home._key
    assert key is not None
    return Secrets.from_value(keystore.open_with_key((home.path / "keystore.bin").read_bytes(), key))


def start_with_reference(tmp: Path, script: str, procs: list[subprocess.Popen[str]],
                         server_args: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """``mvault-server run`` on ``tmp/data`` (with ``server_args``, e.g. ``--workers 2``; the database from
    ``MVAULT_DATABASE_URL`` when set: bench/postgres.py), and ``script --reference-server`` with the same
    certificate; both appended to ``procs`` (ours, then the reference; the caller stops them).
    Returns both servers' connection info."""
    data = tmp / "data"
    # Benchmarks log in from one address far faster than a person: the per-address limit is raised.
    server, info = start([str(Path(sys.executable).parent / "mvault-server"), "run", "--data", str(data), "--port",
                          str(free_port()), "--json", "--rate", "1000000", "--burst", "1000000", *server_args],
                         tmp / "server.log")
    procs.append(server)
    reference, ref_info = start([sys.executable, script, "--reference-server", "--port", str(free_port()),
                                 "--cert", str(data / "server.crt"), "--key", str(data / "server.key")],
                                tmp / "reference.log")
    procs.append(reference)
    return info, ref_info



def args_or_reference(ap: argparse.ArgumentParser,
                      reference_server: Callable[[int, Path, Path], None]) -> argparse.Namespace | None:
    """Parse the script's command line, with the hidden flags ``start_with_reference`` starts the script's
    reference server with: given ``--reference-server``, run ``reference_server(port, cert, key)`` and
    return None."""
    ap.add_argument("--reference-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_server:
        reference_server(args.port, args.cert, args.key)
        return None
    return args


@dataclass
class Servers:
    """Ours and the reference, as ``with_reference`` started them in ``tmp``."""

    tmp: Path
    ours: subprocess.Popen[str]
    info: dict[str, Any]
    reference: subprocess.Popen[str]
    ref_info: dict[str, Any]
    server_log: list[str] = field(default_factory=list)  # our server's log lines, read once the run is done

    @property
    def fp(self) -> bytes:
        return bytes.fromhex(self.info["fingerprint"])


@contextlib.contextmanager
def with_reference(script: str, prefix: str, server_args: tuple[str, ...] = ()) -> Iterator[Servers]:
    """``start_with_reference`` in a temporary directory; both servers are stopped at the end. After a run
    that did not fail, our server's log is kept in ``server_log`` and its first lines go to stderr."""
    procs: list[subprocess.Popen[str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp_s:
            tmp = Path(tmp_s)
            info, ref_info = start_with_reference(tmp, script, procs, server_args)
            servers = Servers(tmp, procs[0], info, procs[1], ref_info)
            yield servers
            servers.server_log = (tmp / "server.log").read_text().splitlines()
            if servers.server_log:
                print(f"the server logged {len(servers.server_log)} lines, the first ones:", *servers.server_log[:20],
                      sep="\n  ", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
