"""Security-protocol rules (``security.rules``) over the audit events: bulk access, log integrity, failed
logins, pending shares, keystore KDF, retention, small threads and circle shape.

Chains are real replays (``MWorld``); events are ``Event`` objects as the server records them;
their audit log index is their position in the list given to ``audit`` (``tests/helpers/rules.py``).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.helpers.chain_world import DAY, MWorld
from tests.helpers.rules import (
    HOUR,
    MINUTE,
    STRONG,
    audit,
    circle_of,
    event,
    link_event,
    ncc,
    ok,
    only,
    result,
    thread_created,
    with_params,
)


@pytest.fixture
def world() -> MWorld:
    return MWorld()


# -- bulk-access ----------------------------------------------------------------------------------------


def test_bulk_access_reads(world: MWorld) -> None:
    alice = world.admit("alice")
    now = world.time + DAY
    burst = [event(now - HOUR + i * 30, "doc.read", alice.id, res={"team": "t1", "doc": f"d{i}", "vid": "v"})
             for i in range(21)]  # 21 reads within 10.5 minutes
    res = result(audit(world, [], burst, now=now), "bulk-access")
    f = only(res, "alert")
    assert res.status == "alert" and f.subject == alice.id and f.events == tuple(range(21)) and "t1" in f.message
    ok(result(audit(world, [], burst[:20], now=now), "bulk-access"))
    spread = [event(now - DAY + i * 60, "doc.read", alice.id) for i in range(40)]  # 15 per 15 minutes
    ok(result(audit(world, [], spread, now=now), "bulk-access"))
    refused = [event(now - HOUR + i * 30, "doc.read", alice.id, result="denied") for i in range(21)]
    f = only(result(audit(world, [], refused, now=now), "bulk-access"), "alert")  # refusals are not reads
    assert "refused access 21 times" in f.message


def test_bulk_access_refusals(world: MWorld) -> None:
    bob = world.admit("bob")
    now = world.time + 30 * DAY
    old = [event(now - 8 * DAY, "request.denied", bob.id, result="denied") for _ in range(5)]
    recent = [event(now - DAY, "request.denied", bob.id, result="denied", res={"team": "x"}) for _ in range(6)]
    ok(result(audit(world, [], [*old, *recent], now=now), "bulk-access"))  # 6 in the last 7 days
    more = [event(now - 2 * DAY, "doc.read", bob.id, result="denied") for _ in range(5)]
    res = result(audit(world, [], [*old, *recent, *more], now=now), "bulk-access")
    f = only(res, "alert")
    assert f.subject == bob.id and f.events == tuple(range(5, 16)) and "11 times" in f.message
    # The parameters are read: a higher threshold silences it.
    ok(result(audit(world, [], [*old, *recent, *more], now=now), "bulk-access",
              with_params("[rules.bulk-access]\nmax_denied = 11\n")))


def test_bulk_access_counts_the_refusals_folded_into_a_members_summary(world: MWorld) -> None:
    """Beyond a few a minute, a member's refusals are counted in one request.refusals event (server/guard.py):
    the rule counts what it says was denied, not one per event."""
    bob = world.admit("bob")
    now = world.time + DAY
    single = [event(now - HOUR, "request.denied", bob.id, bob.device.device_id, result="denied") for _ in range(3)]
    folded = event(now - HOUR + 60, "request.refusals", bob.id, result="denied",
                   detail={"from": now - HOUR, "until": now - HOUR + 60, "count": 500, "denied": 495, "failed": 5,
                           "r:request.denied /api/v1/audit/leaves forbidden": 495})
    f = only(result(audit(world, [], [*single, folded], now=now), "bulk-access"), "alert")
    assert f.subject == bob.id and "refused access 498 times" in f.message and f.events == (0, 1, 2, 3)
    conflicts = event(now - HOUR + 60, "request.refusals", bob.id, result="failed",
                      detail={"from": now - HOUR, "until": now - HOUR + 60, "count": 40, "denied": 0, "failed": 40})
    ok(result(audit(world, [], [*single, conflicts], now=now), "bulk-access"))  # conflicts are not refusals of access
    few = event(now - HOUR + 60, "request.refusals", bob.id, result="denied", detail={"count": 7, "denied": 7})
    assert "refused access 10 times" not in str(result(audit(world, [], [*single, few], now=now), "bulk-access"))
    ok(result(audit(world, [], [*single, few], now=now), "bulk-access"))


def test_failed_logins_counts_a_members_folded_refused_logins(world: MWorld) -> None:
    alice = world.admit("alice")
    dev = alice.device.device_id
    now = world.time + DAY
    fails = [event(now - HOUR - 10 + i, "auth.fail", alice.id, dev, result="denied") for i in range(2)]
    folded = event(now - HOUR + 60, "request.refusals", alice.id, result="denied",
                   detail={"from": now - HOUR, "until": now - HOUR + 60, "count": 30, "denied": 30, "failed": 0,
                           f"d:{dev}": 30, "r:auth.fail /api/v1/auth/login unauthorized": 30})
    f = only(result(audit(world, [], [*fails, folded], now=now), "failed-logins"), "alert")
    assert f.subject == dev and "named in 32 failed logins" in f.message and f.events == (0, 1, 2)


# -- log-integrity --------------------------------------------------------------------------------------


def test_log_integrity(world: MWorld) -> None:
    now = world.time + DAY
    f = only(result(audit(world, [], now=now, log_ok=False, log_problem="root differs at size 12",
                          last_witness=now - HOUR), "log-integrity"), "violation")
    assert "root differs at size 12" in f.message and f.subject == ""
    cosign = [event(now - 30 * HOUR, "audit.cosign", world.founder.id, detail={"size": 3})]
    res = result(audit(world, [], cosign, now=now, last_witness=now - 30 * HOUR), "log-integrity")
    f = only(res, "violation")
    assert res.status == "violated" and "1d 6h ago" in f.message and f.events == (0,)
    assert "never" in only(result(audit(world, [], now=now, last_witness=None), "log-integrity")).message
    ok(result(audit(world, [], cosign, now=now, last_witness=now - 23 * HOUR), "log-integrity"))


def test_log_integrity_counts_an_outside_witness(world: MWorld) -> None:
    """A listed outside witness's cosignature (C2SP cosignature/v1) within witness_hours keeps the rule green
    even when the Security Team has not cosigned; an old one does not."""
    now = world.time + DAY
    ok(result(audit(world, [], now=now, last_witness=None, last_outside_witness=now - 2 * HOUR), "log-integrity"))
    ok(result(audit(world, [], now=now, last_witness=now - 30 * HOUR, last_outside_witness=now - HOUR),
              "log-integrity"))
    f = only(result(audit(world, [], now=now, last_witness=None, last_outside_witness=now - 25 * HOUR),
                    "log-integrity"), "violation")
    assert "1d 1h ago" in f.message


def test_log_integrity_reports_a_link_the_log_skips(world: MWorld) -> None:
    """A chain link with no append event while a later link of its chain has one: the server failed to log it
    (review 9); a log with every append has no such finding, nor do the last links of a chain (appended, maybe,
    after the checkpoint the log was read to)."""
    alice = world.admit("alice")
    first = world.org_links[-1]
    skipped = world.role(world.founder, alice, "security")
    world.time += HOUR
    bob = world.admit("bob")
    now = world.time + HOUR
    logged = [link_event(lk) for lk in world.org_links if lk is not skipped]
    f = only(result(audit(world, [], logged, now=now), "log-integrity"), "violation")
    assert f"link {skipped.seq} of the organization chain (org.role" in f.message and "failed to log" in f.message
    # An event the reader's key does not open sits where the skipped append would be: perhaps it is that append.
    inp = audit(world, [], logged, now=now)
    gap = next(i for i, e in inp.events if e.res.get("seq") == str(skipped.seq + 1))
    unread = replace(inp, events=[(i + (i >= gap), e) for i, e in inp.events])
    ok(result(unread, "log-integrity"))
    ok(result(audit(world, [], [link_event(lk) for lk in world.org_links], now=now), "log-integrity"))
    ok(result(audit(world, [], [link_event(first)], now=now), "log-integrity"))  # bob's admission: the last link
    assert bob.id in world.org().members


# -- failed-logins --------------------------------------------------------------------------------------


def test_failed_logins(world: MWorld) -> None:
    """A device named in more than max_failures failed logins within the window is an alert (the server
    throttles the sources; it owes no device lockout); lockouts in older logs are still reported."""
    alice = world.admit("alice")
    dev = alice.device.device_id
    now = world.time + DAY
    fails = [event(now - HOUR + i * 60, "auth.fail", alice.id, dev, result="denied") for i in range(6)]
    res = result(audit(world, [], fails, now=now), "failed-logins")
    f = only(res, "alert")
    assert res.status == "alert" and f.subject == dev and f.events == tuple(range(6))
    assert "named in 6 failed logins" in f.message and alice.id in f.message
    # Summaries of unauthenticated refusals count per device, with the failures of the key holder.
    summary = event(now - HOUR, "request.summary", result="denied",
                    detail={"from": now - HOUR - 30, "until": now - HOUR + 30, "count": 9, "sources": 2,
                            "throttled": 0, "blocked_sources": 1, f"d:{dev}": 4, "d:other": 50,
                            "r:/api/v1/auth/login unauthorized": 9})
    res = result(audit(world, [], [summary, *fails[:2]], now=now), "failed-logins")
    assert res.status == "alert"
    assert {f.message.split(" ")[0] for f in res.findings} == {"1", "device"}  # the throttled source; the device
    named = next(f for f in res.findings if f.subject == dev)
    assert "named in 6 failed logins" in named.message and named.events == (0, 1, 2)
    # With a lockout (an older server): the lockout itself is reported as before.
    lockout = event(fails[-1].time, "auth.lockout", alice.id, dev, detail={"until": fails[-1].time + 15 * MINUTE})
    res = result(audit(world, [], [*fails, lockout], now=now), "failed-logins")
    (v,) = [f for f in res.findings if f.level == "violation"]
    assert res.status == "violated" and v.subject == dev and v.events == (6,) and "locked out" in v.message


def test_failed_logins_below_the_limit(world: MWorld) -> None:
    alice = world.admit("alice")
    dev = alice.device.device_id
    now = world.time + DAY
    few = [event(now - HOUR + i * 60, "auth.fail", alice.id, dev, result="denied") for i in range(5)]
    ok(result(audit(world, [], few, now=now), "failed-logins"))
    spread = [event(now - 5 * HOUR + i * 20 * MINUTE, "auth.fail", alice.id, dev, result="denied")
              for i in range(12)]  # at most 1 per 15 minutes
    ok(result(audit(world, [], spread, now=now), "failed-logins"))
    others = [event(now - HOUR, "auth.fail", alice.id, f"device-{i}", result="denied") for i in range(10)]
    ok(result(audit(world, [], others, now=now), "failed-logins"))  # per device
    summary = event(now - HOUR, "request.summary", result="denied",
                    detail={"from": now - HOUR, "count": 5000, "sources": 40, f"d:{dev}": 5, "d:other": 4995})
    ok(result(audit(world, [], [summary], now=now), "failed-logins"))  # "other" names no device


# -- pending-shares -------------------------------------------------------------------------------------


def test_pending_shares(world: MWorld) -> None:
    alice, nina, carol = world.admit("alice"), ncc(world, "nina"), world.admit("carol")
    t = circle_of(world, (alice, "writer"))
    add = world.add(t, nina, carol, "reader", keyless=True)  # nina holds no key: carol waits for a share
    events = [link_event(add, team=t.team_id, member=carol.id)]
    res = result(audit(world, [t], events, now=add.time + 25 * HOUR), "pending-shares")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == carol.id and f.events == (0,) and t.team_id in f.message
    res = result(audit(world, [t], events, now=add.time + HOUR), "pending-shares")
    assert res.status == "warning" and only(res).subject == carol.id
    world.share(t, alice, carol)  # any key holder shares
    ok(result(audit(world, [t], events, now=add.time + 25 * HOUR), "pending-shares"))


# -- keystore-kdf ---------------------------------------------------------------------------------------


def test_keystore_kdf(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    world.add_device(alice, "paper", kind="paper")
    t = world.time
    events = [event(t, "attest.keystore", world.founder.id, world.founder.device.device_id, detail=STRONG),
              event(t, "attest.keystore", alice.id, alice.device.device_id,
                    detail={**STRONG, "memory_kib": 1024}),
              event(t - 100, "attest.keystore", alice.id, phone.device_id, detail={**STRONG, "time_cost": 1}),
              event(t, "attest.keystore", alice.id, phone.device_id, detail=STRONG)]  # the newest one counts
    res = result(audit(world, [], events, now=t + DAY), "keystore-kdf")
    f = only(res, "violation")
    assert res.status == "violated" and f.subject == alice.device.device_id and f.events == (1,)
    assert "memory_kib 1024 < 65536" in f.message
    # No attestation at all is a warning.
    res = result(audit(world, [], [events[0], events[3]], now=t + DAY), "keystore-kdf")
    f = only(res, "warning")
    assert res.status == "warning" and f.subject == alice.device.device_id


def test_keystore_kdf_all_strong(world: MWorld) -> None:
    alice = world.admit("alice")
    phone = world.add_device(alice, "phone")
    events = [event(world.time, "attest.keystore", p.id, d, detail={**STRONG, "memory_kib": 262144})
              for p, d in ((world.founder, world.founder.device.device_id), (alice, alice.device.device_id),
                           (alice, phone.device_id))]
    ok(result(audit(world, [], events, now=world.time + DAY), "keystore-kdf"))


# -- retention and small-threads ---------------------------------------------------------------------


def test_retention_forever_and_too_long(world: MWorld) -> None:
    circle = circle_of(world)
    program = world.create_team(world.founder, [(world.founder, "admin")], kind="program")
    t = world.time
    events = [thread_created(circle, t, "a" * 32, 0, actor="m" * 32), thread_created(circle, t, "b" * 32, 8 * DAY),
              thread_created(program, t, "c" * 32, 0), thread_created(program, t, "d" * 32, 29 * DAY)]
    res = result(audit(world, [circle, program], events), "retention")
    assert res.status == "violated"
    assert sorted(f.subject for f in res.findings) == ["a" * 32, "b" * 32, "c" * 32, "d" * 32]
    forever = next(f for f in res.findings if f.subject == "a" * 32)
    assert "forever" in forever.message and forever.events == (0,)
    assert f"created by member {'m' * 32}" in forever.message  # who chose the expiry (issue 13)


def test_retention_within_the_limits(world: MWorld) -> None:
    circle = circle_of(world)
    program = world.create_team(world.founder, [(world.founder, "admin")], kind="program")
    t = world.time
    events = [thread_created(circle, t, "a" * 32, 7 * DAY), thread_created(circle, t, "b" * 32, DAY),
              thread_created(program, t, "c" * 32, 28 * DAY),
              event(t, "thread.create", result="failed", res={"team": circle.team_id, "thread": "e" * 32},
                    detail={"expire": 0})]  # refused by the server: no thread
    ok(result(audit(world, [circle, program], events), "retention"))
    # A parameter change moves the verdict: circles may now keep messages one day at most.
    strict = with_params('[rules.retention]\nsensitive_max_days = 1\n')
    assert only(result(audit(world, [circle, program], events), "retention", strict)).subject == "a" * 32


def test_small_threads_too_many_readers_and_idle(world: MWorld) -> None:
    people = [(world.admit(f"p{i}"), "reader") for i in range(12)]
    big = circle_of(world, *people)  # founder + 12: 13 readers
    program = world.create_team(world.founder, [(world.founder, "admin"), *people], kind="program")
    t = world.time
    events = [thread_created(big, t, "a" * 32, DAY), thread_created(program, t, "b" * 32, DAY),
              event(t + 40 * DAY, "msg.post", world.founder.id, res={"team": program.team_id, "thread": "b" * 32})]
    res = result(audit(world, [big, program], events, now=t + 41 * DAY), "small-threads")
    levels = sorted((f.level, f.subject) for f in res.findings)
    # the circle thread: too many readers and idle; the program thread (not sensitive) was active yesterday
    assert levels == [("violation", "a" * 32), ("warning", "a" * 32)], levels
    assert "13 members" in next(f.message for f in res.findings if f.level == "violation")


def test_small_threads_small_and_active(world: MWorld) -> None:
    alice = world.admit("alice")
    circle = circle_of(world, (alice, "writer"))
    t = world.time
    events = [thread_created(circle, t, "a" * 32, DAY),
              event(t + 20 * DAY, "msg.post", alice.id, res={"team": circle.team_id, "thread": "a" * 32})]
    ok(result(audit(world, [circle], events, now=t + 21 * DAY), "small-threads"))


# -- circle-shape -------------------------------------------------------------------------------------


def test_circle_shape_too_small_too_large_and_double_membership(world: MWorld) -> None:
    people = [world.admit(f"c{i}") for i in range(9)]
    small = circle_of(world, (people[0], "writer"))  # founder + 1
    large = circle_of(world, *[(x, "reader") for x in people[:8]])  # founder + 8 = 9
    program = world.create_team(world.founder, [(world.founder, "admin"), *[(x, "reader") for x in people]],
                                kind="program")  # not a circle: any size
    res = result(audit(world, [small, large, program]), "circle-shape")
    subjects = sorted(f.subject for f in res.findings)
    # both circles are the wrong size; founder and c0 are in two circles each
    assert subjects == sorted([small.team_id, large.team_id, world.founder.id, people[0].id]), res.findings
    assert res.status == "violated"


def test_circle_shape_well_formed(world: MWorld) -> None:
    people = [world.admit(f"d{i}") for i in range(8)]
    a = circle_of(world, *[(x, "reader") for x in people[:4]])  # founder + 4 = 5
    ok(result(audit(world, [a]), "circle-shape"))
    b = circle_of(world, *[(x, "reader") for x in people[4:8]])  # the founder is in both circles
    assert only(result(audit(world, [a, b]), "circle-shape")).subject == world.founder.id
    liaison = with_params("[rules.circle-shape]\nmax_circles = 2\n")  # e.g. a designated liaison
    ok(result(audit(world, [a, b]), "circle-shape", liaison))
