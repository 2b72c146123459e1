"""The sizes of a thread message (vault/messages.py, docs/format.md): their own module, so that the wire schemas
(every command loads them) can bound a message record without loading the message code (session 17: a one-pass
`mvault sync` never opens a message)."""

from __future__ import annotations

MAX_TEXT = 64 * 1024  # bytes of UTF-8 text in one message
MAX_BODY = MAX_TEXT + 4096  # padded plaintext body, text plus attachments and framing
MAX_RECORD = MAX_BODY + 2048
