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
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

from client.localsock import owned_socket, peer_ok, socket_path

VERSION = 1
MAX_LINE = 64 * 1024  # bytes of a request or a reply, at most
ASK_TIMEOUT = 20.0  # seconds a command waits for the watcher's answer (it may first finish a pass: serve.py)
#: the headers of a pass's report on a terminal (client/cli/sync.py's columns; an answer "in step" draws them alone)
REPORT_HEADERS = ("action", "name", "version", "detail")


def watch_socket(home: str, team: str, root: str) -> str:
    """The socket of the watcher of team ``team``'s folder at ``root`` (a real path) in ``home``."""
    digest = hashlib.sha256(f"{team}\0{root}".encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return socket_path(os.path.join(home, "sync"), f"w-{digest}.sock")


def request(team: str, root: str, hidden: bool) -> dict[str, Any]:
    return {"v": VERSION, "team": team, "root": root, "hidden": hidden}


def in_step(home: str, team: str, root: str, hidden: bool = False, timeout: float = ASK_TIMEOUT) -> bool:
    """Does a watcher of this uid serving ``root`` for ``team`` say the folder is in step? False when unknown."""
    try:
        path = watch_socket(home, team, root)
    except OSError:
        return False
    if not owned_socket(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
            if not peer_ok(s):
                return False
            s.sendall(json.dumps(request(team, root, hidden)).encode() + b"\n")
            reply = _read_line(s)
        except OSError:  # a stale socket (ECONNREFUSED), a timeout, a watcher that went away
            return False
    try:
        answer = json.loads(reply)
    except ValueError:
        return False
    return (isinstance(answer, dict) and answer.get("v") == VERSION and answer.get("team") == team
            and answer.get("root") == root and answer.get("in_step") is True)


def _read_line(s: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_LINE:
            return b""
    return buf.split(b"\n", 1)[0]
