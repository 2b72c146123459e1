"""Team threads (``vault/messages.py``): properties over simulated clients (Hypothesis): any causal
order is accepted, a drop, replay or swap is detected exactly when provable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.messages import (
    DEVICES,
    KEY,
    NOW,
    REC,
    SIMS,
    T0,
    TEAM,
    THREAD,
    Poster,
    reload,
    serve,
)
from vault.errors import IntegrityError
from vault.keys import DeviceKeys
from vault.messages import (
    EXPIRY_GRACE,
    Body,
    Message,
    ThreadChecker,
    make_message,
)

# -- properties: simulated clients ------------------------------------------------------------------------------

schedules = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 100)), min_size=1, max_size=12)


def simulate(schedule: Sequence[tuple[int, int]]) -> list[Message]:
    """Three devices post in turn; before each post the poster reads a random part of what it has not read yet."""
    posters = [Poster(DEVICES[i], f"member-{i}") for i in range(3)]
    views = [ThreadChecker(TEAM, THREAD, 0) for _ in range(3)]
    read = [0, 0, 0]
    log: list[Message] = []
    for i, (who, fraction) in enumerate(schedule):
        upto = read[who] + (len(log) - read[who]) * fraction // 100
        for m in log[read[who] : upto]:
            views[who].accept(m, NOW)  # every client is itself a checking reader
        read[who] = upto
        log.append(posters[who].post(T0 + i, views[who].newest_seen(posters[who].device_id)))
    return log


def accepts(served: Sequence[Message]) -> bool:
    reader = ThreadChecker(TEAM, THREAD, 0)
    try:
        for m in served:
            reader.accept(m, NOW)
    except IntegrityError:
        return False
    return True


@SIMS
@given(schedules)
def test_posting_order_is_always_accepted(schedule: list[tuple[int, int]]) -> None:
    log = simulate(schedule)
    reader = ThreadChecker(TEAM, THREAD, 0)
    serve(reader, log, NOW)
    assert set(reader.known) == {m.id for m in log}
    assert accepts([Message.parse(m.raw) for m in log])
    reload(reader).check_nothing_withheld({d: s.seq for d, s in reader.senders.items()}, NOW)


@SIMS
@given(schedules)
def test_dropping_one_message_is_detected_exactly_when_provable(schedule: list[tuple[int, int]]) -> None:
    """Provable: a later message of the same sender (sequence gap) or a later ``seen`` names it."""
    log = simulate(schedule)
    for j, dropped in enumerate(log):
        later = log[j + 1 :]
        not_last = any(m.header.device == dropped.header.device for m in later)
        named = any(s.id == dropped.id for m in later for s in m.header.seen)
        assert accepts(log[:j] + later) is not (not_last or named), (j, not_last, named)
        if not_last:
            assert not accepts(log[:j] + later)  # the case the brief calls always detectable


@SIMS
@given(schedules)
def test_replaying_any_message_anywhere_later_is_detected(schedule: list[tuple[int, int]]) -> None:
    log = simulate(schedule)
    for j in range(len(log)):
        for k in range(j + 1, len(log) + 1):
            assert not accepts(log[:k] + [log[j]] + log[k:]), (j, k)


@SIMS
@given(schedules)
def test_swapping_two_messages_of_one_sender_is_detected(schedule: list[tuple[int, int]]) -> None:
    log = simulate(schedule)
    for i in range(len(log)):
        for k in range(i + 1, len(log)):
            if log[i].header.device == log[k].header.device:
                swapped = list(log)
                swapped[i], swapped[k] = swapped[k], swapped[i]
                assert not accepts(swapped), (i, k)


@SIMS
@given(schedules, st.randoms(use_true_random=False))
def test_any_causal_order_is_accepted_and_others_are_not(schedule: list[tuple[int, int]], rnd: random.Random) -> None:
    """The server may interleave senders freely, as long as each message follows its predecessor and what it
    names in ``seen``; every other order breaks one of those and is refused."""
    log = simulate(schedule)
    by_id = {m.id: m for m in log}

    def deps(m: Message) -> set[str]:
        return ({m.header.prev} if m.header.prev else set()) | {s.id for s in m.header.seen}

    assert all(d in by_id for m in log for d in deps(m))
    order: list[Message] = []
    done: set[str] = set()
    while len(order) < len(log):
        ready = [m for m in log if m.id not in done and deps(m) <= done]
        pick = rnd.choice(ready)
        order.append(pick)
        done.add(pick.id)
    assert accepts(order)
    shuffled = list(log)
    rnd.shuffle(shuffled)
    causal = all(deps(m) <= {x.id for x in shuffled[:i]} for i, m in enumerate(shuffled))
    assert accepts(shuffled) is causal


EXPIRE = 600


@SIMS
@given(st.lists(st.integers(1, 400), min_size=2, max_size=8), st.integers(0, 3000), st.data())
def test_dropping_from_an_expiring_thread_is_excused_only_by_expiry(
    steps: list[int], age: int, data: st.DataObject
) -> None:
    poster = Poster(DEVICES[0], "member-0")
    t = T0
    log = []
    for step in steps:
        t += step
        log.append(poster.post(t))
    now = T0 + age
    j = data.draw(st.integers(0, len(log) - 2))  # drop log[j], never the last one
    reader = ThreadChecker(TEAM, THREAD, EXPIRE)
    served = log[:j] + log[j + 1 :]
    excused = log[j].header.time + EXPIRE <= now + EXPIRY_GRACE
    try:
        for m in served:
            reader.accept(m, now)
    except IntegrityError as e:
        assert not excused and "dropped" in str(e)
    else:
        assert excused


def test_a_message_naming_an_older_team_state_than_one_before_it_is_refused() -> None:
    """After a removal the team state moves on; a message written at the old state and stored later is spliced in."""
    a, b = DeviceKeys.generate(), DeviceKeys.generate()
    checker = ThreadChecker(KEY.team_id, THREAD, 0)
    new = make_message(
        KEY,
        Body("after the change"),
        thread=THREAD,
        rec=REC,
        team_seq=5,
        sender="a",
        device=a,
        seq=1,
        prev=None,
        prev_time=0,
        seen=[],
        time=T0,
    )
    old = make_message(
        KEY,
        Body("from before"),
        thread=THREAD,
        rec=REC,
        team_seq=4,
        sender="b",
        device=b,
        seq=1,
        prev=None,
        prev_time=0,
        seen=[],
        time=T0 + 1,
    )
    checker.accept(new, T0 + 2)
    with pytest.raises(IntegrityError, match="older than a message before it"):
        checker.accept(old, T0 + 2)
    again = ThreadChecker.from_value(checker.to_value())  # the high-water mark survives a reload
    with pytest.raises(IntegrityError, match="older than a message before it"):
        again.accept(old, T0 + 2)
    fresh = ThreadChecker(KEY.team_id, THREAD, 0)
    fresh.accept(old, T0 + 2)
    fresh.accept(new, T0 + 2)  # in the order an honest server stores them
