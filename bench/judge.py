"""What the server's stricter judge costs (issue 20, fix33a): ``Authority.judge_stored`` beside ``Authority.judge`` on
the acts the server judges on every request that names no organization state (a document version, a message, a
right judged now).

Setup, all in memory (tests/helpers/chain_world.py, no server): an organization of N admitted members (an invite and
a join each, so 2N + 1 organization links), a circle of the founder and 7 of them. The act: the last member writes a
document in the circle. Two cases:
- ``settled``: the act is dated after every organization link (the common case: ``judge_stored`` adds a bisect of
  the link times and returns);
- ``in flight``: the act is dated before the last K organization links (links stored after the act was signed:
  ``judge_stored`` judges it a second time, at the head).
Per case: the median over R rounds of the time per call, ``judge`` (the reference, same run, same objects) and
``judge_stored``, and their ratio. Nothing here asserts a time.

    python bench/judge.py [--members N] [--calls C] [--rounds R] [--after K] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from security.authority import POLICY  # noqa: E402
from tests.helpers.chain_world import MWorld  # noqa: E402
from vault.acts import Act  # noqa: E402


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Microseconds per call of ``fn()``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=300)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--after", type=int, default=4, help="organization links dated after the act (in flight)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    args = ap.parse_args()

    built = time.perf_counter()
    w = MWorld()
    people = [w.admit(f"m{i}") for i in range(args.members - 1)]
    circle = people[-8:]
    team_links = w.create_team(w.founder, [(w.founder, "admin")] + [(p, "writer") for p in circle[1:]])
    team = w.replay_team(team_links.links)
    settled_at = w.tick() + 1
    w.time = settled_at + 5
    for i in range(args.after // 2):
        w.admit(f"late{i}")
    org, members = w.org(), w.members()
    print(f"organization: {args.members} members, {org.seq} links (built in {time.perf_counter() - built:.1f} s); "
          f"a circle of {len(team.members)}; {args.after // 2 * 2} links after the in-flight act")

    author = people[-1]
    cases = {
        "settled": Act(author.id, author.device.device_id, w.time + 10, "doc.write", team_seq=team.seq, gen=1),
        "in flight": Act(author.id, author.device.device_id, settled_at, "doc.write", team_seq=team.seq, gen=1),
    }
    figures: dict[str, dict[str, float]] = {}
    for name, act in cases.items():
        POLICY.judge_stored(act, org, members, team)  # both are entitled; a refusal here is a set-up error
        after = org.seq - org.seq_at(act.time)  # links dated after the act: 0 settled, --after in flight
        assert (after == 0) == (name == "settled"), (name, after)
        plain: list[float] = []
        stored: list[float] = []
        for _ in range(args.rounds):  # alternate, so a busy moment hits both
            plain.append(per_call(partial(POLICY.judge, act, org, members, team), args.calls))
            stored.append(per_call(partial(POLICY.judge_stored, act, org, members, team), args.calls))
        p, s = statistics.median(plain), statistics.median(stored)
        figures[name] = {"links_after": after, "judge_us": p, "judge_stored_us": s}
        print(f"{name:>9}: judge {p:7.1f} us/call, judge_stored {s:7.1f} us/call, ratio {s / p:.2f}x "
              f"({args.rounds} rounds of {args.calls} calls, medians)")
    if args.out is not None:
        args.out.write_text(json.dumps({"members": args.members, "org_links": org.seq, "cases": figures}, indent=1))


if __name__ == "__main__":
    main()
