"""Team threads (``vault/messages.py``): the reader's ordering checks, ``ThreadChecker``.

Every served sequence goes through ``ThreadChecker.accept``. Each device chains its own messages
(``seq``, ``prev``, ``prev_time``) and names the newest messages of others it had read (``seen``).

Times and ``now`` are explicit integers. ``expired(t, now)`` is ``t + expire <= now +
EXPIRY_GRACE``: the boundaries below are computed from ``EXPIRY_GRACE`` (120 s), so with
``expire=60`` a message already counts as expired 60 s *before* its own time.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.messages import (
    CHAINED,
    CHECKER_STATE,
    DEVICES,
    NOW,
    OTHER_KEY,
    OTHER_THREAD,
    PROPS,
    T0,
    TEAM,
    THREAD,
    Poster,
    Room,
    reload,
    serve,
    state_of,
    values,
)
from vault import messages
from vault.encoding import Value, decode, encode
from vault.errors import EncodingError, IntegrityError
from vault.keys import DeviceKeys
from vault.messages import (
    EXPIRY_GRACE,
    MAX_SEEN,
    Message,
    Seen,
    SenderState,
    ThreadChecker,
)


@pytest.fixture
def chained() -> list[Message]:
    return list(CHAINED)


# -- the reader's checks: ThreadChecker ---------------------------------------------------------------------


def test_interleaved_senders_in_order_are_accepted() -> None:
    room = Room(3)
    for i, who in enumerate([0, 1, 0, 2, 1, 0, 2, 2, 1, 0]):
        room.post(who, T0 + i)
    reader = room.reader()
    serve(reader, room.log, NOW)
    assert {d: s.seq for d, s in reader.senders.items()} == {
        DEVICES[0].device_id: 4,
        DEVICES[1].device_id: 3,
        DEVICES[2].device_id: 3,
    }
    assert set(reader.known) == {m.id for m in room.log}
    assert reader.senders[DEVICES[2].device_id] == SenderState(3, room.log[7].id, T0 + 7)
    # The posting clients' own view agrees.
    room.catch_up(NOW)
    assert state_of(room.view) == state_of(reader)


def test_first_messages_need_no_predecessor() -> None:
    room = Room(3)
    for who in range(3):
        room.post(who, T0 + who, read=False)
    reader = room.reader()
    serve(reader, room.log, NOW)
    assert all(s.seq == 1 for s in reader.senders.values())


def test_dropped_message_is_detected() -> None:
    room = Room(2)
    a1 = room.post(0, T0)
    b1 = room.post(1, T0 + 1)
    room.post(0, T0 + 2)  # a2: dropped
    a3 = room.post(0, T0 + 3, read=False)
    reader = room.reader()
    serve(reader, [a1, b1], NOW)
    before = state_of(reader)
    with pytest.raises(IntegrityError, match="dropped or reordered messages of one sender"):
        serve(reader, [a3], NOW)
    assert state_of(reader) == before  # a refused message changes nothing


def test_dropped_first_message_is_detected() -> None:
    room = Room(2)
    room.post(0, T0)
    a2 = room.post(0, T0 + 1)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a2], 10**12)  # no expiry: no clock explains it


def test_messages_of_one_sender_reordered_are_detected() -> None:
    room = Room(2)
    a1, a2 = room.post(0, T0), room.post(0, T0 + 1)
    with pytest.raises(IntegrityError):
        serve(room.reader(), [a2, a1], NOW)
    room.post(1, T0 + 2)
    a3 = room.post(0, T0 + 3)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a1, a3, a2], NOW)


def test_reordered_after_an_expiry_gap_names_the_sequence() -> None:
    """a2 looked expired (skipped), then the server serves it late: a replay or reorder."""
    room = Room(1, expire=60)
    a1, a2, a3 = room.post(0, T0), room.post(0, T0 + 10), room.post(0, T0 + 20)
    reader = room.reader()
    serve(reader, [a1, a3], T0 + 1000)
    with pytest.raises(IntegrityError, match="sequence 2 after 3"):
        serve(reader, [a2], T0 + 1000)


def test_replayed_message_is_detected() -> None:
    room = Room(3)
    a1, b1 = room.post(0, T0), room.post(1, T0 + 1)
    c1 = room.post(2, T0 + 2)
    reader = room.reader()
    serve(reader, [a1, b1, c1], NOW)
    for m in (a1, b1, c1):
        with pytest.raises(IntegrityError, match="replayed a message we already have"):
            serve(reader, [m], NOW)
    with pytest.raises(IntegrityError, match="replayed"):
        serve(room.reader(), [a1, a1], NOW)


def test_replay_is_detected_after_a_reload() -> None:
    room = Room(2)
    a1, b1, a2 = room.post(0, T0), room.post(1, T0 + 1), room.post(0, T0 + 2)
    reader = room.reader()
    serve(reader, [a1, b1, a2], NOW)
    reloaded = reload(reader)
    assert reloaded == reader and state_of(reloaded) == state_of(reader)
    for m in (a1, b1, a2):
        with pytest.raises(IntegrityError, match="replayed"):
            serve(reloaded, [m], NOW)
    b2 = room.post(1, T0 + 3)
    serve(reloaded, [b2], NOW)  # and goes on accepting
    a3 = room.post(0, T0 + 4)
    a4 = room.post(0, T0 + 5, read=False)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(reload(reloaded), [a4], NOW)  # a3 missing, noticed by a reloaded reader too
    serve(reloaded, [a3, a4], NOW)


def test_replay_of_a_forgotten_expired_message_is_still_detected() -> None:
    room = Room(2, expire=60)
    a1, b1 = room.post(0, T0), room.post(1, T0 + 1000)
    reader = room.reader()
    serve(reader, [a1, b1], T0)
    reader.forget_expired(T0 + 1000)
    assert a1.id not in reader.known
    with pytest.raises(IntegrityError, match="replayed or reordered"):
        serve(reader, [a1], T0 + 1000)


def test_equivocation_same_sequence_twice_is_refused() -> None:
    """One device signed two different first messages: the second one served is refused."""
    poster = Poster(DEVICES[0], "member-0")
    a1, a1_fork = poster.make(T0, text="yes"), poster.make(T0, text="no")
    reader = ThreadChecker(TEAM, THREAD, 0)
    serve(reader, [a1], NOW)
    with pytest.raises(IntegrityError, match="sequence 1 after 1"):
        serve(reader, [a1_fork], NOW)


def test_message_chained_to_a_fork_is_refused() -> None:
    """The server splices a2 (chained to a1') after a1: the chain does not match."""
    poster = Poster(DEVICES[0], "member-0")
    a1 = poster.make(T0, text="yes")
    poster.post(T0, text="no")  # a1'
    a2 = poster.post(T0 + 1)
    with pytest.raises(IntegrityError, match="does not chain"):
        serve(ThreadChecker(TEAM, THREAD, 0), [a1, a2], NOW)


def test_message_with_wrong_prev_time_is_refused() -> None:
    poster = Poster(DEVICES[0], "member-0")
    a1 = poster.post(T0)
    a2 = poster.make(T0 + 5, prev_time=T0 + 1)
    with pytest.raises(IntegrityError, match="does not chain"):
        serve(ThreadChecker(TEAM, THREAD, 0), [a1, a2], NOW)


def test_message_older_than_its_predecessor_is_refused() -> None:
    poster = Poster(DEVICES[0], "member-0")
    a1 = poster.post(T0)
    a2 = poster.make(T0, time=T0 - 1)
    with pytest.raises(IntegrityError, match="older than"):
        serve(ThreadChecker(TEAM, THREAD, 0), [a1, a2], NOW)


def test_message_of_another_thread_is_refused() -> None:
    room, other = Room(2), Room(2, thread=OTHER_THREAD)
    a1 = room.post(0, T0)
    x1 = other.post(1, T0 + 1)
    reader = room.reader()
    serve(reader, [a1], NOW)
    with pytest.raises(IntegrityError, match="another thread or team"):
        serve(reader, [x1], NOW)


def test_message_of_another_team_is_refused() -> None:
    """Same thread id, another team: still refused (the checker binds both)."""
    room, other = Room(2), Room(2, key=OTHER_KEY, thread=THREAD)
    a1 = room.post(0, T0)
    x1 = other.post(1, T0 + 1)
    assert x1.header.thread == THREAD
    reader = room.reader()
    serve(reader, [a1], NOW)
    with pytest.raises(IntegrityError, match="another thread or team"):
        serve(reader, [x1], NOW)


def test_message_served_before_one_its_sender_had_read_is_refused() -> None:
    room = Room(2)
    a1 = room.post(0, T0)
    b1 = room.post(1, T0 + 5)  # B read a1 first
    assert b1.header.seen == (Seen(a1.id, T0),)
    with pytest.raises(IntegrityError, match="another member had already read"):
        serve(room.reader(), [b1, a1], NOW)
    with pytest.raises(IntegrityError, match="already read"):
        serve(room.reader(), [b1], NOW)  # or a1 dropped altogether
    serve(room.reader(), [a1, b1], NOW)


def test_seen_message_that_expired_may_be_missing() -> None:
    room = Room(2, expire=60)
    room.post(0, T0)
    b1 = room.post(1, T0 + 5)
    boundary = T0 + 60 - EXPIRY_GRACE  # a1 counts as expired from here on
    with pytest.raises(IntegrityError, match="already read"):
        serve(room.reader(), [b1], boundary - 1)
    serve(room.reader(), [b1], boundary)
    serve(room.reader(), [b1], T0 + 60)


@pytest.mark.parametrize("expire", [60, 3600])
def test_gap_explained_by_expiry_is_accepted_only_once_expired(expire: int) -> None:
    room = Room(2, expire=expire)
    a1 = room.post(0, T0)
    b1 = room.post(1, T0 + 5)
    a2 = room.post(0, T0 + 10)  # dropped by the server
    a3 = room.post(0, T0 + 20)
    assert a3.header.prev_time == T0 + 10
    boundary = a2.header.time + expire - EXPIRY_GRACE  # expired(a2.time, now) from here on
    reader = room.reader()
    serve(reader, [a1, b1], T0)
    for too_early in (boundary - 1, boundary - 1000):
        with pytest.raises(IntegrityError, match="expiry does not explain the gap"):
            serve(reader, [a3], too_early)
    for late_enough in (boundary, a2.header.time + expire, T0 + 10**6):
        r = reload(reader)
        serve(r, [a3], late_enough)
        assert r.senders[DEVICES[0].device_id].seq == 3
    if expire == 60:
        assert boundary < a2.header.time  # EXPIRY_GRACE > expire: "expired" before it was even posted


def test_gap_at_a_new_readers_start_is_explained_by_expiry() -> None:
    """A reader arriving late: the sender's first messages are gone."""
    room = Room(1, expire=3600)
    room.post(0, T0)
    a2 = room.post(0, T0 + 10)
    a3 = room.post(0, T0 + 20)
    boundary = a2.header.time + 3600 - EXPIRY_GRACE
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a3], boundary - 1)
    serve(room.reader(), [a3], boundary)


def test_without_expiry_a_gap_is_never_explained() -> None:
    room = Room(1, expire=0)
    room.post(0, T0)
    room.post(0, T0 + 1)
    a3 = room.post(0, T0 + 2)
    assert not room.reader().expired(0, 2**62)
    with pytest.raises(IntegrityError, match="dropped"):
        serve(room.reader(), [a3], 2**62)


def test_expired_predicate() -> None:
    c = ThreadChecker(TEAM, THREAD, 60)
    assert c.expired(T0, T0 + 60 - EXPIRY_GRACE)
    assert not c.expired(T0, T0 + 60 - EXPIRY_GRACE - 1)
    assert not ThreadChecker(TEAM, THREAD, 0).expired(0, 2**62)


def _withheld_room(expire: int) -> tuple[ThreadChecker, str, str]:
    room = Room(2, expire=expire)
    room.post(0, T0)
    room.post(0, T0 + 10)
    room.post(1, T0 + 20)
    reader = room.reader()
    serve(reader, room.log, T0 + 20)
    return reader, DEVICES[0].device_id, DEVICES[1].device_id


def test_check_nothing_withheld_detects_a_rollback() -> None:
    reader, a, b = _withheld_room(0)
    reader.check_nothing_withheld({a: 2, b: 1}, NOW)
    reader.check_nothing_withheld({a: 3, b: 1, "d" * 32: 9}, NOW)  # more than we saw is fine
    for served in ({a: 1, b: 1}, {a: 2, b: 0}, {a: 2}, {b: 1}, {}):
        with pytest.raises(IntegrityError, match="withheld"):
            reader.check_nothing_withheld(served, 2**62)


def test_check_nothing_withheld_excuses_expired_messages() -> None:
    reader, a, b = _withheld_room(60)
    a_boundary = T0 + 10 + 60 - EXPIRY_GRACE  # a2 (A's newest) expired from here on
    b_boundary = T0 + 20 + 60 - EXPIRY_GRACE
    with pytest.raises(IntegrityError, match="withheld"):
        reader.check_nothing_withheld({a: 1, b: 1}, a_boundary - 1)
    reader.check_nothing_withheld({a: 1, b: 1}, a_boundary)
    reader.check_nothing_withheld({b: 1}, a_boundary)
    with pytest.raises(IntegrityError, match="withheld"):
        reader.check_nothing_withheld({}, a_boundary)  # B's newest has not expired yet
    reader.check_nothing_withheld({}, b_boundary)


def test_forget_expired_drops_only_expired_ids() -> None:
    room = Room(2, expire=60)
    a1, b1, a2 = room.post(0, T0), room.post(1, T0 + 500), room.post(0, T0 + 1000)
    reader = room.reader()
    serve(reader, room.log, T0)
    reader.forget_expired(T0 + 60 - EXPIRY_GRACE - 1)
    assert set(reader.known) == {a1.id, b1.id, a2.id}
    reader.forget_expired(T0 + 60 - EXPIRY_GRACE)
    assert reader.known == {b1.id: T0 + 500, a2.id: T0 + 1000}
    senders_before = dict(reader.senders)
    reader.forget_expired(T0 + 10**6)
    assert reader.known == {}
    assert reader.senders == senders_before  # the chains are kept: replays are still caught by sequence
    assert reader.newest_seen(DEVICES[0].device_id) == []  # nothing forgotten is named in `seen`


def test_forget_expired_keeps_everything_without_expiry() -> None:
    room = Room(2, expire=0)
    for i in range(5):
        room.post(i % 2, T0 + i)
    reader = room.reader()
    serve(reader, room.log, NOW)
    reader.forget_expired(2**62)
    assert set(reader.known) == {m.id for m in room.log}


def test_forget_expired_keeps_the_newest_max_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "MAX_KNOWN", 3)
    room = Room(2, expire=0)
    for i in range(6):
        room.post(i % 2, T0 + i)
    reader = room.reader()
    serve(reader, room.log, NOW)
    reader.forget_expired(NOW)
    assert set(reader.known) == {m.id for m in room.log[-3:]}


def test_seen_naming_a_quiet_devices_old_message_after_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """D posts once, A posts more than MAX_KNOWN times; B (whose view was never pruned) posts naming D's message
    (still D's newest). Nothing was dropped, yet a pruned reader refuses B's message."""
    monkeypatch.setattr(messages, "MAX_KNOWN", 3)
    room = Room(3)
    d1 = room.post(2, T0)
    for i in range(4):
        room.post(0, T0 + 1 + i)
    b1 = room.post(1, T0 + 10)
    assert Seen(d1.id, T0) in b1.header.seen
    reader = room.reader()
    serve(reader, room.log[:-1], NOW)
    reader.forget_expired(NOW)  # what a client does each time it loads its cache
    assert d1.id not in reader.known and reader.senders[DEVICES[2].device_id].id == d1.id
    serve(reader, [b1], NOW)  # today: IntegrityError("... another member had already read")


def test_newest_seen_names_the_newest_of_other_devices() -> None:
    room = Room(4)
    for i, who in enumerate([0, 1, 2, 3, 1, 2]):
        room.post(who, T0 + i)
    room.catch_up(NOW)
    log = room.log
    assert room.view.newest_seen(DEVICES[0].device_id) == [
        Seen(log[5].id, T0 + 5),
        Seen(log[4].id, T0 + 4),
        Seen(log[3].id, T0 + 3),
    ]
    assert [s.id for s in room.view.newest_seen("x" * 32)] == [log[5].id, log[4].id, log[3].id, log[0].id]
    assert len(room.view.newest_seen("x" * 32)) == MAX_SEEN


def test_newest_seen_caps_at_max_seen() -> None:
    posters = [Poster(DeviceKeys.generate(), f"m{i}") for i in range(MAX_SEEN + 2)]
    msgs = [q.post(T0 + i) for i, q in enumerate(posters)]
    c = ThreadChecker(TEAM, THREAD, 0)
    for m in msgs:
        c.accept(m, NOW)
    assert [s.id for s in c.newest_seen(posters[0].device_id)] == [m.id for m in msgs[::-1][:MAX_SEEN]]


def test_checker_state_round_trips() -> None:
    room = Room(3, expire=3600)
    for i, who in enumerate([0, 1, 2, 0]):
        room.post(who, T0 + i)
    reader = room.reader()
    serve(reader, room.log, T0 + 10)
    again = reload(reader)
    assert again == reader
    assert (again.team, again.thread, again.expire) == (TEAM, THREAD, 3600)
    assert ThreadChecker.from_value(again.to_value()) == reader
    empty = ThreadChecker(TEAM, THREAD, 0)
    assert reload(empty) == empty


@pytest.mark.parametrize(
    "change",
    [
        {"senders": {"d": [1, "x"]}},
        {"senders": {"d": [1, "x", 2, 3]}},
        {"senders": {"d": "x"}},
        {"senders": {"d": ["1", "x", 2]}},
        {"senders": {"d": [1, 2, 2]}},
        {"senders": {"d": [1, "x", "2"]}},
        {"senders": [1]},
        {"known": {"x": "1"}},
        {"known": [1]},
        {"expire": -1},
        {"team": 5},
        {"extra": 1},
        {"team": "x" * 65},
    ],
)
def test_malformed_checker_state_is_an_encoding_error(change: dict[str, Value]) -> None:
    state = dict(ThreadChecker(TEAM, THREAD, 0).to_value())
    state.update(change)
    with pytest.raises(EncodingError):
        ThreadChecker.from_value(decode(encode(state)))


@pytest.mark.parametrize("missing", ["team", "thread", "expire", "senders", "known"])
def test_checker_state_missing_a_field_is_an_encoding_error(missing: str) -> None:
    partial = dict(ThreadChecker(TEAM, THREAD, 0).to_value())
    del partial[missing]
    with pytest.raises(EncodingError):
        ThreadChecker.from_value(decode(encode(partial)))
    with pytest.raises(EncodingError):
        ThreadChecker.from_value([])


@PROPS
@given(st.sampled_from(["team", "thread", "expire", "senders", "known"]), values)
def test_checker_state_decoder_fails_closed(name: str, value: Value) -> None:
    state = dict(CHECKER_STATE)
    state[name] = value
    with contextlib.suppress(EncodingError):
        ThreadChecker.from_value(decode(encode(state)))
