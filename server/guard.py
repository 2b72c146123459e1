"""What callers may cost the audit log and the server: a request budget per source address, a
throttle for sources that keep failing logins, counted summaries of unauthenticated refusals instead
of one event each, and, for members, a few refusal events a minute each with the rest counted.

On SQLite everything here lives in memory (a restart forgets it) and is bounded: at most
``Config.rate_sources`` addresses are tracked per table (the least recently seen go first), and a
refusal summary holds at most ``MAX_ROUTES`` route keys and ``MAX_DEVICES`` device keys. Addresses
are never written anywhere; a summary carries only how many distinct sources it saw. Member refusal
counts are kept per member (an authenticated id, so the directory bounds them) for the current minute.
On PostgreSQL the request budgets and failed logins live in the database instead
(``server/store/postgres/guard.py``, ``LocalGuard`` below is the SQLite one), so that every server process
counts the same ones; addresses are written there only as tags keyed by the data directory's log seed.

Nothing here imports the application: ``server.app`` wires it in.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TypeVar

MINUTE = 60
V = TypeVar("V")
MAX_ROUTES = 16  # "r:<route> <code>" keys in one summary; the rest add up in "r:other"
MAX_DEVICES = 8  # "d:<device>" keys (the most named known devices); the rest add up in "d:other"
MAX_SUMMARY_SOURCES = 10_000  # distinct sources counted exactly in one minute (then the count saturates)
MAX_TEAMS = 8  # "t:<team>" keys in a member's refusal summary; the rest add up in "t:other"
LIVE_LEASE = 30.0  # seconds a process's count of live connections stands in the database without a renewal
LIVE_RENEW = 10.0  # seconds between a process's renewals (``GuardStore.renew_live``, server/routes/threads.py)


@dataclass(frozen=True)
class LoginGate:
    """What a challenge or a login meets first (``GuardStore.take_for_login``, one statement on PostgreSQL): the
    seconds to wait for the source's budget (0: a token spent), the seconds its failed logins still block it, and the
    order number of the newest stored chain link (``ChainStore.links_after``) where other server processes store
    links too (None on SQLite: one process), so the login's catch-up costs no query of its own when nothing is new;
    for a challenge, whether its nonce was stored by the same statement (PostgreSQL; issue 19, session 19)."""

    wait: float
    blocked: float
    links_head: int | None = None
    nonce_stored: bool = False


@dataclass
class _Bucket:
    tokens: float
    at: float


class SourceLimiter:
    """A token bucket per source address: ``burst`` requests at once, refilled at ``rate`` a second."""

    def __init__(self, rate: float, burst: int, max_sources: int) -> None:
        self.rate, self.burst, self.max_sources = rate, float(burst), max_sources
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def clear(self) -> None:
        self._buckets.clear()

    def take(self, source: str, now: float) -> float:
        """Spend one token of ``source``: 0 if it had one, else the seconds until it will."""
        b = self._buckets.get(source)
        if b is None:
            while len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            b = self._buckets[source] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(source)
            b.tokens = min(self.burst, b.tokens + max(0.0, now - b.at) * self.rate)
            b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate if self.rate > 0 else 3600.0


class FailureThrottle:
    """Failed logins per source: more than ``limit`` within ``window`` seconds block the source for ``lock``
    seconds (login and challenge only). Devices are never locked: whoever fails is the one held back."""

    def __init__(self, max_sources: int) -> None:
        self.max_sources = max_sources
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def blocked(self, source: str, now: float) -> float:
        """Seconds ``source`` must still wait (0: not blocked)."""
        until = self._blocked.get(source)
        if until is None:
            return 0.0
        if until <= now:
            del self._blocked[source]
            return 0.0
        return until - now

    def failure(self, source: str, now: float, limit: int, window: float, lock: float) -> bool:
        """Count one failed login of ``source``; True if this one made it blocked."""
        times = self._failures.pop(source, [])
        times = [t for t in times if t > now - window]
        times.append(now)
        if len(times) > limit:
            _bounded_put(self._blocked, source, now + lock, self.max_sources)
            return True
        _bounded_put(self._failures, source, times[-(limit + 1):], self.max_sources)
        return False

    def clear(self) -> None:
        self._failures.clear()
        self._blocked.clear()


class LocalGuard:
    """``GuardStore`` in this process's memory: right for the SQLite backend, which one process serves
    (``mvault-server run --workers`` refuses more than one on SQLite), so no other process could count."""

    def __init__(self, rate: float, burst: int, max_sources: int) -> None:
        self.limiter = SourceLimiter(rate, burst, max_sources)
        self.failures = FailureThrottle(max_sources)
        self._refusal_minute, self._refusals = -MINUTE, dict[str, int]()  # member -> refusals of that minute
        self._live: dict[str, int] = {}  # member -> live connections held

    @property
    def rate(self) -> float:
        return self.limiter.rate

    @rate.setter
    def rate(self, value: float) -> None:
        self.limiter.rate = value

    @property
    def burst(self) -> float:
        return self.limiter.burst

    @burst.setter
    def burst(self, value: float) -> None:
        self.limiter.burst = value

    async def take(self, source: str, now: float) -> float:
        return self.limiter.take(source, now)

    async def blocked(self, source: str, now: float) -> float:
        return self.failures.blocked(source, now)

    async def take_for_login(self, source: str, now: float,
                             nonce: tuple[bytes, str, str, float] | None = None) -> LoginGate:
        return LoginGate(self.limiter.take(source, now), self.failures.blocked(source, now))  # nonce: the caller's

    async def failure(self, source: str, now: float, limit: int, window: float, lock: float) -> bool:
        return self.failures.failure(source, now, limit, window, lock)

    async def purge(self, now: float) -> None:
        """Nothing to do: both tables are bounded (``max_sources``) and expire entries where they are read."""

    async def clear(self) -> None:
        self.limiter.clear()
        self.failures.clear()

    async def own_refusal(self, member: str, minute: int, per_minute: int) -> bool:
        """Count one refusal of ``member`` in ``minute``: True for the first ``per_minute`` of them (each recorded
        as an event of its own), False for the rest (counted into the member's summary: ``MemberRefusals``)."""
        if minute != self._refusal_minute:  # a new minute (or the clock was set back): counts start again
            self._refusal_minute, self._refusals = minute, {}
        n = self._refusals[member] = self._refusals.get(member, 0) + 1
        return n <= per_minute

    async def hold_live(self, member: str, limit: int, now: float) -> bool:
        """One more live connection of ``member`` if it holds fewer than ``limit`` (True: counted)."""
        held = self._live.get(member, 0)
        if held >= limit:
            return False
        self._live[member] = held + 1
        return True

    async def release_live(self, member: str) -> None:
        self._live[member] -= 1
        if not self._live[member]:
            del self._live[member]

    async def renew_live(self, now: float) -> None:
        """Nothing to renew: the counts above are all there is (one process)."""


def _bounded_put(table: OrderedDict[str, V], key: str, value: V, cap: int) -> None:
    """Put ``key`` last (newest); the oldest entries go while the table is full."""
    table.pop(key, None)
    while len(table) >= cap:
        table.popitem(last=False)
    table[key] = value


@dataclass
class Summary:
    """The refusals of unauthenticated requests within one minute ``[start, start + 60)``."""

    start: int
    count: int = 0
    throttled: int = 0  # of them answered 429
    blocked_sources: int = 0  # sources that crossed the failed-login limit in this minute
    routes: dict[str, int] = field(default_factory=dict)  # "<route> <error code>" -> count
    devices: dict[str, int] = field(default_factory=dict)  # known device named by a failed login -> count
    sources: set[str] = field(default_factory=set)

    def detail(self) -> dict[str, int | str]:
        """The event's detail: counts only (no address), at most MAX_ROUTES + MAX_DEVICES + 8 keys."""
        out: dict[str, int | str] = {"from": self.start, "until": self.start + MINUTE, "count": self.count,
                                     "sources": len(self.sources), "throttled": self.throttled,
                                     "blocked_sources": self.blocked_sources}
        out.update(_top("r:", self.routes, MAX_ROUTES))
        out.update(_top("d:", self.devices, MAX_DEVICES))
        return out


def _top(prefix: str, counts: dict[str, int], most: int) -> dict[str, int]:
    """The ``most`` largest counts; the rest (and what was already counted as ``"other"``) in ``other``."""
    ranked = sorted(((k, n) for k, n in counts.items() if k != "other"), key=lambda kv: (-kv[1], kv[0]))
    out = {prefix + k: n for k, n in ranked[:most]}
    rest = sum(n for _, n in ranked[most:]) + counts.get("other", 0)
    if rest:
        out[prefix + "other"] = rest
    return out


class Refusals:
    """Counts unauthenticated refusals per minute; a minute's summary is handed out once it has closed.

    This process's: with several processes (PostgreSQL) each records its own summary of a minute. None is wrong:
    each refusal is counted in exactly one of them and the rules add the counts up (``count``, ``throttled``,
    ``r:``/``d:`` keys); ``blocked_sources`` counts the sources whose failed login crossed the limit here (the
    database says which one call did, ``GuardStore.failure``); ``sources`` is the distinct sources this process
    refused (the sum over one minute's summaries is an upper bound; no rule reads it)."""

    def __init__(self) -> None:
        self.current: Summary | None = None

    def add(self, now: float, route: str, code: str, source: str, device: str | None,
            throttled: bool) -> Summary | None:
        """Count one refusal; returns the previous minute's summary if this one closed it (record it)."""
        minute = int(now) // MINUTE * MINUTE
        closed = None
        if self.current is None or self.current.start != minute:
            closed = self.current if self.current is not None and self.current.count else None
            self.current = Summary(minute)
        s = self.current
        s.count += 1
        s.throttled += throttled
        key = f"{route} {code}"
        if key in s.routes or len(s.routes) < 4 * MAX_ROUTES:
            s.routes[key] = s.routes.get(key, 0) + 1
        else:
            s.routes["other"] = s.routes.get("other", 0) + 1
        if device is not None:  # only devices the directory knows: a bounded set
            s.devices[device] = s.devices.get(device, 0) + 1
        if len(s.sources) < MAX_SUMMARY_SOURCES:
            s.sources.add(source)
        return closed

    def blocked(self) -> None:
        if self.current is not None:
            self.current.blocked_sources += 1

    def take_closed(self, now: float) -> Summary | None:
        """The summary of a minute that has ended by ``now`` (``math.inf``: the current one too), once."""
        s = self.current
        if s is None or s.count == 0 or now < s.start + MINUTE:
            return None
        self.current = None
        return s


def _count(counts: dict[str, int], key: str, most: int) -> None:
    """Add one to ``key``, or to ``"other"`` once ``4 * most`` keys are held (the keys may be chosen by the caller)."""
    if key not in counts and len(counts) >= 4 * most:
        key = "other"
    counts[key] = counts.get(key, 0) + 1


@dataclass
class MemberSummary:
    """One member's refusals within one minute beyond the ones recorded as events of their own."""

    member: str
    start: int
    count: int = 0
    denied: int = 0  # of them with result ``denied`` (what rule bulk-access counts); the rest ``failed``
    routes: dict[str, int] = field(default_factory=dict)  # "<action> <route> <error code>" -> count
    teams: dict[str, int] = field(default_factory=dict)  # team id the refused request named -> count
    devices: dict[str, int] = field(default_factory=dict)  # device named by a refused login (auth.fail) -> count

    def detail(self) -> dict[str, int | str]:
        """The event's detail: at most MAX_ROUTES + MAX_TEAMS + MAX_DEVICES + 8 keys."""
        out: dict[str, int | str] = {"from": self.start, "until": self.start + MINUTE, "count": self.count,
                                     "denied": self.denied, "failed": self.count - self.denied}
        out.update(_top("r:", self.routes, MAX_ROUTES))
        out.update(_top("t:", self.teams, MAX_TEAMS))
        out.update(_top("d:", self.devices, MAX_DEVICES))
        return out


class MemberRefusals:
    """Refusals of members' requests beyond the first ``per_minute`` of each member in a minute (those are recorded
    one by one; ``GuardStore.own_refusal`` counts them, in the database on PostgreSQL so that the bound holds for
    every server process together), counted into one ``MemberSummary`` per member, handed out once the minute
    closed. The summaries are this process's: each refusal is counted in exactly one event, its own or one
    process's summary of that minute, and the rules add the counts up (``security/rules/activity.py``), so
    several summaries of one member and minute (one per process) say the same as one would."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.minute = -MINUTE  # start of the minute the counts below are for
        self.folded: dict[str, MemberSummary] = {}  # member -> the refusals beyond the first few, counted
        self.closed: list[MemberSummary] = []

    def fold(self, now: float, member: str, action: str, route: str, code: str, denied: bool, team: str,
             login_device: str) -> None:
        """Count one refusal of ``member`` (not recorded as an event of its own) into its summary of this minute."""
        self._roll(now)
        s = self.folded.get(member)
        if s is None:
            s = self.folded[member] = MemberSummary(member, self.minute)
        s.count += 1
        s.denied += denied
        _count(s.routes, f"{action} {route} {code}", MAX_ROUTES)
        if team:
            _count(s.teams, team, MAX_TEAMS)
        if login_device:
            _count(s.devices, login_device, MAX_DEVICES)

    def _roll(self, now: float) -> None:
        if now >= self.minute + MINUTE or now < self.minute:  # a new minute (or the clock was set back)
            self.closed.extend(self.folded.values())
            self.folded = {}
            if math.isfinite(now):
                self.minute = minute_of(now)

    def take_closed(self, now: float) -> list[MemberSummary]:
        """The summaries of minutes that have ended by ``now`` (``math.inf``: the current one too), once each."""
        self._roll(now)
        out, self.closed = self.closed, []
        return out


def minute_of(now: float) -> int:
    """The start of the minute ``now`` falls in."""
    return int(now) // MINUTE * MINUTE
