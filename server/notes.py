"""What a handler asks the audit middleware (``server/recorder.py``) to record once the request's
outcome is known: one ``Note`` per event, kept on the request."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from security.events import DAY


@dataclass
class Note:
    """An event a handler asks the audit middleware to record once the request's outcome is known."""

    action: str
    res: dict[str, str] = field(default_factory=dict)
    subject: str | None = None  # the member the event is about, if not (only) the actor
    detail: dict[str, int | str] = field(default_factory=dict)
    actor: str | None = None  # default: the session's member and device
    device: str | None = None
    failure_only: bool = False  # recorded only if the request fails
    refused: tuple[int, str] | None = None  # (status, code): one part of a request refused alone (a batch item)
    claim: tuple[bytes, bytes] | None = None  # ``audit.key``: the signed statement and signature, in the leaf in clear


NOTES = web.RequestKey("audit_notes", list)
LOGGED_LINKS = web.RequestKey("logged_links", list)  # hashes of the chain links whose events NOTES hold


def note(request: web.Request, action: str, res: dict[str, str] | None = None, subject: str | None = None,
         detail: dict[str, int | str] | None = None, actor: str | None = None, device: str | None = None,
         failure_only: bool = False, claim: tuple[bytes, bytes] | None = None) -> Note:
    n = Note(action, res or {}, subject, detail or {}, actor, device, failure_only, claim=claim)
    request.setdefault(NOTES, []).append(n)
    return n


def today(now: float) -> int:
    return int(now) // DAY


