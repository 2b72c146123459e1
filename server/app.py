"""The composition root: builds the server's components, wires them into one aiohttp application
and registers the routes: one per operation of ``vault/wire/operations.py``, each served by the handler
its routes module names for it (``HANDLERS``). Nothing else lives here; every module below knows the others only
through the application's keys (``server/context.py``).

Middlewares, outermost first: every answer is counted (``server/metrics.py``); errors become JSON
answers (``server/http.py``); every outcome is recorded in the audit log (``server/recorder.py``);
callers without a session pay per address, and everyone else shows a session (``server/access.py``).
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from server import metrics
from server.access import auth_middleware, chains_middleware, limit_middleware
from server.context import (
    AUDIT,
    BUS,
    CHAINS,
    CONFIG,
    DIRECTORY,
    DOCUMENTS,
    GUARD,
    HUB,
    LAST_PURGE,
    LOCK,
    LOG,
    LOGINS,
    MEMBER_REFUSALS,
    REFUSALS,
    SLOTS,
    STATE,
    STORAGE,
    THREADS,
    Config,
    Handler,
)
from server.datalock import alone, hold_shared
from server.directory import Directory
from server.events import Hub
from server.guard import MemberRefusals, Refusals
from server.http import MAX_JSON, errors_middleware
from server.messagelog import MessageLog
from server.metrics import METRICS, add_metrics, metrics_middleware
from server.proxied import proxy_middleware
from server.recorder import audit_middleware, load_state, record_unlogged_links, refusal_flusher, settle_at_start
from server.relay import relaying
from server.routes import (
    audit,
    auth,
    batch,
    bodies,
    chains,
    closing,
    devices,
    docs,
    guests,
    public,
    restore,
    threads,
)
from server.store.backends import open_audit, open_storage
from server.store.owed import OwedJournal
from server.store.postgres.vault import PostgresStorage
from server.store.protocols import Storage
from server.store.sqlite.vault import SQLiteStorage
from vault.wire.operations import OPERATIONS

__all__ = ["make_app", "open_app"]


def make_app(storage: Storage, directory: Directory, config: Config) -> web.Application:
    shared = [chains_middleware] if config.database_url else []  # other processes may append links (PostgreSQL)
    app = web.Application(middlewares=[proxy_middleware, metrics_middleware, errors_middleware, *shared,
                                       audit_middleware, limit_middleware, auth_middleware], client_max_size=MAX_JSON,
                          # every connection of every runner serving this app (serve() and the tests' alike)
                          handler_args={"keepalive_timeout": config.keepalive_timeout})
    app[STORAGE] = storage
    app[CHAINS] = app[DOCUMENTS] = app[THREADS] = app[LOGINS] = app[SLOTS] = storage
    app[DIRECTORY] = directory
    app[CONFIG] = config
    app[LOCK] = asyncio.Lock()
    app[LAST_PURGE] = [0.0]
    app[GUARD] = storage.guard(config.rate_per_second, config.rate_burst, config.rate_sources)
    app[REFUSALS] = Refusals()
    app[MEMBER_REFUSALS] = MemberRefusals(config.member_refusals)
    app[HUB] = app[BUS] = Hub()
    app[LOG] = MessageLog(storage)
    add_metrics(app).watch("messages", app[LOG].committer)
    app.cleanup_ctx.append(refusal_flusher)  # entered before the thread purge loop, left after it
    if isinstance(storage, PostgresStorage):  # other processes may store: their notices reach the followers here
        app.cleanup_ctx.append(relaying(storage.listener()))
    threads.register(app)
    add_operations(app, {name: handler for routes in (public, auth, chains, devices, docs, batch, bodies, audit,
                                                      restore, threads, metrics, closing, guests)
                         for name, handler in routes.HANDLERS.items()})
    return app


def add_operations(app: web.Application, handlers: dict[str, Handler]) -> None:
    """One route per operation of ``vault/wire/operations.py``, served by the handler of its name: no route
    without its description, no operation without its handler (checked here, at start)."""
    names = {op.name for op in OPERATIONS}
    if set(handlers) != names or len(names) != len(OPERATIONS):
        raise RuntimeError(f"operations without a handler: {sorted(names - set(handlers))}; "
                           f"handlers without an operation: {sorted(set(handlers) - names)}")
    for op in OPERATIONS:
        getattr(app.router, f"add_{op.method}")(op.path, handlers[op.name])  # add_get also answers HEAD


def origin_of(storage: Storage) -> str:
    """What names this process's notices to the others (PostgreSQL; SQLite has no others)."""
    return storage.origin if isinstance(storage, PostgresStorage) else ""


async def open_app(config: Config) -> web.Application:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with alone(config.data_dir) as only:  # never collect under a serving process (server/datalock.py)
        storage = await open_storage(config.data_dir, config.database_url, config.collect_garbage and only)
    try:
        lock = hold_shared(config.data_dir)  # released when the app is cleaned up (server/datalock.py)
    except BaseException:
        await storage.close()
        raise
    try:
        directory = await Directory.load(storage)
        directory.clock = config.clock  # the holds' (server/holds.py)
        audit_store = await open_audit(config.data_dir, config.database_url, origin_of(storage),
                                       storage.chain_heads if isinstance(storage, SQLiteStorage) else None)
        for member, device, t in await audit_store.cosigned():  # signed acts too (review 26, finding 1)
            directory.note_signed(member, device, t)
    except BaseException:
        await storage.close()
        os.close(lock)
        raise
    try:
        state = await load_state(audit_store, directory)
    except BaseException:
        await audit_store.close()
        await storage.close()
        os.close(lock)
        raise
    app = make_app(storage, directory, config)
    app[AUDIT] = audit_store
    app[STATE] = state
    if isinstance(storage, SQLiteStorage):  # PostgreSQL commits each write in its own transaction
        app[METRICS].watch("vault", storage.committer)
    app[METRICS].watch("audit", audit_store.committer)
    try:
        state.journal, state.owed, state.owed_links = OwedJournal.open(config.data_dir)
        await settle_at_start(app)  # first: the owed events are older than any the start records
        await record_unlogged_links(app)
    except BaseException:
        if state.journal is not None:
            state.journal.close()
        await audit_store.close()
        await storage.close()
        os.close(lock)
        raise

    async def close(app: web.Application) -> None:
        await app[LOG].close()  # its last batch goes into the storage closed below
        await app[AUDIT].close()
        await app[STORAGE].close()
        if state.journal is not None:
            state.journal.close()  # another process may take it now
        os.close(lock)

    app.on_cleanup.append(close)
    return app
