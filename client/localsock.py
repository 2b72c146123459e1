"""Unix sockets only this uid may use (the unlock agent's, a sync watcher's): imports nothing heavy, since
the commands that ask them must start fast.

A socket lives in a directory only we may enter (``private_dir``), is made 0600 (``bind_private``), and both
ends check the other: the server refuses a peer of another uid (``peer_ok``, ``SO_PEERCRED``), the client
talks only to a socket file that is ours and no one else's (``owned_socket``) and whose listener runs as us
(``peer_ok`` again). A path too long for ``sun_path`` moves to ``$XDG_RUNTIME_DIR`` (or the temp directory)
``/mvault-<uid>/<dev>-<inode of the home>-<name>`` (``socket_path``).

Only built-in modules (``_socket``, not ``socket``, which loads ``enum`` and ``selectors``): the fast path of
``mvault sync`` imports this module before it asks a watcher (client/cli/fast.py). A ``socket.socket`` is an
``_socket.socket``, so the watcher's and the agent's sockets are taken as they are."""

from __future__ import annotations

import _socket
import os
import stat
import sys

SUN_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS: stay below both


class SocketError(Exception):
    """A socket path that is not ours (someone else's directory, or a symlink)."""


def socket_path(home: str, name: str) -> str:
    """``home/name``, or a private directory's path for it when that is too long for a Unix socket."""
    path = os.path.join(home, name)
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        return path
    import tempfile  # only here: the fast path of `mvault sync` does not pay for it

    st = os.stat(home)
    base = os.path.join(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir(), f"mvault-{os.getuid()}")
    return os.path.join(base, f"{st.st_dev:x}-{st.st_ino:x}-{name}")


def private_dir(path: str) -> None:
    """Make ``path`` a directory only we can enter, or refuse (someone else's, or a symlink)."""
    try:  # noqa: SIM105 - contextlib is not loaded on the fast path's start
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise SocketError(f"{path} is not a directory of ours; refusing to put a socket there")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)


def owned_socket(path: str) -> bool:
    """Is ``path`` a socket (not a link to one) of this uid that no one else may open?"""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid() and not stat.S_IMODE(st.st_mode) & 0o077


def peer_ok(conn: _socket.socket) -> bool:
    """Is the other end of ``conn`` a process of this uid?"""
    peercred = getattr(_socket, "SO_PEERCRED", None)
    if peercred is None:
        return True  # no peer credentials here: the 0700 directory and 0600 socket are the guard
    raw = conn.getsockopt(_socket.SOL_SOCKET, peercred, _UCRED)
    uid = int.from_bytes(raw[4:8], sys.byteorder, signed=True)  # struct ucred: pid, uid, gid (C ints)
    return uid == os.getuid()


_UCRED = 12  # bytes of struct ucred: three C ints


def bind_private(listener: _socket.socket, path: str) -> None:
    """Bind ``listener`` at ``path`` as a 0600 socket (never readable by others, not even for a moment)."""
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
