"""The C allocator tuned for streaming transfers (glibc only; elsewhere nothing changes).

An upload or download moves its body in pieces of about 1 MiB through buffers the libraries make anew
for every piece: PyNaCl's output of each secretstream frame, aiohttp's chunk of a request body, the
TLS records ``ssl`` reads out of its memory BIO, the response pieces joined by aiohttp's reader. glibc
serves blocks of that size with ``mmap`` or gives the top of the heap back to the kernel after each
``free`` (its thresholds adapt, but to the first sizes they see), so every MiB was faulted in page by
page and zeroed again: ~0.5-0.8 s of system time per 512 MiB on the client alone (``bench/transfer.py``
measured with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` before this module existed).

``tune_for_streaming`` keeps blocks below ``MMAP_THRESHOLD`` on the heap and keeps up to
``TRIM_THRESHOLD`` of freed heap for reuse: a few MiB more resident at peak, and the pages of one piece
are reused by the next. Values the operator set in the environment win (glibc reads them at start and
``mallopt`` would override them, so they are left alone).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20  # above the largest piece a transfer allocates (1 MiB frames, 4 MiB read buffer joins)
TRIM_THRESHOLD = 32 << 20
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_tuned: bool | None = None


def tune_for_streaming() -> bool:
    """Set glibc's mmap and trim thresholds for this process (once); False where that is not possible
    (not Linux with glibc, or the environment already tunes the allocator)."""
    global _tuned
    if _tuned is None:
        _tuned = _tune()
    return _tuned


def _tune() -> bool:
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their mallopt is not glibc's
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
