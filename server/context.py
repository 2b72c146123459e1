"""What every part of the server shares: the configuration, the application's keys (the
components the composition root ``server/app.py`` builds and wires), the audit state, the
routes that need no session, and the server's clock.

This module knows nothing of HTTP beyond aiohttp's typed keys; every other server module may
import it, and it imports none of them but the components whose types its keys name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

from aiohttp import web

from security.events import Sealer
from security.protocols import Protocols
from server.directory import Directory
from server.events import EventBus, Hub
from server.guard import MemberRefusals, Refusals
from server.messagelog import MessageLog
from server.store.owed import OwedJournal
from server.store.protocols import (
    AuditLog,
    AuthStore,
    ChainStore,
    DocumentStore,
    GuardStore,
    SlotStore,
    Storage,
    ThreadStore,
)
from server.store.records import AuthSession
from vault.wire.operations import OPERATIONS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Config:
    data_dir: Path
    public_url: str = ""
    # PostgreSQL (postgresql://USER@HOST/DB) instead of SQLite in data_dir (server/store/backends.py); blobs and
    # the audit log's signing key stay in data_dir.
    database_url: str = ""
    # Collect unreferenced blobs and temporary files at start: not in a ``--workers`` worker (server/workers.py),
    # where another worker's upload may be waiting in tmp/; the parent collects once, before any worker serves.
    collect_garbage: bool = True
    max_upload: int = 16 * 1024**3
    session_ttl: float = 3600.0
    nonce_ttl: float = 60.0
    clock_skew: float = 600.0
    purge_interval: float = 30.0  # seconds between background purges of expired thread messages
    # The operator's own per-member limits (keys of the protocols' [quotas]): each applies where it is
    # lower than the organization's; the protocols' values are never exceeded.
    quota_caps: dict[str, int] = field(default_factory=dict)
    # Requests without a session (PUBLIC routes), per source address: a token bucket of rate_burst
    # refilled at rate_per_second; at most rate_sources addresses are remembered (the oldest go first).
    rate_per_second: float = 20.0
    rate_burst: int = 200
    rate_sources: int = 10_000
    # Refusals of one member's requests recorded as events of their own per minute; the rest of that
    # minute are counted in one request.refusals event of the member (server/guard.py MemberRefusals).
    member_refusals: int = 10
    # Slow and stalled clients (README "Slow clients"; server/app.py, server/http.py, server/live.py). A connection
    # is closed once it has been idle keepalive_timeout seconds, and a request's headers must arrive within that
    # many seconds of the connection's start or of the previous answer.
    keepalive_timeout: float = 75.0
    # A JSON request body, and an upload's header and signature, must arrive within body_timeout seconds; an
    # upload's body must bring at least upload_min_rate bytes per second in every window of body_timeout
    # seconds (or all that is left). Slower: refused (400), and the connection closed.
    body_timeout: float = 60.0
    upload_min_rate: int = 1024
    # A live follower (WebSocket) is dropped when one frame to it has waited live_send_timeout seconds for the
    # follower to take it, or when the items waiting for it exceed live_queue_bytes (it reads them from storage
    # when it reconnects).
    live_send_timeout: float = 30.0
    live_queue_bytes: int = 8 * 1024 * 1024
    # A download whose client reads nothing (its TCP window stays closed) is dropped by the kernel after
    # download_stall_timeout seconds (Linux TCP_USER_TIMEOUT on the connection): a paused `mvault get | less`
    # gets this long.
    download_stall_timeout: float = 300.0
    # /api/metrics (server/metrics.py): for `Authorization: Bearer metrics_token` (empty: no token opens it), and
    # for a loopback peer when metrics_loopback (off behind a reverse proxy on the same host).
    metrics_token: str = ""
    metrics_loopback: bool = True
    # Behind a reverse proxy (server/proxied.py): a request from one of these addresses names its client in
    # proxy_header ("x-forwarded-for" or "forwarded"); from any other peer the header is ignored.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    proxy_header: str = "x-forwarded-for"
    clock: Callable[[], float] = field(default=time.time)


@dataclass
class AuditKey:
    gen: int = 0
    pub: bytes | None = None
    team: str = ""
    statement: bytes = b""
    sig: bytes = b""


@dataclass
class AuditState:
    key: AuditKey
    protocols: Protocols
    protocols_digest: bytes
    pruned_day: int = -1
    sealer: Sealer = field(default_factory=Sealer)
    broken: bool = False
    # Sealed events the audit log could not take for want of disk space, oldest first (server/recorder.py settle)
    owed: list[tuple[bytes, int]] = field(default_factory=list)
    owed_links: list[bytes] = field(default_factory=list)  # hashes of the chain links whose events are owed
    journal: OwedJournal | None = None  # where owed and owed_links are kept across a crash (server/store/owed.py)
    settling: asyncio.Lock = field(default_factory=asyncio.Lock)
    key_write: asyncio.Lock = field(default_factory=asyncio.Lock)  # one write of the stored audit key at a time


# The stores, each typed on its protocol (server/store/protocols.py); STORAGE is the whole backend,
# for the composition root that opens and closes it.
STORAGE = web.AppKey("storage", Storage)
CHAINS = web.AppKey("chains", ChainStore)
DOCUMENTS = web.AppKey("documents", DocumentStore)
THREADS = web.AppKey("threads", ThreadStore)
LOGINS = web.AppKey("logins", AuthStore)
SLOTS = web.AppKey("slots", SlotStore)
AUDIT = web.AppKey("audit", AuditLog)
DIRECTORY = web.AppKey("directory", Directory)
CONFIG = web.AppKey("config", Config)
LOCK = web.AppKey("lock", asyncio.Lock)
LAST_PURGE = web.AppKey("last_purge", list)  # [time of the last purge of expired login rows]
PURGE_EVERY = 60.0
GUARD = web.AppKey("guard", GuardStore)  # request budgets and failed logins per source (server/guard.py)
REFUSALS = web.AppKey("refusals", Refusals)
MEMBER_REFUSALS = web.AppKey("member_refusals", MemberRefusals)
STATE = web.AppKey("audit_state", AuditState)
HUB = web.AppKey("thread_hub", Hub)  # this process's live connections (and its EventBus)
BUS = web.AppKey("event_bus", EventBus)  # where thread items are published and followed
LOG = web.AppKey("thread_log", MessageLog)

SESSION_KEY = web.RequestKey("session", AuthSession)
NAMED_DEVICE = web.RequestKey("named_device", str)  # the known device an unauthenticated login named
KEY_HOLDER = web.RequestKey("key_holder", bool)  # the refused login proved it holds the key it named
# The request's whole body had arrived before ``chains_middleware`` replayed other processes' links (issue 19,
# session 19): that replay is already one after the body arrived (``check_session_now`` needs no second one).
BODY_BEFORE_CATCH_UP = web.RequestKey("body_before_catch_up", bool)
CLIENT = web.RequestKey("client", str)  # the client's address a trusted reverse proxy named (server/proxied.py)
CLAIMED = web.RequestKey("audit_claimed", tuple)  # (member, device) a session token names, even a refused one

# Routes (by their canonical pattern, never the raw path) that need no session.
CHALLENGE, LOGIN = "/api/v1/auth/challenge", "/api/v1/auth/login"
PUBLIC = frozenset(op.path for op in OPERATIONS if not op.auth)


def now_of(request: web.Request) -> float:
    return request.app[CONFIG].clock()


@contextlib.asynccontextmanager
async def running(job: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """A background job for the app's lifetime (inside a ``cleanup_ctx``): started on entry,
    cancelled and awaited on exit."""
    task = asyncio.create_task(job)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
