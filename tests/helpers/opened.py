"""Counting the sealed local files a piece of client code opens (tests of what a command reads again)."""

from __future__ import annotations

from typing import Any

import pytest


def count_opens(monkeypatch: pytest.MonkeyPatch, owner: object, opener: str) -> list[str]:
    """From now on, the name passed to each call of ``owner.<opener>`` (a sealed file's opener taking
    ``(key, name, blob)``, as ``vault.localstate.open_local`` and ``vault.syncindex.open_sync_index`` do)."""
    opened: list[str] = []
    real = getattr(owner, opener)

    def counting(key: bytes, name: str, blob: bytes) -> Any:
        opened.append(name)
        return real(key, name, blob)

    monkeypatch.setattr(owner, opener, counting)
    return opened
