"""Retention's pruned prefix judged (``check_pruning``): the leaves served without their bytes must be the oldest,
those the retention period no longer covers, and none younger than an anchor (``log_anchors``) the period still
covers (review 34), judged against every retention period in force since (``retention_history``: review 35)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from client.checkpoints import LogView
from security.events import DAY, Leaf
from security.protocols import defaults, parse
from vault.chains import OrgState


def retention_history(org: OrgState) -> list[tuple[int, int]]:
    """(from, days): the retention period of each version of the security protocols in the verified organization
    chain, in force from ``from`` (the shipped defaults' from 0, each approved version's from its approval link's
    time), oldest first. The server prunes once a UTC day, at its first request, by the period in force then."""
    out = [(0, defaults().retention_days)]
    for change in org.protocols_log:
        out.append((change.approved_at or 0, parse(change.text).retention_days))
    return out


def honest_cuts(retention: Sequence[tuple[int, int]], today: int) -> tuple[int, int]:
    """(least, deepest): the UTC days before which an honest server has pruned by ``today``, at least (the
    longest period in force at any time today: the day's prune may have come before a change) and at most (the
    latest ``day - days`` over the days each period was in force: a period in force on some day since an anchor's
    day may have pruned up to its cut then, and later periods never bring deleted events back)."""
    least: int | None = None
    deepest = today - retention[-1][1]
    for k, (start, days) in enumerate(retention):
        first = min(start // DAY, today)  # approved ahead of this device's clock: in force from today
        last = min(retention[k + 1][0] // DAY, today) if k + 1 < len(retention) else today
        if last < first:
            continue
        deepest = max(deepest, last - days)
        if last == today:
            least = today - days if least is None else min(least, today - days)
    return (today - retention[-1][1] if least is None else least), deepest


def check_pruning(leaves: Mapping[int, Leaf], log_size: int, retention: Sequence[tuple[int, int]], now: int,
                  anchors: Iterable[tuple[int, int, str]] = ()) -> list[str]:
    """Retention deletes the oldest leaves only: the pruned ones must be a prefix of the log,
    and nothing the retention period still covers may be missing. ``anchors``: (size, time, whose) where every leaf
    at or after ``size`` is known to be younger than ``time`` (``log_anchors``): none of those may be pruned while
    ``time`` is within every retention period in force since (a day's margin, as for the first kept leaf: review 34;
    not only the period now in force: review 35, a period raised after an honest prune). ``retention``:
    ``retention_history``; ``leaves``: the leaves served with their bytes, by index, of a log of ``log_size``."""
    kept = sorted(leaves)
    first_kept = kept[0] if kept else log_size
    missing = [i for i in range(first_kept, log_size) if i not in leaves]
    problems = []
    if missing:
        problems.append(f"{len(missing)} events are missing after kept ones (first: {missing[0]}); "
                        "retention deletes only the oldest")
    least, deepest = honest_cuts(retention, now // DAY)
    if first_kept and kept and leaves[first_kept].day < least - 1:
        problems.append(f"events before {first_kept} were deleted although event {first_kept}, "
                        "older than the retention period, was kept")
    young = [(size, t, whose) for size, t, whose in anchors if size < first_kept and t // DAY > deepest + 1]
    if young:
        size, t, whose = min(young)
        now_days = f"{retention[-1][1]} days"
        shown = now_days if not any(start > t for start, _ in retention[1:]) else \
            f"every period in force since, now {now_days}"
        problems.append(f"events {size} to {first_kept - 1} are served as deleted by retention, but {whose} the log "
                        f"at {size} events at {t}, within the retention period ({shown}): those "
                        "events are younger than that")
    return problems


def log_anchors(lv: LogView) -> list[tuple[int, int, str]]:
    """(size, time, whose): every leaf at or after ``size`` was logged after ``time``. This device's own (its pins:
    the log at that size at that time of its clock) and the Security Team's cosigned checkpoint served (its size at
    the later of its signed time and its first cosignature's: a server that backdates the checkpoint does not move
    the cosigner's clock), whose cosignatures ``load`` checked."""
    out = [(size, t, "this device saw") for size, t in lv.anchors]
    if lv.witness is not None and lv.witness.cosigs:
        w = lv.witness
        out.append((w.checkpoint.size, max(w.checkpoint.time, min(c.time for c in w.cosigs)),
                    "the Security Team cosigned"))
    return out
