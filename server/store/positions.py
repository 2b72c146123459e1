"""Where a batch of thread messages goes, decided inside the transaction that stores it (both backends).

The backend locks the batch's threads, reads each thread's next position and its senders' last messages, and
hands them here: each message follows its device's last one (its number and the id it names as previous) or is
refused alone (``SenderMoved``), and takes its thread's next position. Nothing here is kept between batches,
so several server processes over one database assign positions that never collide and leave no gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from server.store.records import MessageOutcome, MessagePlaced, MessagePost, SenderMoved, StoredMessage, signer_moved

ThreadKey = tuple[str, str]  # (team, thread)
Senders = dict[ThreadKey, dict[str, tuple[int, str]]]  # thread -> device -> (seq, id) of its last message


def place(posts: list[MessagePost], next_pos: dict[ThreadKey, int], senders: Senders,
          heads: Mapping[str, int]) -> tuple[list[StoredMessage], list[MessageOutcome]]:
    """The rows to store (with their positions) and one outcome per post, in the posts' order. ``next_pos`` and
    ``senders`` (thread -> device -> (seq, id) of its last message) are as stored; both are updated. ``heads``: the
    length of each chain a post's ``signer`` names, as stored (a post whose sender's chains moved: ``SignerMoved``)."""
    rows: list[StoredMessage] = []
    outcomes: list[MessageOutcome] = []
    for post in posts:
        m = post.message
        key = (m.team, m.thread)
        moved = signer_moved(post.signer, heads)
        if moved is not None:
            outcomes.append(moved)
            continue
        last_seq, last_id = senders[key].get(m.device, (0, None))
        if m.seq != last_seq + 1 or post.prev != last_id:
            outcomes.append(SenderMoved(last_seq))
            continue
        pos = next_pos[key]
        next_pos[key] = pos + 1
        senders[key][m.device] = (m.seq, m.mid)
        rows.append(replace(m, pos=pos))
        outcomes.append(MessagePlaced(pos))
    return rows, outcomes
