"""The loop of ``mvault sync --watch``: a sync pass at start, then another whenever the folder changed
(file-system events from watchfiles), the server announced a document version (``client.sync.live``) or
``backstop`` seconds passed without a full pass; never two passes at once; until ``stop`` is set.

The loop does not know what a pass does. ``run_pass(hint)`` is one pass of the sync engine and returns the
actions it took as JSON-able objects, which go to ``emit`` one by one. The hint says why it runs: ``None``
for a full check (the first pass, the backstop, a notice stream that (re)connected and may have missed
notices, a retry after a failure), or a ``Hint`` with the folder paths that changed and the documents the
server announced, which a pass may check first or alone (a hint is never a fact: the server's notices are
unsigned, and a pass checks whatever it acts on).

Our own writes do not wake us again: the download temporaries (``*.mvault-part``, ``client/download.py``,
and the ``.*.tmp`` of ``vault.fileio.atomic_write``) are ignored, and a path an action of a pass names
(``PATH_KEYS``) is ignored while it still has the size, modification time and inode it had right after that
pass; nor do the notices of the versions our passes stored (an action's ``doc`` and ``seq``). Changes and
notices that arrive during a pass are judged once it returned, and wake the next one.

A pass that fails for want of the network (``TransportError``, a connection error) is retried as a full
pass after a backoff (``{"action": "retry", ...}`` is emitted); an expired session is renewed once with
``renew`` when given. Every other error stops the loop and is raised: a security error (the server lied),
lost access (``PolicyDenied``, ``NotFound``, ``DeviceRevoked``), or anything the pass did not expect; so
does the end of the notices with an error (``client.sync.live``), and the watcher's failure.

``stop`` (set by the handlers of ``install_stop_signals``) ends the loop: a pass that is running gets
``grace`` seconds to finish (its actions are emitted), then it is cancelled. A cancelled pass is as safe as
a killed client: the engine writes files only by renaming verified temporaries and keeps its index
consistent after each action.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from client.sync.live import DocNotice, Lost, Notice
from client.sync.scan import COOKIE  # a cookie file: COOKIE, 16 hex digits, ".tmp" (never synced: scan.own_file)
from client.sync.serve import Served, serving, settles
from vault.errors import EXIT_SECURITY, AuthError, DeviceRevoked, TransportError, VaultError
from vault.fileio import Signature, signature

if TYPE_CHECKING:
    from watchfiles import Change


@dataclass(frozen=True)
class Hint:
    """What woke a pass: folder paths that changed (relative, with ``/``; a directory stands for everything
    under it) and ids of documents the server announced."""

    paths: frozenset[str] = frozenset()
    docs: frozenset[str] = frozenset()


RunPass = Callable[[Hint | None], Awaitable[list[dict[str, Any]]]]
Emit = Callable[[dict[str, Any]], None]

PATH_KEYS = ("name", "path", "copy", "source")  # the keys of an action object that name a path in the folder it wrote
SETTLE = 0.05  # seconds to let triggers that come together (a burst of notices) join one pass
GRACE = 2.0  # seconds a running pass may take to finish once stop is set, before it is cancelled
LIVE_WAIT = 3.0  # seconds the first pass waits for the notices to go live (so none is missed in between)
RETRY_FIRST, RETRY_MAX = 0.5, 30.0  # backoff after a pass failed for want of the network
COOKIE_WAIT = 2.0  # seconds the answer waits for its cookie's event (else: not known, the command does a pass)
IDLE_WAIT = 10.0  # seconds the answer waits for the loop to finish the pass changes called for
# watchfiles hands over a batch of events once none came for this long: a cookie's round trip takes one to two
# steps (a bare awatch: 14 ms at a 10 ms step, 5.7 ms at 3). Its Rust loop wakes every step even when idle: an
# idle watcher of 10,000 files used 0.43 % of a CPU at 10 ms, 0.7 % at 5 (60 s each, twice, load 15-16).
EVENT_STEP_MS = 5



def is_own_temporary(name: str) -> bool:
    """A temporary file our downloads or atomic writes create beside their target (``name``: a base name)."""
    return name.endswith(".mvault-part") or (name.startswith(".") and name.endswith(".tmp"))


def install_stop_signals(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    """An event set at the first SIGINT or SIGTERM; the handlers then step aside, so a second signal acts
    as it would without them (Ctrl-C twice interrupts at once)."""
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)

    def stopping() -> None:
        stop.set()
        for sig in signals:
            loop.remove_signal_handler(sig)

    for sig in signals:
        loop.add_signal_handler(sig, stopping)
    return stop


@dataclass
class _OwnWrites:
    """The state of each path a pass wrote, as it was right after that pass."""

    root: Path
    after: dict[str, Signature] = field(default_factory=dict)
    versions: set[tuple[str, int]] = field(default_factory=set)  # (doc, seq) of the versions our passes stored

    def record(self, actions: list[dict[str, Any]]) -> None:
        for action in actions:
            doc, seq = action.get("doc"), action.get("seq")
            if isinstance(doc, str) and isinstance(seq, int):
                self.versions.add((doc, seq))
            for key in PATH_KEYS:
                rel = action.get(key)
                if isinstance(rel, str) and rel:
                    self.after[rel] = signature(self.root / rel)

    def unchanged(self, rel: str) -> bool:
        """Is ``rel`` as our last pass that wrote it left it (or a directory it made for such a path)?"""
        if rel in self.after:
            return signature(self.root / rel) == self.after[rel]
        prefix = rel + "/"
        return (self.root / rel).is_dir() and any(p.startswith(prefix) for p in self.after)


@dataclass
class _Pending:
    """What the next pass is for; ``wake`` is set while there is something."""

    full: bool = False
    changes: int = 0  # how many times something was added (a pass is settled only if none came meanwhile)
    paths: set[str] = field(default_factory=set)
    docs: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, *, full: bool = False, path: str | None = None, doc: str | None = None) -> None:
        self.full = self.full or full
        self.changes += 1
        if path is not None:
            self.paths.add(path)
        if doc is not None:
            self.docs.add(doc)
        self.wake.set()

    def take(self) -> Hint | None:
        hint = None if self.full else Hint(frozenset(self.paths), frozenset(self.docs))
        self.full = False
        self.paths, self.docs = set(), set()
        self.wake.clear()
        return hint


def transient(e: BaseException) -> bool:
    """Does ``e`` only say the network failed (worth retrying)?"""
    if isinstance(e, VaultError):
        return isinstance(e, TransportError) and e.exit_code != EXIT_SECURITY
    return isinstance(e, (aiohttp.ClientError, ConnectionError, TimeoutError))


class _Watch:
    """One watch loop's state (``watch`` below builds and runs it)."""

    def __init__(self, run_pass: RunPass, root: Path, emit: Emit, stop: asyncio.Event, debounce: float,
                 backstop: float, ignore: Callable[[str], bool] | None, renew: Callable[[], Awaitable[None]] | None,
                 grace: float) -> None:
        self.run_pass, self.root, self.emit, self.stop = run_pass, root, emit, stop
        self.debounce, self.backstop, self.ignore, self.renew, self.grace = debounce, backstop, ignore, renew, grace
        self.pending = _Pending()
        self.own = _OwnWrites(root)
        self.during: list[str | DocNotice] | None = None  # changes and notices while a pass runs (None: no pass)
        self.failed = asyncio.Event()  # the watcher or the notices ended with an error
        self.failure: BaseException | None = None
        self.live = asyncio.Event()  # the notices went live (or there are none)
        self.watcher_stop = asyncio.Event()
        self.connected = False  # the notices are live now (client/sync/live.py: from Missed until Lost)
        self.settled_at: int | None = None  # pending.changes when a pass ended settled (serve.py), else None
        self.cookies: dict[str, asyncio.Future[None]] = {}  # cookie files written, until the watcher sees each

    # -- the sources of triggers ------------------------------------------------------------------

    def _relative(self, path: str) -> str | None:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return None

    def _wanted(self, _change: Change, path: str) -> bool:
        rel = self._relative(path)
        if rel is not None and Path(path).name.startswith(COOKIE):
            return True  # a cookie's event (files() takes it, it wakes nothing)
        if rel is None or is_own_temporary(Path(path).name):
            return False
        return rel == "." or self.ignore is None or not self.ignore(rel)

    def _changed(self, rel: str | DocNotice) -> None:
        if isinstance(rel, DocNotice):
            if (rel.doc, rel.seq) not in self.own.versions:
                self.pending.add(doc=rel.doc)
        elif rel == ".":  # the folder itself (created, removed, replaced): everything
            self.pending.add(full=True)
        elif not self.own.unchanged(rel):
            self.pending.add(path=rel)

    async def files(self) -> None:
        # Imported here, as client/terminal.py imports rich: a one-pass `mvault sync` loads this module but never
        # watches, and watchfiles (with anyio and multiprocessing) is ~5 ms of that command's imports (session 17).
        from watchfiles import awatch

        async for changes in awatch(self.root, watch_filter=self._wanted, debounce=max(1, int(self.debounce * 1000)),
                                    step=EVENT_STEP_MS, stop_event=self.watcher_stop, ignore_permission_denied=True):
            cookies = []
            for _change, path in changes:
                rel = self._relative(path)
                if rel is None:
                    continue
                if Path(path).name.startswith(COOKIE):
                    cookies.append(Path(path).name)
                elif self.during is not None:
                    self.during.append(rel)  # judged once the pass says what it wrote
                else:
                    self._changed(rel)
            for name in cookies:  # after the batch's other changes: they came before it, or with it
                seen = self.cookies.get(name)
                if seen is not None and not seen.done():
                    seen.set_result(None)

    async def notices(self, source: AsyncIterator[Notice]) -> None:
        try:
            async for notice in source:
                if isinstance(notice, DocNotice):
                    if self.during is not None:
                        self.during.append(notice)  # perhaps of a version this pass is storing
                    else:
                        self._changed(notice)
                elif isinstance(notice, Lost):
                    self.connected = False
                    self.pending.changes += 1  # no settled answer until a pass after the next Missed
                else:
                    self.connected = True
                    self.pending.add(full=True)
                    self.live.set()
        finally:
            self.connected = False
            self.live.set()

    def guarded(self, what: str, coro: Awaitable[None]) -> asyncio.Task[None]:
        """``coro`` as a task whose failure stops the loop (raised by it)."""
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as e:  # handed to the loop, which raises it
                if self.failure is None:
                    self.failure = e if isinstance(e, VaultError) else VaultError(f"{what} failed: {e}")
                    if self.failure is not e:
                        self.failure.__cause__ = e
                self.failed.set()
        return asyncio.ensure_future(run())

    # -- the loop -----------------------------------------------------------------------------

    async def wait(self, timeout: float, *events: asyncio.Event) -> None:
        """Until one of ``events``, ``stop`` or a failure is set, or ``timeout`` seconds passed."""
        waiters = [asyncio.ensure_future(e.wait()) for e in (*events, self.stop, self.failed)]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _check_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def _pass(self, hint: Hint | None) -> list[dict[str, Any]] | None:
        """One pass (its actions), or None when stop came and it was abandoned or had to finish first."""
        self.during = []
        task = asyncio.ensure_future(self.run_pass(hint))
        try:
            stopping = asyncio.ensure_future(self.stop.wait())
            try:
                await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the loop itself was cancelled: so is its pass
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            finally:
                stopping.cancel()
            if not task.done():
                await asyncio.wait({task}, timeout=self.grace)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                return None
            actions = task.result()
            self.own.record(actions)
            return actions
        finally:
            during, self.during = self.during, None
            for change in during:
                self._changed(change)

    # -- answering "in step?" (client/sync/serve.py) ------------------------------------------------

    def in_step(self) -> bool:
        """No pass running or due, the last one settled, nothing since, the notices live throughout."""
        return (self.connected and self.during is None and not self.pending.wake.is_set()
                and self.settled_at == self.pending.changes)

    async def answer(self) -> tuple[bool, str]:
        """Is the folder in step now? A cookie file written into it must come back through the file watcher
        first (every earlier save is then seen); changes since the last pass get their pass first."""
        if not self.connected:
            return False, "the team's notices are not live"
        name = f"{COOKIE}{secrets.token_hex(8)}.tmp"
        seen = asyncio.get_running_loop().create_future()
        self.cookies[name] = seen
        try:
            os.close(os.open(self.root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            await asyncio.wait_for(seen, COOKIE_WAIT)
        except (OSError, TimeoutError):
            return False, "the folder's events could not be confirmed"
        finally:
            del self.cookies[name]
            with contextlib.suppress(OSError):
                os.unlink(self.root / name)
        end = time.monotonic() + IDLE_WAIT
        while not self.in_step() and time.monotonic() < end and not self.stop.is_set() and self.connected:
            if self.during is None and not self.pending.wake.is_set():
                break  # idle, and not settled: a pass reported what the command's own pass will report
            await asyncio.sleep(0.02)
        if self.in_step():
            return True, "in step"
        return False, "a pass here reported something, or the folder changed meanwhile"

    async def run(self) -> None:
        hint: Hint | None = None  # the first pass checks everything
        next_full = 0.0
        failures, renewed = 0, False
        while not self.stop.is_set():
            self._check_failure()
            before, live = self.pending.changes, self.connected
            self.settled_at = None
            try:
                actions = await self._pass(hint)
            except BaseException as e:
                if isinstance(e, AuthError) and not isinstance(e, DeviceRevoked) and self.renew and not renewed:
                    renewed = True
                    await self.renew()  # the session expired: once more with a new one
                    hint = None
                    continue
                if not transient(e):
                    raise
                failures += 1
                delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
                self.emit({"action": "retry", "error": str(e) or type(e).__name__, "after": delay})
                self.pending.add(full=True)
                await self.wait(delay)  # triggers wait for the retry: a server that is down is not hammered
                hint = self.pending.take()
                continue
            failures, renewed = 0, False
            if actions is None:
                return
            if live and self.connected and self.pending.changes == before and settles(actions):
                self.settled_at = before
            for action in actions:
                self.emit(action)
            if hint is None:  # counted from its end: a pass longer than the backstop is not run back to back
                next_full = time.monotonic() + self.backstop
            await self.wait(next_full - time.monotonic(), self.pending.wake)
            if self.stop.is_set():
                return
            self._check_failure()
            if self.pending.wake.is_set():
                await asyncio.sleep(min(SETTLE, self.debounce))  # triggers coming together join this pass
                hint = self.pending.take()
            else:
                hint = None  # the backstop: a full check


async def watch(run_pass: RunPass, folder: Path, notices: AsyncIterator[Notice] | None, emit: Emit,
                stop: asyncio.Event, *, debounce: float = 0.3, backstop: float = 60.0,
                ignore: Callable[[str], bool] | None = None, renew: Callable[[], Awaitable[None]] | None = None,
                grace: float = GRACE, live_wait: float = LIVE_WAIT, served: Served | None = None) -> None:
    """Keep ``folder`` in step by calling ``run_pass`` until ``stop`` is set: see the module's docstring.

    ``ignore(rel)``: a path the sync ignores anyway (e.g. its ignore rules), so its changes wake nothing.
    ``renew``: logs in again when a pass found the session expired. ``live_wait``: how long the first pass
    waits for the notices to go live, so that a version stored in between is not missed. ``served``: answer
    "in step?" there (client/sync/serve.py) while watching."""
    root = folder.resolve()
    if not root.is_dir():
        raise VaultError(f"cannot watch {folder}: it is not a directory")
    w = _Watch(run_pass, root, emit, stop, debounce, backstop, ignore, renew, grace)
    tasks = [w.guarded("watching the folder", w.files())]
    if notices is not None:
        tasks.append(w.guarded("following the team's notices", w.notices(notices)))
    else:
        w.live.set()
    try:
        await asyncio.sleep(0)  # the watcher starts watching before the first pass (nothing is missed)
        await w.wait(live_wait, w.live)
        w.pending.take()  # the first pass is a full one: whatever came before it is covered
        if served is None:
            await w.run()
        else:
            async with serving(served, w.answer):
                await w.run()
    finally:
        w.watcher_stop.set()
        for t in tasks[1:]:
            t.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks[:1], return_exceptions=True), 2.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        aclose = getattr(notices, "aclose", None)
        if aclose is not None:  # an async generator: its connection closes now
            await aclose()
