"""The HTTP API's OpenAPI 3.1 document, generated from the operation table (``vault/wire/operations.py``)
and its Structs (``vault/wire/schemas.py``). ``tests/test_api_contract.py`` walks it: every operation and every
documented error status must have a test."""

from __future__ import annotations

from typing import Any

import msgspec

from vault.wire import schemas
from vault.wire.operations import ERROR_MEANINGS, OPERATIONS, Binary, Operation, Text, WebSocket

REF = "#/components/schemas/{name}"
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
# Query parameters are non-negative integers of at most 12 digits (server/http.py int_query).
_QUERY_INT = {"type": "integer", "minimum": 0, "maximum": 10**12 - 1}


def _shapes() -> list[Any]:
    """Every type the document describes, each once, in a stable order."""
    found: list[Any] = [schemas.Error, schemas.FollowStart, schemas.LiveEvent]
    for op in OPERATIONS:
        for shape in (op.request, op.response):
            if shape not in (None, Binary, Text, WebSocket) and shape not in found:
                found.append(shape)
    return found


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(op: Operation, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.name, "summary": op.summary}
    params = [{"name": p.name, "in": "path", "required": True, "description": p.description,
               "schema": {"type": "string", "pattern": p.pattern}} for p in op.path_params]
    params += [{"name": q.name, "in": "query", "required": False, "description": q.description,
                "schema": _QUERY_INT} for q in op.query]
    if params:
        out["parameters"] = params
    if not op.auth:
        out["security"] = []
    if op.request is Binary:
        out["requestBody"] = {"required": True, "content": _BINARY}
    elif op.request is not None:
        out["requestBody"] = {"required": True, "content": _json(schema_of[op.request])}
    if op.response is WebSocket:
        ok: dict[str, Any] = {"description": "switching to the WebSocket protocol", "x-websocket": {
            "client-first-frame": schema_of[schemas.FollowStart], "server-frames": schema_of[schemas.LiveEvent]}}
    elif op.response is Binary:
        ok = {"description": "ok", "content": _BINARY}
    elif op.response is Text:
        ok = {"description": "ok", "content": _TEXT}
    else:
        ok = {"description": "ok", "content": _json(schema_of[op.response])}
    responses: dict[str, Any] = {op.ok: ok}
    for status in op.errors:
        responses[status] = {"description": ERROR_MEANINGS[status], "content": _json(schema_of[schemas.Error])}
        if status == "429":
            responses[status]["headers"] = _RETRY_AFTER
    out["responses"] = responses
    return out


def build() -> dict[str, Any]:
    shapes = _shapes()
    refs, components = msgspec.json.schema_components(shapes, ref_template=REF)
    schema_of = dict(zip(shapes, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Member Vault", "version": "1"},
        "components": {"securitySchemes": {"session": {"type": "http", "scheme": "bearer"}}, "schemas": components},
        "security": [{"session": []}],
        "paths": paths,
    }


OPENAPI: dict[str, Any] = build()
