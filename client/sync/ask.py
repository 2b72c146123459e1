"""Asking a running ``mvault sync TEAM DIR --watch`` whether DIR is in step (the fast path of a one-pass sync).

Imports only the standard library and client/localsock.py: ``mvault sync TEAM DIR`` asks before click,
aiohttp or the crypto libraries are loaded (client/cli/fast.py). The watcher's side is client/sync/serve.py.

The socket: ``$MVAULT_HOME/sync/w-<first 24 hex of SHA-256(team NUL real path of DIR)>.sock`` (0600, in the
home's 0700 ``sync/``; ``localsock.socket_path`` when that path is too long). One request per connection, one
JSON line each way (docs/format.md, "Sync watcher socket")::

    {"v": 1, "team": TEAM, "root": REAL PATH OF DIR, "hidden": false}
    {"v": 1, "team": TEAM, "root": REAL PATH OF DIR, "in_step": true|false, "why": TEXT}

Anything else (no socket, a socket that is not ours alone, a listener of another uid, a stale socket of a
killed watcher, a timeout, a reply about another folder or a malformed one) is "not known": the command runs
its full pass as before.

Both lines are written in one canonical form (``request_line``, ``reply_line``: JSON with ASCII escapes, keys in
this order), so the asking side parses no JSON: it takes "in step" only from a reply that starts with exactly
``reply_line``'s bytes for its own team and root and ``"in_step": true``. Anything else is "not known".

Only built-in modules are imported here (no ``json``, ``hashlib``, ``socket`` or ``typing``: ~20 ms of a
command's start on a loaded machine, more than the answer itself). The watcher parses the request with ``json``.
"""

from __future__ import annotations

import _socket
import os

from client.localsock import owned_socket, peer_ok, socket_path

try:
    from _json import encode_basestring_ascii as _quoted  # what json.dumps uses (C): no ``re``, no ``json``
except ImportError:  # pragma: no cover - another Python implementation
    from json.encoder import encode_basestring_ascii as _quoted

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy takes any TYPE_CHECKING as true)
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
MAX_LINE = 64 * 1024  # bytes of a request or a reply, at most
ASK_TIMEOUT = 20.0  # seconds a command waits for the watcher's answer (it may first finish a pass: serve.py)
#: the headers of a pass's report on a terminal (client/cli/sync.py's columns; an answer "in step" draws them alone)
REPORT_HEADERS = ("action", "name", "version", "detail")


def _sha256_hex(data: bytes) -> str:
    """SHA-256 from CPython's own module when there is one (``hashlib`` loads OpenSSL: ~3 ms of a start)."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.11 (3.12: _sha2); no stub
    except ImportError:  # pragma: no cover - another Python
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def watch_socket(home: str, team: str, root: str) -> str:
    """The socket of the watcher of team ``team``'s folder at ``root`` (a real path) in ``home``."""
    digest = _sha256_hex(f"{team}\0{root}".encode("utf-8", "surrogateescape"))[:24]
    return socket_path(os.path.join(home, "sync"), f"w-{digest}.sock")


def request(team: str, root: str, hidden: bool) -> dict[str, Any]:
    """The request as the watcher parses it (``request_line`` is its bytes)."""
    return {"v": VERSION, "team": team, "root": root, "hidden": hidden}


def request_line(team: str, root: str, hidden: bool) -> bytes:
    """``json.dumps(request(team, root, hidden))`` and a newline, without loading ``json``."""
    flag = "true" if hidden else "false"
    return f'{{"v": {VERSION}, "team": {_quoted(team)}, "root": {_quoted(root)}, "hidden": {flag}}}\n'.encode()


def _reply_start(team: str, root: str, in_step: bool) -> str:
    flag = "true" if in_step else "false"
    return f'{{"v": {VERSION}, "team": {_quoted(team)}, "root": {_quoted(root)}, "in_step": {flag}, "why": '


def reply_line(team: str, root: str, in_step: bool, why: str) -> bytes:
    """The watcher's answer: ``json.dumps`` of ``{"v", "team", "root", "in_step", "why"}`` and a newline."""
    return f"{_reply_start(team, root, in_step)}{_quoted(why)}}}\n".encode()


def in_step(home: str, team: str, root: str, hidden: bool = False, timeout: float = ASK_TIMEOUT) -> bool:
    """Does a watcher of this uid serving ``root`` for ``team`` say the folder is in step? False when unknown."""
    try:
        path = watch_socket(home, team, root)
    except OSError:
        return False
    if not owned_socket(path):
        return False
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        if not peer_ok(s):
            return False
        s.sendall(request_line(team, root, hidden))
        reply = _read_line(s)
    except OSError:  # a stale socket (ECONNREFUSED), a timeout, a watcher that went away
        return False
    finally:
        s.close()
    return reply.startswith(_reply_start(team, root, True).encode()) and reply.endswith(b"}")


def _read_line(s: _socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_LINE:
            return b""
    return buf.split(b"\n", 1)[0]
