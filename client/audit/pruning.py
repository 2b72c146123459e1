"""Retention's pruned prefix judged (``check_pruning``): the leaves served without their bytes must be the oldest,
those the retention period no longer covers, and none younger than an anchor (``log_anchors``) the period still
covers (review 34)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from client.checkpoints import LogView
from security.events import DAY, Leaf


def check_pruning(leaves: Mapping[int, Leaf], log_size: int, retention_days: int, now: int,
                  anchors: Iterable[tuple[int, int, str]] = ()) -> list[str]:
    """Retention deletes the oldest leaves only: the pruned ones must be a prefix of the log,
    and nothing the retention period still covers may be missing. ``anchors``: (size, time, whose) where every leaf
    at or after ``size`` is known to be younger than ``time`` (``log_anchors``): none of those may be pruned while
    ``time`` is within the retention period (a day's margin, as for the first kept leaf: review 34). ``leaves``: the
    leaves served with their bytes, by index, of a log of ``log_size``."""
    kept = sorted(leaves)
    first_kept = kept[0] if kept else log_size
    missing = [i for i in range(first_kept, log_size) if i not in leaves]
    problems = []
    if missing:
        problems.append(f"{len(missing)} events are missing after kept ones (first: {missing[0]}); "
                        "retention deletes only the oldest")
    cutoff = now // DAY - retention_days
    if first_kept and kept and leaves[first_kept].day < cutoff - 1:
        problems.append(f"events before {first_kept} were deleted although event {first_kept}, "
                        "older than the retention period, was kept")
    young = [(size, t, whose) for size, t, whose in anchors if size < first_kept and t // DAY > cutoff + 1]
    if young:
        size, t, whose = min(young)
        problems.append(f"events {size} to {first_kept - 1} are served as deleted by retention, but {whose} the log "
                        f"at {size} events at {t}, within the retention period ({retention_days} days): those "
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
