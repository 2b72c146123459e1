"""age file encryption (pyrage, the Rust ``age`` crate): X25519 recipients and identities, streamed.

Thin wrappers only: ``vault.agefile`` is the recipe the rest of the project calls.
"""

from __future__ import annotations

from typing import BinaryIO

import pyrage  # type: ignore[import-untyped]
from pyrage import x25519

Errors = (pyrage.RecipientError, pyrage.IdentityError, pyrage.EncryptError, pyrage.DecryptError)


def recipient(text: str) -> object:
    """An X25519 recipient from its ``age1...`` string (raises one of ``Errors``)."""
    return x25519.Recipient.from_str(text)


def identity(text: str) -> object:
    """An X25519 identity from its ``AGE-SECRET-KEY-1...`` string (raises one of ``Errors``)."""
    return x25519.Identity.from_str(text)


def public_of(ident: object) -> str:
    """The ``age1...`` recipient string of an identity."""
    return str(ident.to_public())  # type: ignore[attr-defined]


def encrypt_io(src: BinaryIO, dst: BinaryIO, recipients: list[object]) -> None:
    """Read ``src`` to its end and write it age-encrypted to ``dst`` (streamed: 64 KiB chunks)."""
    pyrage.encrypt_io(src, dst, recipients)


def decrypt_io(src: BinaryIO, dst: BinaryIO, identities: list[object]) -> None:
    """Read the age file ``src`` and write its plaintext to ``dst``; raises at the end if it was cut or altered."""
    pyrage.decrypt_io(src, dst, identities)
