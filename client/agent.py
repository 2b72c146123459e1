"""The unlock agent: a small process that holds an unlock session in memory only, like ``ssh-agent``.

``mvault unlock`` derives the keystore key (Argon2id), wraps it under a fresh random session
secret (``vault.keystore.seal_session``: authenticated expiry) and hands the wrapped blob to an
agent process through a pipe. The session secret goes to the user's shell (``MVAULT_SESSION``);
the blob stays in the agent's memory. A command needs both: the agent's blob (asked for over a
Unix socket that only this uid may use) and the secret from its environment. Nothing on disk,
and nothing in the shell's history, opens the keystore once the agent is gone. The agent exits at
its timeout, on ``mvault lock``, on SIGTERM/SIGHUP/SIGINT, or when its socket or keystore disappears
(the home was removed), overwriting the blob first.

Socket: ``$MVAULT_HOME/agent.sock`` (home 0700, socket 0600; peers of another uid are refused with
``SO_PEERCRED`` where the platform has it). When that path is too long for a Unix socket, a private
directory is used instead: ``$XDG_RUNTIME_DIR`` (or the temp directory) ``/mvault-<uid>/<dev>-<inode>-agent.sock``.

Protocol (one request per connection, see docs/format.md)::

    b"G"  ->  b"G" || u32 len || sealed session      (b"N" once expired)
    b"I"  ->  b"I" || u64 pid || u64 seconds left
    b"S"  ->  b"S"  and the agent exits

The agent imports nothing from ``vault``: it never sees the key in the clear.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from client import localsock

SOCKET_NAME = "agent.sock"
MAX_SECONDS = 60 * 60
_MAX_BLOB = 4096
_TIMEOUT = 5.0  # per connection, both sides


class AgentError(Exception):
    """The agent could not be started (the caller reports it as a ``KeystoreError``)."""


def _now() -> float:
    """A clock that keeps counting while the machine is suspended (CLOCK_BOOTTIME on Linux), so a
    laptop that sleeps through the expiry wakes up locked."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        return time.clock_gettime(boottime)
    return time.monotonic()


def socket_path(home: Path) -> Path:
    return Path(localsock.socket_path(os.fspath(home), SOCKET_NAME))


def _private_dir(path: Path) -> None:
    """Make ``path`` a directory only we can enter, or refuse (someone else's, or a symlink)."""
    try:
        localsock.private_dir(os.fspath(path))
    except localsock.SocketError as e:
        raise AgentError(f"{path} is not a directory of ours; refusing to put the unlock agent's socket there") from e


# -- client side ------------------------------------------------------------------------------------------


def _ask(home: Path, op: bytes) -> bytes | None:
    """One request; ``None`` when no agent answers (none started, stale socket, timed out)."""
    try:
        path = socket_path(home)
    except OSError:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(_TIMEOUT)
        try:
            s.connect(os.fspath(path))
            s.sendall(op)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if sum(map(len, chunks)) > _MAX_BLOB + 16:
                    return None
        except OSError:
            return None
    return b"".join(chunks)


def fetch(home: Path) -> bytes | None:
    """The sealed session the agent holds, or ``None`` (no agent, expired, or not ours)."""
    reply = _ask(home, b"G")
    if not reply or reply[:1] != b"G" or len(reply) < 5:
        return None
    (n,) = struct.unpack(">I", reply[1:5])
    blob = reply[5:]
    return blob if len(blob) == n else None


@dataclass(frozen=True)
class Status:
    pid: int
    seconds_left: int


def status(home: Path) -> Status | None:
    reply = _ask(home, b"I")
    if not reply or reply[:1] != b"I" or len(reply) != 17:
        return None
    pid, left = struct.unpack(">QQ", reply[1:])
    return Status(pid, left)


def stop(home: Path) -> bool:
    """Stop the home's agent; True if one was running. A stale socket file is removed."""
    stopped = _ask(home, b"S") == b"S"
    if not stopped:
        with contextlib.suppress(OSError):
            path = socket_path(home)
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                path.unlink()
    return stopped


def start(home: Path, sealed_session: bytes, seconds: int) -> int:
    """Start an agent for ``home`` holding ``sealed_session`` for ``seconds``; returns its pid. Any agent
    already running for this home is stopped first (one agent per home)."""
    if not 0 < seconds <= MAX_SECONDS or len(sealed_session) > _MAX_BLOB:
        raise AgentError("unlock agent: bad timeout or session")
    if not hasattr(socket, "AF_UNIX"):
        raise AgentError("the unlock agent needs Unix sockets")
    stop(home)
    _private_dir(home)
    path = socket_path(home)
    if path.parent != home:
        _private_dir(path.parent)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        localsock.bind_private(listener, os.fspath(path))
        listener.listen(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MVAULT_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "client.agent", str(listener.fileno()), os.fspath(path), os.fspath(home)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/", env=env,
            pass_fds=(listener.fileno(),), start_new_session=True)
    except OSError as e:
        listener.close()
        with contextlib.suppress(OSError):
            path.unlink()
        raise AgentError(f"cannot start the unlock agent: {e.strerror or e}") from e
    listener.close()  # the agent has its own copy
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(struct.pack(">I", seconds) + sealed_session)
        proc.stdin.close()
        ready = proc.stdout.readline()
    except OSError:
        ready = b""
    proc.stdout.close()
    if ready != b"ready\n":
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait(5)
        with contextlib.suppress(OSError):
            path.unlink()
        raise AgentError("the unlock agent did not start")
    proc.returncode = 0  # it lives on by design: no "still running" warning when this object goes
    return proc.pid


# -- the agent itself -----------------------------------------------------------------------------------


def _harden() -> None:
    """No core dumps (they would put the session on disk); on Linux, not ptrace-able or readable through
    /proc/<pid>/mem by other processes of the same uid (PR_SET_DUMPABLE = 0, as ssh-agent does)."""
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def _read_all(fd: int) -> bytearray:
    buf = bytearray()
    while len(buf) <= _MAX_BLOB + 4:
        chunk = os.read(fd, 8192)
        if not chunk:
            break
        buf += chunk
    return buf


class _Stop(Exception):
    pass


def _serve(listener: socket.socket, path: Path, home: Path, blob: bytearray, ident: tuple[int, int],
           deadline: float) -> None:
    while True:
        left = deadline - _now()
        if left <= 0:
            return
        # Wake at least every second: the sleep does not count time the machine was suspended, _now() does.
        readable, _, _ = select.select([listener], [], [], min(left, 1.0))
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) != ident or not (home / "keystore.bin").exists():
                return  # replaced by another agent, or the home is gone
        except OSError:
            return
        if not readable:
            continue
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        with conn:
            conn.settimeout(_TIMEOUT)
            try:
                if not localsock.peer_ok(conn):
                    continue
                op = conn.recv(1)
                if op == b"G":
                    if deadline - _now() <= 0:
                        conn.sendall(b"N")
                        return
                    conn.sendall(b"G" + struct.pack(">I", len(blob)) + bytes(blob))
                elif op == b"I":
                    conn.sendall(b"I" + struct.pack(">QQ", os.getpid(), max(0, int(deadline - _now()))))
                elif op == b"S":
                    with contextlib.suppress(OSError):
                        path.unlink()
                    blob[:] = bytes(len(blob))
                    conn.sendall(b"S")
                    return
            except OSError:
                continue


def main() -> None:
    fd, path, home = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    _harden()
    listener = socket.socket(fileno=fd)
    data = _read_all(0)
    os.close(0)
    if len(data) < 4 or len(data) > _MAX_BLOB + 4:
        sys.exit(1)
    (seconds,) = struct.unpack(">I", data[:4])
    deadline = _now() + min(seconds, MAX_SECONDS)
    blob = bytearray(data[4:])
    data[:] = bytes(len(data))

    def on_signal(signum: int, frame: object) -> None:
        raise _Stop()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    os.write(1, b"ready\n")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.close(devnull)
    ident = os.stat(path)
    try:
        _serve(listener, path, home, blob, (ident.st_dev, ident.st_ino), deadline)
    except _Stop:
        pass
    finally:
        blob[:] = bytes(len(blob))
        listener.close()
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == (ident.st_dev, ident.st_ino):
                path.unlink()  # ours still: no stale socket left behind

if __name__ == "__main__":
    main()
