"""Whole files age-encrypted to an operator's key (server backups), streamed.

``encrypting`` / ``decrypting`` give a writable / readable end of a pipe; a worker thread runs the age
encryption (or decryption) between that pipe and the file, so the caller produces (or consumes) the
plaintext as a stream and memory stays constant. age authenticates every 64 KiB chunk and the end of
the stream: a decryption of an altered or cut file fails, at the latest when the stream ends, and
``decrypting`` raises it when the block ends (after everything was read), so a caller that only acts
once the block has ended never acts on a forged file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from vault.crypto import age
from vault.errors import DecryptionFailed, VaultError


class AgeKeyError(VaultError):
    """An age recipient or identity that cannot be used."""


def check_recipient(text: str) -> str:
    """``text`` if it is an age X25519 recipient (``age1...``); ``AgeKeyError`` otherwise."""
    try:
        age.recipient(text.strip())
    except age.Errors as e:
        raise AgeKeyError(f"not an age recipient (age1...): {e}") from None
    return text.strip()


def read_identities(path: Path) -> list[object]:
    """The identities of an age key file (``age-keygen`` output: ``AGE-SECRET-KEY-1...`` lines, ``#`` comments)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AgeKeyError(f"cannot read age key file {path}: {e}") from None
    found = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(age.identity(line))
        except age.Errors:
            raise AgeKeyError(f"{path} has a line that is not an age secret key") from None
    if not found:
        raise AgeKeyError(f"{path} holds no age secret key")
    return found


class _Worker:
    """``run`` in a thread; its exception kept for ``join``."""

    def __init__(self, run: Callable[[], None]) -> None:
        self.error: BaseException | None = None

        def body() -> None:
            try:
                run()
            except BaseException as e:  # re-raised by join
                self.error = e

        self._thread = threading.Thread(target=body, daemon=True)
        self._thread.start()

    def join(self) -> BaseException | None:
        self._thread.join()
        return self.error


@contextlib.contextmanager
def encrypting(dst: BinaryIO, recipient: str | Sequence[str]) -> Iterator[BinaryIO]:
    """A stream whose bytes are written age-encrypted to ``recipient`` (one, or several: each can decrypt) into
    ``dst``; complete when the block ends without an exception (then ``dst`` holds a whole age file)."""
    given = [recipient] if isinstance(recipient, str) else list(recipient)
    if not given:
        raise AgeKeyError("no age recipient given")
    to = [age.recipient(check_recipient(r)) for r in given]
    r, w = os.pipe()
    with os.fdopen(r, "rb") as plain_in:
        worker = _Worker(lambda: age.encrypt_io(plain_in, dst, to))
        sink = os.fdopen(w, "wb")
        try:
            yield sink
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()
            error = worker.join()
    if error is not None:
        raise VaultError(f"age encryption failed: {error}") from error


@contextlib.contextmanager
def decrypting(src: BinaryIO, identities: list[object]) -> Iterator[BinaryIO]:
    """The plaintext of the age file ``src`` as a stream. When the block ends the decryption must have
    succeeded to the end of the file (``DecryptionFailed`` otherwise: wrong key, altered or cut file)."""
    r, w = os.pipe()
    plain_out = os.fdopen(w, "wb")

    def run() -> None:
        try:
            age.decrypt_io(src, plain_out, identities)
        finally:
            with contextlib.suppress(BrokenPipeError):
                plain_out.close()

    worker = _Worker(run)
    source = os.fdopen(r, "rb")
    failed = False
    try:
        yield source
    except BaseException:
        failed = True
        raise
    finally:
        source.close()  # a worker still writing gets a broken pipe and stops
        error = worker.join()
        if error is not None and not (failed and isinstance(error, BrokenPipeError | OSError)):
            first = (str(error).splitlines() or [""])[0]
            raise DecryptionFailed(f"the archive does not decrypt with this key, or was altered: {first}") from error
