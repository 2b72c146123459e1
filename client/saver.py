"""A batch's saves of its sealed files (the document pins, the local copies index, a synced folder's index), made in
order by one thread instead of on the event loop.

During a batch put (a first sync's uploads) the event loop sends every upload and reads every answer; each save
there stopped it for the save's file system calls (a temporary file's write and ``fsync``, the rename, the
directory's ``fsync``), each call also waiting for the GIL again while the workers read and encrypt. Here the caller
takes what a save writes at the moment it is due (the pins to merge, the entries, the folders to fsync first),
hands that to ``submit`` and goes on; one thread makes the saves in the order they were submitted, so no file gets
ahead of one saved before it as the batch orders them (the local copies entries never ahead of the pins; the
folders of new names fsync'd, in the same job, before the entries that record them). ``wait`` returns once every
save submitted so far is on disk: a batch's last flush waits, so a command still ends with everything saved.
A fetch batch (a pass's pulls) hands its saves over the same way, and so does the sync pass for its folder's index
(``SyncRun.save``; session 21 kept them on the loop: free of them, the loop's batch downloads went out smaller and
twice as many, until the batch download waited for an answer on purpose, ``client.batching.Batcher``'s ``hold``:
docs/performance.md, issue 16 sessions 21 and 22).

A save that fails stops the rest: no later save is made (nothing saved after one that was not), and the error is
raised by the next ``submit``, ``check`` or ``wait`` (each of them, again, until the command ends). What a kill
leaves unsaved grows by the saves still in flight (usually one, milliseconds); the next pass makes it up as it
always did (docs/sync.md, "Crash safety").
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path

from client.download import sync_dirs


def take(unsynced: set[Path] | None) -> set[Path]:
    """The folders a fetch batch placed new names in so far (``download.place``'s ``unsynced``), taken from it: a
    folder a worker adds meanwhile stays there for the next taker."""
    if not unsynced:
        return set()
    dirs = set(unsynced)
    unsynced.difference_update(dirs)
    return dirs


class Saver:
    """Saves made in submission order by one worker thread (``mvault-save``), started at the first one."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, concurrent.futures.Future[None]]] = []
        self._failed: BaseException | None = None
        self._lock = threading.Lock()

    def submit(self, save: Callable[[], None], kind: str = "") -> None:
        """Make ``save()`` in the saving thread once every save submitted before it is made (``kind``: what it saves,
        for ``busy``). Raises the error of a save that failed before (and submits nothing)."""
        self.check()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mvault-save")
        self._pending.append((kind, self._pool.submit(self._run, save)))

    def submit_placed(self, dirs: set[Path], save: Callable[[], None], kind: str = "") -> None:
        """``submit`` of ``save``, made once ``dirs`` (``take``: the folders of new names it records) are fsync'd."""
        def settled() -> None:
            if dirs:
                sync_dirs(dirs)
            save()

        self.submit(settled, kind)

    def _run(self, save: Callable[[], None]) -> None:
        with self._lock:
            if self._failed is not None:
                return  # one before it failed: nothing is saved after a save that was not
        try:
            save()
        except BaseException as e:
            with self._lock:
                self._failed = e
            raise

    def busy(self, kind: str | None = None) -> bool:
        """Whether a save submitted (of ``kind``, if given) is not made yet: a save of a file that one waiting in the
        thread saves anyway can wait for the next time it is due (the thread is not given a queue of them)."""
        self._pending = [(k, f) for k, f in self._pending if not f.done()]
        return any(kind is None or k == kind for k, _ in self._pending)

    def check(self) -> None:
        """Raise the error of a save that failed, if one did."""
        with self._lock:
            failed = self._failed
        if failed is not None:
            raise failed

    def wait(self) -> None:
        """Return once every save submitted is made (blocking: the saves never need the event loop); raise the error
        of one that failed."""
        pending, self._pending = self._pending, []
        concurrent.futures.wait([f for _, f in pending])
        self.check()
