"""The figures of the HTML report, as data: values in, values out, no I/O and no markup.

Each figure is computed from one ``Report`` (the verified chains and the events the Security Team's key
opened, the rule results): nothing is fetched or evaluated again. Labels are ``Names`` labels (members,
teams and devices by name, escaped for a terminal); the HTML layer escapes them once more for HTML.
Times are unix seconds; days are UTC days.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Final

from client.audit.report import Report
from client.sanitize import escape
from security.rules import DAY, HOUR
from security.rules.activity import failed_login_counts
from security.rules.base import Context, starts_generation

DORMANT_DAYS: Final = 90  # a device unseen this long is shown as dormant
MOST_BARS: Final = 40  # a per-member or per-device figure shows at most this many bars (the largest)


@dataclass(frozen=True)
class Figure:
    """One chart: bars along ``labels``, one series per (title, values in label order)."""

    key: str  # the figure's id in the page (``chart-<key>``)
    title: str
    labels: list[str]
    series: list[tuple[str, list[int]]]
    unit: str  # what a bar measures
    note: str  # one sentence under the chart: what is counted, what is left out
    horizontal: bool = False
    stacked: bool = False
    rows: list[tuple[str, ...]] = field(default_factory=list)  # the same data as a table (header first)

    @property
    def empty(self) -> bool:
        return not any(v for _, values in self.series for v in values)


def label(rep: Report, any_id: str) -> str:
    """A member, team or device by its ``Names`` label; an id the view does not know (the server named it)
    escaped for a terminal like any text from the server."""
    return rep.names.name_of(any_id) or escape(any_id)


def _day(t: int) -> str:
    return time.strftime("%m-%d", time.gmtime(t))


def _days(since: int, now: int) -> list[int]:
    """The start (UTC midnight) of every day from ``since`` to ``now``."""
    first = since - since % DAY
    return list(range(first, now + 1, DAY))


def access_per_team_day(rep: Report, since: int) -> Figure:
    """Events naming a team (reads, writes, messages, refusals, chain links), per team and day."""
    days = _days(since, rep.input.now)
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    for _, ev in rep.input.events:
        team = ev.res.get("team")
        if team and ev.time >= since:
            counts[team][ev.time - ev.time % DAY] += 1
    series = [(label(rep, tid), [counts[tid][d] for d in days])
              for tid in sorted(counts, key=lambda t: label(rep, t))]
    return Figure("access", "Access events per team and day", [_day(d) for d in days], series, "events",
                  "Every logged event that names the team: document reads and writes, messages, refusals, "
                  "membership changes.", stacked=True)


def failed_logins_per_day(rep: Report, since: int) -> Figure:
    """Failed logins per day, as rule failed-logins counts them."""
    days = _days(since, rep.input.now)
    refused: Counter[int] = Counter()  # a device's own key refused (auth.fail)
    summed: Counter[int] = Counter()  # unauthenticated failures folded into the per-minute summaries
    events = dict(rep.input.events)
    for items in failed_login_counts(Context.build(rep.input)).values():
        for t, n, idx in items:
            if t >= since:
                (refused if events[idx].action == "auth.fail" else summed)[t - t % DAY] += n
    return Figure("failed-logins", "Failed logins per day", [_day(d) for d in days],
                  [("refused device (auth.fail)", [refused[d] for d in days]),
                   ("bad signature or unknown device", [summed[d] for d in days])], "failed logins",
                  "Logins that named a device of the organization and failed; the server throttles the source "
                  "address, it never locks the device.", stacked=True)


def opens_per_member(rep: Report, since: int) -> Figure:
    """Documents opened (successful reads) per member; members with a bulk-access alert stand out."""
    opens: Counter[str] = Counter()
    for _, ev in rep.input.events:
        if ev.action == "doc.read" and ev.result == "ok" and ev.time >= since and ev.actor:
            opens[ev.actor] += 1
    flagged = {f.subject for r in rep.results if r.rule == "bulk-access" for f in r.findings}
    top = sorted(opens, key=lambda m: (-opens[m], label(rep, m)))[:MOST_BARS]
    cut = f" The {len(top)} members with the most of {len(opens)}." if len(opens) > len(top) else ""
    return Figure("opens", "Document opens per member", [label(rep, m) for m in top],
                  [("opens", [0 if m in flagged else opens[m] for m in top]),
                   ("opens, bulk-access alert", [opens[m] if m in flagged else 0 for m in top])], "opens",
                  "Document versions each member fetched and decrypted (rule bulk-access alerts on bursts and on "
                  f"reads outside one's own teams).{cut}", horizontal=True, stacked=True)


def rotations_after_departures(rep: Report) -> Figure:
    """For every member removed from the organization, every team whose key they held: hours from the removal
    to the team's next key generation, or hours waited so far."""
    now, labels = rep.input.now, []
    done: list[int] = []
    waiting: list[int] = []
    rows: list[tuple[str, ...]] = [("member", "team", "removed", "rotated", "hours")]
    departed = sorted(((om.removed_at, mid) for mid, om in rep.input.org.members.items()
                       if om.status == "removed" and om.removed_at is not None))
    for removed, mid in departed:
        for tid, team in sorted(rep.input.teams.items(), key=lambda kv: label(rep, kv[0])):
            if not any(m == mid for _, m in team.boxes):
                continue
            rotation = next((lk for lk in rep.input.team_links.get(tid, ()) if starts_generation(lk)
                             and lk.time >= removed), None)
            hours = ((rotation.time if rotation else now) - removed) // HOUR
            labels.append(f"{label(rep, mid)} / {label(rep, tid)}")
            done.append(hours if rotation else 0)
            waiting.append(0 if rotation else max(hours, 1))
            rows.append((label(rep, mid), label(rep, tid), _when(removed),
                         _when(rotation.time) if rotation else "NOT ROTATED", str(hours)))
    return Figure("rotations", "Key rotation of each team after each departure", labels,
                  [("rotated after (hours)", done), ("not rotated yet (hours since the departure)", waiting)],
                  "hours", "Every team whose key a removed member held: a team that has not moved to a new key "
                  "generation still lets the departed member read what is written under the old one.",
                  horizontal=True, rows=rows)


def devices_by_last_seen(rep: Report) -> Figure:
    """Days since each active device of a current member last logged in (or was added); dormant ones apart."""
    now = rep.input.now
    last: dict[str, int] = {}
    for _, ev in rep.input.events:
        if ev.action == "auth.login" and ev.result == "ok":
            last[ev.device] = max(last.get(ev.device, 0), ev.time)
    idle: list[tuple[int, str]] = []
    for mid, om in rep.input.org.members.items():
        ms = rep.input.members.get(mid)
        if ms is None or om.status == "removed":
            continue
        for d in ms.active_devices():
            if d.kind == "device":
                idle.append(((now - last.get(d.device_id, d.added)) // DAY,
                             f"{label(rep, mid)}: {label(rep, d.device_id)}"))
    idle.sort(key=lambda x: (-x[0], x[1]))
    top = idle[:MOST_BARS]
    cut = f" The {len(top)} longest unseen of {len(idle)}." if len(idle) > len(top) else ""
    return Figure("devices", "Devices by last seen", [label for _, label in top],
                  [("days since last seen", [0 if d >= DORMANT_DAYS else d for d, _ in top]),
                   (f"dormant ({DORMANT_DAYS}+ days)", [d if d >= DORMANT_DAYS else 0 for d, _ in top])], "days",
                  "Active devices of current members, by days since their last login (or since they were added, "
                  f"if they never logged in).{cut}", horizontal=True, stacked=True)


def pending_shares(rep: Report) -> Figure:
    """Members added to a team who still wait for a key holder to share the team key, by hours waited."""
    now, labels, hours = rep.input.now, [], []
    for tid, team in sorted(rep.input.teams.items(), key=lambda kv: label(rep, kv[0])):
        for mid in sorted(team.pending_share, key=lambda m: label(rep, m)):
            since = team.members[mid].since if mid in team.members else team.time
            labels.append(f"{label(rep, mid)} in {label(rep, tid)}")
            hours.append(max((now - since) // HOUR, 0))
    return Figure("pending-shares", "Pending key shares", labels, [("hours waiting", hours)], "hours",
                  "Members added without the team key: they read nothing of the team until a key holder's "
                  "next command shares it (rule pending-shares).", horizontal=True)


def _when(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def figures(rep: Report, since: int) -> list[Figure]:
    """Every figure of the report, in page order."""
    return [access_per_team_day(rep, since), failed_logins_per_day(rep, since), opens_per_member(rep, since),
            rotations_after_departures(rep), devices_by_last_seen(rep), pending_shares(rep)]
