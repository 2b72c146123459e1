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
from operator import itemgetter
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


_type_len = struct.Struct(">BI").pack  # a type byte and a 4-byte length or count
_type_int = struct.Struct(">Bq").pack  # 'i' and its int64
_len = _U32.pack
_first = itemgetter(0)


def _encode(value: Value, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodingError("structure nested too deeply")
    # The exact built-in types first, by identity of their type; anything else (subclasses, other
    # mappings, bytearray, memoryview) takes the general checks below, which give the same bytes.
    if type(value) is str:
        raw = _to_utf8(value)
        out += _type_len(0x73, len(raw))
        out += raw
    elif type(value) is bytes:
        out += _type_len(0x62, len(value))
        out += value
    elif type(value) is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodingError("integer out of range")
        out += _type_int(0x69, value)
    elif type(value) is dict:
        _encode_mapping(value, out, depth)
    elif type(value) is list or type(value) is tuple:
        out += _type_len(0x6C, len(value))
        depth += 1
        for item in value:
            if type(item) is str and depth <= MAX_DEPTH:  # inline, with the check ``_encode`` makes
                raw = _to_utf8(item)
                out += _type_len(0x73, len(raw))
                out += raw
            else:
                _encode(item, out, depth)
    elif value is None:
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
        _encode_mapping(value, out, depth)
    elif isinstance(value, list | tuple):
        out += b"l" + _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    else:
        raise EncodingError(f"cannot encode a value of type {type(value).__name__}")


def _encode_mapping(value: Mapping[str, Value], out: bytearray, depth: int) -> None:
    """Every key checked and encoded first, then the entries in the byte order of their keys."""
    items = []
    for k, v in value.items():
        if type(k) is not str and not isinstance(k, str):
            raise EncodingError("dictionary keys must be strings")
        items.append((_to_utf8(k), v))
    items.sort(key=_first)
    out += _type_len(0x64, len(items))
    depth += 1
    inline = depth <= MAX_DEPTH  # the check ``_encode`` makes first, for the values inlined here
    for kb, v in items:
        out += _len(len(kb))
        out += kb
        # The commonest values inline: strings, integers, bytes.
        if inline and type(v) is str:
            raw = _to_utf8(v)
            out += _type_len(0x73, len(raw))
            out += raw
        elif inline and type(v) is int and _INT_MIN <= v <= _INT_MAX:
            out += _type_int(0x69, v)
        elif inline and type(v) is bytes:
            out += _type_len(0x62, len(v))
            out += v
        else:
            _encode(v, out, depth)


def _to_utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates have no UTF-8 form
        raise EncodingError("string is not valid Unicode (lone surrogate)") from e


def decode(data: bytes) -> Value:
    """Decode exactly one value; anything malformed raises ``EncodingError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError("expected bytes")
    buf = data if type(data) is bytes else bytes(data)
    value, pos = _decode(buf, 0, 0)
    if pos != len(buf):
        raise EncodingError("trailing bytes after encoded value")
    return value


# Type bytes as integers (indexing ``bytes`` gives an ``int``, with no one-byte slice to make).
_N, _T, _F, _INT, _BYTES, _STR, _LIST, _DICT = b"NTFibsld"
_u32_at = _U32.unpack_from
_i64_at = _I64.unpack_from


def _truncated() -> EncodingError:
    return EncodingError("encoded value is truncated")


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Value, int]:
    # The grammar's checks, inlined: each length is read with ``unpack_from`` after checking that
    # its 4 bytes are there, and each payload is sliced once after checking that it is all there.
    if depth > MAX_DEPTH:
        raise EncodingError("structure nested too deeply")
    size = len(buf)
    if pos >= size:
        raise _truncated()
    kind = buf[pos]
    pos += 1
    if kind in (_BYTES, _STR):
        if pos + 4 > size:
            raise _truncated()
        end = pos + 4 + _u32_at(buf, pos)[0]
        if end > size:
            raise _truncated()
        raw = buf[pos + 4 : end]
        return (raw if kind == _BYTES else _utf8(raw)), end
    if kind == _INT:
        if pos + 8 > size:
            raise _truncated()
        return _i64_at(buf, pos)[0], pos + 8
    if kind in (_DICT, _LIST):
        if pos + 4 > size:
            raise _truncated()
        n = _u32_at(buf, pos)[0]
        pos += 4
        if n > size - pos:  # every entry or item takes at least one byte
            raise _truncated()
        if kind == _LIST:
            return _items(buf, pos, n, depth + 1)
        return _entries(buf, pos, n, depth + 1)
    if kind == _N:
        return None, pos
    if kind == _T:
        return True, pos
    if kind == _F:
        return False, pos
    raise EncodingError(f"unknown type byte {bytes((kind,))!r}")


# A dictionary's strings, byte strings and integers are decoded in its own loop (``_decode``'s checks, inlined),
# not by a call of ``_decode`` each: a sync index of 10,000 entries holds ~80,000 of them. Anything else (a
# container, N, T, F, an unknown type byte, too deep) goes through ``_decode``: the same checks in the same order,
# so every input gives the same value or the same error as one ``_decode`` call per value. (Lists, rare in what is
# decoded often, call ``_decode`` for each item.)


def _items(buf: bytes, pos: int, n: int, depth: int) -> tuple[Value, int]:
    items: list[Value] = []
    for _ in range(n):
        item, pos = _decode(buf, pos, depth)
        items.append(item)
    return items, pos


def _entries(buf: bytes, pos: int, n: int, depth: int) -> tuple[Value, int]:
    result: dict[str, Value] = {}
    previous: bytes | None = None
    size = len(buf)
    inline = depth <= MAX_DEPTH
    value: Value
    for _ in range(n):
        if pos + 4 > size:
            raise _truncated()
        end = pos + 4 + _u32_at(buf, pos)[0]
        if end > size:
            raise _truncated()
        kb = buf[pos + 4 : end]
        if previous is not None and kb <= previous:
            raise EncodingError("dictionary keys are duplicated or not in canonical order")
        previous = kb
        kind = buf[end] if inline and end < size else 0
        if kind in (_STR, _BYTES):
            if end + 5 > size:
                raise _truncated()
            pos = end + 5 + _u32_at(buf, end + 1)[0]
            if pos > size:
                raise _truncated()
            raw = buf[end + 5 : pos]
            value = raw if kind == _BYTES else _utf8(raw)
        elif kind == _INT:
            if end + 9 > size:
                raise _truncated()
            value = _i64_at(buf, end + 1)[0]
            pos = end + 9
        else:
            value, pos = _decode(buf, end, depth)
        key = _KEYS.get(kb)
        if key is None:
            key = _utf8(kb)
            if len(kb) <= _KEY_CACHED and len(_KEYS) < _KEYS_MAX:
                _KEYS[kb] = key
        result[key] = value
    return result, pos


# Short dictionary keys decoded before (field names: a sync index of 10,000 entries repeats its 7 names 70,000
# times), each the string its bytes decode to; only valid UTF-8 gets in, so a hit is what ``_utf8`` would return.
_KEYS: dict[bytes, str] = {}
_KEY_CACHED = 8  # bytes: the longest key kept
_KEYS_MAX = 4096


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
