"""Canonical binary encoding of signed and encrypted structures.

One value has exactly one encoding, so signatures and hashes cover bytes, never a
re-serialization. Grammar (all lengths and counts are 4-byte big-endian unsigned)::

    None   'N'
    bool   'T' | 'F'
    int    'i' int64 big-endian (two's complement)
    bytes  'b' len bytes
    str    's' len utf-8
    list   'l' count value*
    dict   'd' count (len utf-8-key value)*   keys strictly increasing by their bytes

The decoder rejects: unknown type bytes, floats (there is no float type), duplicate or
unsorted keys, invalid UTF-8, integers outside int64, nesting deeper than 32, lengths
beyond the input, and trailing bytes. Every rejection is an ``EncodingError``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Union

from vault.errors import EncodingError

Value = Union[None, bool, int, bytes, str, Sequence["Value"], Mapping[str, "Value"]]  # noqa: UP007 (recursive alias)

MAX_DEPTH = 32
_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


def encode(value: Value) -> bytes:
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def _encode(value: Value, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodingError("structure nested too deeply")
    if value is None:
        out += b"N"
    elif value is True:
        out += b"T"
    elif value is False:
        out += b"F"
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodingError("integer out of range")
        out += b"i" + _I64.pack(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out += b"b" + _U32.pack(len(raw)) + raw
    elif isinstance(value, str):
        raw = _to_utf8(value)
        out += b"s" + _U32.pack(len(raw)) + raw
    elif isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise EncodingError("dictionary keys must be strings")
            items.append((_to_utf8(k), v))
        items.sort(key=lambda kv: kv[0])
        out += b"d" + _U32.pack(len(items))
        for kb, v in items:
            out += _U32.pack(len(kb)) + kb
            _encode(v, out, depth + 1)
    elif isinstance(value, list | tuple):
        out += b"l" + _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    else:
        raise EncodingError(f"cannot encode a value of type {type(value).__name__}")


def _to_utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates have no UTF-8 form
        raise EncodingError("string is not valid Unicode (lone surrogate)") from e


def decode(data: bytes) -> Value:
    """Decode exactly one value; anything malformed raises ``EncodingError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError("expected bytes")
    buf = bytes(data)
    value, pos = _decode(buf, 0, 0)
    if pos != len(buf):
        raise EncodingError("trailing bytes after encoded value")
    return value


def _take(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    end = pos + n
    if n < 0 or end > len(buf):
        raise EncodingError("encoded value is truncated")
    return buf[pos:end], end


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    raw, pos = _take(buf, pos, 4)
    (n,) = _U32.unpack(raw)
    return int(n), pos


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise EncodingError("structure nested too deeply")
    kind, pos = _take(buf, pos, 1)
    if kind == b"N":
        return None, pos
    if kind == b"T":
        return True, pos
    if kind == b"F":
        return False, pos
    if kind == b"i":
        raw, pos = _take(buf, pos, 8)
        return int(_I64.unpack(raw)[0]), pos
    if kind == b"b":
        n, pos = _length(buf, pos)
        raw, pos = _take(buf, pos, n)
        return raw, pos
    if kind == b"s":
        n, pos = _length(buf, pos)
        raw, pos = _take(buf, pos, n)
        return _utf8(raw), pos
    if kind == b"l":
        n, pos = _length(buf, pos)
        if n > len(buf) - pos:  # every item takes at least one byte
            raise EncodingError("encoded value is truncated")
        items: list[Value] = []
        for _ in range(n):
            item, pos = _decode(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    if kind == b"d":
        n, pos = _length(buf, pos)
        if n > len(buf) - pos:
            raise EncodingError("encoded value is truncated")
        result: dict[str, Value] = {}
        previous: bytes | None = None
        for _ in range(n):
            klen, pos = _length(buf, pos)
            kb, pos = _take(buf, pos, klen)
            if previous is not None and kb <= previous:
                raise EncodingError("dictionary keys are duplicated or not in canonical order")
            previous = kb
            value, pos = _decode(buf, pos, depth + 1)
            result[_utf8(kb)] = value
        return result, pos
    raise EncodingError(f"unknown type byte {kind!r}")


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EncodingError("invalid UTF-8 in string") from e


# -- typed field access for decoders --------------------------------------------------------


class Fields:
    """Typed, failing-closed access to a decoded dictionary.

    ``Fields(decode(raw), "doc header").bytes_("nonce", 24)`` raises ``EncodingError``
    naming the structure and field when anything is missing or of the wrong type.
    """

    def __init__(self, value: Value, what: str, allowed: set[str] | None = None) -> None:
        if not isinstance(value, dict):
            raise EncodingError(f"{what}: expected a dictionary")
        if allowed is not None:
            extra = set(value) - allowed
            if extra:
                raise EncodingError(f"{what}: unexpected field(s) {sorted(extra)}")
        self.raw: dict[str, Value] = value
        self.what = what

    def _get(self, key: str) -> Value:
        if key not in self.raw:
            raise EncodingError(f"{self.what}: missing field {key!r}")
        return self.raw[key]

    def has(self, key: str) -> bool:
        return key in self.raw

    def bytes_(self, key: str, size: int | None = None, max_size: int | None = None) -> bytes:
        v = self._get(key)
        if not isinstance(v, bytes):
            raise EncodingError(f"{self.what}: field {key!r} must be bytes")
        if size is not None and len(v) != size:
            raise EncodingError(f"{self.what}: field {key!r} must be {size} bytes")
        if max_size is not None and len(v) > max_size:
            raise EncodingError(f"{self.what}: field {key!r} is too long")
        return v

    def opt_bytes(self, key: str, size: int | None = None) -> bytes | None:
        if self.raw.get(key) is None:
            return None
        return self.bytes_(key, size)

    def int_(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise EncodingError(f"{self.what}: field {key!r} must be an integer")
        if minimum is not None and v < minimum:
            raise EncodingError(f"{self.what}: field {key!r} is below {minimum}")
        if maximum is not None and v > maximum:
            raise EncodingError(f"{self.what}: field {key!r} is above {maximum}")
        return v

    def opt_int(self, key: str, minimum: int | None = None) -> int | None:
        if self.raw.get(key) is None:
            return None
        return self.int_(key, minimum)

    def str_(self, key: str, max_len: int = 1024) -> str:
        v = self._get(key)
        if not isinstance(v, str):
            raise EncodingError(f"{self.what}: field {key!r} must be a string")
        if len(v) > max_len:
            raise EncodingError(f"{self.what}: field {key!r} is too long")
        return v

    def opt_str(self, key: str, max_len: int = 1024) -> str | None:
        if self.raw.get(key) is None:
            return None
        return self.str_(key, max_len)

    def bool_(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise EncodingError(f"{self.what}: field {key!r} must be a boolean")
        return v

    def list_(self, key: str, max_len: int = 100_000) -> list[Value]:
        v = self._get(key)
        if not isinstance(v, list):
            raise EncodingError(f"{self.what}: field {key!r} must be a list")
        if len(v) > max_len:
            raise EncodingError(f"{self.what}: field {key!r} has too many items")
        return v

    def dict_(self, key: str, allowed: set[str] | None = None) -> Fields:
        return Fields(self._get(key), f"{self.what}.{key}", allowed)

    def opt_dict(self, key: str, allowed: set[str] | None = None) -> Fields | None:
        if self.raw.get(key) is None:
            return None
        return self.dict_(key, allowed)
