"""The floor the document format sets on a transfer: CPU per MiB of each unavoidable step, in this process.

Issue 17's download and upload rows compare whole ``mvault get``/``put`` commands with ``age -d``/``age -r``
(``bench/transfer.py``). This script prints what the steps those commands cannot skip cost on this machine,
one 1 MiB piece at a time, as they run in the commands (medians of ``--rounds`` passes over ``--mib`` MiB,
process CPU time, so another process's load moves it little):

* body format 1: the signed body hash of the ciphertext and the local copies index's hash of the plaintext
  (SHA-256 each, ``vault/crypto/primitives.py``), the secretstream frame (XChaCha20-Poly1305 through libsodium,
  our own binding), the TLS record cipher (AES-256-GCM through OpenSSL), a page-cache write of each MiB;
* body format 2 (``vault/bodyformat.py``, every new version): the body hash is BLAKE3 and the frames
  ChaCha20-Poly1305 through OpenSSL (``cryptography``); the index's plaintext hash is still SHA-256;
* beside them, BLAKE2b (``hashlib``), another hash not used.

The sums ``get floor`` and ``put floor`` (format 1) and ``get floor, format 2`` and ``put floor, format 2`` are the
client's CPU per MiB with no Python, no copies and no start-up:
the command's measured figure (``bench/transfer.py``) minus these is what code can still win. Nothing here
asserts a time.

    python bench/transfer_floor.py [--mib N] [--rounds R] [--dir DIR] [--out PATH]

Writes ``{"figures": {step: ms per MiB}, "get_floor", "put_floor", "get_floor_format2", "put_floor_format2",
"machine", ...}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from vault.bodyformat import FramesPull, FramesPush  # noqa: E402
from vault.crypto import primitives as p  # noqa: E402
from vault.heap import tune_for_streaming  # noqa: E402

MIB = 1024 * 1024


def per_mib(step: Callable[[bytes], object], piece: bytes, mib: int, rounds: int) -> float:
    """Median CPU milliseconds per MiB of ``step`` over ``mib`` pieces, ``rounds`` times (one pass to warm up)."""
    step(piece)
    samples = []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(mib):
            step(piece)
        samples.append(1000 * (time.process_time() - t0) / mib)
    return float(statistics.median(samples))


def page_cache_write(directory: Path, mib: int, rounds: int) -> float:
    """Median CPU milliseconds per MiB of writing a new file in 1 MiB pieces (the page-cache copy), fsync excluded."""
    piece = os.urandom(MIB)
    samples = []
    for _ in range(rounds):
        fd, name = tempfile.mkstemp(dir=directory, prefix=".floor-")
        try:
            t0 = time.process_time()
            for _ in range(mib):
                os.write(fd, piece)
            samples.append(1000 * (time.process_time() - t0) / mib)
        finally:
            os.close(fd)
            os.unlink(name)
    return float(statistics.median(samples))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=128, help="MiB per pass")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the write test writes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-transfer-floor.json")
    args = ap.parse_args()
    tune_for_streaming()  # as a transfer does: 1 MiB buffers reused, not faulted in again
    piece = os.urandom(MIB)
    key = os.urandom(32)
    push = p.StreamPush(key)
    frame = bytes(push.push(piece))
    nonce = os.urandom(12)
    aes, chacha = AESGCM(key), ChaCha20Poly1305(key)
    sealed_aes = aes.encrypt(nonce, piece, None)

    prefix = os.urandom(4)
    seal2 = FramesPush(key, prefix)
    sealed2 = FramesPush(key, prefix).push(piece)

    def pull(_: bytes) -> object:  # a fresh stream per frame: pulling needs the frames in order
        return p.StreamPull(key, push.header).pull(frame)

    m, r = args.mib, args.rounds
    figures = {
        "sha256": per_mib(lambda b: p.sha256_hasher().update(b), piece, m, r),
        "secretstream push": per_mib(push.push, piece, m, r),
        "secretstream pull": per_mib(pull, piece, m, r),
        "tls aes-256-gcm open": per_mib(lambda _: aes.decrypt(nonce, sealed_aes, None), piece, m, r),
        "tls aes-256-gcm seal": per_mib(lambda b: aes.encrypt(nonce, b, None), piece, m, r),
        "page-cache write": page_cache_write(args.dir, m, r),
        "blake3": per_mib(lambda b: p.blake3_hasher().update(b), piece, m, r),
        "format-2 frame seal": per_mib(lambda b: seal2.push(b), piece, m, r),
        "format-2 frame open": per_mib(lambda _: FramesPull(key, prefix).pull(sealed2, False), piece, m, r),
        "(other) chacha20-poly1305 openssl": per_mib(lambda b: chacha.encrypt(nonce, b, None), piece, m, r),
        "(other) blake2b": per_mib(lambda b: hashlib.blake2b(b).digest(), piece, m, r),
    }
    for name, ms in figures.items():
        print(f"{name:<36} {ms:6.3f} ms/MiB")
    get = 2 * figures["sha256"] + figures["secretstream pull"] + figures["tls aes-256-gcm open"] \
        + figures["page-cache write"]
    put = 2 * figures["sha256"] + figures["secretstream push"] + figures["tls aes-256-gcm seal"]
    print(f"{'get floor (2 sha256, pull, tls, write)':<36} {get:6.3f} ms/MiB")
    print(f"{'put floor (2 sha256, push, tls)':<36} {put:6.3f} ms/MiB (plus reading the file)")
    # Body format 2: the body hash is BLAKE3 and the frames ChaCha20-Poly1305; the local copies index still hashes
    # the plaintext with SHA-256.
    get2 = figures["blake3"] + figures["sha256"] + figures["format-2 frame open"] + figures["tls aes-256-gcm open"] \
        + figures["page-cache write"]
    put2 = figures["blake3"] + figures["sha256"] + figures["format-2 frame seal"] + figures["tls aes-256-gcm seal"]
    print(f"{'get floor, format 2':<36} {get2:6.3f} ms/MiB (blake3, sha256, frame open, tls, write)")
    print(f"{'put floor, format 2':<36} {put2:6.3f} ms/MiB (blake3, sha256, frame seal, tls; plus reading the file)")
    args.out.write_text(json.dumps({"figures": {k: round(v, 4) for k, v in figures.items()}, "get_floor": round(get, 4),
                                    "put_floor": round(put, 4), "get_floor_format2": round(get2, 4),
                                    "put_floor_format2": round(put2, 4), "mib": m, "rounds": r, "machine": machine()},
                                   indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
