"""Audit log throughput, each figure beside a reference measured in the same run.

1. appends: sealed events appended durably by 32 concurrent writers through the server's
   ``AuditStore`` (group commit, synchronous=FULL), including sealing each event, beside
   plain sqlite3 inserts of the same rows with synchronous=FULL and a commit per row;
2. verify: checking a log of N events as ``mvault audit verify`` does (every leaf parsed
   and hashed, the tree root recomputed and compared), beside recomputing the Merkle root
   alone with hashlib; and opening every event with the audit key (what a report reads).

Rounds alternate reference and ours (``bench.common.alternate``); medians and the ratio of
medians are printed and written to ``bench/results-audit.json`` (or ``--out``), with the two
rows of ``make bench``'s table ("audit appends", "audit verify"; see ``bench/common.py``) and
every round's samples. At least 5 rounds, ``--quick`` included (it runs fewer events instead:
1,000 appends, a log of 5,000 events). Nothing here asserts a time.

    python bench/audit.py [--quick] [--appends N] [--events N] [--rounds R] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Row, alternate, fmt, machine  # noqa: E402
from security.events import DAY, Event, Leaf, Opener, Sealer, audit_keypair, seal_event  # noqa: E402
from security.merkle import leaf_hash, root_of  # noqa: E402
from server.store.sqlite.audit import AuditStore  # noqa: E402
from vault.crypto import primitives as p  # noqa: E402

WRITERS = 32
MIN_ROUNDS = 5


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
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-audit.json")
    args = ap.parse_args()
    if args.rounds < MIN_ROUNDS:
        ap.error(f"--rounds must be at least {MIN_ROUNDS} (medians of fewer rounds are not reported)")
    if args.quick:
        args.appends, args.events = 1000, 5000
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

    ref_rates, our_rates = alternate(lambda: reference_appends(rows),
                                     lambda: runner(ours_appends(args.appends, audit_pub, member_pub)), args.rounds)

    distinct = [seal_event(make_event(i, now), 1, audit_pub, [member_pub]) for i in range(min(args.events, 2000))]
    raws = [distinct[i % len(distinct)] for i in range(args.events)]
    hashes = [leaf_hash(r) for r in raws]
    root = root_of(hashes)
    ref_times, our_times = alternate(lambda: reference_root(raws), lambda: our_verify(raws, hashes, root), args.rounds)
    open_time = open_all(raws, (audit_pub, audit_sec))

    appends = Row(
        row="audit appends", unit="events/s", ours=our_rates, reference=ref_rates, higher_is_better=True,
        ours_what=f"events sealed (audit key + actor + empty slot) and appended durably by {WRITERS} concurrent "
                  "writers through server.store.sqlite.audit.AuditStore (group commit, SQLite WAL, synchronous=FULL)",
        reference_what="plain sqlite3 inserts of the same rows, WAL, synchronous=FULL, one commit per row",
        target_ratio=0.35, target_abs=(">=", 10000), target_text=">= 0.35x, >= 10,000/s",
        detail={"events": args.appends, "writers": WRITERS},
    )
    verify = Row(
        row="audit verify", unit="s", ours=our_times, reference=ref_times, higher_is_better=False,
        ours_what=f"audit verify's local work on {args.events:,} events: every leaf hash-checked and parsed "
                  "(security.events.Leaf.parse), the Merkle root recomputed and compared",
        reference_what="the Merkle root alone with hashlib (leaf hashes, then pairwise levels)",
        target_ratio=0.2, target_abs=("<", 5.0), target_text=">= 0.2x, < 5 s",
        detail={"events": args.events, "open_all_s": round(open_time, 3)},
    )
    ours_a, ref_a = appends.ours_median, appends.reference_median or 0.0
    ours_v, ref_v = verify.ours_median, verify.reference_median or 0.0
    result = {
        "rows": [appends.as_json(), verify.as_json()],
        "appends": {"events": args.appends, "writers": WRITERS, "ours_per_s": round(ours_a),
                    "reference_per_s": round(ref_a), "ratio": round(ours_a / ref_a, 3),
                    "reference": "sqlite3 insert, synchronous=FULL, one commit per row",
                    "ours": "seal + AuditStore.append (group commit, synchronous=FULL)"},
        "verify": {"events": args.events, "ours_s": round(ours_v, 3), "reference_s": round(ref_v, 3),
                   "ratio": round(ref_v / ours_v, 3), "open_all_s": round(open_time, 3),
                   "reference": "Merkle root with hashlib alone",
                   "ours": "parse + hash check of every leaf + root (audit verify's local work)"},
        "rounds": args.rounds, "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "machine": machine(),
    }
    print(f"audit appends ({WRITERS} writers, durable): ours {ours_a:,.0f}/s, "
          f"sqlite3 commit-per-row {ref_a:,.0f}/s, ratio {ours_a / ref_a:.2f}")
    print(f"audit verify of {args.events:,} events: ours {ours_v:.2f} s, hashlib root alone {ref_v:.2f} s, "
          f"ratio {ref_v / ours_v:.2f}; opening every event with the audit key {open_time:.2f} s")
    for row in (appends, verify):
        met = {True: "met", False: "NOT met", None: "-"}[row.met]
        print(f"  {row.row}: {args.rounds} rounds alternating, medians; ours {fmt(row.ours_median, row.unit)}, "
              f"reference {fmt(row.reference_median, row.unit)}, ratio of medians {row.ratio:.2f}x; "
              f"target {row.target_text}: {met}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
