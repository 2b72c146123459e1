"""Loaded by every ``mvault`` process a test starts with this directory on PYTHONPATH and ``WIRE_LOG``
naming a directory: records what the real client sends and receives, one JSON line per exchange, in
``WIRE_LOG/<pid>.jsonl`` (tests/test_api_schemas.py checks them against ``vault/wire``).

It wraps ``client.api.Api`` from outside (nothing in the client knows of it; each entry names its server,
``url``): ``request`` (JSON calls and uploads), ``_check`` (the status and body of every answer, refusals
included), ``download`` and ``websocket`` (the frames the client sends and receives).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from client.api import Api

_DIR = os.environ.get("WIRE_LOG")


def _write(entry: dict[str, Any]) -> None:
    assert _DIR is not None
    with (Path(_DIR) / f"{os.getpid()}.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


class _Socket:
    """The client's WebSocket, with every frame it sends and receives recorded."""

    def __init__(self, ws: Any, path: str) -> None:
        self._ws, self._path = ws, path

    async def send_json(self, data: Any, *args: Any, **kw: Any) -> None:
        _write({"kind": "ws-send", "path": self._path, "frame": data})
        await self._ws.send_json(data, *args, **kw)

    async def receive(self, *args: Any, **kw: Any) -> Any:
        msg = await self._ws.receive(*args, **kw)
        if isinstance(msg.data, str):
            _write({"kind": "ws-receive", "path": self._path, "text": msg.data})
        return msg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


def _install() -> None:
    request, check, download, websocket = Api.request, Api._check, Api.download, Api.websocket
    answers: dict[int, tuple[int, Any]] = {}  # id(api) -> (status, JSON body or None) of its last answer
    texts: set[int] = set()  # id(api) whose last answer was text/plain (a download of text: "<text>")

    async def recorded_check(self: Api, resp: Any) -> None:
        body = None
        if resp.status >= 400 or resp.content_type == "application/json":  # never a download's stream
            try:
                body = json.loads(await resp.read())  # read() keeps the body: the client reads it again
            except ValueError:
                body = None
        elif resp.content_type == "application/octet-stream":  # a binary answer read whole (a batch download)
            body = "<binary>"
        answers[id(self)] = (resp.status, body)
        (texts.add if resp.content_type == "text/plain" else texts.discard)(id(self))
        await check(self, resp)

    async def recorded_request(self: Api, method: str, path: str, json: Any = None, data: Any = None,
                               length: int | None = None, max_answer: int | None = None) -> Any:
        entry: dict[str, Any] = {"kind": "http", "url": self.url, "method": method, "path": path,
                                 "request": "<binary>" if data is not None else json}
        try:
            return await request(self, method, path, json=json, data=data, length=length, max_answer=max_answer)
        finally:
            if id(self) in answers:
                entry["status"], entry["response"] = answers.pop(id(self))
                _write(entry)

    async def recorded_download(self: Api, path: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in download(self, path):
                yield chunk
        finally:
            if id(self) in answers:
                status, body = answers.pop(id(self))
                _write({"kind": "http", "url": self.url, "method": "GET", "path": path, "request": None,
                        "status": status,
                        "response": body if status >= 400 else "<text>" if id(self) in texts else "<binary>"})

    async def recorded_websocket(self: Api, path: str) -> Any:
        ws = await websocket(self, path)
        _write({"kind": "http", "url": self.url, "method": "GET", "path": path, "request": None, "status": 101,
                "response": None})
        return _Socket(ws, path)

    Api.request = recorded_request  # type: ignore[method-assign]
    Api._check = recorded_check  # type: ignore[method-assign]
    Api.download = recorded_download  # type: ignore[method-assign]
    Api.websocket = recorded_websocket  # type: ignore[method-assign]


if _DIR:
    _install()
