"""Document pins from a listing (``Documents.ls``): which listed heads are pinned, and how.

A listed head is only signed and judged on its own. Pinning every one would let a server working with a writer
list a head that is off its document's chain (a version 3 while withholding 2) and stop this device for good once
the real chain is served again (review round 6 kept that a denial of service of one pass, not of every later one).
Pinning none let a server restored from a backup, or rolling back, reopen a document this device had seen deleted
in a listing (review round 7). So: a listed deletion past its pin has its whole chain fetched and checked, and is
pinned (as ``get`` and ``history`` pin, ``"deleted"`` included) only if that chain ends with it; a live head is
held against the pins but not pinned from a listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from client.home import Home, Pins
from client.view import check_doc_pin
from vault.envelope import DELETE, Record
from vault.errors import IntegrityError

CHAINS_IN_FLIGHT = 16  # chains of listed deletions fetched at once


def deletion_ahead(pins: Pins, key: str, rec: Record) -> bool:
    """Whether a listed head is a deletion past its document's pin (``key``: team/doc), or of an unpinned one."""
    pin = pins.docs.get(key)
    return rec.core.op == DELETE and (pin is None or int(pin[0]) < rec.core.seq)


async def pinned_deletions(pins: Pins, team_id: str, heads: list[Record],
                           chain: Callable[[str], Awaitable[list[Record]]]) -> dict[str, list[Any]]:
    """The new pins (team/doc -> pin) of the listed deletion ``heads`` whose chain (``chain(doc)``: every version,
    checked and chained) ends with them, also set in ``pins``. A chain that does not check pins nothing (the
    deletion is acted on, or refused, as before); one that goes back from a pin raises ``RollbackDetected``."""
    gate = asyncio.Semaphore(CHAINS_IN_FLIGHT)

    async def checked(rec: Record) -> list[Record]:
        async with gate:
            try:
                return await chain(rec.core.doc)
            except IntegrityError:
                return []

    new: dict[str, list[Any]] = {}
    for rec, records in zip(heads, await asyncio.gather(*(checked(r) for r in heads)), strict=True):
        key = f"{team_id}/{rec.core.doc}"
        if records and records[-1].version_id == rec.version_id and check_doc_pin(pins, key, records):
            new[key] = pins.docs[key]
    return new


def save_merged(home: Home, batch: dict[str, list[Any]]) -> None:
    """Merge document pins (team/doc -> pin) into the home's pins file as it is now (``Home.save_pins``, under its
    lock): the furthest version of each document wins, so pins another command saved meanwhile stay."""
    if batch:
        pins = home.pins()
        pins.docs.update(batch)
        home.save_pins(pins)
