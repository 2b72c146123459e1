"""vault/wire64.py: base64 in JSON fields, strict in both directions, each with its own error."""

from __future__ import annotations

import base64
import os

import pytest

from vault.errors import EncodingError, TransportError
from vault.wire64 import b64, unb64, unb64_answer


@pytest.mark.parametrize("data", [b"", b"\x00", b"ab", b"abc", os.urandom(1000)])
def test_round_trip(data: bytes) -> None:
    text = b64(data)
    assert text == base64.b64encode(data).decode("ascii")
    assert unb64(text, "field") == data
    assert unb64_answer(text) == data


@pytest.mark.parametrize("value", ["YWJj\n", "YWJ", "YW=j", "YWJj!", "ÿÿÿÿ", "YWJjZA"])
def test_invalid_base64_is_refused(value: str) -> None:
    with pytest.raises(EncodingError, match="^sig is not valid base64$"):
        unb64(value, "sig")
    with pytest.raises(TransportError, match="^server sent malformed base64$"):
        unb64_answer(value)


@pytest.mark.parametrize("value", [None, 3, b"YWJj", ["YWJj"], {"a": 1}])
def test_a_non_string_is_refused(value: object) -> None:
    with pytest.raises(EncodingError, match="^record must be a base64 string$"):
        unb64(value, "record")
    with pytest.raises(TransportError, match=r"^server sent a malformed answer \(expected base64\)$"):
        unb64_answer(value)


def test_a_request_field_is_bounded() -> None:
    assert unb64("YWJj", "f", max_len=4) == b"abc"
    with pytest.raises(EncodingError, match="must be a base64 string"):
        unb64("YWJjZA==", "f", max_len=4)
    with pytest.raises(EncodingError, match="must be a base64 string"):
        unb64("A" * (2 * 1024 * 1024 + 4), "f")
