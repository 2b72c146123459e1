"""``/api/metrics``: what the server does, in Prometheus' text format, for the operator only.

A registry per application (never prometheus-client's global one: several servers may share a process). Labels
are route templates (``/api/v1/teams/{team}/docs``, never a path with ids), methods and statuses: nothing names a
member, team, document, device or thread, and nothing counts per any of them (SECURITY.md, "Metrics").

Who may read it: a caller showing ``Authorization: Bearer <metrics_token>`` (compared in constant time; no token
is configured: nobody this way), or any loopback peer while ``metrics_loopback`` is on (the default; turn it off
behind a reverse proxy on the same host, whose requests all come from loopback). Anyone else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from server.context import CONFIG, HUB, Handler
from server.http import source_of
from server.store.commit import GroupCommitter
from vault.errors import PolicyDenied, VaultError
from vault.wire.operations import OPERATIONS

__all__ = ["HANDLERS", "METRICS", "Metrics", "metrics_middleware"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_UPLOAD = next(op.path for op in OPERATIONS if op.name == "put_version")
_DOWNLOAD = next(op.path for op in OPERATIONS if op.name == "version_body")
_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The application's instruments, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mvault_http_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("mvault_http_request_duration_seconds",
                                 "time from a request's arrival until its answer is ready (a file body is sent after; "
                                 "a live connection: its whole life)",
                                 ["route"], registry=r)
        self.uploads = Counter("mvault_uploads", "document versions stored", registry=r)
        self.upload_bytes = Counter("mvault_upload_bytes", "bytes of the document versions stored", registry=r)
        self.downloads = Counter("mvault_downloads", "version bodies sent", registry=r)
        self.download_bytes = Counter("mvault_download_bytes", "bytes of the version bodies answered (announced)",
                                      registry=r)
        self.followers = Gauge("mvault_live_followers", "live connections (thread follow, sync --watch) open now",
                               registry=r)
        self.audit_appends = Counter("mvault_audit_appends", "audit events appended to the log", registry=r)
        self.relayed = Counter("mvault_live_relayed", "thread messages another server process stored, published to "
                               "this process's followers, by where their records came from: the notice that "
                               "announced them, or a read of the database", ["source"], registry=r)
        self.relay_reads = Counter("mvault_live_relay_reads", "reads of the database for thread messages another "
                                   "process stored that no notice carried", registry=r)
        self.link_notices = Counter("mvault_live_link_notices", "notices of chain links another server process "
                                    "stored, by how this process replayed them: from the links the notice carried, "
                                    "or by a read of the database", ["how"], registry=r)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.batch_sizes = Histogram("mvault_commit_batch_size", "items per group-commit transaction, by store",
                                     ["store"], buckets=_BATCHES, registry=r)

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answer: its labelled children are kept (a lookup by labels takes a lock, and most of the time)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def watch(self, store: str, committer: GroupCommitter[Any, Any]) -> None:
        """Count the batches ``committer`` commits (the store ``audit``'s items are audit appends too)."""
        hist = self.batch_sizes.labels(store)

        def observed(size: int) -> None:
            hist.observe(size)
            if store == "audit":
                self.audit_appends.inc(size)

        committer.observer = observed

    def count_followers(self, count: Callable[[], int]) -> None:
        self.followers.set_function(lambda: float(count()))


METRICS = web.AppKey("metrics", Metrics)


def add_metrics(app: web.Application) -> Metrics:
    """The application's metrics (its live followers counted from its hub)."""
    metrics = Metrics()
    hub = app[HUB]
    metrics.count_followers(lambda: sum(hub.live.values()))
    app[METRICS] = metrics
    app.on_response_prepare.append(_count_download)
    return metrics


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every answer is counted, refusals and internal errors too."""
    started = time.monotonic()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    method = request.method if request.method in _METHODS else "other"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (VaultError, web.HTTPException) as e:
        status = e.status
        raise
    finally:
        metrics = request.app[METRICS]
        metrics.answered(route, method, status, time.monotonic() - started)
        if route == _UPLOAD and status == 201:
            metrics.uploads.inc()
            metrics.upload_bytes.inc(request.content.total_bytes)


async def _count_download(request: web.Request, response: web.StreamResponse) -> None:
    """A version body's answer, as its headers leave (a file answer is sent after the middlewares, so its length
    is known only here): counted with the length it announces (a client that hangs up early counts in full)."""
    resource = request.match_info.route.resource
    if (resource is not None and resource.canonical == _DOWNLOAD and request.method == "GET"
            and response.status == 200):
        metrics = request.app[METRICS]
        metrics.downloads.inc()
        metrics.download_bytes.inc(response.content_length or 0)


def _loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


async def metrics(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else ""
    holder = bool(config.metrics_token) and hmac.compare_digest(token.encode(), config.metrics_token.encode())
    if not holder and not (config.metrics_loopback and _loopback(source_of(request))):
        raise PolicyDenied("the metrics are for the server's operator (the metrics token, or a loopback peer)")
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


HANDLERS: dict[str, Handler] = {"metrics": metrics}
