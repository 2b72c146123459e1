"""Base64 for bytes in JSON fields (the API's requests and answers): standard alphabet, padded.

Decoding is strict (``validate=True``): characters outside the alphabet or bad padding are refused, never
skipped. Two decoders, one per direction, so each side keeps its error: a client's bad request is an
``EncodingError`` (400, it names the field); a server's bad answer is a ``TransportError`` (the client
stops talking to a server that answers nonsense).
"""

from __future__ import annotations

import base64
import binascii

from vault.errors import EncodingError, TransportError

MAX_FIELD = 2 * 1024 * 1024  # characters of one base64 field in a request


def b64(data: bytes) -> str:
    """``data`` as base64 text for a JSON field."""
    return base64.b64encode(data).decode("ascii")


def _strict(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return None


def unb64(value: object, what: str, max_len: int = MAX_FIELD) -> bytes:
    """The bytes of a base64 field of a request; ``EncodingError`` naming ``what`` if it is not a string
    of at most ``max_len`` characters of valid base64."""
    if not isinstance(value, str) or len(value) > max_len:
        raise EncodingError(f"{what} must be a base64 string")
    data = _strict(value)
    if data is None:
        raise EncodingError(f"{what} is not valid base64")
    return data


def unb64_answer(value: object) -> bytes:
    """The bytes of a base64 field of a server's answer; ``TransportError`` if it is not valid base64."""
    if not isinstance(value, str):
        raise TransportError("server sent a malformed answer (expected base64)")
    data = _strict(value)
    if data is None:
        raise TransportError("server sent malformed base64")
    return data
