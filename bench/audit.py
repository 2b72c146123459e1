"""Audit log throughput, each figure beside a reference measured in the same run.

1. appends: sealed events appended durably by 32 concurrent writers through the server's
   ``AuditStore`` (group commit, synchronous=FULL), including sealing each event, beside
   plain sqlite3 inserts of the same rows with synchronous=FULL and a commit per row;
2. verify: checking a log of N events as ``mvault audit verify`` does (every leaf parsed
   and hashed, the tree root recomputed and compared), beside recomputing the Merkle root
   alone with hashlib; and opening every event with the audit key (what a report reads).

Rounds alternate reference and ours; medians and the ratio of medians are printed and
written to ``bench/results-audit.json``. Nothing here asserts a time.

    python bench/audit.py [--quick] [--appends N] [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from security.events import DAY, Event, Leaf, Opener, Sealer, audit_keypair, seal_event  # noqa: E402
from security.merkle import leaf_hash, root_of  # noqa: E402
from server.audit import AuditStore  # noqa: E402
from vault.crypto import primitives as p  # noqa: E402

WRITERS = 32


def make_event(i: int, now: int) -> Event:
    return Event(now, f"{i % 300:032x}", f"{i % 900:032x}", "doc.read", "ok",
                 {"team": f"{i % 40:032x}", "doc": f"{i:032x}", "vid": f"{i:064x}"}, ("need-to-know", "bulk-access"))


async def ours_appends(n: int, audit_pub: bytes, member_pub: bytes) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = await AuditStore.open(Path(d))
        now = int(time.time())
        sealer = Sealer()

        async def writer(w: int) -> None:
            for i in range(w, n, WRITERS):
                leaf = seal_event(make_event(i, now), 1, audit_pub, [member_pub], sealer)
                await store.append(leaf, now // DAY)

        t0 = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        elapsed = time.perf_counter() - t0
        assert store.committed == n
        await store.close()
    return n / elapsed


def reference_appends(rows: list[tuple[int, int, bytes, bytes]]) -> float:
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(os.path.join(d, "ref.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE events (idx INTEGER PRIMARY KEY, day INTEGER NOT NULL, hash BLOB NOT NULL, leaf BLOB)")
        t0 = time.perf_counter()
        for row in rows:
            db.execute("BEGIN")
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", row)
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        db.close()
    return len(rows) / elapsed


def our_verify(raws: list[bytes], hashes: list[bytes], root: bytes) -> float:
    t0 = time.perf_counter()
    for raw, h in zip(raws, hashes, strict=True):
        if leaf_hash(raw) != h:
            raise SystemExit("leaf does not match")
        Leaf.parse(raw)
    if root_of(hashes) != root:
        raise SystemExit("root mismatch")
    return time.perf_counter() - t0


def reference_root(raws: list[bytes]) -> float:
    """The Merkle root with hashlib alone: leaf hashes, then pairwise levels (RFC 9162 shape)."""
    t0 = time.perf_counter()
    level = [hashlib.sha256(b"\x00" + r).digest() for r in raws]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return time.perf_counter() - t0


def open_all(raws: list[bytes], pair: tuple[bytes, bytes]) -> float:
    t0 = time.perf_counter()
    opener = Opener(*pair)
    for raw in raws:
        opener.open(Leaf.parse(raw), (0,))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--appends", type=int, default=20000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-audit.json")
    args = ap.parse_args()
    if args.quick:
        args.appends, args.events, args.rounds = 2000, 5000, 3
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run

    audit_pub, audit_sec = audit_keypair(p.random_bytes(32))
    member_pub = p.box_keypair(p.random_bytes(32))[0]
    now = int(time.time())
    rows = []
    for i in range(args.appends):
        leaf = seal_event(make_event(i, now), 1, audit_pub, [member_pub])
        rows.append((i, now // DAY, leaf_hash(leaf), leaf))

    ref_rates, our_rates = [], []
    for _ in range(args.rounds):
        ref_rates.append(reference_appends(rows))
        our_rates.append(runner(ours_appends(args.appends, audit_pub, member_pub)))

    distinct = [seal_event(make_event(i, now), 1, audit_pub, [member_pub]) for i in range(min(args.events, 2000))]
    raws = [distinct[i % len(distinct)] for i in range(args.events)]
    hashes = [leaf_hash(r) for r in raws]
    root = root_of(hashes)
    ref_times, our_times = [], []
    for _ in range(args.rounds):
        ref_times.append(reference_root(raws))
        our_times.append(our_verify(raws, hashes, root))
    open_time = open_all(raws, (audit_pub, audit_sec))

    ours_a, ref_a = statistics.median(our_rates), statistics.median(ref_rates)
    ours_v, ref_v = statistics.median(our_times), statistics.median(ref_times)
    result = {
        "appends": {"events": args.appends, "writers": WRITERS, "ours_per_s": round(ours_a),
                    "reference_per_s": round(ref_a), "ratio": round(ours_a / ref_a, 3),
                    "reference": "sqlite3 insert, synchronous=FULL, one commit per row",
                    "ours": "seal + AuditStore.append (group commit, synchronous=FULL)"},
        "verify": {"events": args.events, "ours_s": round(ours_v, 3), "reference_s": round(ref_v, 3),
                   "ratio": round(ref_v / ours_v, 3), "open_all_s": round(open_time, 3),
                   "reference": "Merkle root with hashlib alone",
                   "ours": "parse + hash check of every leaf + root (audit verify's local work)"},
        "rounds": args.rounds, "cpus": os.cpu_count(), "python": sys.version.split()[0],
    }
    print(f"audit appends ({WRITERS} writers, durable): ours {ours_a:,.0f}/s, "
          f"sqlite3 commit-per-row {ref_a:,.0f}/s, ratio {ours_a / ref_a:.2f}")
    print(f"audit verify of {args.events:,} events: ours {ours_v:.2f} s, hashlib root alone {ref_v:.2f} s, "
          f"ratio {ref_v / ours_v:.2f}; opening every event with the audit key {open_time:.2f} s")
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
