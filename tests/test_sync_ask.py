"""The watcher's answer to "is this folder in step?" (client/sync/serve.py, client/sync/watch.py ``answer``) and
the asking side (client/sync/ask.py), with the watch loop in-process over a real folder, real file-system
events and a real Unix socket: in step once a pass settled; a save just before the question is seen (the
cookie) and gets its pass first; a notice gets its pass; a lost connection, a pass that left something, a
question about another folder: not in step; a socket that is not ours alone, a listener of another uid and
a killed watcher's socket are never believed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from client.sync.ask import in_step, reply_line, request, request_line, watch_socket
from client.sync.live import DocNotice, Lost, Missed, Notice
from client.sync.scan import COOKIE, scan
from client.sync.serve import Served
from client.sync.watch import Hint
from tests.helpers.watch_loop import Recorder, Running, queued

TEAM = "drafting"
DOC = "ab" * 16


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.home, self.folder = tmp_path / "home", tmp_path / "dir"
        (self.home / "sync").mkdir(parents=True, mode=0o700)
        self.folder.mkdir()
        self.root = str(self.folder.resolve())
        self.served = Served(watch_socket(str(self.home), TEAM, self.root), TEAM, self.root, False)
        self.q: asyncio.Queue[Notice] = asyncio.Queue()
        self.q.put_nowait(Missed())  # the notices went live

    def running(self, rec: Recorder) -> Running:
        return Running(rec, self.folder, queued(self.q), backstop=600, served=self.served)

    async def ask(self, team: str = TEAM, root: str | None = None, hidden: bool = False) -> bool:
        return await asyncio.to_thread(in_step, str(self.home), team, root or self.root, hidden)

    async def settled(self, rec: Recorder) -> None:
        await rec.until(1)
        for _ in range(100):
            if await self.ask():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the watcher never answered in step")


def nothing(_n: int) -> list[dict[str, Any]]:
    return []  # a pass that found nothing to do


async def test_in_step_once_a_pass_settled_and_the_socket_is_the_members_alone(tmp_path: Path) -> None:
    w = World(tmp_path)
    rec = Recorder(act=nothing)
    async with w.running(rec):
        await w.settled(rec)
        assert await w.ask() and len(rec.hints) == 1, "answered from the watcher's state: no pass run for it"
        st = os.lstat(w.served.path)
        assert oct(st.st_mode & 0o777) == "0o600" and st.st_uid == os.getuid()
        await asyncio.sleep(0.5)
        assert len(rec.hints) == 1, f"the cookie file woke a pass: {rec.hints}"
        assert not [p for p in w.folder.iterdir()], "the cookie file is removed"
        # a question about another folder, another team or other options is not answered "in step"
        assert not await w.ask(root=str(tmp_path))
        assert not await w.ask(team="other")
        assert not await w.ask(hidden=True)
    assert not os.path.lexists(w.served.path), "a watcher that stops removes its socket"
    assert not await w.ask()


async def test_a_save_just_before_the_question_is_seen_and_gets_its_pass_first(tmp_path: Path) -> None:
    w = World(tmp_path)
    rec = Recorder(act=nothing)
    async with w.running(rec):
        await w.settled(rec)
        (w.folder / "draft.txt").write_text("saved a moment ago")
        assert await w.ask(), "the pass for the save settled: in step"
        assert rec.hints[1:] == [Hint(paths=frozenset({"draft.txt"}))], "answered only after the save's pass"


async def test_a_notice_gets_its_pass_and_a_lost_connection_is_never_in_step(tmp_path: Path) -> None:
    w = World(tmp_path)
    rec = Recorder(act=nothing)
    async with w.running(rec):
        await w.settled(rec)
        w.q.put_nowait(DocNotice(DOC, 4, "cd" * 16))
        assert await w.ask()
        assert rec.hints[1:] == [Hint(docs=frozenset({DOC}))]
        w.q.put_nowait(Lost())
        await asyncio.sleep(0.1)
        assert not await w.ask(), "notices may be missed while the connection is down"
        w.q.put_nowait(Missed())  # live again: a full pass, then in step
        assert await w.ask()
        assert rec.hints[2:] == [None]


async def test_a_pass_that_left_something_is_not_in_step(tmp_path: Path) -> None:
    rows = {2: [{"action": "conflict", "name": "draft.txt", "detail": ""}],
            3: [{"action": "push", "name": "draft.txt", "detail": ""}]}
    w = World(tmp_path)
    rec = Recorder(act=lambda n: rows.get(n, []))
    async with w.running(rec):
        await w.settled(rec)
        (w.folder / "draft.txt").write_text("both changed")
        assert not await w.ask(), "a conflict is reported again by the command's own pass"
        assert len(rec.hints) == 2
        (w.folder / "draft.txt").write_text("saved again")
        assert await w.ask(), "a pass that pushed settled the folder"


def _listener_as_nobody(path: Path, reply: dict[str, Any]) -> subprocess.Popen[str]:
    """A process of another uid listening on a Unix socket at ``path``, answering ``reply`` to anyone."""
    probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); "
             "print('up', flush=True)\n"
             "while True:\n c,_=s.accept(); c.recv(65536); c.sendall(sys.argv[2].encode()+b'\\n'); c.close()")
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)),
                  sys.executable)  # one another uid can run (ours may be under /root)
    proc = subprocess.Popen([python, "-I", "-c", probe, str(path), json.dumps(reply)], user=65534,
                            stdout=subprocess.PIPE, text=True, cwd="/")
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


async def test_a_socket_not_ours_alone_or_a_killed_watchers_is_not_believed(tmp_path: Path) -> None:
    w = World(tmp_path)
    rec = Recorder(act=nothing)
    async with w.running(rec):
        await w.settled(rec)
        os.chmod(w.served.path, 0o666)
        assert not await w.ask(), "a socket others may open is not asked"
        os.chmod(w.served.path, 0o600)
        os.chown(w.served.path, 65534, 65534)
        assert not await w.ask(), "a socket of another uid is not asked"
        os.chown(w.served.path, os.getuid(), os.getgid())
        assert await w.ask()
    # another uid's listener behind a socket file that looks like ours (moved into place, made ours)
    if os.getuid() == 0:
        spot = Path(tempfile.mkdtemp(prefix="mvault-uid-"))  # under /tmp: reachable by another uid
        os.chmod(spot, 0o777)
        lie = {"v": 1, "team": TEAM, "root": w.root, "in_step": True, "why": "in step"}
        proc = _listener_as_nobody(spot / "s.sock", lie)
        try:
            os.rename(spot / "s.sock", w.served.path)
            os.chown(w.served.path, os.getuid(), os.getgid())
            os.chmod(w.served.path, 0o600)
            assert not await w.ask(), "a listener of another uid is refused (SO_PEERCRED)"
        finally:
            proc.kill()
            proc.wait()
            shutil.rmtree(spot)
        os.unlink(w.served.path)
    # a killed watcher leaves its socket: nobody answers there, and the next watcher replaces it
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(w.served.path)
    stale.close()
    os.chmod(w.served.path, 0o600)
    assert not await w.ask()
    w.q = asyncio.Queue()
    w.q.put_nowait(Missed())
    rec2 = Recorder(act=nothing)
    async with w.running(rec2):
        await w.settled(rec2)


async def test_a_second_watcher_of_the_folder_leaves_the_socket_to_the_first(tmp_path: Path) -> None:
    w = World(tmp_path)
    rec = Recorder(act=nothing)
    async with w.running(rec):
        await w.settled(rec)
        before = os.stat(w.served.path).st_ino
        w.q, first_q = asyncio.Queue(), w.q
        w.q.put_nowait(Missed())
        rec2 = Recorder(act=nothing)
        async with w.running(rec2):
            await rec2.until(1)
            assert os.stat(w.served.path).st_ino == before
        assert os.stat(w.served.path).st_ino == before, "the second one's exit left the first one's socket"
        w.q = first_q
        assert await w.ask()


def test_a_cookie_file_is_never_synced_whatever_the_rules(tmp_path: Path) -> None:
    """A cookie lives a few milliseconds, but a pass (``--hidden``, rules that take ``*.tmp`` back) scanning then
    must not push it: it is one of the folder's own files (scan.own_file)."""
    (tmp_path / ".mvaultignore").write_text("!*.tmp\n")
    cookie = f"{COOKIE}0123456789abcdef.tmp"
    (tmp_path / cookie).write_text("")
    (tmp_path / ".other.tmp").write_text("taken back by the rules")
    found = scan(tmp_path, None, hidden_ok=True)
    assert ".other.tmp" in found.files and cookie not in found.files


@pytest.mark.parametrize(("team", "root"), [(TEAM, "/home/a/dir"), ('t"\\é', "/a/\udcff\nb\\c\u2603")])
def test_both_lines_are_the_bytes_json_writes(team: str, root: str) -> None:
    """The asking side writes and recognises the lines without ``json``: they must be ``json.dumps``'s bytes (a
    non-UTF-8 path's surrogates and a newline in a path included), or the watcher would refuse the request."""
    for hidden in (False, True):
        assert request_line(team, root, hidden) == json.dumps(request(team, root, hidden)).encode() + b"\n"
        assert json.loads(request_line(team, root, hidden)) == request(team, root, hidden)
        for ok in (False, True):
            why = 'a "why" \u2603'
            reply = {"v": 1, "team": team, "root": root, "in_step": ok, "why": why}
            assert reply_line(team, root, ok, why) == json.dumps(reply).encode() + b"\n"
