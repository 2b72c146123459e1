"""``mvault-server check``, the parts that read threads and witnesses: what can be verified without any team key.

- every thread record parses, names its own team and thread, and is signed by its creator's device (active at the
  record's time);
- every message parses; the row's id, device, seq and time are the signed header's; it names its thread's record;
  it is signed by its sender's device, active at its time; each sender's messages, in the server's order, are
  numbered one after the other and each names the one before (id and time) as the sender signed it. Expired
  messages are purged oldest first, so a sender's first stored message may come after a gap only in a thread
  with an expiry; never a gap in the middle. The sender's last message the server remembers
  (``thread_senders``, what a post must chain to) is the last one stored, or a later one that expired;
- every witness cosignature is on a checkpoint of the log, by a Security Team member's device active at its
  signed time, and its signature verifies (``security.auditkey.judge_cosignature``, the server's own judge).

Message contents are not read: they are encrypted under team keys the server never holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from security.auditkey import judge_cosignature
from server.directory import Directory
from vault.errors import VaultError
from vault.messages import Message, ThreadRecord

Report = Callable[[str, str, str], None]  # (kind, where, detail): one problem


@dataclass
class _Sender:
    seq: int
    id: str
    time: int


def check_threads(con: sqlite3.Connection, directory: Directory | None, problem: Report) -> int:
    """Check every thread and message of ``vault.db`` (read in the caller's transaction); how many messages."""
    refs: dict[tuple[str, str], tuple[str, int]] = {}  # (team, thread) -> (record ref, expire)
    for team, thread, raw in con.execute("SELECT team, thread, record FROM threads ORDER BY team, thread"):
        where = f"team {team} thread {thread}"
        try:
            rec = ThreadRecord.parse(bytes(raw))
            if (rec.team, rec.thread) != (team, thread):
                problem("thread", where, "its record names another team or thread")
            if directory is not None:
                rec.verify(directory.member(rec.creator).device_at(rec.device, rec.time).sign_public)
            refs[(team, thread)] = (rec.ref, rec.expire)
        except VaultError as e:
            problem("thread", where, f"record does not verify: {e}")
    count = 0
    senders: dict[tuple[str, str, str], _Sender] = {}
    rows = con.execute("SELECT team, thread, pos, mid, device, seq, time, record FROM messages "
                       "ORDER BY team, thread, pos")
    for team, thread, pos, mid, device, seq, t, raw in rows:
        count += 1
        where = f"team {team} thread {thread} message {pos}"
        try:
            m = Message.parse(bytes(raw))
        except VaultError as e:
            problem("message", where, f"record does not parse: {e}")
            continue
        h = m.header
        wrong = []
        if (m.id, h.device, h.seq, h.time, h.team, h.thread) != (mid, device, seq, t, team, thread):
            wrong.append("its row's id, device, seq, time, team or thread is not its signed header's")
        ref = refs.get((team, thread))
        if ref is None:
            wrong.append("its thread has no valid record")
        elif h.rec != ref[0]:
            wrong.append("it names another record of its thread")
        last = senders.get((team, thread, h.device))
        if last is not None and (h.seq != last.seq + 1 or h.prev != last.id or h.prev_time != last.time):
            wrong.append(f"it does not follow its sender's message {last.seq} (seq {h.seq}, or prev)")
        elif last is None and h.seq != 1 and ref is not None and ref[1] == 0:
            wrong.append(f"its sender's messages 1 to {h.seq - 1} are missing (the thread never expires any)")
        if directory is not None:
            try:
                m.verify(directory.member(h.sender).device_at(h.device, h.time).sign_public)
            except VaultError as e:
                wrong.append(f"its signature does not verify with its sender's device: {e}")
        senders[(team, thread, h.device)] = _Sender(h.seq, m.id, h.time)
        if wrong:
            problem("message", where, "; ".join(wrong))
    for team, thread, device, seq, mid in con.execute("SELECT team, thread, device, seq, mid FROM thread_senders"):
        last = senders.get((team, thread, device))
        stored = (last.seq, last.id) if last is not None else (0, "")
        all_expired = last is None and refs.get((team, thread), ("", 0))[1] > 0
        if stored != (seq, mid) and not all_expired:
            problem("message", f"team {team} thread {thread}", f"the server's last message of device {device} is "
                                                               f"number {seq}, the last stored is {stored[0]}")
    return count


def check_cosignatures(con: sqlite3.Connection, directory: Directory | None, problem: Report) -> int:
    """Check every witness cosignature of ``audit.db`` (read in the caller's transaction); how many."""
    checkpoints = {int(size): bytes(raw) for size, raw in con.execute("SELECT size, raw FROM checkpoints")}
    count = 0
    for size, member, device, sig, t in con.execute("SELECT size, member, device, sig, time FROM cosigs "
                                                    "ORDER BY size, device"):
        count += 1
        where = f"cosignature of checkpoint {size} by {member} device {device}"
        raw = checkpoints.get(int(size))
        if raw is None:
            problem("cosignature", where, "the log has no checkpoint at that size")
        elif directory is not None and directory.org is not None:
            try:
                judge_cosignature(raw, str(member), str(device), int(t), bytes(sig), directory.org,
                                  directory.members)
            except (VaultError, KeyError) as e:
                problem("cosignature", where, f"not a Security Team member's valid signature: {e}")
    return count
