"""The server's log: plain text or one JSON object per line (``log_format``), at the operator's ``log_level``.

What is logged at which level (SECURITY.md, "What the server's log holds"): at info, the start (version,
listening address, data directory, backend) and the stop; warnings and errors. Never an id of a member,
team, document, device or thread, nor a name, nor a peer's address: those appear only at debug, where each
request is logged with its method, route template, concrete path, status, time taken and the peer's address
(for abuse handling; an operator turns debug on for that and off again).

A record's structured fields are passed as ``extra={"fields": {...}}``; the JSON format writes them under
``fields``, the text format after the message as ``key=value``.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from server.http import source_of

__all__ = ["LEVELS", "RequestLogger", "configure"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# The server's own loggers and aiohttp's; their records reach the one handler ``configure`` installs.
LOGGERS = ("mvault", "aiohttp")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, fields (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "fields": getattr(record, "fields", {}),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return text


class HidePeers(logging.Filter):
    """aiohttp names the peer in its own error records ("Error handling request from 203.0.113.7"): above debug,
    the address is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if record.name.startswith("aiohttp.") and "from %s" in msg and isinstance(record.args, tuple):
            at = msg[:msg.index("from %s")].count("%s")  # the peer's argument
            record.msg = msg.replace("from %s", "from a peer (its address: at debug level)", 1)
            record.args = record.args[:at] + record.args[at + 1:]
        return True


def configure(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Send the server's and aiohttp's records at ``level`` and above to ``stream`` (stderr) as ``log_format``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if LEVELS[level] > logging.DEBUG:
        handler.addFilter(HidePeers())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # other libraries: warnings and errors only
    for name in LOGGERS:
        logging.getLogger(name).setLevel(LEVELS[level])


class RequestLogger(AbstractAccessLogger):
    """Each request at debug level (aiohttp's access log, logger ``mvault.access``): nothing at info."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        route = "?"
        if isinstance(request, web.Request):
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "?"
        self.logger.debug("request", extra={"fields": {
            "method": request.method, "route": route, "path": request.path, "status": response.status,
            "seconds": round(elapsed, 6), "peer": source_of(request)}})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)
