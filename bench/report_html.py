"""The HTML report's cost beside the report it draws from: CPU time of ``mvault audit report --html``'s page.

Ours: ``client.audit.html.render`` (every figure computed from the report, each drawn by pygal as SVG, the
findings with their events) over one report of an organization of N members in one team (real chains made
in memory by ``bench/rotation.py``'s builder), with E audit events over 90 days (document reads, logins,
failed logins, refusals). Reference: what ``mvault audit report`` computes anyway over the same input,
``security.rules.evaluate`` (every rule). The ratio (reference/ours) says how much the page adds to the
evaluation; the fetching and decryption of the log (the larger part of a report) are in neither.

CPU time of this process (``time.process_time``: user + system), so that the other work on the machine
counts less than in wall time. Rounds alternate reference and ours; medians and the ratio of medians are
printed and written to ``bench/results-report-html.json``. Nothing here asserts a time.

    python bench/report_html.py [--quick] [--members N] [--events N] [--rounds R] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import alternate, fmt, machine  # noqa: E402
from bench.rotation import Builder  # noqa: E402
from client.audit import html  # noqa: E402
from client.audit.log import Verified  # noqa: E402
from client.audit.report import Report  # noqa: E402
from client.checkpoints import protocols_of  # noqa: E402
from client.names import Names  # noqa: E402
from security.events import Checkpoint, Event  # noqa: E402
from security.rules import DAY, AuditInput, evaluate  # noqa: E402

MIN_ROUNDS = 5


def make_report(members: int, n_events: int) -> Report:
    b = Builder(members)
    view = b.replay()
    now = b.time + 90 * DAY
    team = b.team_id
    people = b.people
    events: list[tuple[int, Event]] = []
    for i in range(n_events):
        who = people[i % len(people)]
        t = now - 90 * DAY + i * (90 * DAY) // n_events
        kind = i % 10
        if kind < 7:
            ev = Event(t, who.id, who.device.device_id, "doc.read", "ok",
                       {"team": team, "doc": f"{i % 500:032x}", "vid": f"{i:064x}"}, ("need-to-know", "bulk-access"))
        elif kind < 9:
            ev = Event(t, who.id, who.device.device_id, "auth.login", "ok", {}, ())
        else:
            ev = Event(t, "", "", "request.summary", "ok", {},
                       (), {"from": t, f"d:{who.device.device_id}": 3, "blocked_sources": 0})
        events.append((i, ev))
    inp = AuditInput(now=now, org=view.org, members=view.members, teams=view.teams, org_links=b.org_links,
                     team_links={team: b.team_links}, member_links={p.id: p.chain for p in people},
                     events=events, last_witness=now)
    results = evaluate(inp, protocols_of(view.org))
    verified = Verified(Checkpoint.build(b.org_id, n_events, bytes(32), now), 0, n_events, now, [])
    return Report(results, verified, Names(view, b.founder.id), view, inp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 members, 20,000 events")
    ap.add_argument("--members", type=int, default=None)
    ap.add_argument("--events", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results-report-html.json")
    args = ap.parse_args()
    if args.rounds < MIN_ROUNDS:
        ap.error(f"--rounds must be at least {MIN_ROUNDS} (medians of fewer rounds are not reported)")
    members = args.members or (100 if args.quick else 300)
    n_events = args.events or (20_000 if args.quick else 100_000)
    rep = make_report(members, n_events)
    since = rep.input.now - 90 * DAY
    page_bytes = len(html.render(rep, since).encode())  # (also imports pygal before the first round)

    def reference() -> float:
        start = time.process_time()
        evaluate(rep.input, protocols_of(rep.view.org))
        return time.process_time() - start

    def ours() -> float:
        start = time.process_time()
        html.render(rep, since)
        return time.process_time() - start

    refs, mine = alternate(reference, ours, args.rounds)
    ref_m, our_m = statistics.median(refs), statistics.median(mine)
    print(f"report --html page, {members} members, {n_events} events, {args.rounds} rounds (CPU time)")
    print(f"  reference (evaluate every rule): {fmt(ref_m * 1000, ' ms')}")
    print(f"  ours (render the page):          {fmt(our_m * 1000, ' ms')}   page {page_bytes / 1024:.0f} KiB")
    print(f"  ratio reference/ours: {ref_m / our_m:.2f}")
    args.out.write_text(json.dumps({"machine": machine(), "members": members, "events": n_events,
                                    "page_bytes": page_bytes, "reference_s": refs, "ours_s": mine,
                                    "reference_median_s": ref_m, "ours_median_s": our_m,
                                    "ratio": ref_m / our_m}, indent=2) + "\n")


if __name__ == "__main__":
    main()
